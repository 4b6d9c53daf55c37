"""The implicit-bias experiment (seed: "On the Implicit Bias of Adam"): Adam's modified equations, measured.

Parts (``run.parts``): ``orders``, the global error ``max_n ||theta^(n) - theta~(n h)||`` over a fixed horizon
against h for each ODE (the first-order modified ODE with and without the bias correction of the first
steps, the h-free perturbed sign flow) on the bilinear model, on a small digits network and, mini-batch, against
Theorem 3.1's piecewise ODE; ``regimes``, Table 1 on the bilinear model (the one-norm where the trajectory
reaches a loss level, against the h -> 0 limit); ``large-eps``, the modified ODE against heavy-ball GD's;
``grid``, full-batch Adam on digits over a grid of (b1, b2) with several seeds: the perturbed one-norm along
training (its peak after the initial fall and its end value) and the test accuracy.

Outputs: ``orders.csv`` (one row per problem, ODE and h), ``fit.csv`` (the log-log slopes), ``regimes.csv``,
``large_eps.csv``, ``grid.csv`` (per (b1, b2): mean and standard error over seeds), ``norm_curves.csv``,
``implicit_bias.png``, ``grid.png``, ``manifest.json``; one cell per part and per grid point.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ..modified import order_slope
from . import _implicit_cells as cells
from ._cells import run_cells
from ._config import ConfigError
from ._io import atomic_write_text, finished_cells, read_table
from ._schema import Integer, Key, ListOf, Number, OptionalSection, Schema, Section, parts_section, seed_key

PARTS = ("orders", "regimes", "large-eps", "grid")
ORDER_CELLS = {"orders-bilinear": cells.bilinear_orders, "orders-network": cells.network_orders,
               "orders-minibatch": cells.minibatch_orders}
TOLERANCE = 0.15  # the acceptance band of an observed order


def _beta(default, what):
    return Key(Number(ge=0, lt=1), default, what)


def _sweep_keys(b1, b2, eps, horizon, h_min, h_max, n_h):
    return {
        "b1": _beta(b1, "Adam's beta (first moment)"),
        "b2": _beta(b2, "Adam's rho (second moment)"),
        "eps": Key(Number(ge=0), eps, "eps, inside the square root"),
        "horizon": Key(Number(gt=0), horizon, "time horizon T of the global error (steps = T / h)"),
        "h_min": Key(Number(gt=0), h_min, "smallest step size of the sweep"),
        "h_max": Key(Number(gt=0), h_max, "largest step size of the sweep"),
        "n_h": Key(Integer(min=2), n_h, "step sizes in the sweep (log-spaced, T / h an integer)"),
    }


SCHEMA = Schema(
    "implicit-bias",
    "Adam's implicit bias: the modified equations' error orders, Table 1's regimes on the bilinear model, the "
    "large-eps (heavy-ball) limit and a (beta, rho) grid on digits; `orders.csv`, `fit.csv`, `regimes.csv`, "
    "`large_eps.csv`, `grid.csv`, `implicit_bias.png`, `grid.png`. "
    "Tutorial: [implicit bias](tutorials/implicit_bias.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "run": parts_section(PARTS),
            "bilinear": OptionalSection({
                "start": Key(ListOf(Number(), "two numbers", min_len=2), [2.8, 3.5], "start point (theta_1, theta_2)"),
                **_sweep_keys(0.9, 0.95, 1e-6, 0.5, 1e-4, 1e-3, 6),
            }, "The bilinear model E = (3/2 - 2 theta_1 theta_2)^2 / 2: the error-order sweep (x64)."),
            "network": OptionalSection({
                "width": Key(Integer(min=1), 8, "hidden width of the tanh network"),
                "depth": Key(Integer(min=1), 1, "hidden layers"),
                "n_examples": Key(Integer(min=4), 200, "first n digits training images (cross-entropy)"),
                **_sweep_keys(0.9, 0.95, 1e-2, 0.1, 1e-4, 1e-3, 3),
                "minibatches": Key(Integer(min=2), 4, "minibatches (in turn) of the mini-batch sweep"),
                "minibatch_horizon": Key(Number(gt=0), 0.1, "time horizon of the mini-batch sweep"),
            }, "The small digits network: the error-order sweeps, full batch and mini-batch (x64)."),
            "regimes": OptionalSection({
                "b1": Key(ListOf(Number(ge=0, lt=1), "betas in [0, 1)"), [0.95, 0.9], "betas, paired with b2"),
                "b2": Key(ListOf(Number(ge=0, lt=1), "rhos in [0, 1)"), [0.9, 0.95], "rhos, paired with b1"),
                "learning_rates": Key(ListOf(Number(gt=0), "step sizes > 0", increasing=True), [1e-3, 3e-3, 1e-2],
                                      "step sizes h"),
                "eps": Key(Number(ge=0), 1e-8, "eps, inside the square root"),
                "level": Key(Number(gt=0), 0.125, "the loss level where the one-norms are compared"),
                "horizon": Key(Number(gt=0), 4.0, "time horizon of each trajectory"),
            }, "Table 1 on the bilinear model: the one-norm at a loss level against the h -> 0 limit."),
            "large_eps": OptionalSection({
                "eps": Key(ListOf(Number(gt=0), "numbers > 0", increasing=True), [1e5, 1e6, 1e7, 1e8], "eps values"),
                "gd_step": Key(Number(gt=0), 2e-4, "h / sqrt(eps), fixed as eps grows"),
                "steps": Key(Integer(min=1), 200, "steps of each trajectory"),
                "b1": _beta(0.9, "Adam's beta"),
                "b2": _beta(0.999, "Adam's rho"),
            }, "Large eps: Adam's modified ODE against heavy-ball GD's (Example 2.1) on the bilinear model."),
            "grid": OptionalSection({
                "b1": Key(ListOf(Number(ge=0, lt=1), "betas in [0, 1)", increasing=True), [0.9, 0.95, 0.99],
                          "betas of the grid"),
                "b2": Key(ListOf(Number(ge=0, lt=1), "rhos in [0, 1)", increasing=True), [0.99, 0.995, 0.999],
                          "rhos of the grid"),
                "seeds": Key(Integer(min=1), 3, "seeds per grid point (network initialisations)"),
                "learning_rate": Key(Number(gt=0), 1e-3, "full-batch Adam's step size"),
                "steps": Key(Integer(min=1), 3000, "full-batch steps"),
                "eps": Key(Number(ge=0), 1e-8, "eps, inside the square root"),
                "width": Key(Integer(min=1), 32, "hidden width of the tanh network"),
                "depth": Key(Integer(min=1), 2, "hidden layers"),
                "every": Key(Integer(min=1), 10, "steps between measurements of the perturbed one-norm"),
                "initial_steps": Key(Integer(min=0), 300, "steps excluded (the initial fall) before the peak"),
                "loss_level": Key(Number(gt=0), 0.01, "training loss at which the one-norms are compared"),
            }, "Full-batch Adam on digits (1,437 / 360 images) over (b1, b2): one-norm and test accuracy."),
            "solver": OptionalSection({
                "rtol": Key(Number(gt=0), 1e-12, "diffrax PID controller's relative tolerance (Dopri8, x64)"),
                "atol": Key(Number(gt=0), 1e-12, "its absolute tolerance"),
                "max_steps": Key(Integer(min=1), 4096, "solver steps allowed per piece"),
            }, "How the modified equations are solved."),
        },
    ),
)


def validate(config: dict) -> None:
    if len(config["bilinear"]["start"]) != 2:
        raise ConfigError("config: bilinear.start must be two numbers (theta_1, theta_2)")
    for name in ("bilinear", "network"):
        sec = config[name]
        if sec["h_min"] > sec["h_max"]:
            raise ConfigError(f"config: {name}.h_min must not exceed {name}.h_max")
        if sec["horizon"] < sec["h_max"]:
            raise ConfigError(f"config: {name}.horizon is shorter than one step ({name}.h_max = {sec['h_max']})")
    net = config["network"]
    if net["minibatch_horizon"] < net["h_max"]:
        raise ConfigError("config: network.minibatch_horizon is shorter than one step (network.h_max)")
    if net["n_examples"] % net["minibatches"]:
        raise ConfigError("config: network.n_examples must be a multiple of network.minibatches")
    reg = config["regimes"]
    if len(reg["b1"]) != len(reg["b2"]):
        raise ConfigError("config: regimes.b1 and regimes.b2 must have the same length (they are paired)")
    if reg["horizon"] < reg["learning_rates"][-1]:
        raise ConfigError("config: regimes.horizon is shorter than one step")
    grid = config["grid"]
    if grid["steps"] < grid["every"] or grid["initial_steps"] >= grid["steps"]:
        raise ConfigError("config: grid.every and grid.initial_steps must be below grid.steps")


def _grid_name(b1: float, b2: float) -> str:
    return f"grid_b1={b1:g}_b2={b2:g}"


def cell_names(config: dict) -> list[str]:
    parts = config["run"]["parts"]
    names = list(ORDER_CELLS) if "orders" in parts else []
    names += [p for p in ("regimes", "large-eps") if p in parts]
    if "grid" in parts:
        names += [_grid_name(a, b) for a in config["grid"]["b1"] for b in config["grid"]["b2"]]
    return names


def run_cell(config: dict, name: str) -> dict:
    if name in ORDER_CELLS:
        return ORDER_CELLS[name](config)
    if name == "regimes":
        return cells.regimes(config)
    if name == "large-eps":
        return cells.large_eps(config)
    b1, b2 = (float(part.split("=")[1]) for part in name.removeprefix("grid_").split("_"))
    return cells.grid_cell(config, b1, b2)


def _summary(name: str, cell: dict) -> str:
    if name in ORDER_CELLS:
        return name + ": slopes " + ", ".join(f"{ode} {order_slope(cell['learning_rate'], e):.3f}"
                                              for ode, e in zip(cell["ode"], cell["error"]))
    if name == "regimes":
        return f"regimes: limit one-norm {float(cell['limit_one_norm']):.4f}"
    if name == "large-eps":
        return "large-eps: |Adam ODE - heavy-ball ODE| " + ", ".join(f"{r[2]:.2e}" for r in cell["rows"])
    return f"{name}: test accuracy {cell['test_accuracy'].mean():.4f}, end one-norm {cell['final_norm'].mean():.4g}"


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every cell of a resolved config, then write the tables and figures."""
    return run_cells(__name__, config, out, cell_names(config), run_cell, progress=progress, summary=_summary)


def _csv(out: Path, name: str, table: pd.DataFrame) -> None:
    atomic_write_text(out / name, table.to_csv(index=False, float_format="%.8g"))


def _at_loss_level(steps, loss, norm, level):
    """``(step, one-norm)`` where the training loss first falls to ``level`` (log-linear between measurements)."""
    i, w = cells.first_crossing(np.log(loss), np.log(level))
    if i < 0:
        return np.nan, np.nan
    if i == 0:
        return float(steps[0]), float(norm[0])
    return float(steps[i - 1] + w * (steps[i] - steps[i - 1])), float(np.exp((1 - w) * np.log(norm[i - 1])
                                                                           + w * np.log(norm[i])))


def _regime(b1: float, b2: float) -> str:
    return "one-norm penalised" if b1 > b2 else "one-norm anti-penalised" if b2 > b1 else "neutral (small eps)"


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """orders.csv, regimes.csv, large_eps.csv, grid.csv and norm_curves.csv from the finished cells."""
    out = Path(out)
    names = cell_names(config)
    done = dict(finished_cells(out, names))
    orders = []
    for name in ORDER_CELLS:
        if name in done:
            c = done[name]
            horizon = config["network"]["minibatch_horizon"] if name == "orders-minibatch" else \
                config["bilinear" if name == "orders-bilinear" else "network"]["horizon"]
            for ode, errs in zip(c["ode"], c["error"]):
                for h, e in zip(c["learning_rate"], errs):
                    orders.append({"problem": name.removeprefix("orders-"), "ode": str(ode), "learning_rate": h,
                                   "steps": int(round(horizon / h)), "error": e})
    table = pd.DataFrame(orders, columns=["problem", "ode", "learning_rate", "steps", "error"])
    _csv(out, "orders.csv", table)
    reg = []
    if "regimes" in done:
        c = done["regimes"]
        lim = float(c["limit_one_norm"])
        for b1, b2, h, na, no, t, x1, x2 in c["rows"]:
            reg.append({"b1": b1, "b2": b2, "learning_rate": h, "regime": _regime(b1, b2), "one_norm": na,
                        "one_norm_modified_ode": no, "one_norm_limit": lim, "shift": na - lim,
                        "time_to_level": t, "theta_1": x1, "theta_2": x2})
    _csv(out, "regimes.csv", pd.DataFrame(reg))
    big = [dict(zip(("eps", "learning_rate", "ode_vs_heavy_ball", "adam_vs_ode", "adam_vs_heavy_ball",
                     "max_grad2_over_eps"), r)) for r in done["large-eps"]["rows"]] if "large-eps" in done else []
    _csv(out, "large_eps.csv", pd.DataFrame(big))
    grid, curves = [], []
    init = config["grid"]["initial_steps"]
    for name, c in done.items():
        if not name.startswith("grid_"):
            continue
        b1, b2 = (float(part.split("=")[1]) for part in name.removeprefix("grid_").split("_"))
        keep = c["steps"] >= init
        peak = c["norm"][:, keep].max(axis=1) if keep.any() else np.full(c["norm"].shape[0], np.nan)
        peak_step = c["steps"][keep][np.argmax(c["norm"][:, keep], axis=1)] if keep.any() else np.nan
        se = lambda a: float(np.std(a, ddof=1) / np.sqrt(a.size)) if a.size > 1 else np.nan  # noqa: E731
        at_level = np.asarray([_at_loss_level(c["steps"], lo, no, config["grid"]["loss_level"])
                               for lo, no in zip(c["loss"], c["norm"])])
        grid.append({"b1": b1, "b2": b2, "seeds": int(c["norm"].shape[0]), "peak_norm": peak.mean(),
                     "peak_norm_se": se(peak),
                     "peak_step": float(np.mean(peak_step)), "end_norm": c["final_norm"].mean(), "end_norm_se": se(c["final_norm"]),
                     "norm_at_level": at_level[:, 1].mean(), "norm_at_level_se": se(at_level[:, 1]),
                     "step_at_level": at_level[:, 0].mean(),
                     "norm_floor": float(c["dim"]) * np.sqrt(config["grid"]["eps"]),
                     "test_accuracy": c["test_accuracy"].mean(), "test_accuracy_se": se(c["test_accuracy"]),
                     "train_accuracy": c["train_accuracy"].mean(), "final_loss": c["loss"][:, -1].mean()})
        for s in range(c["norm"].shape[0]):
            curves.append(pd.DataFrame({"b1": b1, "b2": b2, "seed": s, "step": c["steps"], "norm": c["norm"][s],
                                        "loss": c["loss"][s]}))
    _csv(out, "grid.csv", pd.DataFrame(grid))
    _csv(out, "norm_curves.csv", pd.concat(curves) if curves else pd.DataFrame())
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """fit.csv: the log-log slope of the global error against h per problem and ODE (and of the large-eps gap
    against eps), beside the order the theory states."""
    out = Path(out)
    table = pd.read_csv(out / "orders.csv") if table is None else table
    rows = []
    for (problem, ode), sub in table.groupby(["problem", "ode"], sort=False):
        slope = order_slope(sub["learning_rate"], sub["error"])
        expected = cells.EXPECTED_ORDER[ode]
        rows.append({"problem": problem, "ode": ode, "variable": "h", "slope": slope, "expected": expected,
                     "within_0.15": bool(abs(slope - expected) <= TOLERANCE), "x_min": sub["learning_rate"].min(),
                     "x_max": sub["learning_rate"].max(), "points": len(sub)})
    big = read_table(out / "large_eps.csv")
    if len(big) >= 2:
        slope = order_slope(big["eps"], big["ode_vs_heavy_ball"])
        rows.append({"problem": "bilinear", "ode": "modified vs heavy-ball", "variable": "eps", "slope": slope,
                     "expected": -1.0, "within_0.15": bool(abs(slope + 1.0) <= TOLERANCE), "x_min": big["eps"].min(),
                     "x_max": big["eps"].max(), "points": len(big)})
    fit = pd.DataFrame(rows)
    _csv(out, "fit.csv", fit)
    return fit


def report(out: Path) -> str:
    out = Path(out)
    fmt = lambda v: f"{v:.4g}"  # noqa: E731
    parts = [("error orders (fit.csv)", read_table(out / "fit.csv")), ("Table 1 regimes (regimes.csv)", read_table(out / "regimes.csv")),
             ("digits grid (grid.csv)", read_table(out / "grid.csv"))]
    text = "\n\n".join(f"{title}\n{t.to_string(index=False, float_format=fmt)}" for title, t in parts if len(t))
    return text + f"\nwrote {out}/orders.csv, fit.csv, regimes.csv, large_eps.csv, grid.csv, implicit_bias.png, grid.png"


from ._implicit_plots import plot  # noqa: E402,F401
