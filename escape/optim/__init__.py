"""Optimizers as optax transformations: Adai / AdaiW / AdaiV2, heavy-ball momentum, and a registry by name."""

from ._adai import adai as adai, scale_by_adai as scale_by_adai, ScaleByAdaiState as ScaleByAdaiState
from ._adaiv2 import adaiv2 as adaiv2, scale_by_adaiv2 as scale_by_adaiv2
from ._bounded import (
    adabound as adabound,
    padam as padam,
    scale_by_adabound as scale_by_adabound,
    scale_by_padam as scale_by_padam,
    ScaleByAdaBoundState as ScaleByAdaBoundState,
)
from ._momentum import (
    momentum as momentum,
    scale_by_momentum as scale_by_momentum,
    ScaleByMomentumState as ScaleByMomentumState,
)
from ._registry import (
    canonical_optimizer_name as canonical_optimizer_name,
    make_optimizer as make_optimizer,
    OPTIMIZER_ALIASES as OPTIMIZER_ALIASES,
    optimizer_hyperparameters as optimizer_hyperparameters,
    OPTIMIZERS as OPTIMIZERS,
    optimizer_names as optimizer_names,
)
from ._ablation import AblationState as AblationState, moment_ablation as moment_ablation
