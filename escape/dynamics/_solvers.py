"""Fixed-step solvers written out for speed, with diffrax's solver interface."""

from typing import ClassVar

import diffrax
import jax


def _axpy(a, x, y):
    return jax.tree.map(lambda xi, yi: a * xi + yi, x, y)


class FixedHeun(diffrax.AbstractStratonovichSolver):
    """Heun's method (explicit trapezoidal rule) for fixed steps: the update of ``diffrax.Heun``.

    ``k1 = f(t0, y0) dW``, ``k2 = f(t1, y0 + k1) dW`` (drift and diffusion together, one control per
    step), ``y1 = y0 + (k1 + k2) / 2``. ``diffrax.Heun`` computes the same through its generic Runge-Kutta
    machinery, a loop over stages with a stage buffer, which on CPU costs about as much again as the two
    vector-field evaluations for the models here; this writes the two stages out. No error estimate
    (fixed steps only). Converges to the Stratonovich solution; for the phase-space models the Ito
    correction vanishes, so to the Ito solution (strong order 1 there, order 2 for ODEs).
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 2

    def strong_order(self, terms):
        return 0.5

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        control = terms.contr(t0, t1)
        k1 = terms.vf_prod(t0, y0, args, control)
        k2 = terms.vf_prod(t1, _axpy(1.0, k1, y0), args, control)
        y1 = _axpy(0.5, jax.tree.map(lambda a, b: a + b, k1, k2), y0)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
