"""Optimizers as optax transformations: Adai / AdaiW, heavy-ball momentum, and a registry by name."""

from ._adai import adai as adai, scale_by_adai as scale_by_adai, ScaleByAdaiState as ScaleByAdaiState
from ._momentum import (
    momentum as momentum,
    scale_by_momentum as scale_by_momentum,
    ScaleByMomentumState as ScaleByMomentumState,
)
from ._registry import (
    make_optimizer as make_optimizer,
    OPTIMIZERS as OPTIMIZERS,
    optimizer_names as optimizer_names,
)
