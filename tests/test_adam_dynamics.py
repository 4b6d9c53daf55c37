"""Adam's step and flat bounds against an adversarial search, the periodic-orbit detector and Prop. 4's 2-cycle."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.stats import detect_period
from escape.theory import (
    adam_flat_bound,
    adam_step_bound,
    adam_step_maximiser,
    adam_two_cycle_jump,
    plain_adam_step,
    search_adam_bound,
)

PAIRS = [(0.9, 0.999), (0.9, 0.99), (0.5, 0.9), (0.8, 0.95)]


def test_bounds_at_the_seeds_defaults():
    assert adam_step_bound() == pytest.approx(7.2703, abs=1e-4)
    assert adam_flat_bound() == pytest.approx(73.032, abs=1e-3)
    assert adam_step_bound(0.9, 0.999, 1e-3) == pytest.approx(7.2703e-3, rel=1e-4)


@pytest.mark.parametrize("b1,b2", PAIRS)
def test_cauchy_schwarz_maximiser_attains_the_step_bound(b1, b2):
    for n in (5, 50, 2000):
        expected = adam_step_bound(b1, b2) * np.sqrt(1 - (b1**2 / b2) ** n)
        assert plain_adam_step(adam_step_maximiser(b1, b2, n), b1, b2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("b1,b2", PAIRS)
def test_search_never_exceeds_and_reaches_99_percent_of_both_bounds(b1, b2):
    """Plain (Prop. 1's quantity) and optax's Adam as it is (bias correction, eps = 1e-8), float64."""
    with jax.enable_x64(True):
        for quantity in ("step", "flat"):
            for variant, length in (("plain", 600), ("optax", 5000)):
                r = search_adam_bound(b1, b2, quantity=quantity, variant=variant, length=length, n_random=6,
                                      iterations=150)
                assert np.all(r.values <= r.bound * (1 + 1e-12)), (quantity, variant, r.values.max() / r.bound)
                assert r.ratio >= 0.99 and r.best_random / r.bound >= 0.99, (quantity, variant, r.ratio, r.best_random)


def _adam_on_abs(x0, b1, steps, a=1.0, lr=1e-3, eps=1e-8):
    opt = optax.adam(lr, b1=b1, b2=0.999, eps=eps)
    loss = lambda x: a * jnp.sum(jnp.abs(x))  # noqa: E731

    def body(c, _):
        x, s = c
        u, s = opt.update(jax.grad(loss)(x), s, x)
        x = optax.apply_updates(x, u)
        return (x, s), x

    return np.asarray(jax.lax.scan(body, (x0, opt.init(x0)), None, length=steps)[1])


def test_two_cycle_on_the_sharp_valley_matches_prop_4_with_c_plus_eps():
    """b1 = 0.5 from x0 = 9.2e-4: Adam settles on a 2-cycle whose jump is eta C (1 - b1) / ((1 + b1)(C + eps))
    to 1e-6 (optax: eps outside the root); at C = 2 the seed's C^2 + eps is off by a factor 2."""
    with jax.enable_x64(True):
        for a in (1.0, 2.0):
            xs = _adam_on_abs(jnp.asarray([9.249147277217336e-4]), 0.5, 30000, a=a)
            orbit = detect_period(xs, max_period=128)
            assert orbit.period == 2 and orbit.attracting
            jump = 2 * orbit.amplitude[0]
            assert jump == pytest.approx(adam_two_cycle_jump(a, 0.5, 1e-3, 1e-8, "eps-outside"), rel=1e-6)
            seed = adam_two_cycle_jump(a, 0.5, 1e-3, 1e-8, "seed")
            assert (jump == pytest.approx(seed, rel=1e-6)) == (a == 1.0)
            assert np.all(np.abs(np.abs(a * np.sign(xs[-10:])) - a) == 0)  # the gradient alternates +-C


def test_detector_on_known_sequences():
    n = np.arange(3000)
    p12 = np.sin(2 * np.pi * n / 12) + 0.3 * np.cos(2 * np.pi * n / 4)
    o = detect_period(p12)
    assert o.period == 12 and o.amplitude[0] == pytest.approx(np.ptp(p12[-256:]) / 2)
    assert detect_period(0.5**n + 1.0).period == 1
    decaying = (-1.0) ** n * (1 + 0.999**n)
    o = detect_period(decaying, tol=1e-12, rtol=1e-3)
    assert o.period == 2 and o.attracting
    assert detect_period(np.random.default_rng(0).normal(size=3000)).period == 0
    with pytest.raises(ValueError, match="detect_period: needs at least"):
        detect_period(np.zeros(100))


@pytest.mark.parametrize("call,message", [
    (lambda: adam_flat_bound(0.99, 0.95), "adam_flat_bound: needs b1 < sqrt(b2)"),
    (lambda: adam_step_bound(1.0, 0.999), "adam_step_bound: b1 must be in [0, 1)"),
    (lambda: adam_step_bound(0.9, -0.1), "adam_step_bound: b2 must be in [0, 1)"),
    (lambda: adam_step_bound(0.9, 0.999, 0.0), "adam_step_bound: learning_rate must be > 0"),
    (lambda: search_adam_bound(0.9, 0.999, quantity="area"), "search_adam_bound: quantity must be one of"),
    (lambda: adam_two_cycle_jump(1.0, 0.9, -1e-3), "adam_two_cycle_jump: learning_rate must be > 0"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
