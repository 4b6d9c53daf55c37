"""The diagonal preconditioner of an adaptive optimizer, read from its optax state (docs/theory.md §8).

**Convention.** An adaptive step is written ``theta <- theta - eta P^-1 m`` with ``m`` the method's direction
before preconditioning: the EMA ``m <- b1 m + (1 - b1) g`` (not bias-corrected) for Adam, the raw gradient
for RMSProp. Then

- Adam: ``P = (1 - b1^t) (sqrt(v / (1 - b2^t) + eps_root) + eps)``, threshold ``(2 + 2 b1) / ((1 - b1) eta)``
  (38 / eta at ``b1 = 0.9``);
- RMSProp: ``P = sqrt(v) + eps`` (``eps`` outside the root, this project's ``rmsprop``) or ``sqrt(v + eps)``
  (optax's default ``eps_in_sqrt=True``), threshold ``2 / eta``;

with ``v`` and ``t`` **as the next update will use them**: pass that update's gradient as ``grads`` and the
second moment is advanced by it (``v <- b2 v + (1 - b2) g^2``, ``t <- t + 1``) before ``P`` is formed.
Without ``grads``, ``P`` is the one that produced the last step (one step late). The learning rate is not
folded into ``P``. docs/api/curvature.md converts to the other conventions in use.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import PyTree


class Preconditioner(NamedTuple):
    """A diagonal preconditioner and the method it belongs to.

    Attributes:
        diagonal: ``P``, a pytree shaped as the parameters (entries ``> 0``).
        method: ``"adam"`` or ``"rmsprop"``.
        b1: Adam's momentum (0 for RMSProp).
        count: the step ``t`` the preconditioner belongs to.
    """

    diagonal: PyTree
    method: str
    b1: float
    count: int

    def threshold(self, learning_rate: float) -> float:
        """The line ``lambda_1(P^-1 H)`` is compared with, in this convention."""
        from ..stability import stability_threshold

        return stability_threshold(self.method, learning_rate, beta=self.b1)


def adam_preconditioner(nu: PyTree, count, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                        eps_root: float = 0.0) -> PyTree:
    """Adam's diagonal preconditioner ``P = (1 - b1^t) (sqrt(v / (1 - b2^t) + eps_root) + eps)`` (theory §8).

    With it, Adam's step is ``-eta P^-1 m_t`` for the EMA ``m_t`` (not bias-corrected), so the stability
    threshold applies to ``lambda_1(P^-1 H)``.

    Args:
        nu: Adam's second moment ``v`` (``optax.ScaleByAdamState.nu``).
        count: the step ``t >= 1`` of that ``v`` (``ScaleByAdamState.count``).
        b1, b2, eps, eps_root: Adam's hyperparameters (optax's names and defaults).
    """
    t = jnp.asarray(count)
    return jax.tree.map(lambda v: (1 - b1**t) * (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), nu)


def _find(state, hyper: dict):
    if isinstance(state, optax.ScaleByAdamState):
        return "adam", state, hyper
    if isinstance(state, optax.ScaleByRmsState):
        return "rmsprop", state, hyper
    if hasattr(state, "inner_state") and isinstance(getattr(state, "hyperparams", None), dict):
        return _find(state.inner_state, {**hyper, **state.hyperparams})
    if isinstance(state, (tuple, list)):
        for s in state:
            found = _find(s, hyper)
            if found is not None:
                return found
    return None


def _hyper(name: str, given, injected: dict, default=None):
    if given is not None:
        return float(given)
    if name in injected:
        return float(jnp.asarray(injected[name]))
    if default is not None:
        return default
    raise ValueError(
        f"preconditioner: the optax state does not record {name}; pass {name}=... (or build the optimizer with "
        "optax.inject_hyperparams so that its state holds it)"
    )


def preconditioner(
    opt_state,
    *,
    grads: PyTree | None = None,
    b1: float | None = None,
    b2: float | None = None,
    eps: float | None = None,
    eps_root: float | None = None,
    decay: float | None = None,
    eps_in_sqrt: bool = False,
) -> Preconditioner:
    """The preconditioner of an Adam or RMSProp optax state, in this project's convention (module docstring).

    Finds the first ``optax.ScaleByAdamState`` or ``optax.ScaleByRmsState`` anywhere in ``opt_state``: a bare
    ``scale_by_adam`` state, ``optax.adam`` / ``adamw`` / ``rmsprop`` (chains), a state inside further chains,
    or inside ``optax.inject_hyperparams`` (whose recorded ``b1``, ``b2``, ``eps``, ``eps_root``, ``decay`` are
    used unless given here).

    Args:
        opt_state: the optimizer state.
        grads: the gradient the next update will see (full-batch at the current parameters); with it ``v`` and
            ``t`` are advanced by one step first, so ``P`` is the one the next update uses.
        b1, b2, eps, eps_root: Adam's hyperparameters when the state does not record them (``b1``, ``b2``, ``eps``
            are required then; ``eps_root`` defaults to 0).
        decay, eps: RMSProp's, likewise (``decay`` required).
        eps_in_sqrt: RMSProp's ``eps`` inside the root (optax's default ``True``) or outside (``False``, this
            project's ``rmsprop``).

    Raises:
        ValueError: the state holds no second moment (SGD, momentum, Adai...), or a hyperparameter is unknown.
    """
    found = _find(opt_state, {})
    if found is None:
        raise ValueError(
            "preconditioner: the optimizer state holds no Adam or RMSProp second moment (optax.ScaleByAdamState or "
            "ScaleByRmsState); SGD, momentum and Adai have no diagonal preconditioner of this kind"
        )
    method, state, injected = found
    if method == "adam":
        b1_, b2_ = _hyper("b1", b1, injected), _hyper("b2", b2, injected)
        eps_, root = _hyper("eps", eps, injected), _hyper("eps_root", eps_root, injected, 0.0)
        nu, count = state.nu, jnp.asarray(state.count)
        if grads is not None:
            nu = jax.tree.map(lambda v, g: b2_ * v + (1 - b2_) * jnp.square(g), nu, grads)
            count = count + 1
        if int(count) < 1:
            raise ValueError("preconditioner: Adam's state is at step 0 (no second moment yet); pass the next grads")
        return Preconditioner(adam_preconditioner(nu, count, b1=b1_, b2=b2_, eps=eps_, eps_root=root), "adam", b1_,
                              int(count))
    decay_, eps_ = _hyper("decay", decay, injected), _hyper("eps", eps, injected)
    nu = state.nu
    if grads is not None:
        nu = jax.tree.map(lambda v, g: decay_ * v + (1 - decay_) * jnp.square(g), nu, grads)
    diag = jax.tree.map(lambda v: jnp.sqrt(v + eps_) if eps_in_sqrt else jnp.sqrt(v) + eps_, nu)
    return Preconditioner(diag, "rmsprop", 0.0, -1)
