"""The sde-fidelity experiment: which ingredient of Adam's and Adai's SDE models accounts for their gap.

On one escape-rate cell per (optimizer, sharpness k) of the fig6 landscape, the quasi-stationary escape rate
of the discrete optimizer is measured with one ingredient switched at a time (``run.discrete``, through
[`escape.optim.moment_ablation`][]) and so is that of each continuous-time model (``run.models``: the
papers' closures and the improved stochastic one with one of its ingredients dropped, through
[`escape.dynamics.make_dynamics`][] and [`escape.dynamics.solve_sde`][], ``dt = eta``). Every rate is
reported against the optimizer's own (``variant = "optimizer"``) on the same cell.

Outputs: ``results.csv`` (one row per optimizer, k, method, variant: rate, its exact 95% interval, counts,
the ratio to the optimizer's rate with a conservative interval), ``sde_fidelity.png``, ``manifest.json``.
Tutorial: docs/tutorials/sde_fidelity.md.
"""

import zlib
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from ._cells import run_cells
from ._config import ConfigError
from ._escape_rates import _build_landscape, quasi_stationary_rate, sharpness_key, swept_landscape_section
from ._io import atomic_write_text, finished_cells, read_table
from ._schema import (Integer, Key, ListOf, Schema, Section, String, batch_size_key, optimizer_table, particles_key,
                      seed_key)

# Discrete variants: moment_ablation's switches (the optimizer itself is the reference).
DISCRETE = {
    "optimizer": None,
    "no-bias-correction": {"bias_correction": False},
    "lagged-v": {"lagged_v": True},
    "mean-v": {"v": "mean"},
    "mean-v-no-bias-correction": {"v": "mean", "bias_correction": False},
    "frozen-v": {"v": "frozen", "bias_correction": False},
    "independent-v": {"v": "shifted"},
}
# Model variants: make_dynamics's closure and the stochastic closure's switches.
MODELS = {
    "quasi-static": {"closure": "quasi-static"},
    "augmented": {"closure": "augmented"},
    "stochastic": {"closure": "stochastic"},
    "stochastic-no-co-update": {"closure": "stochastic", "co_update": False},
    "stochastic-mean-v": {"closure": "stochastic", "v_noise": False, "co_update": False},
    "stochastic-no-bias-correction": {"closure": "stochastic", "bias_correction": False},
    "stochastic-shared-normal": {"closure": "stochastic", "shared_normal": True},
}
ALGORITHMS = ("adam", "adai")

SCHEMA = Schema(
    "sde-fidelity",
    "Escape rates of Adam and Adai with one ingredient switched at a time, in the discrete optimizer and in its "
    "SDE models, each against the optimizer's own rate on the same cell; `results.csv`, `sde_fidelity.png`. "
    "Tutorial: [SDE fidelity](tutorials/sde_fidelity.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "landscape": swept_landscape_section(),
            "run": Section({
                "sharpness": sharpness_key(),
                "discrete": Key(ListOf(String(tuple(DISCRETE)), "discrete variants", distinct=True), list(DISCRETE),
                                "the discrete optimizer's variants (\"optimizer\" is always run: the reference)"),
                "models": Key(ListOf(String(tuple(MODELS)), "model variants", distinct=True, min_len=0), list(MODELS),
                              "the continuous-time models (closures and the stochastic closure's ablations)"),
                "batch_size": batch_size_key(),
                "n_particles": particles_key(),
                "max_steps": Key(Integer(min=1), 200000, "horizon in iterations; particles still in are censored"),
                "chunk_size": Key(Integer(min=1), 2048, "steps per compiled chunk (speed only)"),
            }, "How every cell is run."),
            "optimizers": optimizer_table({
                "burn_in": Key(Integer(min=0), 0, "escapes before this step are the relaxation transient, reported apart"),
            }, "Adam or Adai entries (their hyperparameters as in fig6)."),
        },
    ),
    resumable=("run.chunk_size",),
)


def validate(config: dict) -> None:
    for label, entry in config["optimizers"].items():
        if entry["optimizer"] not in ALGORITHMS:
            raise ConfigError(f"config: optimizers.{label}.optimizer must be one of {', '.join(ALGORITHMS)} "
                              f"(the ablations exist for them), got {entry['optimizer']!r}")
        for k in config["run"]["sharpness"][:1]:
            for variant in _variants(config):
                try:
                    _build(config, label, variant, k)
                except (ValueError, TypeError) as e:
                    raise ConfigError(f"config: optimizers.{label}: {e}") from None


def _variants(config: dict) -> list[tuple[str, str]]:
    discrete = ["optimizer"] + [v for v in config["run"]["discrete"] if v != "optimizer"]
    return [("discrete", v) for v in discrete] + [("sde", v) for v in config["run"]["models"]]


def _settings(config: dict, label: str) -> tuple[str, dict, int]:
    spec = dict(config["optimizers"][label])
    name = spec.pop("optimizer")
    burn = int(spec.pop("burn_in", 0))
    return name, spec, burn


def _build(config: dict, label: str, variant: tuple[str, str], k: float):
    """The optax transformation or the model of a (method, variant) on the landscape at sharpness ``k``."""
    from ..dynamics import make_dynamics
    from ..optim import make_optimizer, moment_ablation

    name, hyper, _ = _settings(config, label)
    landscape = _build_landscape(config, k)
    batch = int(config["run"]["batch_size"])
    method, which = variant
    if method == "sde":
        return landscape, make_dynamics(name, landscape, batch_size=batch, **hyper, **MODELS[which])
    if DISCRETE[which] is None:
        return landscape, make_optimizer(name, **hyper)
    lr = hyper.pop("learning_rate")
    if hyper.pop("weight_decay", 0) != 0:
        raise ValueError("the ablations have no weight decay; use weight_decay = 0")
    return landscape, moment_ablation(name, lr, landscape=landscape, batch_size=batch, **DISCRETE[which], **hyper)


def cell_names(config: dict) -> list[str]:
    return [f"{label}__{method}__{variant}__k{float(k):g}" for label in config["optimizers"]
            for k in config["run"]["sharpness"] for method, variant in _variants(config)]


def _parse(name: str) -> tuple[str, str, str, float]:
    label, method, variant, k = name.split("__")
    return label, method, variant, float(k[1:])


def run_cell(config: dict, name: str) -> dict:
    from ..dynamics import solve_sde
    from ..simulate import escape_times

    label, method, variant, k = _parse(name)
    run = config["run"]
    key = jax.random.fold_in(jax.random.key(int(config.get("seed", 0))), zlib.crc32(name.encode()))
    landscape, built = _build(config, label, (method, variant), k)
    common = dict(n_particles=int(run["n_particles"]), key=key, chunk_size=int(run["chunk_size"]))
    if method == "sde":
        eta = float(config["optimizers"][label]["learning_rate"])
        res = solve_sde(built, t1=eta * int(run["max_steps"]), dt=eta, **common)
    else:
        res = escape_times(landscape, built, batch_size=int(run["batch_size"]), max_steps=int(run["max_steps"]), **common)
    return {"first_passage": np.asarray(res.first_passage), "first_divergence": np.asarray(res.first_divergence),
            "steps_run": np.asarray(res.steps_run)}


def _summary(name: str, cell: dict) -> str:
    return f"{name}: {int(np.sum(np.asarray(cell['first_passage']) >= 0))} escapes"


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every cell, then write results.csv and the figure."""
    return run_cells(__name__, config, out, cell_names(config), run_cell, progress=progress, summary=_summary)


COLUMNS = ["optimizer", "algorithm", "sharpness", "method", "variant", "rate", "rate_lower", "rate_upper",
           "escapes", "early_escapes", "censored", "diverged", "mean_escape_time", "ratio", "ratio_lower", "ratio_upper"]


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """results.csv: every finished cell's rate and its ratio to the optimizer's on the same (optimizer, k)."""
    rows = []
    for name, cell in finished_cells(out, cell_names(config)):
        label, method, variant, k = _parse(name)
        algorithm, _, burn = _settings(config, label)
        est, _, escaped, diverged, early = quasi_stationary_rate(cell["first_passage"], cell["first_divergence"],
                                                                 int(cell["steps_run"]), burn)
        rows.append({"optimizer": label, "algorithm": algorithm, "sharpness": k, "method": method, "variant": variant,
                     "rate": est.rate, "rate_lower": est.lower, "rate_upper": est.upper, "escapes": est.events,
                     "early_escapes": int(early.sum()), "censored": int((~escaped & ~diverged).sum()),
                     "diverged": int(diverged.sum()), "mean_escape_time": est.mean_time})
    table = pd.DataFrame(rows, columns=COLUMNS[:-3])
    ref = table[(table["method"] == "discrete") & (table["variant"] == "optimizer")].set_index(["optimizer", "sharpness"])
    ratio, lower, upper = [], [], []
    for _, row in table.iterrows():
        key = (row["optimizer"], row["sharpness"])
        if key in ref.index and ref.loc[key, "rate"] > 0 and row["rate"] > 0:
            r = ref.loc[key]
            ratio.append(row["rate"] / r["rate"])
            lower.append(row["rate_lower"] / r["rate_upper"])
            upper.append(row["rate_upper"] / r["rate_lower"] if r["rate_lower"] > 0 else np.inf)
        else:
            ratio.append(np.nan), lower.append(np.nan), upper.append(np.nan)
    table["ratio"], table["ratio_lower"], table["ratio_upper"] = ratio, lower, upper
    atomic_write_text(Path(out) / "results.csv", table.to_csv(index=False, float_format="%.6g"))
    return table


def write_fit(config: dict, out: Path, table=None):
    """Nothing is fitted (kept for the runner's interface)."""
    return table


def report(out: Path) -> str:
    t = read_table(Path(out) / "results.csv", COLUMNS)
    if not len(t):
        return "no results yet"
    cols = ["optimizer", "sharpness", "method", "variant", "rate", "escapes", "early_escapes", "diverged", "ratio"]
    return t[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}") + f"\nwrote {out}/results.csv, sde_fidelity.png"


def plot(out: Path) -> Path:
    """sde_fidelity.png: per optimizer and k, each variant's rate over the optimizer's, with its interval."""
    from ._plots import plt, save_figure

    out = Path(out)
    t = read_table(out / "results.csv", COLUMNS)
    groups = list(t.groupby(["optimizer", "sharpness"], sort=False)) if len(t) else []
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5.5 * max(len(groups), 1), 4.6), squeeze=False,
                             constrained_layout=True)
    for ax, ((label, k), sub) in zip(axes[0], groups):
        sub = sub[np.isfinite(sub["ratio"])]
        y = np.arange(len(sub))
        for method, colour in (("discrete", "C0"), ("sde", "C1")):
            pick = (sub["method"] == method).to_numpy()
            s = sub[pick]
            lo = (s["ratio"] - s["ratio_lower"]).where(s["ratio_lower"] > 0, 0.0)  # an open end draws no bar
            hi = (s["ratio_upper"] - s["ratio"]).where(np.isfinite(s["ratio_upper"]), 0.0)
            ax.errorbar(s["ratio"], y[pick], xerr=[lo, hi], fmt="o", color=colour, capsize=2)
        ax.set_yticks(y, [f"{m}: {v}" for m, v in zip(sub["method"], sub["variant"])], fontsize=7)
        ax.axvline(1.0, color="k", lw=0.8)
        for f in (1 / 1.5, 1.5):
            ax.axvline(f, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("escape rate / the optimizer's rate")
        ax.set_title(f"{label}, k = {k:g} (blue: discrete variants, orange: SDE models)", fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, out / "sde_fidelity.png")
