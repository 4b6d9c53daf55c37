"""Adai / AdaiW: agreement with a NumPy transcription of the official code, plus optax conformance."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.optim import adai, scale_by_adai, ScaleByAdaiState

from _adai_reference import AdaiReference

# Leaves of different shapes and gradient scales: the scale spread (1e-2 .. 10) pushes v_hat / v_bar far
# below and far above 1, so both clip bounds of beta1 (0 and 1 - eps) are hit during the run.
SHAPES = {"w": (4, 5), "b": (3,), "k": (2, 3, 2), "s": ()}
SCALES = {"w": 1.0, "b": 10.0, "k": 1e-2, "s": 0.3}
STEPS = 200
LR = 0.05
DECAY_CASES = [(0.0, False), (0.1, False), (0.1, True)]


def _problem(seed=0):
    """Initial parameters and a fixed sequence of random gradients (NumPy float64)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: SCALES[k] * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def _relerr(a, b):
    """Normwise (max-norm) relative error of ``a`` against the reference ``b``."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _run(params, grads, dtype, weight_decay, decoupled):
    """Run the JAX port and the reference side by side for ``STEPS`` steps.

    Returns, maximised over the leaves, the relative errors of the whole trajectory of updates
    (theta_{t+1} - theta_t) and of parameters, each leaf's trajectory taken as one array so that a
    single step whose update happens to be near 0 does not serve as a denominator.
    """
    ref = AdaiReference(params, LR, weight_decay=weight_decay, decoupled=decoupled)
    opt = adai(LR, weight_decay=weight_decay, decoupled=decoupled)
    p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    state = opt.init(p)
    update = jax.jit(opt.update)
    traj = {name: {k: [] for k in SHAPES} for name in ("u", "u_ref", "p", "p_ref")}
    clipped_low = clipped_high = False
    for g in grads:
        old = {k: v.copy() for k, v in ref.params.items()}
        new = ref.step(g)
        u, state = update({k: jnp.asarray(v, dtype) for k, v in g.items()}, state, p)
        p = optax.apply_updates(p, u)
        for k in SHAPES:
            for name, value in (("u", u[k]), ("u_ref", new[k] - old[k]), ("p", p[k]), ("p_ref", new[k])):
                traj[name][k].append(np.asarray(value, np.float64))
            clipped_low |= bool(np.any(ref.last_beta1[k] == 0.0))
            clipped_high |= bool(np.any(ref.last_beta1[k] == 1 - 1e-3))
    assert clipped_low and clipped_high, "the test problem must exercise both clip bounds"
    err = lambda a, b: max(_relerr(np.stack(traj[a][k]), np.stack(traj[b][k])) for k in SHAPES)
    # path length of each leaf relative to its size: how much update errors can add up in the parameters
    path = max(
        np.sum(np.max(np.abs(np.stack(traj["u_ref"][k])).reshape(STEPS, -1), axis=1))
        / np.max(np.abs(np.stack(traj["p_ref"][k])))
        for k in SHAPES
    )
    return err("u", "u_ref"), err("p", "p_ref"), float(path)


@pytest.mark.parametrize("weight_decay,decoupled", DECAY_CASES)
def test_matches_reference_float64(weight_decay, decoupled):
    params, grads = _problem()
    with jax.enable_x64(True):
        err_update, err_param, _ = _run(params, grads, jnp.float64, weight_decay, decoupled)
    print(f"float64 wd={weight_decay} decoupled={decoupled}: update {err_update:.2e}, param {err_param:.2e}")
    assert err_update < 1e-6 and err_param < 1e-6


@pytest.mark.parametrize("weight_decay,decoupled", DECAY_CASES)
def test_matches_reference_float32(weight_decay, decoupled):
    """float32 against the float64 reference, fed the same float32-rounded inputs (u = 2^-24).

    Updates. m / (1 - P) is a convex combination of past gradients with weights
    (1 - beta1_k) prod_{j>k} beta1_j / (1 - P). For beta1, P >= 1/2, the differences 1 - beta1 and
    1 - P are exact in floating point (Sterbenz), so the errors come from the rounded products
    P = prod beta1 (relative error <= t u) and from the O(u) rounding of beta1 itself. The relative error
    of 1 - P is then <= t u P / (1 - P) <= u / eps, because P <= (1 - eps)^t and
    t x^t / (1 - x^t) <= 1 / (1 - x); the shape of the weights moves by <= t u. The update error is thus
    <= (u / eps + t u) of the gradient scale = 7.2e-5 (eps = 1e-3, t = 200). Errors are measured
    against the largest update of each leaf's trajectory, which is at least the first update (equal to
    lr g_1) and so of the gradient scale up to a factor < 2 for these draws: tolerance 2 (u/eps + t u).

    Parameters. Each step rounds theta + Delta (<= u/2 relative) and adds the update's error, so the
    error is <= t u / 2 + (update tolerance) * (path length sum_t |Delta_t|_inf / |theta|_inf), times
    (1 + lr lambda)^t for the feedback through the L2 term.
    """
    params, grads = _problem()
    f32 = lambda tree: {k: np.asarray(np.asarray(v, np.float32), np.float64) for k, v in tree.items()}
    params, grads = f32(params), [f32(g) for g in grads]
    err_update, err_param, path = _run(params, grads, jnp.float32, weight_decay, decoupled)
    u, t = 2.0**-24, STEPS
    tol_update = 2 * (u / 1e-3 + t * u)
    tol_param = (t * u / 2 + tol_update * path) * (1 + LR * weight_decay) ** t
    print(
        f"float32 wd={weight_decay} decoupled={decoupled}: update {err_update:.2e} (tol {tol_update:.1e}), "
        f"param {err_param:.2e} (tol {tol_param:.1e})"
    )
    assert err_update < tol_update
    assert err_param < tol_param


def test_global_mean_over_all_leaves():
    """v_bar is one scalar over every element of every leaf, not a per-leaf mean."""
    g = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[0.1, 0.2, 0.3]])}
    opt = scale_by_adai(beta0=0.1, beta2=0.99, eps=1e-3)
    _, state = opt.update(g, opt.init(g))
    sq = np.concatenate([np.ravel(np.asarray(v)) ** 2 for v in g.values()])
    for k, v in g.items():  # at t = 1, v_hat = g^2 exactly
        expected = np.clip(1 - 0.1 * np.asarray(v) ** 2 / sq.mean(), 0, 1 - 1e-3)
        np.testing.assert_allclose(state.beta1_prod[k], expected, rtol=1e-6)
    assert isinstance(state, ScaleByAdaiState) and int(state.count) == 1


def test_first_step_is_gradient_step():
    """At t = 1, m / (1 - P) = (1 - beta1) g / (1 - beta1) = g: the first step is plain SGD."""
    g = {"a": jnp.array([1.0, -3.0, 0.01]), "b": jnp.array(2.0)}
    opt = adai(0.1)
    u, _ = opt.update(g, opt.init(g), g)
    for k in g:
        np.testing.assert_allclose(u[k], -0.1 * g[k], rtol=1e-6)


def test_zero_gradients_stay_finite():
    """All-zero gradients (v_bar = 0) give zero updates, not the official 0/0 = NaN."""
    p = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    opt = adai(0.1)
    state = opt.init(p)
    u, state = opt.update(jax.tree.map(jnp.zeros_like, p), state, p)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
    u, state = opt.update(p, state, p)  # a nonzero gradient afterwards still gives a finite step
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state)))


def _tree(getkey):
    return {
        "w": jax.random.normal(getkey(), (4, 5)),
        "b": 10.0 * jax.random.normal(getkey(), (3,)),
        "s": jnp.array(0.5, jnp.float32),  # strongly typed, as parameters are after one update
    }


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_inject_hyperparams_identical(getkey, decoupled, jit):
    """inject_hyperparams(adai) runs the same arithmetic as adai.

    Eagerly the updates are bit-identical. Under jit, XLA folds Python constants differently from
    array arguments (e.g. division by a constant becomes multiplication by its reciprocal), which moves
    beta1 by an ulp; as in test_matches_reference_float32 that changes the updates by at most
    (u / eps + t u) of their scale.
    """
    eps, steps = 1e-2, 20
    kwargs = dict(learning_rate=0.05, beta0=0.2, beta2=0.95, eps=eps, weight_decay=0.1, decoupled=decoupled)
    plain, injected = adai(**kwargs), optax.inject_hyperparams(adai)(**kwargs)
    up_plain, up_inj = (jax.jit(plain.update), jax.jit(injected.update)) if jit else (plain.update, injected.update)
    params = _tree(getkey)
    s_plain, s_inj = plain.init(params), injected.init(params)
    tol = 2.0**-24 / eps + steps * 2.0**-24 if jit else 0.0
    for _ in range(steps):
        g = _tree(getkey)
        u_plain, s_plain = up_plain(g, s_plain, params)
        u_inj, s_inj = up_inj(g, s_inj, params)
        for a, b in zip(jax.tree.leaves(u_inj), jax.tree.leaves(u_plain)):
            assert _relerr(a, np.asarray(b, np.float64)) <= tol
        params = optax.apply_updates(params, u_plain)


def test_learning_rate_schedule(getkey):
    """A schedule is accepted, and a constant schedule equals the constant learning rate."""
    params = _tree(getkey)
    a, b = adai(optax.constant_schedule(0.05)), adai(0.05)
    sa, sb = a.init(params), b.init(params)
    for _ in range(3):
        g = _tree(getkey)
        ua, sa = a.update(g, sa, params)
        ub, sb = b.update(g, sb, params)
        jax.tree.map(np.testing.assert_array_equal, ua, ub)


@pytest.mark.parametrize("inject", [False, True])
def test_no_recompilation(getkey, inject):
    """A jitted step is traced once: new gradients, parameters or injected hyperparameters reuse it."""
    traces = []
    opt = optax.inject_hyperparams(adai)(0.05, weight_decay=1e-3) if inject else adai(0.05, weight_decay=1e-3)

    @jax.jit
    def step(params, state, grads):
        traces.append(None)  # a Python side effect: runs only while tracing
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = _tree(getkey)
    state = opt.init(params)
    params, state = step(params, state, _tree(getkey))
    if inject:  # new hyperparameter values, same dtype and shape
        state.hyperparams["beta0"] = jnp.full_like(state.hyperparams["beta0"], 0.3)
        state.hyperparams["learning_rate"] = jnp.full_like(state.hyperparams["learning_rate"], 0.01)
    params, state = step(params, state, _tree(getkey))
    assert len(traces) == 1 and step._cache_size() == 1
    if inject:
        assert float(state.hyperparams["beta0"]) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "name,value",
    [
        ("learning_rate", 0.0),
        ("learning_rate", -0.1),
        ("learning_rate", float("nan")),
        ("beta0", 0.0),
        ("beta0", -0.1),
        ("beta2", -0.1),
        ("beta2", 1.0),
        ("beta2", 1.5),
        ("eps", 0.0),
        ("eps", 1.0),
        ("weight_decay", -1e-4),
        ("decoupled", "yes"),
    ],
)
def test_invalid_hyperparameters(name, value):
    kwargs = {"learning_rate": 0.1, name: value}
    with pytest.raises(ValueError, match=f"^adai: {name} "):
        adai(**kwargs)
    if name in ("beta0", "beta2", "eps"):
        with pytest.raises(ValueError, match=f"^scale_by_adai: {name} "):
            scale_by_adai(**{name: value})


def test_invalid_message():
    with pytest.raises(ValueError, match=r"^adai: beta2 must be in \[0, 1\), got 1.5$"):
        adai(0.1, beta2=1.5)


def test_arrays_are_not_checked():
    """Traced or array hyperparameters skip the Python checks (inject_hyperparams passes arrays)."""
    adai(jnp.asarray(0.1), beta0=jnp.asarray(0.1), beta2=jnp.asarray(0.99), eps=jnp.asarray(1e-3))


def _parabola(dtype):
    init = jnp.array([-1.0, 10.0, 1.0], dtype)
    target = jnp.array([1.0, -1.0, 1.0], dtype)
    return init, target, lambda p: jnp.sum((p - target) ** 2)


def _mixed(dtype):
    init = (jnp.zeros((3,), dtype), jnp.zeros((2, 2), dtype))
    target = (jnp.array([1.0, -1.0, 2.0], dtype), jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype))
    loss = lambda p: sum(jnp.sum((a - b) ** 2) for a, b in zip(p, target))
    return init, target, loss


@pytest.mark.parametrize("target", [_parabola, _mixed])
@pytest.mark.parametrize("weight_decay,decoupled", DECAY_CASES)
def test_converges_on_quadratic(target, weight_decay, decoupled):
    """As in optax's contrib/_common_test.py: reach the minimum to 3e-2 (here in 2000 steps).

    On sum (theta - c)^2 both decays have the fixed point 2 (theta - c) + lambda theta = 0, that is
    theta = c / (1 + lambda / 2): L2 through the gradient, AdaiW where m / (1 - P) = -lambda theta.
    """
    params, final, loss = target(jnp.float32)
    final = jax.tree.map(lambda c: c / (1 + weight_decay / 2), final)
    opt = adai(0.1, weight_decay=weight_decay, decoupled=decoupled)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=2000)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2), params, final)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_kept(dtype):
    """Updates have the parameters' dtype; the state's dtypes do not change from step to step."""
    params = jnp.array([1.0, 2.0, 0.03], dtype)
    grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    for opt in (adai(0.1), adai(0.1, weight_decay=0.1, decoupled=True), optax.inject_hyperparams(adai)(0.1)):
        state = jax.jit(opt.init)(params)
        updates, new_state = jax.jit(opt.update)(grads, state, params)
        assert updates.dtype == dtype
        assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)
        # the third coordinate has v_hat / v_bar ~ 1e-4, so beta1 sits at 1 - eps, which is 1 in bfloat16
        updates, _ = jax.jit(opt.update)(grads, new_state, params)
        assert bool(jnp.all(jnp.isfinite(updates)))


def test_mixed_dtypes():
    """A tree mixing float64, float32 and bfloat16 leaves: each update and state leaf keeps its dtype."""
    with jax.enable_x64(True):
        params = {"a": jnp.ones(3, jnp.float64), "b": jnp.ones(2, jnp.float32), "c": jnp.ones(2, jnp.bfloat16)}
        opt = adai(0.1)
        state = opt.init(params)
        updates, new_state = jax.jit(opt.update)(params, state, params)
        assert jax.tree.map(lambda x: x.dtype, updates) == jax.tree.map(lambda x: x.dtype, params)
        assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)
