"""Stability of gradient methods (docs/theory.md §8): thresholds on quadratics, fixed preconditioners, frozen Adam."""

from ._frozen import (
    frozen_adam as frozen_adam,
    FrozenAdamState as FrozenAdamState,
    scale_by_preconditioner as scale_by_preconditioner,
)
from ._thresholds import METHODS as METHODS, stability_threshold as stability_threshold
