"""Stability of gradient methods (docs/theory.md §8): thresholds on quadratics, fixed preconditioners, frozen Adam."""

from ._frozen import (
    frozen_adam as frozen_adam,
    FrozenAdamState as FrozenAdamState,
    scale_by_preconditioner as scale_by_preconditioner,
)
from ._thresholds import METHODS as METHODS, stability_threshold as stability_threshold
from ._track import (
    edge_summary as edge_summary,
    SharpnessTrajectory as SharpnessTrajectory,
    track_sharpness as track_sharpness,
    train_full_batch as train_full_batch,
)
