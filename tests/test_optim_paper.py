"""The Adai paper's optimizer list: AdaBound and Padam against their authors' rules, the optax entries as optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.optim import adabound, make_optimizer, optimizer_names, padam, scale_by_padam
from escape.train import make_train_optimizer

from _adai_reference import AdaBoundReference, PadamReference

SHAPES = {"w": (4, 5), "b": (3,), "s": ()}
SCALES = {"w": 1.0, "b": 10.0, "s": 0.01}
STEPS = 100
PAPER = ("momentum", "adam", "amsgrad", "adamw", "adabound", "padam", "yogi", "radam", "adabelief", "adai",
         "adaiw", "adaiv2")


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: SCALES[k] * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def _worst_relerr(opt, ref, params, grads):
    """The largest relative error of any parameter leaf over the run, float64."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        state, update, worst = opt.init(p), jax.jit(opt.update), 0.0
        for g in grads:
            expected = ref.step(g)
            u, state = update({k: jnp.asarray(v, jnp.float64) for k, v in g.items()}, state, p)
            p = optax.apply_updates(p, u)
            worst = max(worst, max(float(np.max(np.abs(np.asarray(p[k]) - expected[k]))
                                         / np.max(np.abs(expected[k]))) for k in SHAPES))
    return worst


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adabound_matches_the_authors_rule(weight_decay):
    """lr 0.01, gamma 0.1 (so the bounds close within the run and the clip is active at both ends)."""
    params, grads = _problem()
    ref = AdaBoundReference(params, 0.01, final_lr=0.1, gamma=0.1, weight_decay=weight_decay)
    opt = adabound(0.01, final_lr=0.1, gamma=0.1, weight_decay=weight_decay)
    assert _worst_relerr(opt, ref, params, grads) < 1e-6


@pytest.mark.parametrize("partial,weight_decay", [(0.125, 0.0), (0.125, 0.1), (0.5, 0.0)])
def test_padam_matches_the_authors_rule(partial, weight_decay):
    params, grads = _problem(1)
    ref = PadamReference(params, 0.05, partial=partial, weight_decay=weight_decay)
    opt = padam(0.05, partial=partial, weight_decay=weight_decay)
    assert _worst_relerr(opt, ref, params, grads) < 1e-6


def test_adabound_bounds_tend_to_sgd_with_momentum():
    """Late in a run both bounds are within 1/(gamma t) of final_lr: the step is final_lr times the EMA momentum."""
    g = {"w": jnp.array([1.0, -2.0, 1e-3])}
    opt = adabound(1e-3, final_lr=0.1, gamma=1.0)
    state = opt.init(g)
    update = jax.jit(opt.update)
    for _ in range(2000):
        u, state = update(g, state, g)
    mu = state[1].mu["w"]  # chain(identity decay, scale, lr): the scale's state
    np.testing.assert_allclose(u["w"], -1e-3 * 0.1 / 1e-3 * mu, rtol=1e-3)


@pytest.mark.parametrize("name,factory", [("amsgrad", optax.amsgrad), ("yogi", optax.yogi),
                                          ("radam", optax.radam), ("adabelief", optax.adabelief)])
def test_optax_entries_are_optax(name, factory):
    """The registry's entries give optax's own updates (the authors' defaults are optax's)."""
    params, grads = _problem(2)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    a, b = make_optimizer(name, learning_rate=0.01), factory(0.01)
    sa, sb = a.init(p), b.init(p)
    for g in grads[:10]:
        g = {k: jnp.asarray(v, jnp.float32) for k, v in g.items()}
        ua, sa = a.update(g, sa, p)
        ub, sb = b.update(g, sb, p)
        jax.tree.map(np.testing.assert_array_equal, ua, ub)


def test_the_paper_list_is_in_the_registry_and_training():
    """Every optimizer of the paper's comparison is a registry name and a training optimizer with weight decay."""
    assert set(PAPER) <= set(optimizer_names())
    p = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    for name in PAPER:
        opt = make_train_optimizer(name, 0.01, 5e-4)
        u, _ = opt.update(jax.tree.map(jnp.ones_like, p), opt.init(p), p)
        assert all(bool(jnp.all(jnp.isfinite(x))) and bool(jnp.any(x != 0)) for x in jax.tree.leaves(u)), name


@pytest.mark.parametrize("call,match", [
    (lambda: adabound(0.1, final_lr=0.0), "^adabound: final_lr must be > 0"),
    (lambda: adabound(0.1, b2=1.0), r"^adabound: b2 must be in \[0, 1\)"),
    (lambda: padam(0.1, partial=0.0), r"^scale_by_padam: partial must be in \(0, 0.5\]"),
    (lambda: scale_by_padam(partial=0.75), r"^scale_by_padam: partial must be in \(0, 0.5\]"),
    (lambda: padam(-0.1), "^padam: learning_rate must be > 0"),
    (lambda: make_optimizer("yogi", learning_rate=0.1, b1=1.5), r"^yogi: b1 must be in \[0, 1\)"),
])
def test_bad_values_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
