"""Stability thresholds by simulation on quadratics of known top curvature, plain and preconditioned; frozen
Adam equal to Adam's next step and unstable exactly where lambda_1(P^-1 H) crosses its line; preconditioners
read from optax states."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.curvature import adam_preconditioner, preconditioner
from escape.stability import frozen_adam, scale_by_preconditioner, stability_threshold

ETA, BETA, DIM, STEPS = 0.01, 0.9, 6, 4000


def _direction(method: str) -> optax.GradientTransformation:
    """The method's direction d (before -eta, before any preconditioner), built from optax pieces."""
    return {
        "gd": optax.identity(),
        "heavy-ball": optax.trace(decay=BETA),
        "heavy-ball-ema": optax.ema(BETA, debias=False),
        "nesterov": optax.trace(decay=BETA, nesterov=True),
        "nesterov-ema": optax.chain(optax.scale(1 - BETA), optax.trace(decay=BETA, nesterov=True)),
    }[method]


def _quadratic(seed: int, top: float, p_diag=None):
    """A dense SPD Hessian whose lambda_1(P^-1 H) is ``top`` (P = I without ``p_diag``)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    h = q @ np.diag(rng.uniform(0.1, 1.0, DIM)) @ q.T
    s = np.ones(DIM) if p_diag is None else 1 / np.sqrt(p_diag)
    lam = np.linalg.eigvalsh(s[:, None] * h * s[None, :])[-1]
    return h * top / lam


def _diverged(norm: float, start: float) -> bool:
    return not np.isfinite(norm) or norm > 1e6 * start  # overflow (inf, then nan) is divergence too


def _final_norm(tx, h, theta0, steps=STEPS):
    h = jnp.asarray(h)

    def body(carry, _):
        theta, state = carry
        updates, state = tx.update(h @ theta, state, theta)
        return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(body, (theta0, tx.init(theta0)), None, length=steps)
    return float(jnp.linalg.norm(theta))


@pytest.mark.parametrize("preconditioned", [False, True])
@pytest.mark.parametrize("method", ["gd", "heavy-ball", "heavy-ball-ema", "nesterov", "nesterov-ema"])
def test_bounded_below_the_threshold_divergent_above(method, preconditioned):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        p = rng.uniform(0.5, 4.0, DIM) if preconditioned else None
        theta0 = jnp.asarray(rng.standard_normal(DIM))
        line = stability_threshold(method, ETA, beta=BETA)
        pieces = [_direction(method)] + ([scale_by_preconditioner(jnp.asarray(p))] if preconditioned else [])
        tx = optax.chain(*pieces, optax.scale_by_learning_rate(ETA))
        start = float(jnp.linalg.norm(theta0))
        below = _final_norm(tx, _quadratic(2, 0.98 * line, p), theta0)
        above = _final_norm(tx, _quadratic(2, 1.02 * line, p), theta0)
    assert below < 10 * start, (method, below)
    assert _diverged(above, start), (method, above)


def test_threshold_values_and_names():
    assert stability_threshold("gd", 0.01) == pytest.approx(200)
    assert stability_threshold("adam", 1e-4, beta=0.9) == pytest.approx(3.8e5)
    assert stability_threshold("momentum-ema", 1e-4) == stability_threshold("heavy-ball-ema", 1e-4)
    assert stability_threshold("rmsprop", 2e-5) == pytest.approx(1e5)
    assert stability_threshold("nesterov", 0.1, beta=0.0) == stability_threshold("gd", 0.1)


@pytest.mark.parametrize("args,needle", [(("adamw", 0.1), "unknown method 'adamw'"), (("gd", 0.0), "learning_rate"),
                                         (("gd", -1), "learning_rate"), (("adam", 0.1, 1.0), "beta"),
                                         (("nestorov", 0.1), "did you mean 'nesterov'")])
def test_bad_threshold_input(args, needle):
    with pytest.raises(ValueError, match=needle):
        stability_threshold(*args)


def _adam_run(h, steps, b1=0.9, b2=0.99, eps=1e-8, lr=1e-3, seed=3):
    opt = optax.adam(lr, b1=b1, b2=b2, eps=eps)
    theta = jnp.asarray(np.random.default_rng(seed).standard_normal(DIM))
    state = opt.init(theta)
    for _ in range(steps):
        u, state = opt.update(jnp.asarray(h) @ theta, state, theta)
        theta = optax.apply_updates(theta, u)
    return opt, theta, state


def test_frozen_adam_first_step_is_adams_next_step():
    """P read with the next gradient (and the state's momentum) makes frozen Adam's first step Adam's step."""
    with jax.enable_x64(True):
        h = _quadratic(4, 50.0)
        opt, theta, state = _adam_run(h, 25)
        g = jnp.asarray(h) @ theta
        adam_step, _ = opt.update(g, state, theta)
        pre = preconditioner(state, grads=g, b1=0.9, b2=0.99, eps=1e-8)
        frozen = frozen_adam(1e-3, pre.diagonal, b1=0.9, mu=state[0].mu)
        frozen_step, _ = frozen.update(g, frozen.init(theta), theta)
        np.testing.assert_allclose(frozen_step, adam_step, rtol=1e-12)
        # without the next gradient, P is the one of the last step: one step late, and not the same
        late = preconditioner(state, b1=0.9, b2=0.99, eps=1e-8)
        assert late.count == pre.count - 1 and not np.allclose(late.diagonal, pre.diagonal, rtol=1e-9)
        assert pre.threshold(1e-3) == pytest.approx(3.8e4)


def test_frozen_adam_turns_unstable_where_preconditioned_sharpness_crosses_its_line():
    with jax.enable_x64(True):
        h = _quadratic(5, 50.0)
        _, theta, state = _adam_run(h, 40)
        pre = preconditioner(state, grads=jnp.asarray(h) @ theta, b1=0.9, b2=0.99, eps=1e-8)
        p = np.asarray(pre.diagonal)
        line = pre.threshold(1e-3)
        tx = frozen_adam(1e-3, pre.diagonal, b1=0.9, mu=state[0].mu)
        start = float(jnp.linalg.norm(theta))
        below = _final_norm(tx, _quadratic(5, 0.98 * line, p), theta)
        above = _final_norm(tx, _quadratic(5, 1.02 * line, p), theta)
    assert below < 10 * start and _diverged(above, start), (below, above)


def test_preconditioner_from_any_optax_state():
    """The same P from a bare scale_by_adam, optax.adam, a chain (clipping first) and inject_hyperparams (which
    records b1, b2, eps); RMSProp with eps inside or outside the root; one-line errors otherwise."""
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, 0.2])}
    grads = jax.tree.map(lambda x: 0.3 * x + 0.1, params)

    def stepped(opt):
        state = opt.init(params)
        _, state = opt.update(grads, state, params)
        return state

    want = adam_preconditioner(stepped(optax.scale_by_adam(0.8, 0.95, 1e-6)).nu, 1, b1=0.8, b2=0.95, eps=1e-6)
    states = [stepped(optax.scale_by_adam(0.8, 0.95, 1e-6)), stepped(optax.adam(0.1, 0.8, 0.95, 1e-6)),
              stepped(optax.chain(optax.clip_by_global_norm(100.0), optax.adam(0.1, 0.8, 0.95, 1e-6)))]
    for state in states:
        got = preconditioner(state, b1=0.8, b2=0.95, eps=1e-6)
        for a, b in zip(jax.tree.leaves(got.diagonal), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    injected = stepped(optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.8, b2=0.95, eps=1e-6))
    got = preconditioner(injected)
    assert got.method == "adam" and got.b1 == pytest.approx(0.8)
    for a, b in zip(jax.tree.leaves(got.diagonal), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    rms = stepped(optax.rmsprop(0.1, decay=0.9, eps=1e-3, eps_in_sqrt=False))
    nu = jax.tree.map(lambda g: 0.1 * g**2, grads)
    for eps_in_sqrt, expect in ((False, lambda v: np.sqrt(v) + 1e-3), (True, lambda v: np.sqrt(v + 1e-3))):
        got = preconditioner(rms, decay=0.9, eps=1e-3, eps_in_sqrt=eps_in_sqrt)
        assert got.method == "rmsprop" and got.threshold(0.1) == pytest.approx(20)
        for a, v in zip(jax.tree.leaves(got.diagonal), jax.tree.leaves(nu)):
            np.testing.assert_allclose(a, expect(np.asarray(v)), rtol=1e-6)
    with pytest.raises(ValueError, match="holds no Adam or RMSProp second moment"):
        preconditioner(stepped(optax.sgd(0.1, momentum=0.9)))
    with pytest.raises(ValueError, match="does not record b2"):
        preconditioner(states[1], b1=0.8)
    with pytest.raises(ValueError, match="step 0"):
        preconditioner(optax.adam(0.1).init(params), b1=0.9, b2=0.999, eps=1e-8)
    with pytest.raises(ValueError, match="must be finite and > 0"):
        frozen_adam(0.1, jax.tree.map(jnp.zeros_like, params))
    with pytest.raises(ValueError, match="b1"):
        frozen_adam(0.1, want, b1=1.0)
