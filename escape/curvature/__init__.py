"""Curvature of a loss at a point without forming the Hessian (docs/theory.md §8): Hessian-vector
products, top-k eigenpairs by Lanczos (warm starts, preconditioned operators), spectral density by stochastic
Lanczos quadrature, trace by Hutchinson, expected sharpness, preconditioners read from optax states."""

from ._density import SpectralDensity as SpectralDensity, spectral_density as spectral_density
from ._noise import (
    dense_noise_covariance as dense_noise_covariance,
    hill_tail_index as hill_tail_index,
    minibatch_noise as minibatch_noise,
    NoiseProjections as NoiseProjections,
    per_sample_projections as per_sample_projections,
)
from ._expected import expected_sharpness as expected_sharpness
from ._hutchinson import hessian_trace as hessian_trace
from ._hvp import Estimate as Estimate, hvp as hvp
from ._preconditioner import (
    adam_preconditioner as adam_preconditioner,
    preconditioner as preconditioner,
    Preconditioner as Preconditioner,
)
from ._lanczos import (
    EigenPair as EigenPair,
    Eigenpairs as Eigenpairs,
    hessian_eigenpairs as hessian_eigenpairs,
    lanczos_eigenpairs as lanczos_eigenpairs,
    lanczos_top_eigenpair as lanczos_top_eigenpair,
    preconditioned_sharpness as preconditioned_sharpness,
    top_hessian_eigenvalue as top_hessian_eigenvalue,
)
