"""Loss landscapes: loss, gradients, Hessian, critical points, noise models and escape tests."""

from ._base import AbstractLandscape as AbstractLandscape, CriticalPoints as CriticalPoints
from ._double_well import DoubleWell as DoubleWell
from ._noise import (
    AbstractNoise as AbstractNoise,
    DataNoise as DataNoise,
    GaussianDataNoise as GaussianDataNoise,
    HessianNoise as HessianNoise,
    IsotropicNoise as IsotropicNoise,
    NoNoise as NoNoise,
    NOISE_MODELS as NOISE_MODELS,
)
from ._quadratic import Quadratic as Quadratic
from ._registry import LANDSCAPES as LANDSCAPES, make_landscape as make_landscape
from ._styblinski_tang import StyblinskiTang as StyblinskiTang
from ._valley import Valley as Valley
