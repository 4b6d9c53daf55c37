"""The adam-dynamics experiment (Kaiser, "Exploring the Dynamics of Adam"): bounds, noise, saddle, valleys.

Parts (``run.parts``): ``bounds``, Props. 1 and 2 against an adversarial search over gradient histories;
``noise``, the variance of Adam's bias-corrected moments under i.i.d. gradient noise against step; ``saddle``,
steps to leave a ball about the saddle ``(y^2 - x^2) / 2`` per optimizer; ``valleys``, the smooth valley
``x^2 + 1e-3 y^2`` and the sharp valley ``|x| + 1e-4 |y|``: steps to come within a tolerance of the origin and
the periodic orbits of the tail; ``two-cycle``, Prop. 4's 2-cycle on ``C |x|`` (float64).

Outputs: ``bounds.csv``, ``noise.csv``, ``saddle.csv``, ``valleys.csv``, ``two_cycle.csv``,
``adam_dynamics.png``, ``manifest.json``; one cell per part (one per valley).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from . import _adam_cells as cells
from ._cells import run_cells
from ._config import ConfigError
from ._io import atomic_write_text, finished_cells, read_table
from ._schema import Integer, Key, ListOf, Number, OptionalSection, Schema, Section, String, parts_section, seed_key

PARTS = ("bounds", "noise", "saddle", "valleys", "two-cycle")


def _optimizers(default):
    return Key(ListOf(String(cells.OPTIMIZERS), "optimizer names", distinct=True), list(default),
               "optimizers, each at its default hyperparameters")


SCHEMA = Schema(
    "adam-dynamics",
    "Adam in flats, saddles and valleys: the step and flat bounds against an adversarial search, the noise "
    "profile of Adam's moments, the saddle race, the smooth and sharp valleys with their periodic orbits, and "
    "Prop. 4's 2-cycle; `bounds.csv`, `noise.csv`, `saddle.csv`, `valleys.csv`, `two_cycle.csv`, "
    "`adam_dynamics.png`. Tutorial: [Adam's dynamics](tutorials/adam_dynamics.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "run": parts_section(PARTS),
            "bounds": OptionalSection({
                "b1": Key(ListOf(Number(ge=0, lt=1), "betas in [0, 1)"), [0.9, 0.9, 0.5, 0.8], "b1 values, paired"),
                "b2": Key(ListOf(Number(ge=0, lt=1), "betas in [0, 1)"), [0.999, 0.99, 0.9, 0.95], "b2 values, paired"),
                "length": Key(Integer(min=2), 5000, "history length for optax's Adam (bias correction needs b2^length small)"),
                "plain_length": Key(Integer(min=2), 1000, "history length for the plain quantity"),
                "n_random": Key(Integer(min=1), 24, "random starts of the search (and 7 structured ones)"),
                "iterations": Key(Integer(min=1), 300, "gradient-ascent steps of the search"),
            }, "Props. 1 and 2 against the adversarial search."),
            "noise": OptionalSection({
                "b1": Key(Number(ge=0, lt=1), 0.9, "Adam's b1"),
                "b2": Key(Number(ge=0, lt=1), 0.999, "Adam's b2"),
                "mean": Key(Number(), 1.0, "mean of the gradient"),
                "std": Key(Number(gt=0), 1.0, "standard deviation of its noise"),
                "particles": Key(Integer(min=2), 4096, "independent noise sequences"),
                "steps": Key(Integer(min=1), 5000, "steps"),
            }, "Adam's moments under i.i.d. Gaussian gradient noise."),
            "saddle": OptionalSection({
                "optimizers": _optimizers(cells.OPTIMIZERS),
                "learning_rate": Key(Number(gt=0), 0.01, "the step size of every optimizer"),
                "start_radius": Key(Number(gt=0), 1e-3, "starts on this circle about the saddle"),
                "exit_radius": Key(Number(gt=0), 1.0, "leaving this ball is escaping"),
                "direction_radius": Key(Number(gt=0), 0.01, "where the direction of departure is read"),
                "n_starts": Key(Integer(min=1), 64, "starts, equally spaced in angle (none on an axis)"),
                "max_steps": Key(Integer(min=1), 5000, "horizon"),
            }, "The saddle H = diag(-1, 1)."),
            "valleys": OptionalSection({
                "optimizers": _optimizers(cells.OPTIMIZERS),
                "learning_rate": Key(Number(gt=0), 1e-3, "the step size of every optimizer"),
                "start": Key(ListOf(Number(), "two numbers", min_len=2), [1.0, 1.0], "start point (x, y)"),
                "steps": Key(Integer(min=1), 40000, "horizon"),
                "tolerance": Key(Number(gt=0), 1e-3, "distance to the origin that counts as arrived"),
                "max_period": Key(Integer(min=1), 128, "longest period the detector looks for"),
                "window": Key(Integer(min=2), 512, "iterates of the tail the detector compares"),
            }, "The smooth valley x^2 + 1e-3 y^2 and the sharp valley |x| + 1e-4 |y|."),
            "two_cycle": OptionalSection({
                "b1": Key(Number(ge=0, lt=1), 0.5, "Adam's b1 (at 0.9 Adam settles on longer orbits)"),
                "b2": Key(Number(ge=0, lt=1), 0.999, "Adam's b2"),
                "eps": Key(Number(ge=0), 1e-8, "optax's eps (outside the root)"),
                "learning_rate": Key(Number(gt=0), 1e-3, "step size"),
                "grad_magnitudes": Key(ListOf(Number(gt=0), "numbers > 0"), [1.0, 2.0], "C of the valley C |x|"),
                "start": Key(Number(), 9.249147277217336e-4, "start x (one that settles on the 2-cycle)"),
                "steps": Key(Integer(min=1), 30000, "horizon"),
            }, "Prop. 4's 2-cycle on the sharp valley, float64."),
        },
    ),
)


def validate(config: dict) -> None:
    b = config["bounds"]
    if len(b["b1"]) != len(b["b2"]):
        raise ConfigError("config: bounds.b1 and bounds.b2 must have the same length (they are paired)")
    for b1, b2 in zip(b["b1"], b["b2"]):
        if not b1 < np.sqrt(b2):
            raise ConfigError(f"config: bounds needs b1 < sqrt(b2) (the flat bound diverges), got b1={b1}, b2={b2}")
    if len(config["valleys"]["start"]) != 2:
        raise ConfigError("config: valleys.start must be two numbers (x, y)")
    v = config["valleys"]
    if v["steps"] < 2 * v["window"] + v["max_period"]:
        raise ConfigError("config: valleys.steps must be at least 2 valleys.window + valleys.max_period")
    sad = config["saddle"]
    if not sad["start_radius"] < sad["direction_radius"] <= sad["exit_radius"]:
        raise ConfigError("config: saddle needs start_radius < direction_radius <= exit_radius")
    if config["two_cycle"]["steps"] < 640:
        raise ConfigError("config: two_cycle.steps must be at least 640 (the detector's window)")


def cell_names(config: dict) -> list[str]:
    parts = config["run"]["parts"]
    names = [p for p in ("bounds", "noise", "saddle") if p in parts]
    names += ["valley-smooth", "valley-sharp"] if "valleys" in parts else []
    return names + (["two-cycle"] if "two-cycle" in parts else [])


def run_cell(config: dict, name: str) -> dict:
    if name.startswith("valley-"):
        return cells.valley(config, name.removeprefix("valley-"))
    return {"bounds": cells.bounds, "noise": cells.noise, "saddle": cells.saddle,
            "two-cycle": cells.two_cycle}[name](config)


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every cell of a resolved config, then write the tables and figures."""
    return run_cells(__name__, config, out, cell_names(config), run_cell, progress=progress)


BOUND_COLUMNS = ["b1", "b2", "step_bound", "flat_bound"] + [
    f"{q}_{v}_{w}" for q in ("step", "flat") for v in ("plain", "optax") for w in ("best", "best_random", "max_ratio")]
VALLEY_COLUMNS = ["steps_to_tolerance", "end_distance", "x_period", "y_period", "x_amplitude", "y_amplitude",
                  "x_attracting", "y_attracting"]


def _csv(out: Path, name: str, table: pd.DataFrame) -> None:
    atomic_write_text(out / name, table.to_csv(index=False, float_format="%.10g"))


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """bounds.csv, noise.csv, saddle.csv, valleys.csv and two_cycle.csv from the finished cells."""
    out = Path(out)
    done = dict(finished_cells(out, cell_names(config)))
    table = pd.DataFrame(done["bounds"]["rows"], columns=BOUND_COLUMNS) if "bounds" in done else pd.DataFrame()
    for q in ("step", "flat"):
        for v in ("plain", "optax"):
            if len(table):
                table[f"{q}_{v}_ratio"] = table[f"{q}_{v}_best"] / table[f"{q}_bound"]
    _csv(out, "bounds.csv", table)
    if "noise" in done:
        n = done["noise"]
        _csv(out, "noise.csv", pd.DataFrame({k: n[k] for k in ("step", "var_m", "exact_var_m", "var_v", "exact_var_v",
                                                                "bias_m", "bias_v")}))
    else:
        _csv(out, "noise.csv", pd.DataFrame())
    rows = []
    if "saddle" in done:
        s = done["saddle"]
        for name in config["saddle"]["optimizers"]:
            steps = s[f"{name}_steps"]
            ok = steps >= 0
            rows.append({"optimizer": name, "escaped": float(ok.mean()),
                         "median_steps": float(np.median(steps[ok])) if ok.any() else np.nan,
                         "min_steps": int(steps[ok].min()) if ok.any() else -1,
                         "max_steps": int(steps[ok].max()) if ok.any() else -1,
                         "median_exit_angle_deg": float(np.median(s[f"{name}_exit_angle"][ok])) if ok.any() else np.nan,
                         "median_direction_angle_deg": float(np.nanmedian(s[f"{name}_direction_angle"]))
                         if np.isfinite(s[f"{name}_direction_angle"]).any() else np.nan})
    _csv(out, "saddle.csv", pd.DataFrame(rows))
    rows = []
    for which in ("smooth", "sharp"):
        c = done.get(f"valley-{which}")
        for name in config["valleys"]["optimizers"] if c is not None else ():
            rows.append({"valley": which, "optimizer": name, **dict(zip(VALLEY_COLUMNS, c[name]))})
    _csv(out, "valleys.csv", pd.DataFrame(rows))
    cyc = done.get("two-cycle")
    _csv(out, "two_cycle.csv", pd.DataFrame(cyc["rows"], columns=[
        "grad_magnitude", "period", "attracting", "jump", "prop4_c_plus_eps", "prop4_seed_c2_plus_eps",
        "gradient_seen", "residual"]) if cyc is not None else pd.DataFrame())
    return table


def write_fit(config: dict, out: Path, table=None):
    """Nothing is fitted (kept for the runner's interface)."""
    return table


def report(out: Path) -> str:
    out = Path(out)
    fmt = lambda v: f"{v:.5g}"  # noqa: E731
    parts = []
    for title, name in (("bounds (eta = 1)", "bounds.csv"), ("saddle", "saddle.csv"), ("valleys", "valleys.csv"),
                        ("Prop. 4 two-cycle", "two_cycle.csv")):
        t = read_table(out / name)
        if len(t):
            if name == "bounds.csv":
                t = t[["b1", "b2", "step_bound", "flat_bound"] + [c for c in t if c.endswith("_ratio")]]
            parts.append(f"{title}\n{t.to_string(index=False, float_format=fmt)}")
    return "\n\n".join(parts) + f"\nwrote {out}/bounds.csv, noise.csv, saddle.csv, valleys.csv, two_cycle.csv, adam_dynamics.png"


def plot(out: Path) -> Path:
    """adam_dynamics.png: saddle trajectories (Fig. 2a), the two valleys' trajectories with quarter marks
    (Figs. 3, 4), x against step in both valleys (Fig. 5), and the noise profile of Adam's moments."""
    from ._plots import plt, save_figure

    out = Path(out)
    done = dict(finished_cells(out, ["saddle", "valley-smooth", "valley-sharp", "noise"]))
    fig, axes = plt.subplots(2, 3, figsize=(17, 10), constrained_layout=True)
    ax = axes[0, 0]
    for i, (k, path) in enumerate((k, v) for k, v in done.get("saddle", {}).items() if k.endswith("_path")):
        ax.plot(path[:, 0], path[:, 1], "-", color=f"C{i}", lw=1, label=k.removesuffix("_path"))
    ax.set_title("saddle (y^2 - x^2) / 2 from one start", fontsize=9)
    for j, which in enumerate(("smooth", "sharp")):
        c = done.get(f"valley-{which}", {})
        ax, ax5 = axes[0, 1 + j], axes[1, j]
        thin = int(c["thin"]) if "thin" in c else 1
        for i, (k, path) in enumerate((k, v) for k, v in c.items() if k.endswith("_path")):
            ax.plot(path[:, 0], path[:, 1], "-", color=f"C{i}", lw=0.8, label=k.removesuffix("_path"))
            q = [len(path) * f // 4 for f in (1, 2, 3)]
            ax.plot(path[q, 0], path[q, 1], "x", color=f"C{i}", ms=7)
            ax5.plot(np.arange(len(path)) * thin, path[:, 0], "-", color=f"C{i}", lw=0.7, label=k.removesuffix("_path"))
        ax.set_title(f"{which} valley (x marks a quarter, half, three quarters of the path)", fontsize=9)
        ax5.set_title(f"{which} valley: x against step", fontsize=9)
        ax5.set_xlabel("step")
        ax5.set_ylabel("x (w1)")
        ax5.set_xscale("symlog", linthresh=100)
        ax5.set_yscale("symlog", linthresh=1e-4)
        ax5.legend(fontsize=7)
    for a in (axes[0, 0], axes[0, 1], axes[0, 2]):
        a.set_xlabel("x (w1)")
        a.set_ylabel("y (w2)")
        a.legend(fontsize=7)
    ax = axes[1, 2]
    if "noise" in done:
        n = done["noise"]
        ax.loglog(n["step"], n["var_m"], label="Var(m_hat), simulated")
        ax.loglog(n["step"], n["exact_var_m"], "k--", lw=0.8, label="Var(m_hat), exact")
        ax.loglog(n["step"], n["var_v"], label="Var(v_hat), simulated")
        ax.loglog(n["step"], n["exact_var_v"], "k:", lw=0.8, label="Var(v_hat), exact")
        ax.loglog(n["step"], n["bias_m"], label="b1^t (bias term)")
        ax.loglog(n["step"], n["bias_v"], label="b2^t (bias term)")
        ax.set_ylim(1e-6, 10)
    ax.set_xlabel("step t")
    ax.set_title("Adam's moments under i.i.d. gradient noise", fontsize=9)
    ax.legend(fontsize=7)
    for a in axes.ravel():
        a.grid(alpha=0.3)
    return save_figure(fig, out / "adam_dynamics.png")
