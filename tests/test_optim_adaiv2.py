"""AdaiV2 against a NumPy transcription of the official ``adai_optim/adaiv2.py``, and its edges."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.optim import adai, adaiv2, make_optimizer, scale_by_adai, scale_by_adaiv2

from _adai_reference import AdaiV2Reference

# Leaves of different shapes and gradient scales. beta1 hits 0 where beta0 (v_hat / v_bar)^(1/(3 - 2d)) >= 1,
# i.e. v_hat / v_bar >= 1000 at d = 0: one scalar leaf with gradients 1000x those of 2000 others does it; the
# small-gradient leaf "k" sits at the upper bound 1 - eps.
SHAPES = {"w": (40, 50), "b": (3,), "k": (2, 3, 2), "s": ()}
SCALES = {"w": 1.0, "b": 10.0, "k": 1e-2, "s": 1e3}
STEPS = 200
LR = 0.05


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: SCALES[k] * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def _relerr(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("dampening", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, True), (0.1, True), (0.1, False)])
def test_matches_official_rule_float64(dampening, weight_decay, decoupled):
    """200 steps, float64: every parameter within 1e-6 relative of the transcription; both clip bounds hit."""
    params, grads = _problem()
    ref = AdaiV2Reference(params, LR, weight_decay=weight_decay, dampening=dampening, decoupled=decoupled)
    with jax.enable_x64(True):
        opt = adaiv2(LR, weight_decay=weight_decay, dampening=dampening, decoupled=decoupled)
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        state, update = opt.init(p), jax.jit(opt.update)
        worst, low, high = 0.0, False, False
        for g in grads:
            expected = ref.step(g)
            u, state = update({k: jnp.asarray(v, jnp.float64) for k, v in g.items()}, state, p)
            p = optax.apply_updates(p, u)
            worst = max(worst, max(_relerr(p[k], expected[k]) for k in SHAPES))
            low |= any(bool(np.any(b == 0.0)) for b in ref.last_beta1.values())
            high |= any(bool(np.any(b == 1 - 1e-3)) for b in ref.last_beta1.values())
    assert low and high, "the problem must exercise both clip bounds"
    assert worst < 1e-6, worst


def test_dampening_one_is_adaiw():
    """dampening = 1 with decoupled decay is AdaiW: equal to round-off over 200 steps (float32)."""
    params, grads = _problem(1)
    a, b = adaiv2(LR, weight_decay=0.1, dampening=1.0), adai(LR, weight_decay=0.1, decoupled=True)
    pa = pb = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    sa, sb = a.init(pa), b.init(pb)
    update_a, update_b = jax.jit(a.update), jax.jit(b.update)
    for g in grads:
        g = {k: jnp.asarray(v, jnp.float32) for k, v in g.items()}
        ua, sa = update_a(g, sa, pa)
        ub, sb = update_b(g, sb, pb)
        pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    for k in SHAPES:  # a few ulps per step at most: pow(x, 1) and x^0 are exact, so in fact identical
        np.testing.assert_allclose(pa[k], pb[k], rtol=STEPS * 2.0**-23, atol=0)


@pytest.mark.parametrize("dampening", [0.0, 0.5])
def test_inject_hyperparams_and_no_recompilation(getkey, dampening):
    """inject_hyperparams(adaiv2) gives adaiv2's updates (to an ulp per step under jit), and new injected values
    (dampening, learning rate) reuse the compiled step."""
    kwargs = dict(learning_rate=0.05, weight_decay=0.01, dampening=dampening)
    plain, injected = adaiv2(**kwargs), optax.inject_hyperparams(adaiv2)(**kwargs)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(None)
        updates, state = injected.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jax.random.normal(getkey(), (4, 5)), "b": 10.0 * jax.random.normal(getkey(), (3,))}
    p_plain, s_plain, p_inj, s_inj = params, plain.init(params), params, injected.init(params)
    for _ in range(10):
        g = {"w": jax.random.normal(getkey(), (4, 5)), "b": jax.random.normal(getkey(), (3,))}
        u, s_plain = plain.update(g, s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
        p_inj, s_inj = step(p_inj, s_inj, g)
    for k in params:
        np.testing.assert_allclose(p_inj[k], p_plain[k], rtol=1e-5)
    s_inj.hyperparams["dampening"] = jnp.full_like(s_inj.hyperparams["dampening"], 0.25)
    s_inj.hyperparams["learning_rate"] = jnp.full_like(s_inj.hyperparams["learning_rate"], 0.01)
    step(p_inj, s_inj, g)
    assert len(traces) == 1 and step._cache_size() == 1


@pytest.mark.parametrize("name,value", [("learning_rate", 0.0), ("beta0", 0.0), ("beta2", 1.0), ("eps", 0.0),
                                        ("weight_decay", -1.0), ("dampening", -0.1), ("dampening", 1.5),
                                        ("dampening", float("nan")), ("decoupled", 1)])
def test_invalid_hyperparameters(name, value):
    with pytest.raises(ValueError, match=f"^adaiv2: {name} "):
        adaiv2(**{"learning_rate": 0.1, name: value})
    if name in ("beta0", "beta2", "eps", "dampening"):
        with pytest.raises(ValueError, match=f"^scale_by_adaiv2: {name} "):
            scale_by_adaiv2(**{name: value})


def test_in_the_registry():
    """make_optimizer("adaiv2") is adaiv2 with decoupled decay (the official default)."""
    params, grads = _problem(2)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    a = make_optimizer("AdaiV2", learning_rate=LR, weight_decay=0.1, dampening=0.5)
    b = adaiv2(LR, weight_decay=0.1, dampening=0.5, decoupled=True)
    g = {k: jnp.asarray(v, jnp.float32) for k, v in grads[0].items()}
    ua, _ = a.update(g, a.init(p), p)
    ub, _ = b.update(g, b.init(p), p)
    jax.tree.map(np.testing.assert_array_equal, ua, ub)


@pytest.mark.parametrize("factory", [scale_by_adai, scale_by_adaiv2, lambda: adai(0.1), lambda: adaiv2(0.1)])
def test_complex_parameters_are_refused_by_name(factory):
    params = {"real": jnp.ones(3), "layer": {"z": jnp.ones(2, jnp.complex64)}}
    with pytest.raises(ValueError, match=r"parameter \['layer'\]\['z'\] is complex \(complex64\)") as info:
        factory().init(params)
    assert "\n" not in str(info.value)
