"""Estimators: escape rates with intervals, the exponential-law check and the sharpness-exponent fit."""

from ._fit import (
    fit_sharpness_exponent as fit_sharpness_exponent,
    LinearFit as LinearFit,
    SharpnessFit as SharpnessFit,
)
from ._ks import exponential_ks as exponential_ks, KSResult as KSResult
from ._rates import censored_rate as censored_rate, paper_rate as paper_rate, RateEstimate as RateEstimate
from ._periodic import detect_period as detect_period, PeriodicOrbit as PeriodicOrbit
