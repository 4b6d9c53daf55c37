"""Closed-form and quadrature results used as oracles (docs/theory.md §5-6), as plain NumPy/SciPy functions."""

from ._kramers import (
    eyring_kramers_time as eyring_kramers_time,
    mean_first_passage_1d as mean_first_passage_1d,
    underdamped_kramers_rate as underdamped_kramers_rate,
    underdamped_kramers_time as underdamped_kramers_time,
)
from ._linear import (
    linear_moments as linear_moments,
    phase_space_linear_model as phase_space_linear_model,
    sgd_linear_model as sgd_linear_model,
    stationary_covariance as stationary_covariance,
)
from ._saddle import (
    adai_coefficients as adai_coefficients,
    adai_saddle_msd as adai_saddle_msd,
    adam_coefficients as adam_coefficients,
    adam_saddle_msd as adam_saddle_msd,
    heavy_ball_coefficients as heavy_ball_coefficients,
    momentum_saddle_msd as momentum_saddle_msd,
    sgd_saddle_msd as sgd_saddle_msd,
)
from ._scaling import (
    adai_escape_exponent as adai_escape_exponent,
    adam_escape_exponent as adam_escape_exponent,
    momentum_escape_exponent as momentum_escape_exponent,
    SHARPNESS_EXPONENTS as SHARPNESS_EXPONENTS,
    sgd_escape_exponent as sgd_escape_exponent,
)
from ._adam_bounds import (
    adam_flat_bound as adam_flat_bound,
    adam_step_bound as adam_step_bound,
    adam_step_maximiser as adam_step_maximiser,
    plain_adam_step as plain_adam_step,
)
from ._adam_search import search_adam_bound as search_adam_bound, SearchResult as SearchResult
from ._adam_orbit import adam_two_cycle_jump as adam_two_cycle_jump
