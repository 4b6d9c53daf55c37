"""Modified equations (backward error analysis) of Adam and RMSProp: docs/theory.md §9.

The full-batch ODE with its first-order bias term (Theorem 3.1 with Remark 3.2's bias correction), the
mini-batch piecewise ODE, the h-free perturbed sign flow, the sign flow and the large-eps heavy-ball limit, solved
with diffrax at Adam's step times and set against optax's Adam with eps inside the root.
"""

from ._fields import AdamEquation as AdamEquation, HeavyBallEquation as HeavyBallEquation, SignFlow as SignFlow
from ._minibatch import MinibatchAdamEquation as MinibatchAdamEquation
from ._norm import (
    gradient_and_one_norm_gradient as gradient_and_one_norm_gradient,
    memory_coefficient as memory_coefficient,
    perturbed_one_norm as perturbed_one_norm,
)
from ._solve import (
    adam_iterates as adam_iterates,
    adam_transform as adam_transform,
    global_error as global_error,
    solve_modified as solve_modified,
)
from ._orders import global_errors as global_errors, horizon_step_sizes as horizon_step_sizes, order_slope as order_slope
