"""The computations of the adam-dynamics experiment (Kaiser, "Exploring the Dynamics of Adam"), one per cell."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..landscapes import Quadratic, Valley
from ..optim import make_optimizer
from ..simulate import escape_times
from ..stats import detect_period
from ..theory import adam_flat_bound, adam_step_bound, adam_two_cycle_jump, search_adam_bound

#: The optimizers of the saddle and valley parts: the seed's four, and heavy ball and Adai beside them.
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adai")


def build(name: str, learning_rate: float) -> optax.GradientTransformation:
    """An optimizer of the saddle and valley parts at its default hyperparameters (AdaGrad is optax's)."""
    if name == "adagrad":
        return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=1e-8)
    return make_optimizer(name, learning_rate=learning_rate)


def trajectories(landscape, optimizer, starts, steps: int):
    """Every start's iterates from the engine's stepping core ([`escape.simulate.escape_times`][], exact
    gradients, positions saved at every step): ``(positions (steps + 1, starts, dim), first passage steps)``."""
    starts = np.asarray(starts)
    r = escape_times(landscape, optimizer, batch_size=1, n_particles=starts.shape[0], max_steps=steps,
                     key=jax.random.key(0), init=starts, save_steps=np.arange(steps + 1))
    return np.asarray(r.positions), np.asarray(r.first_passage)


def bounds(config: dict) -> dict:
    """Props. 1 and 2 against the adversarial search, per (b1, b2): plain and optax's Adam, step and flat."""
    sec = config["bounds"]
    rows = []
    with jax.enable_x64(True):
        for b1, b2 in zip(sec["b1"], sec["b2"]):
            row = [b1, b2, adam_step_bound(b1, b2), adam_flat_bound(b1, b2)]
            for quantity in ("step", "flat"):
                for variant in ("plain", "optax"):
                    r = search_adam_bound(b1, b2, quantity=quantity, variant=variant,
                                          length=sec["length"] if variant == "optax" else sec["plain_length"],
                                          n_random=sec["n_random"], iterations=sec["iterations"], seed=config["seed"])
                    row += [r.best, r.best_random, float(r.values.max() / r.bound)]
            rows.append(row)
    return {"rows": np.asarray(rows)}


def noise(config: dict) -> dict:
    """Adam's bias-corrected moments under i.i.d. Gaussian gradients ``g ~ N(mu, sigma^2)``: their variance over
    particles against step, beside the exact variance of the weighted sums and the bias terms ``b^t``."""
    sec = config["noise"]
    b1, b2, mu, sigma = sec["b1"], sec["b2"], sec["mean"], sec["std"]
    adam = optax.scale_by_adam(b1=b1, b2=b2)
    key = jax.random.key(config["seed"])

    def one(p):
        def body(state, t):
            g = mu + sigma * jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, p), t), (1,))
            _, state = adam.update(g, state)
            c = state.count.astype(jnp.float32)
            return state, (state.mu[0] / (1 - b1**c), state.nu[0] / (1 - b2**c))

        return jax.lax.scan(body, adam.init(jnp.zeros(1)), jnp.arange(sec["steps"]))[1]

    m_hat, v_hat = jax.jit(jax.vmap(one))(jnp.arange(sec["particles"]))
    t = np.arange(1, sec["steps"] + 1)
    w1 = lambda b: (1 - b) ** 2 * (1 - b ** (2 * t)) / (1 - b**2) / (1 - b**t) ** 2  # noqa: E731  sum of squared weights
    return {"step": t, "var_m": np.var(np.asarray(m_hat), axis=0), "var_v": np.var(np.asarray(v_hat), axis=0),
            "exact_var_m": sigma**2 * w1(b1), "exact_var_v": (2 * sigma**4 + 4 * mu**2 * sigma**2) * w1(b2),
            "bias_m": b1**t, "bias_v": b2**t}


def saddle(config: dict) -> dict:
    """``L = (y^2 - x^2) / 2`` (H = diag(-1, 1)): steps until ``|x|`` passes ``exit_radius`` from starts on a
    circle of ``start_radius`` about the saddle, per optimizer; the direction of departure where each first
    passes ``direction_radius``; trajectories from one start for the figure."""
    sec = config["saddle"]
    angles = np.linspace(0, 2 * np.pi, sec["n_starts"], endpoint=False) + np.pi / sec["n_starts"]
    starts = sec["start_radius"] * np.stack([np.cos(angles), np.sin(angles)], 1)
    out = {"angles": angles}
    landscape = Quadratic([-1.0, 1.0], noise="none", escape_radius=sec["exit_radius"])
    for name in sec["optimizers"]:
        xs, first = trajectories(landscape, build(name, sec["learning_rate"]), starts, sec["max_steps"])
        with np.errstate(over="ignore", invalid="ignore"):  # SGD and heavy ball grow without bound once out
            r = np.linalg.norm(xs.astype(np.float64), axis=2)
        mid = r >= sec["direction_radius"]
        mid_points = xs[mid.argmax(0), np.arange(r.shape[1])]
        angle = np.degrees(np.arctan2(np.abs(mid_points[:, 1]), np.abs(mid_points[:, 0])))
        out[f"{name}_direction_angle"] = np.where(mid.any(0), angle, np.nan)  # NaN: never got that far
        out[f"{name}_steps"] = first
        out[f"{name}_path"] = xs[: (first[0] + 1 if first[0] > 0 else None), 0]
        exit_points = xs[np.maximum(first, 0), np.arange(len(first))]
        out[f"{name}_exit_angle"] = np.degrees(np.arctan2(np.abs(exit_points[:, 1]), np.abs(exit_points[:, 0])))
    return out


def valley(config: dict, which: str) -> dict:
    """One valley: every optimizer from ``valleys.start`` for ``valleys.steps``: the first step within
    ``valleys.tolerance`` of the origin, the end distance, the period and amplitude of each coordinate's tail."""
    sec = config["valleys"]
    out = {}
    landscape = Valley(which, start=sec["start"], tolerance=sec["tolerance"])
    for name in sec["optimizers"]:
        xs, first = trajectories(landscape, build(name, sec["learning_rate"]), np.asarray([sec["start"]], np.float32),
                                 sec["steps"])
        xs = xs[:, 0].astype(np.float64)
        d = np.linalg.norm(xs, axis=1)
        orbits = [detect_period(xs[:, i], max_period=sec["max_period"], window=sec["window"]) for i in range(2)]
        out[name] = np.asarray([first[0], d[-1],
                                *(o.period for o in orbits), *(o.amplitude[0] for o in orbits),
                                *(float(o.attracting) for o in orbits)])
        keep = max(1, sec["steps"] // 4000)
        out[f"{name}_path"] = xs[::keep]
    out["thin"] = np.asarray(max(1, sec["steps"] // 4000))
    return out


def two_cycle(config: dict) -> dict:
    """Prop. 4 on the sharp valley ``C |x|``: Adam (``two_cycle.b1``) from ``two_cycle.start`` in float64; the
    2-cycle it settles on against the predicted jump with ``C + eps`` (optax) and the seed's ``C^2 + eps``."""
    sec = config["two_cycle"]
    rows = []
    with jax.enable_x64(True):
        for c in sec["grad_magnitudes"]:
            opt = optax.adam(sec["learning_rate"], b1=sec["b1"], b2=sec["b2"], eps=sec["eps"])
            xs = trajectories(Valley("sharp", c, c), opt, np.full((1, 2), sec["start"]), sec["steps"])[0][:, 0, 0]
            o = detect_period(xs, max_period=128, window=256)
            jump = 2 * float(o.amplitude[0])
            grads = np.unique(np.round(c * np.sign(xs[-8:]), 12))
            rows.append([c, o.period, float(o.attracting), jump,
                         adam_two_cycle_jump(c, sec["b1"], sec["learning_rate"], sec["eps"], "eps-outside"),
                         adam_two_cycle_jump(c, sec["b1"], sec["learning_rate"], sec["eps"], "seed"),
                         float(np.max(np.abs(grads))), o.residual])
    return {"rows": np.asarray(rows)}
