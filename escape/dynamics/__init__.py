"""Continuous-time models of the optimizers (docs/theory.md §3) as diffrax terms, and fast fixed-step SDE solves."""

from ._adai import AdaiLangevin as AdaiLangevin
from ._adam import AdamLangevin as AdamLangevin
from ._base import (
    AbstractDynamics as AbstractDynamics,
    AbstractPhaseSpaceDynamics as AbstractPhaseSpaceDynamics,
)
from ._brownian import BrownianSpec as BrownianSpec, CounterBrownianPath as CounterBrownianPath
from ._second_moment import (
    AbstractSecondMomentDynamics as AbstractSecondMomentDynamics,
    CLOSURES as CLOSURES,
    SharedSquarePath as SharedSquarePath,
)
from ._heavy_ball import HeavyBallLangevin as HeavyBallLangevin
from ._registry import DYNAMICS as DYNAMICS, make_dynamics as make_dynamics
from ._sgd import SGDLangevin as SGDLangevin
from ._solvers import FixedHeun as FixedHeun
from ._solve import SDEResult as SDEResult, solve_sde as solve_sde
