"""The computations behind the implicit-bias experiment, one function per cell (each returns arrays)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..modified import (AdamEquation, HeavyBallEquation, MinibatchAdamEquation, adam_iterates, adam_transform,
                        global_error, global_errors, horizon_step_sizes, perturbed_one_norm, solve_modified)
from ._aeos import init_params, load_data, tanh_mlp

#: The ODEs of the error-order sweeps: (bias term, bias correction of the first steps).
FULL_BATCH_ODES = {"modified": (1, True), "modified-asymptotic": (1, False), "zeroth-order": (0, True)}
MINIBATCH_ODES = {"modified": 1, "zeroth-order": 0}
EXPECTED_ORDER = {"modified": 2.0, "modified-asymptotic": 2.0, "zeroth-order": 1.0}


def bilinear_loss(theta):
    """``E = (3/2 - 2 theta_1 theta_2)^2 / 2``, minimised on the hyperbola ``theta_1 theta_2 = 3/4``."""
    return 0.5 * jnp.square(1.5 - 2.0 * theta[0] * theta[1])


def bilinear_one_norm(theta) -> float:
    """``||grad E||_1`` of the bilinear model."""
    return float(jnp.sum(jnp.abs(jax.grad(bilinear_loss)(jnp.asarray(theta)))))


def _solver_kw(solver: dict) -> dict:
    return {"rtol": solver["rtol"], "atol": solver["atol"], "max_steps": solver["max_steps"]}


def _sweep(loss, params, sec, solver, odes, minibatches: int | None = None):
    """Global errors of each ODE over the section's h sweep; with ``minibatches``, ``loss(params, b)`` takes the
    minibatches in turn and the ODEs are Theorem 3.1's piecewise ones."""
    hs = horizon_step_sizes(sec["horizon"], sec["h_min"], sec["h_max"], sec["n_h"])
    b1, b2, eps = sec["b1"], sec["b2"], sec["eps"]
    schedule = None if minibatches is None else np.arange(int(round(sec["horizon"] / hs.min()))) % minibatches
    errors = {}
    for name, spec in odes.items():
        if schedule is None:
            order, bc = spec
            make = lambda h, o=order, c=bc: AdamEquation(loss, h, b1, b2, eps, order=o, bias_correction=c)  # noqa: E731
        else:
            make = lambda h, o=spec: MinibatchAdamEquation(loss, schedule, h, b1, b2, eps, order=o)  # noqa: E731
        errors[name] = global_errors(make, loss, params, learning_rates=hs, horizon=sec["horizon"], b1=b1, b2=b2,
                                     eps=eps, schedule=schedule, **_solver_kw(solver))
    return {"learning_rate": hs, "ode": np.asarray(list(errors)), "error": np.stack(list(errors.values()))}


def bilinear_orders(config: dict) -> dict:
    """Global errors of each full-batch ODE on the bilinear model over a decade of h (x64)."""
    sec = config["bilinear"]
    with jax.enable_x64(True):
        return _sweep(bilinear_loss, jnp.asarray(sec["start"], jnp.float64), sec, config["solver"], FULL_BATCH_ODES)


def _network(config: dict, minibatches: int = 1):
    """The small digits network in float64: params, full-batch loss and (with minibatches) the minibatch loss."""
    net = config["network"]
    x, y = load_data({"data": {"name": "digits", "n_examples": net["n_examples"]}})
    x, labels = jnp.asarray(x, jnp.float64), jnp.argmax(y, axis=1)
    sizes = (x.shape[1], *[net["width"]] * net["depth"], y.shape[1])
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), init_params(jax.random.key(config["seed"]), sizes))

    def full(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, x), labels))

    xb = x.reshape(minibatches, -1, x.shape[1])
    lb = labels.reshape(minibatches, -1)

    def batch(p, b):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, xb[b]), lb[b]))

    return params, full, batch


def network_orders(config: dict) -> dict:
    """Global errors of each full-batch ODE on the digits network (x64)."""
    with jax.enable_x64(True):
        params, full, _ = _network(config)
        return _sweep(full, params, config["network"], config["solver"], FULL_BATCH_ODES)


def minibatch_orders(config: dict) -> dict:
    """Mini-batch Adam (minibatches in turn) against Theorem 3.1's piecewise ODE on the digits network (x64)."""
    net = config["network"]
    sec = {**net, "horizon": net["minibatch_horizon"]}
    with jax.enable_x64(True):
        params, _, batch = _network(config, net["minibatches"])
        return _sweep(batch, params, sec, config["solver"], MINIBATCH_ODES, minibatches=net["minibatches"])


def first_crossing(values: np.ndarray, level: float) -> tuple[int, float]:
    """``(i, w)``: ``values[i]`` is the first at or below ``level`` and ``(1 - w) values[i-1] + w values[i]`` equals
    it on the segment before (``w = 1`` at ``i = 0``); ``(-1, nan)`` if no value gets there."""
    below = np.flatnonzero(values <= level)
    if below.size == 0:
        return -1, float("nan")
    i = int(below[0])
    return (0, 1.0) if i == 0 else (i, float((values[i - 1] - level) / (values[i - 1] - values[i])))


def _crossing(traj: np.ndarray, level: float):
    """The point where the loss first falls to ``level`` (linear between iterates), its index, or None."""
    i, w = first_crossing(np.asarray(jax.vmap(bilinear_loss)(jnp.asarray(traj))), level)
    if i <= 0:
        return None, -1
    return traj[i - 1] * (1 - w) + traj[i] * w, i


def _limit_to_level(start, eps: float, level: float, horizon: float, solver: dict):
    """The h -> 0 limit (the perturbed sign flow, h-free) from ``start`` until the loss falls to ``level``:
    one diffrax solve ended by an event at the level (root found exactly); returns (point, saved path)."""
    import diffrax
    import optimistix as optx

    field = AdamEquation(bilinear_loss, 1.0, 0.0, 0.0, eps, order=0)
    event = diffrax.Event(lambda t, y, args, **kw: bilinear_loss(y) - level, root_finder=optx.Newton(1e-12, 1e-12))

    def solve(saveat):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: field(0, y)), diffrax.Dopri8(), 0.0, horizon, 1e-3, start,
            saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=solver["rtol"], atol=solver["atol"]),
            event=event, max_steps=solver["max_steps"] * 16).ys

    path = np.asarray(solve(diffrax.SaveAt(ts=jnp.linspace(0.0, horizon, 1500))))
    point = np.asarray(solve(diffrax.SaveAt(t1=True))[-1])
    return point, path[np.all(np.isfinite(path), axis=1)]


def regimes(config: dict) -> dict:
    """Table 1 on the bilinear model: Adam's point at a loss level, its one-norm against the h -> 0 limit's.

    For every (b1, b2) pair and h: Adam's iterates and their crossing of ``regimes.level`` (linear between
    iterates), and the first-order ODE's (with bias correction) over the same steps and a few more; the limit
    is the h-free perturbed sign flow, stopped exactly at the level by a diffrax event. Trajectories are kept
    (thinned) for the figure.
    """
    sec, solver = config["regimes"], config["solver"]
    eps, level, horizon = sec["eps"], sec["level"], sec["horizon"]
    rows, trajs = [], []
    with jax.enable_x64(True):
        start = jnp.asarray(config["bilinear"]["start"], jnp.float64)
        lim_point, lim_path = _limit_to_level(start, eps, level, horizon, solver)
        trajs.append(lim_path)
        for b1, b2 in zip(sec["b1"], sec["b2"]):
            for h in sec["learning_rates"]:
                steps = int(np.ceil(horizon / h))
                adam = np.asarray(adam_iterates(bilinear_loss, start, learning_rate=h, steps=steps, b1=b1, b2=b2,
                                                eps=eps))
                pa, ia = _crossing(adam, level)
                po = None
                if ia > 0:  # up to Adam's crossing: near the minima the bias term grows like h H / |g|
                    ode = np.asarray(solve_modified(AdamEquation(bilinear_loss, h, b1, b2, eps), start, step_size=h,
                                                    steps=min(steps, ia + 20), throw=False,
                                                    **_solver_kw(solver)))
                    po, _ = _crossing(ode, level)
                na = bilinear_one_norm(pa) if pa is not None else np.nan
                no = bilinear_one_norm(po) if po is not None else np.nan
                rows.append([b1, b2, h, na, no, ia * h if ia > 0 else np.nan,
                             *(pa if pa is not None else (np.nan, np.nan))])
                trajs.append(adam[: (ia + 1 if ia > 0 else None)][:: max(1, steps // 1500)])
    lengths = np.asarray([t.shape[0] for t in trajs])
    return {"rows": np.asarray(rows), "limit_point": lim_point, "limit_one_norm": bilinear_one_norm(lim_point),
            "trajectories": np.concatenate(trajs), "lengths": lengths}


def large_eps(config: dict) -> dict:
    """Adam's modified ODE against heavy-ball GD's (Example 2.1) as eps grows, at a fixed GD step h / sqrt(eps)."""
    sec, solver = config["large_eps"], config["solver"]
    rows = []
    with jax.enable_x64(True):
        start = jnp.asarray(config["bilinear"]["start"], jnp.float64)
        for eps in sec["eps"]:
            h = sec["gd_step"] * np.sqrt(eps)
            kw = dict(step_size=h, steps=sec["steps"], **_solver_kw(solver))
            adam_ode = solve_modified(AdamEquation(bilinear_loss, h, sec["b1"], sec["b2"], eps), start, **kw)
            hb_ode = solve_modified(HeavyBallEquation(bilinear_loss, h, sec["b1"], eps), start, **kw)
            adam = adam_iterates(bilinear_loss, start, learning_rate=h, steps=sec["steps"], b1=sec["b1"],
                                 b2=sec["b2"], eps=eps)
            grad0 = float(jnp.max(jnp.abs(jax.grad(bilinear_loss)(start))))
            rows.append([eps, h, float(global_error(adam_ode, hb_ode)), float(global_error(adam, adam_ode)),
                         float(global_error(adam, hb_ode)), grad0**2 / eps])
    return {"rows": np.asarray(rows)}


def digits_split():
    """Digits train / test, flattened and standardised with the training set's statistics (float32)."""
    from ..data import load_digits

    ds = load_digits()
    xtr = np.asarray(ds.train.images, np.float64).reshape(len(ds.train.labels), -1)
    xte = np.asarray(ds.test.images, np.float64).reshape(len(ds.test.labels), -1)
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1.0
    f = lambda a: jnp.asarray((a - mu) / sd, jnp.float32)  # noqa: E731
    return f(xtr), jnp.asarray(ds.train.labels), f(xte), jnp.asarray(ds.test.labels), ds.num_classes


def grid_cell(config: dict, b1: float, b2: float) -> dict:
    """Full-batch Adam on digits at one (b1, b2), every seed at once (vmap): the perturbed one-norm of the
    gradient every ``grid.every`` steps, the training loss, final train and test accuracy."""
    sec = config["grid"]
    xtr, ytr, xte, yte, classes = digits_split()
    sizes = (xtr.shape[1], *[sec["width"]] * sec["depth"], classes)
    every, blocks = sec["every"], sec["steps"] // sec["every"]
    opt = optax.chain(adam_transform(b1, b2, sec["eps"]), optax.scale_by_learning_rate(sec["learning_rate"]))

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, xtr), ytr))

    def one(seed):
        p = init_params(jax.random.fold_in(jax.random.key(config["seed"]), seed), sizes)

        def step(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), (value, perturbed_one_norm(g, sec["eps"]))

        def block(carry, _):
            carry, (values, norms) = jax.lax.scan(step, carry, None, length=every)
            return carry, (values[0], norms[0])

        (p, _), (values, norms) = jax.lax.scan(block, (p, opt.init(p)), None, length=blocks)
        acc = lambda x, y: jnp.mean(jnp.argmax(tanh_mlp(p, x), axis=1) == y)  # noqa: E731
        return values, norms, acc(xtr, ytr), acc(xte, yte), perturbed_one_norm(jax.grad(loss)(p), sec["eps"])

    values, norms, train_acc, test_acc, final_norm = jax.jit(jax.vmap(one))(jnp.arange(sec["seeds"]))
    dim = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"steps": np.arange(blocks) * every, "loss": np.asarray(values), "norm": np.asarray(norms),
            "train_accuracy": np.asarray(train_acc), "test_accuracy": np.asarray(test_acc),
            "final_norm": np.asarray(final_norm), "dim": dim}
