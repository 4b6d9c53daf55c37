"""Adam's modified equations (escape.modified): exact identities, error orders, Table 1 and the heavy-ball limit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.experiments import _implicit_cells as cells
from escape.modified import (
    AdamEquation,
    HeavyBallEquation,
    MinibatchAdamEquation,
    SignFlow,
    adam_iterates,
    global_errors,
    gradient_and_one_norm_gradient,
    horizon_step_sizes,
    memory_coefficient,
    order_slope,
    perturbed_one_norm,
    solve_modified,
)

BILINEAR = cells.bilinear_loss


def _bilinear_batch(theta, b):
    """Two minibatches whose mean is the bilinear model up to a constant: targets 1 and 2 for 2 theta_1 theta_2."""
    target = jnp.where(b == 0, 1.0, 2.0)
    return 0.5 * jnp.square(target - 2.0 * theta[0] * theta[1])


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _mlp():
    key = jax.random.key(3)
    x = jax.random.normal(key, (24, 5), jnp.float64)
    labels = jax.random.randint(jax.random.fold_in(key, 1), (24,), 0, 3)
    params = {"w1": jax.random.normal(jax.random.fold_in(key, 2), (5, 6), jnp.float64) / np.sqrt(5),
              "w2": jax.random.normal(jax.random.fold_in(key, 3), (6, 3), jnp.float64) / np.sqrt(6)}

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jnp.tanh(x @ p["w1"]) @ p["w2"], labels))

    return params, loss


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_memory_coefficient_is_the_mean_lag_of_the_bias_corrected_ema(x64, beta):
    for n in (0, 1, 7, 60):
        k = np.arange(n + 1)
        w = (1 - beta) * beta ** (n - k) / (1 - beta ** (n + 1)) if beta > 0 else (k == n).astype(float)
        # the closed form subtracts two numbers of size 1 / (1 - beta): ~1e-11 relative at beta = 0.999
        assert float(memory_coefficient(beta, n)) == pytest.approx(float(np.sum(w * (n - k))), rel=1e-9, abs=1e-14)
    assert float(memory_coefficient(beta, 10**6)) == pytest.approx(beta / (1 - beta), rel=1e-12, abs=1e-14)


def test_one_norm_gradient_is_the_gradient_of_the_perturbed_one_norm(x64):
    params, loss = _mlp()
    eps = 1e-3
    g, big_g = gradient_and_one_norm_gradient(loss, params, eps)
    reference = jax.grad(lambda p: perturbed_one_norm(jax.grad(loss)(p), eps))(params)
    for a, b in zip(jax.tree.leaves(big_g), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(jax.grad(loss)(params))):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adam_iterates_are_definition_1_1(x64):
    """optax with eps inside the root against the paper's update, written out step by step."""
    h, b1, b2, eps = 0.01, 0.9, 0.99, 1e-3
    theta = jnp.asarray([2.8, 3.5])
    traj = adam_iterates(BILINEAR, theta, learning_rate=h, steps=30, b1=b1, b2=b2, eps=eps)
    m = v = np.zeros(2)
    t = np.asarray(theta)
    for n in range(30):
        g = np.asarray(jax.grad(BILINEAR)(jnp.asarray(t)))
        v, m = b2 * v + (1 - b2) * g**2, b1 * m + (1 - b1) * g
        t = t - h * (m / (1 - b1 ** (n + 1))) / np.sqrt(v / (1 - b2 ** (n + 1)) + eps)
        np.testing.assert_allclose(traj[n + 1], t, rtol=1e-12)


def test_one_minibatch_piecewise_field_is_the_full_batch_field_with_bias_correction(x64):
    params, loss = _mlp()
    mb = MinibatchAdamEquation(lambda p, b: loss(p), np.zeros(40, int), 0.01, 0.9, 0.95, 1e-3)
    full = AdamEquation(loss, 0.01, 0.9, 0.95, 1e-3)
    for n in (0, 1, 5, 39):
        for a, b in zip(jax.tree.leaves(mb(n, params)), jax.tree.leaves(full(n, params))):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


def test_piecewise_field_matches_theorem_3_1_term_by_term(x64):
    """The folded (one tangent per minibatch) field against L, L~, P, P~ summed literally, two minibatches."""
    h, b1, b2, eps = 0.01, 0.8, 0.9, 1e-2
    schedule = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    eq = MinibatchAdamEquation(_bilinear_batch, schedule, h, b1, b2, eps)
    theta = jnp.asarray([1.3, 0.7])
    grad = [np.asarray(jax.grad(_bilinear_batch)(theta, b)) for b in (0, 1)]
    hess = [np.asarray(jax.hessian(_bilinear_batch)(theta, b)) for b in (0, 1)]

    def moment(beta, l, f):
        w = [(1 - beta) * beta ** (l - k) for k in range(l + 1)]
        return sum(wk * f(schedule[k]) for k, wk in enumerate(w)) / (1 - beta ** (l + 1))

    def mr(l):
        return moment(b1, l, lambda b: grad[b]) / np.sqrt(moment(b2, l, lambda b: grad[b] ** 2) + eps)

    for n in range(len(schedule)):
        lag = lambda k: sum((mr(l) for l in range(k, n)), np.zeros(2))  # noqa: E731
        L = sum((1 - b1) * b1 ** (n - k) * hess[schedule[k]] @ lag(k) for k in range(n + 1)) / (1 - b1 ** (n + 1))
        Lb = sum((1 - b1) * b1 ** (n - k) * hess[schedule[k]] @ mr(n) for k in range(n + 1)) / (1 - b1 ** (n + 1))
        P = sum((1 - b2) * b2 ** (n - k) * grad[schedule[k]] * (hess[schedule[k]] @ lag(k))
                for k in range(n + 1)) / (1 - b2 ** (n + 1))
        Pb = sum((1 - b2) * b2 ** (n - k) * grad[schedule[k]] * (hess[schedule[k]] @ mr(n))
                 for k in range(n + 1)) / (1 - b2 ** (n + 1))
        M = moment(b1, n, lambda b: grad[b])
        R = np.sqrt(moment(b2, n, lambda b: grad[b] ** 2) + eps)
        expected = -M / R + h * (M * (2 * P + Pb) / (2 * R**3) - (2 * L + Lb) / (2 * R))
        np.testing.assert_allclose(eq(n, theta), expected, rtol=1e-10, atol=1e-14)


def _slopes(make, loss, theta, hs, horizon, b1, b2, eps, schedule=None):
    return {name: order_slope(hs, global_errors(m, loss, theta, learning_rates=hs, horizon=horizon, b1=b1, b2=b2,
                                                eps=eps, schedule=schedule))
            for name, m in make.items()}


def test_error_orders_on_the_bilinear_model(x64):
    """Global error over T = 0.5, h from 1e-4 to 1e-3: O(h^2) with the bias term (with or without the first
    steps' bias correction), O(h) without it."""
    b1, b2, eps, horizon = 0.9, 0.95, 1e-6, 0.5
    hs = horizon_step_sizes(horizon, 1e-4, 1e-3, 4)
    make = {"modified": lambda h: AdamEquation(BILINEAR, h, b1, b2, eps),
            "asymptotic": lambda h: AdamEquation(BILINEAR, h, b1, b2, eps, bias_correction=False),
            "zeroth": lambda h: AdamEquation(BILINEAR, h, b1, b2, eps, order=0)}
    s = _slopes(make, BILINEAR, jnp.asarray([2.8, 3.5]), hs, horizon, b1, b2, eps)
    assert abs(s["modified"] - 2) <= 0.15 and abs(s["asymptotic"] - 2) <= 0.15, s
    assert abs(s["zeroth"] - 1) <= 0.15, s


def test_error_orders_of_rmsprop_and_of_the_minibatch_piecewise_ode(x64):
    """RMSProp (b1 = 0) full batch, and mini-batch Adam against Theorem 3.1's piecewise ODE (two minibatches in
    turn). The mini-batch sweep uses short memories (0.5, 0.8): at (0.9, 0.95) the same h range is still
    pre-asymptotic (slope 1.76, reaching 1.9 only below h = 1e-3 at T = 0.3)."""
    eps, horizon = 1e-4, 0.3
    hs = horizon_step_sizes(horizon, 2e-4, 2e-3, 3)
    s = _slopes({"rms": lambda h: AdamEquation(BILINEAR, h, 0.0, 0.9, eps),
                 "rms0": lambda h: AdamEquation(BILINEAR, h, 0.0, 0.9, eps, order=0)},
                BILINEAR, jnp.asarray([2.8, 3.5]), hs, horizon, 0.0, 0.9, eps)
    schedule = np.arange(int(round(horizon / hs.min()))) % 2
    s |= _slopes({"mb": lambda h: MinibatchAdamEquation(_bilinear_batch, schedule, h, 0.5, 0.8, eps),
                  "mb0": lambda h: MinibatchAdamEquation(_bilinear_batch, schedule, h, 0.5, 0.8, eps, order=0)},
                 _bilinear_batch, jnp.asarray([2.8, 3.5]), hs, horizon, 0.5, 0.8, eps, schedule=schedule)
    assert abs(s["rms"] - 2) <= 0.15 and abs(s["mb"] - 2) <= 0.15, s
    assert abs(s["rms0"] - 1) <= 0.15 and abs(s["mb0"] - 1) <= 0.15, s


def test_error_orders_on_a_small_network(x64):
    """A 64-8-10 tanh network on 100 digits (pytree parameters, cross-entropy), eps = 1e-2, T = 0.1: slopes 2
    and 1 over a decade of h. (Smaller eps or a stiffer network need smaller h: the expansion is in
    h lambda / (sqrt(eps) (1 - rho)).)"""
    sec = {"width": 8, "depth": 1, "n_examples": 100, "b1": 0.9, "b2": 0.95, "eps": 1e-2, "horizon": 0.1,
           "h_min": 1e-4, "h_max": 1e-3, "n_h": 3}
    params, full, _ = cells._network({"network": sec, "seed": 0})
    c = cells._sweep(full, params, sec, {"rtol": 1e-12, "atol": 1e-12, "max_steps": 4096},
                     {"modified": (1, True), "zeroth-order": (0, True)})
    s = dict(zip(c["ode"], (order_slope(c["learning_rate"], e) for e in c["error"])))
    assert abs(s["modified"] - 2) <= 0.15 and abs(s["zeroth-order"] - 1) <= 0.15, s


def _regime_config(b1, b2):
    return {"bilinear": {"start": [2.8, 3.5]},
            "regimes": {"b1": [b1], "b2": [b2], "learning_rates": [1e-3, 3e-3, 1e-2], "eps": 1e-8, "level": 0.125,
                        "horizon": 4.0},
            "solver": {"rtol": 1e-12, "atol": 1e-12, "max_steps": 4096}}


@pytest.mark.parametrize("b1,b2,sign", [(0.95, 0.9, -1), (0.9, 0.95, 1)])
def test_table_1_regimes_at_equal_loss(b1, b2, sign):
    """beta > rho: Adam's one-norm where the loss reaches 1/8 lies below the h -> 0 limit's, lower as h grows;
    rho > beta: above it, higher as h grows. The first-order ODE (where it reaches the level) agrees to O(h^2)."""
    c = cells.regimes(_regime_config(b1, b2))
    shift = c["rows"][:, 3] - float(c["limit_one_norm"])
    assert np.all(sign * shift > 0), shift
    assert np.all(np.diff(sign * shift) > 0), shift
    ode = c["rows"][:, 4]
    ok = np.isfinite(ode)
    assert ok[0] and np.all(np.abs(ode[ok] - c["rows"][ok, 3]) < 0.25 * np.abs(shift[ok])), (ode, c["rows"][:, 3])


def test_large_eps_limit_is_heavy_ball_to_first_order_in_one_over_eps():
    """At fixed h / sqrt(eps), the gap between Adam's modified ODE and heavy-ball GD's falls like 1 / eps."""
    c = cells.large_eps({"bilinear": {"start": [2.8, 3.5]},
                         "large_eps": {"eps": [1e5, 1e6, 1e7], "gd_step": 2e-4, "steps": 100, "b1": 0.9, "b2": 0.999},
                         "solver": {"rtol": 1e-12, "atol": 1e-12, "max_steps": 4096}})
    rows = c["rows"]
    assert abs(order_slope(rows[:, 0], rows[:, 2]) + 1) <= 0.15
    assert np.all(rows[:, 2] < 2 * rows[:, 5] * np.abs(np.asarray([2.8, 3.5])).max())


def test_sign_flow_moves_every_coordinate_at_unit_speed(x64):
    traj = solve_modified(SignFlow(BILINEAR), jnp.asarray([2.8, 3.5]), step_size=0.1, steps=5)
    np.testing.assert_allclose(traj[-1], jnp.asarray([2.3, 3.0]), rtol=1e-12)


@pytest.mark.parametrize("call,message", [
    (lambda: AdamEquation(BILINEAR, 0.01, 1.0, 0.9, 1e-8), "AdamEquation: b1 must be in [0, 1)"),
    (lambda: AdamEquation(BILINEAR, 0.01, 0.9, -0.1, 1e-8), "AdamEquation: b2 must be in [0, 1)"),
    (lambda: AdamEquation(BILINEAR, 0.01, 0.9, 0.9, -1.0), "AdamEquation: eps must be >= 0"),
    (lambda: AdamEquation(BILINEAR, 0.0, 0.9, 0.9, 1e-8), "AdamEquation: learning_rate must be > 0"),
    (lambda: HeavyBallEquation(BILINEAR, 0.01, 0.9, 0.0), "HeavyBallEquation: eps must be > 0"),
    (lambda: MinibatchAdamEquation(_bilinear_batch, [0, 1], 0.01, b2=1.5), "MinibatchAdamEquation: b2 must be in"),
    (lambda: adam_iterates(BILINEAR, jnp.ones(2), learning_rate=-1.0, steps=3), "adam_iterates: learning_rate must be"),
    (lambda: solve_modified(SignFlow(BILINEAR), jnp.ones(2), step_size=0.1, steps=0), "solve_modified: steps must be"),
    (lambda: global_errors(lambda h: SignFlow(BILINEAR), BILINEAR, jnp.ones(2), learning_rates=[0.1], horizon=0.05),
     "global_errors: horizon 0.05 is shorter than one step"),
    (lambda: horizon_step_sizes(0.01, 1e-3, 0.1, 3), "horizon_step_sizes: horizon 0.01 is shorter than one step"),
])
def test_bad_input_is_one_line_value_error(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
