"""The optimizer registry: every name builds and steps; bad names, arguments and values are refused."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.optim import adai, make_optimizer, momentum, OPTIMIZERS, optimizer_names

XLA_OPTIMISED = True  # bound by running, not compiling (conftest.py)

NAMES = ("adabelief", "adabound", "adai", "adaiv2", "adaiw", "adam", "adamw", "amsgrad", "momentum", "momentum-ema",
         "padam", "radam", "rmsprop", "sgd", "yogi")


def test_names():
    assert optimizer_names() == NAMES == tuple(sorted(OPTIMIZERS))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_every_name_builds_and_steps(name, dtype):
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]], dtype), "b": jnp.array([0.1, 0.2, 0.3], dtype)}
    opt = make_optimizer(name, learning_rate=0.1)
    grads = jax.grad(lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p)))(params)
    updates, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == p.dtype and u.shape == p.shape and bool(jnp.all(jnp.isfinite(u)))
        assert bool(jnp.all(u != 0))


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_schedule(name):
    """Every factory takes learning_rate (a number or a schedule) and defaults for all the rest."""
    parameters = inspect.signature(OPTIMIZERS[name]).parameters
    assert list(parameters)[0] == "learning_rate"
    assert all(p.default is not inspect.Parameter.empty for k, p in parameters.items() if k != "learning_rate")
    params = jnp.ones(3)
    opt = make_optimizer(name, learning_rate=optax.linear_schedule(0.1, 0.01, 10))
    opt.update(params, opt.init(params), params)


def _one_update(opt, g):
    return opt.update(g, opt.init(g), g)[0]


def test_entries_are_the_documented_optimizers():
    g = jnp.array([1.0, -2.0, 0.5])
    same = lambda a, b: np.testing.assert_array_equal(_one_update(a, g), _one_update(b, g))
    same(make_optimizer("sgd", learning_rate=0.1), optax.sgd(0.1))
    same(make_optimizer("momentum", learning_rate=0.1, beta=0.8), momentum(0.1, 0.8, "sgd"))
    same(make_optimizer("momentum-ema", learning_rate=0.1, beta=0.8), momentum(0.1, 0.8, "ema"))
    same(make_optimizer("adam", learning_rate=0.1, b1=0.8, b2=0.9, eps=1e-6), optax.adam(0.1, 0.8, 0.9, 1e-6))
    kw = dict(beta0=0.2, beta2=0.9, eps=1e-2, weight_decay=0.1)
    same(make_optimizer("adai", learning_rate=0.1, **kw), adai(0.1, **kw))
    same(make_optimizer("adaiw", learning_rate=0.1, **kw), adai(0.1, decoupled=True, **kw))


def test_rmsprop_eps_outside_sqrt():
    """docs/theory.md §2: RMSProp is Adam with beta1 = 0 and no bias correction, theta -= eta g / (sqrt(v) + eps)."""
    g = jnp.array([1.0, -2.0, 0.5])
    u = _one_update(make_optimizer("rmsprop", learning_rate=0.1, decay=0.9, eps=0.5), g)
    v = (1 - 0.9) * np.asarray(g) ** 2
    np.testing.assert_allclose(u, -0.1 * np.asarray(g) / (np.sqrt(v) + 0.5), rtol=1e-6)


def test_unknown_name():
    with pytest.raises(ValueError, match="'adamx' \\(did you mean 'adam'\\?\\)") as info:
        make_optimizer("adamx", learning_rate=0.1)
    assert all(name in str(info.value) for name in NAMES)
    with pytest.raises(ValueError, match="did you mean 'adai'"):
        make_optimizer("adia", learning_rate=0.1)


@pytest.mark.parametrize("alias,name", [("SGD", "sgd"), ("Adai", "adai"), ("sgd-momentum", "momentum"),
                                        ("SGD_Momentum", "momentum"), ("heavy-ball", "momentum"),
                                        ("Momentum-EMA", "momentum-ema"), ("ADAMW", "adamw")])
def test_names_are_case_insensitive_with_aliases(alias, name):
    """Aliases and any case build the same optimizer as the canonical name (same updates, same state)."""
    g = jnp.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(_one_update(make_optimizer(alias, learning_rate=0.1), g),
                                  _one_update(make_optimizer(name, learning_rate=0.1), g))


@pytest.mark.parametrize("argument,value", [("learning_rate", "0.1"), ("beta0", "abc"), ("beta2", True),
                                            ("eps", None), ("weight_decay", [0.1])])
def test_values_must_be_numbers(argument, value):
    """A string (or bool, None, list) where a number belongs fails at construction, naming the argument."""
    kwargs = {"learning_rate": 0.1, argument: value}
    with pytest.raises(ValueError, match=f"adai: {argument} must be a number"):
        make_optimizer("adai", **kwargs)
    with pytest.raises(ValueError, match=f"adai: {argument} must be a number"):
        adai(**kwargs)


def test_hyperparameters_typo_did_you_mean():
    with pytest.raises(ValueError, match="has no hyperparameter 'beta_0' \\(did you mean 'beta0'\\?\\)"):
        make_optimizer("adai", learning_rate=0.1, beta_0=0.1)


def test_adai_update_without_params_when_no_weight_decay():
    """weight_decay = 0 needs no params (the decay is the identity, with the same empty state); a non-zero
    decay still asks for them. inject_hyperparams keeps the decay step and gives the same updates."""
    g = jnp.array([1.0, -2.0, 0.5])
    opt = adai(0.1)
    u, _ = opt.update(g, opt.init(g))
    np.testing.assert_array_equal(u, adai(0.1, weight_decay=0.0).update(g, opt.init(g), g)[0])
    assert jax.tree.structure(opt.init(g)) == jax.tree.structure(adai(0.1, weight_decay=0.1).init(g))
    injected = optax.inject_hyperparams(adai)(learning_rate=0.1)
    np.testing.assert_allclose(injected.update(g, injected.init(g), g)[0], u, rtol=1e-6)
    with pytest.raises(ValueError, match="params"):
        adai(0.1, weight_decay=0.1).update(g, opt.init(g))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyperparameter(name):
    with pytest.raises(ValueError, match=f"'{name}' has no hyperparameter 'momentum'") as info:
        make_optimizer(name, learning_rate=0.1, momentum=0.9)
    assert "learning_rate" in str(info.value)


def test_missing_learning_rate():
    with pytest.raises(ValueError, match="'adai' requires learning_rate"):
        make_optimizer("adai")


@pytest.mark.parametrize(
    "name,argument,value",
    [
        ("sgd", "learning_rate", 0.0),
        ("momentum", "learning_rate", -1.0),
        ("momentum", "beta", 1.0),
        ("momentum-ema", "beta", -0.5),
        ("adam", "learning_rate", 0.0),
        ("adam", "b1", 1.0),
        ("adam", "b2", -0.1),
        ("adam", "eps", -1e-8),
        ("rmsprop", "decay", 1.5),
        ("rmsprop", "eps", -1.0),
        ("adai", "beta2", 1.5),
        ("adai", "beta0", 0.0),
        ("adaiw", "eps", 0.0),
        ("adaiw", "weight_decay", -0.1),
    ],
)
def test_invalid_values(name, argument, value):
    kwargs = {"learning_rate": 0.1, argument: value}
    with pytest.raises(ValueError, match=f": {argument} must be"):
        make_optimizer(name, **kwargs)
