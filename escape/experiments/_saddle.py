"""The saddle experiment (docs/theory.md §5): mean squared displacement from a quadratic saddle against iterations.

One landscape ``L = (1/2) sum_i h_i theta_i^2`` holds every escape direction at once (``h_i = -|H_i|``, the
``|H_i|`` of ``[landscape] abs_hessian``, optionally followed by confining directions ``confining``), with
Hessian noise ``C = |H| / B``. The landscape is separable, so each direction is its own experiment, except
for Adai, whose ``v_bar`` is the mean of ``v`` over every coordinate of the model (theory §2), exactly as in
[`escape.theory.adai_saddle_msd`][].

For each optimizer (``[optimizers.LABEL]``: ``optimizer`` name from ``escape.optim`` and its
hyperparameters, plus ``release``) and method (``discrete``: the optax optimizer through
a vectorised loop with the engine's noise model and counter-based words, see
:func:`discrete_positions`; ``sde``: its continuous-time model through
[`escape.dynamics.solve_sde`][], one solver step per iteration), the particles start at the saddle and
the optimizer state equilibrates for ``release`` iterations; the MSD at ``T`` iterations is
``<(theta(release + T) - theta(release))^2>``. ``release > 0`` gives the momentum methods the equilibrium
velocity that Theorem 2 assumes (from rest the short-time MSD of a phase-space model grows like ``t^3``).
Nothing escapes (``escape_radius`` is huge); positions are saved at every horizon of one set of paths.

Every (optimizer, method) cell is written atomically to ``cells/``; an interrupted run resumes. Outputs:
``results.csv`` (long: optimizer, method, |H|, T, MSD, standard error, with theory rows), ``table.csv``
(MSD at the ``table_horizons`` against |H| per optimizer and method, and the max/min ratio over |H|),
``saddle_<label>.png`` per optimizer and ``manifest.json``.
"""

import io
import json
import sys
import zlib
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from .. import theory
from ..dynamics import make_dynamics, solve_sde
from ..landscapes import Quadratic
from ..optim import make_optimizer
from ..simulate import escape_times
from .._distributed import is_writer
from ._cells import pending
from ._config import ConfigError, prepare_run_dir
from ._console import Console
from ._schema import (
    Integer,
    Key,
    ListOf,
    Number,
    REQUIRED,
    Schema,
    Section,
    String,
    batch_size_key,
    optimizer_table,
    particles_key,
    seed_key,
)
from ._io import atomic_write_bytes, atomic_write_text, load_cell, rebuild_outputs

METHODS = ("discrete", "sde", "sde-improved")
# The improved model of each optimizer: Adam's, RMSProp's and Adai's stochastic closure, SGD's and heavy ball's
# second-order stochastic modified equation (docs/models/).
IMPROVED = {"adam": {"closure": "stochastic"}, "rmsprop": {"closure": "stochastic"}, "adai": {"closure": "stochastic"},
            "adaiw": {"closure": "stochastic"}, "sgd": {"order": 2}, "momentum": {"order": 2}, "momentum-ema": {"order": 2}}
_THEORY_NAMES = {"sgd", "momentum", "momentum-ema", "adam", "adai"}

SCHEMA = Schema(
    "saddle",
    "Mean squared displacement from a quadratic saddle against iterations, per optimizer and method "
    "(discrete optimizer, SDE model) beside theory; `results.csv`, `table.csv`, `saddle_LABEL.png`. "
    "Tutorial: [saddle escape](tutorials/saddle.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "landscape": Section({
                "abs_hessian": Key(ListOf(Number(gt=0), "numbers > 0"), REQUIRED,
                                   "|H_i| of the escape directions (curvature -|H_i|)"),
                "confining": Key(ListOf(Number(gt=0), "numbers > 0", min_len=0), [],
                                 "curvatures of confining directions appended after them"),
                "noise": Key(String(("hessian",)), "hessian", "Hessian noise C = |H| / B"),
            }, "The saddle L = (1/2) sum_i h_i theta_i^2."),
            "run": Section({
                "horizons": Key(ListOf(Integer(min=1), "integers >= 1", increasing=True), REQUIRED,
                                "iterations T after release at which the MSD is measured"),
                "table_horizons": Key(ListOf(Integer(min=1), "integers >= 1"), REQUIRED,
                                      "the horizons reported in table.csv (a subset of horizons)"),
                "methods": Key(ListOf(String(METHODS), "\"discrete\", \"sde\" or \"sde-improved\"", distinct=True),
                               list(METHODS), "which simulations to run: the optimizer, the papers' SDE model, "
                               "the improved model (stochastic closure / second-order SME)"),
                "batch_size": batch_size_key(),
                "n_particles": particles_key(),
                "chunk_size": Key(Integer(min=1), 1024, "SDE steps per compiled chunk (speed only)"),
            }, "How every cell is run."),
            "optimizers": optimizer_table({
                "release": Key(Integer(min=0), 0, "iterations the optimizer state equilibrates before the MSD clock starts"),
            }, "The optimizers compared."),
        },
    ),
    resumable=("run.chunk_size", "run.table_horizons"),
)


def validate(config: dict) -> None:
    """Check a resolved saddle config beyond its types; one-line ConfigError naming the offending key."""
    run = config["run"]
    if not set(run["table_horizons"]) <= set(run["horizons"]):
        raise ConfigError("config: run.table_horizons must be a subset of run.horizons")
    landscape = build_landscape(config)
    for label in config["optimizers"]:
        name, hyper, release = optimizer_settings(config, label)
        try:
            make_optimizer(name, **hyper)
            make_dynamics(name, landscape, batch_size=int(run["batch_size"]), **hyper)
            if "sde-improved" in run.get("methods", METHODS):
                make_dynamics(name, landscape, batch_size=int(run["batch_size"]), **hyper, **IMPROVED.get(name, {}))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config: optimizers.{label}: {e}") from None


def build_landscape(config: dict) -> Quadratic:
    land = config["landscape"]
    h = [-float(a) for a in land["abs_hessian"]] + [float(c) for c in land.get("confining", [])]
    return Quadratic(h, noise="hessian", escape_radius=1e30)


def optimizer_settings(config: dict, label: str) -> tuple[str, dict, int]:
    spec = dict(config["optimizers"][label])
    if "optimizer" not in spec:
        raise ConfigError(f"config: optimizers.{label}.optimizer is missing")
    name = spec.pop("optimizer")
    release = spec.pop("release", 0)
    return name, spec, release


def _cells(config: dict) -> list[tuple[str, str]]:
    methods = config["run"].get("methods", list(METHODS))
    return [(label, m) for label in config["optimizers"] for m in methods]


def _cell_path(out: Path, label: str, method: str) -> Path:
    return Path(out) / "cells" / f"{label}__{method}.npz"


def work(config: dict) -> list:
    """Every cell's path under the run directory and its work (escape.experiments._cost): the CLI's estimate."""
    from ._cost import Work

    run_cfg = config["run"]
    dim = build_landscape(config).dim
    cells = []
    for label, method in _cells(config):
        name, _, release = optimizer_settings(config, label)
        steps = int(release) + int(max(run_cfg["horizons"]))
        w = Work("engine" if method == "discrete" else "sde", name, dim, int(run_cfg["n_particles"]), steps)
        cells.append((f"cells/{label}__{method}.npz", w))
    return cells


def _cell_key(seed: int, label: str, method: str):
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(f"{label}|{method}".encode()))


def _msd(displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over particles (axis -2) of the squared displacement."""
    sq = np.asarray(displacement, np.float64) ** 2
    n = sq.shape[-2]
    return sq.mean(axis=-2), sq.std(axis=-2, ddof=1) / np.sqrt(n)



def discrete_positions(landscape, optimizer, *, batch_size: int, n_particles: int, save_steps, key) -> np.ndarray:
    """Positions of ``n_particles`` discrete optimizers started at the landscape's initial point, after each
    of ``save_steps`` (sorted) iterations: shape ``(saves, particles, dim)``. The engine's stepping core
    ([`escape.simulate.escape_times`][] with ``save_steps``): the same noise model and counter-based words as
    the first-passage times (particle ``p``'s gradient noise at step ``t`` depends only on ``(key, p, t)``)."""
    saves = np.asarray(save_steps, np.int64)
    result = escape_times(landscape, optimizer, batch_size=batch_size, n_particles=n_particles,
                          max_steps=max(int(saves.max()), 1), key=key, save_steps=saves)
    index = np.searchsorted(np.asarray(result.saved_steps), saves)
    return np.asarray(result.positions, np.float64)[index]


def run_cell(config: dict, label: str, method: str, *, progress: bool = False) -> dict:
    """MSD per horizon and direction of one (optimizer, method) cell: ``{"T", "msd", "se"}``."""
    run_cfg = config["run"]
    name, hyper, release = optimizer_settings(config, label)
    landscape = build_landscape(config)
    horizons = np.asarray(run_cfg["horizons"], np.int64)
    n, batch = int(run_cfg["n_particles"]), int(run_cfg["batch_size"])
    key = _cell_key(int(config.get("seed", 0)), label, method)
    if method == "discrete":
        optimizer = make_optimizer(name, **hyper)
        saves = np.concatenate([[release], release + horizons])
        ys = discrete_positions(landscape, optimizer, batch_size=batch, n_particles=n, save_steps=saves, key=key)
        if not np.all(np.isfinite(ys)):
            raise RuntimeError(f"saddle: {label} diverged in the discrete run")
        start, pos = ys[0], ys[1:]
    elif method in ("sde", "sde-improved"):
        dyn = make_dynamics(name, landscape, batch_size=batch, **hyper,
                            **(IMPROVED.get(name, {}) if method == "sde-improved" else {}))
        eta = float(hyper["learning_rate"])
        steps = np.concatenate([[release], release + horizons])
        res = solve_sde(
            dyn, n_particles=n, t1=eta * float(steps[-1]), dt=eta, key=key, saveat_times=eta * steps.astype(np.float64),
            escape=False, chunk_size=int(run_cfg.get("chunk_size", 1024)), progress=progress,
        )
        ys = np.asarray(res.positions, np.float64)
        if not np.all(np.isfinite(ys)):
            raise RuntimeError(f"saddle: {label} diverged in the SDE run")
        start, pos = ys[0], ys[1:]
    else:
        raise ConfigError(f"config: unknown method {method!r}")
    msd, se = _msd(pos - start[None])
    return {"T": horizons, "msd": msd, "se": se}


def theory_msd(config: dict, label: str, horizons) -> np.ndarray | None:
    """The escape.theory MSD (shape ``(horizons, dim)``) of an optimizer, or None where there is none."""
    name, hyper, _ = optimizer_settings(config, label)
    if name not in _THEORY_NAMES:
        return None
    h = np.array(build_landscape(config)._h64)
    batch = int(config["run"]["batch_size"])
    eta = float(hyper["learning_rate"])
    c = np.abs(h) / batch
    t = eta * np.asarray(horizons, np.float64)[:, None]
    if name == "sgd":
        return theory.sgd_saddle_msd(t, h, eta * c / 2)
    if name in ("momentum", "momentum-ema"):
        m, gam = theory.heavy_ball_coefficients(eta, hyper.get("beta", 0.9), "sgd" if name == "momentum" else "ema")
        return theory.momentum_saddle_msd(t, h, m, gam, eta * c / 2)
    if name == "adam":
        return theory.adam_saddle_msd(t, h, c, learning_rate=eta, b1=hyper.get("b1", 0.9), eps=hyper.get("eps", 1e-8))
    return theory.adai_saddle_msd(t, h, c, learning_rate=eta, beta0=hyper.get("beta0", 0.1), eps=hyper.get("eps", 1e-3))


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every cell of a resolved config, then write results.csv, table.csv and the figures."""
    out = prepare_run_dir(out, config)
    cells = _cells(config)
    todo = pending(cells, lambda c: _cell_path(out, *c).exists())
    console = Console(progress, len(cells), done=len(cells) - len(todo), unit="cell", where=out)
    try:
        for label, method in todo:
            console.begin(f"{label}/{method}")
            cell = run_cell(config, label, method, progress=console.inner)
            buf = io.BytesIO()
            np.savez(buf, **cell)
            atomic_write_bytes(_cell_path(out, label, method), buf.getvalue())
            i = int(np.argmin(np.abs(cell["T"] - max(config["run"]["table_horizons"]))))
            console.done(f"{label}/{method}: MSD at T={int(cell['T'][i])} from {cell['msd'][i].min():.3g} to "
                         f"{cell['msd'][i].max():.3g} over |H|")
    finally:
        console.close()
    if not is_writer():  # a multi-process run: tables and figures are process 0's
        return None
    return rebuild_outputs(sys.modules[__name__], config, out)


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """Rebuild results.csv (long format, theory rows included) from the finished cells."""
    abs_h = np.abs(np.array(build_landscape(config)._h64))
    n_esc = len(config["landscape"]["abs_hessian"])
    horizons = np.asarray(config["run"]["horizons"])
    rows = []
    for label in config["optimizers"]:
        name = config["optimizers"][label]["optimizer"]
        blocks = []
        for method in config["run"].get("methods", list(METHODS)):
            path = _cell_path(out, label, method)
            if path.exists():
                cell = load_cell(path, ("T", "msd", "se"))
                blocks.append((method, cell["msd"], cell["se"]))
        th = theory_msd(config, label, horizons)
        if th is not None:
            blocks.append(("theory", th, np.full_like(th, np.nan)))
        for method, msd, se in blocks:
            for i in range(n_esc):
                for j, t in enumerate(horizons):
                    rows.append({
                        "optimizer": label, "algorithm": name, "method": method, "abs_hessian": float(abs_h[i]),
                        "T": int(t), "msd": float(msd[j, i]), "msd_se": float(se[j, i]),
                    })
    table = pd.DataFrame(rows, columns=["optimizer", "algorithm", "method", "abs_hessian", "T", "msd", "msd_se"])
    atomic_write_text(Path(out) / "results.csv", table.to_csv(index=False, float_format="%.10g"))
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """table.csv: MSD at each of ``run.table_horizons`` against |H|, per optimizer and method, with the
    ratio MSD(max |H|) / MSD(min |H|) and the log-log slope of MSD against |H| over the two smallest |H|."""
    out = Path(out)
    if table is None:
        table = pd.read_csv(out / "results.csv")
    rows = []
    for (label, method, t), sub in table[table["T"].isin(config["run"]["table_horizons"])].groupby(
        ["optimizer", "method", "T"], sort=False
    ):
        sub = sub.sort_values("abs_hessian")
        h, m = sub["abs_hessian"].to_numpy(), sub["msd"].to_numpy()
        row = {"optimizer": label, "method": method, "T": int(t)}
        row.update({f"H={x:.3g}": y for x, y in zip(h, m)})
        row["ratio_max_min"] = m[-1] / m[0]
        row["slope_small_h"] = float(np.log(m[1] / m[0]) / np.log(h[1] / h[0])) if len(h) > 1 else np.nan
        rows.append(row)
    fit = pd.DataFrame(rows)
    atomic_write_text(out / "table.csv", fit.to_csv(index=False, float_format="%.6g"))
    return fit


def report(out: Path) -> str:
    """The table (MSD ratio over |H| and small-|H| slope) as text."""
    path = Path(out) / "table.csv"
    if not path.exists():
        return "no table.csv yet"
    fit = pd.read_csv(path)
    cols = ["optimizer", "method", "T", "ratio_max_min", "slope_small_h"]
    return fit[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}")


def plot(out: Path) -> Path:
    """One log-log figure per optimizer, a colour per |H|: discrete points, the papers' SDE model dotted, the
    improved model solid, theory dashed."""
    from ._plots import plt, save_figure

    out = Path(out)
    config = json.loads((out / "manifest.json").read_text())["config"]
    table = pd.read_csv(out / "results.csv")
    hs = sorted(table["abs_hessian"].unique())
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(hs)))
    first = None
    for label in config["optimizers"]:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        for h, col in zip(hs, colours):
            sub = table[(table["optimizer"] == label) & (table["abs_hessian"] == h)]
            for method, style in (("discrete", dict(ls="none", marker="o", ms=3.5)),
                                  ("sde", dict(ls=":", lw=1.2)), ("sde-improved", dict(ls="-", lw=1.4)),
                                  ("theory", dict(ls="--", lw=0.8, alpha=0.7))):
                s = sub[sub["method"] == method]
                if len(s):
                    ax.plot(s["T"], s["msd"], color=col, **style,
                            label=f"|H|={h:.2g}" if method == "discrete" else None)
        for method, style, text in (("discrete", dict(ls="none", marker="o", ms=3.5), "discrete optimizer"),
                                    ("sde", dict(ls=":", lw=1.2), "SDE, papers' closure"),
                                    ("sde-improved", dict(ls="-", lw=1.4), "SDE, improved model"),
                                    ("theory", dict(ls="--", lw=0.8), "theory")):
            if (table[table["optimizer"] == label]["method"] == method).any():
                ax.plot([], [], color="0.3", **style, label=text)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iterations T after release")
        ax.set_ylabel(r"MSD $\langle(\theta(T)-\theta(0))^2\rangle$")
        ax.set_title(f"{label}: points discrete; dotted the papers' SDE, solid the improved one; dashed theory",
                     fontsize=8)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = save_figure(fig, out / f"saddle_{label}.png")
        first = first or path
    return first
