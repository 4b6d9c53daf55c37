"""The escape-rate experiment (paper Fig. 6): rates against sharpness for several optimizers.

Config sections: ``[landscape]`` (registry name and parameters; ``sharpness`` is swept), ``[run]``
(batch size, particles, horizon, the sharpness list, mode), ``[optimizers.LABEL]`` (``optimizer`` name
from ``escape.optim`` plus its hyperparameters; optional ``batch_size`` / ``max_steps`` per optimizer),
``[fit]`` (prefactor term and the quasi-equilibrium window). Every (optimizer, k) cell is one call of
:func:`escape.simulate.escape_times` with a key derived from (seed, label, k) only, so cells can run in
any order, and each finished cell is written atomically: an interrupted run resumes where it stopped
and produces the same ``results.csv``.
"""

import functools
import inspect
import io
import json
import zlib
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from .. import stats
from ..stats._fit import _DEFAULT_GRID as P_GRID
from ..landscapes import make_landscape
from ..optim import make_optimizer
from ..simulate import escape_times, passage_masks
from ._config import ConfigError, _resolved_or_raw, prepare_run_dir, stored_config
from ._console import Console
from ._schema import (
    Anything,
    Boolean,
    Integer,
    Key,
    ListOf,
    Literal,
    Number,
    OneOf,
    OptionalSection,
    REQUIRED,
    Schema,
    Section,
    describe_diff,
    without,
    String,
    UNSET,
    batch_size_key,
    optimizer_table,
    particles_key,
    seed_key,
)
from .._distributed import is_writer
from ._cells import pending
from ._io import atomic_write_bytes, atomic_write_text, load_cell

RESULT_COLUMNS = [
    "optimizer", "algorithm", "sharpness", "learning_rate", "batch_size", "rate", "rate_lower", "rate_upper",
    "paper_rate", "paper_lower", "paper_upper", "particles", "escapes", "early_escapes", "burn_in", "censored", "diverged",
    "mean_escape_time", "ks_pvalue", "steps_run", "barrier", "hessian_min", "in_window",
]

CELL_KEYS = ("first_passage", "first_divergence", "steps_run")  # the arrays a cell file's row is made of


def _landscape_keys(name: str) -> dict:
    """The parameters of a landscape (besides the swept ``sharpness``), defaults from its constructor."""
    import inspect

    from ..landscapes import LANDSCAPES, NOISE_MODELS

    specs = {
        "dim": (Integer(min=1), "number of coordinates"),
        "noise": (String(NOISE_MODELS), "gradient-noise model (theory §1)"),
        "n_data": (OneOf(Integer(min=2), Literal("fresh")), 'size of the fixed data set, or "fresh" samples every step'),
        "data_seed": (Integer(min=0), "seed of the fixed data set (unused with fresh samples)"),
        "sigma": (Number(gt=0), 'noise standard deviation for noise = "isotropic"'),
    }
    out = {}
    for p, par in inspect.signature(LANDSCAPES[name].__init__).parameters.items():
        if p in ("self", "sharpness"):
            continue
        spec, doc = specs.get(p, (Anything(), f"parameter of {name}"))
        out[p] = Key(spec, UNSET if par.default in (None, inspect.Parameter.empty) else par.default, doc)
    return out


def _swept_landscapes() -> tuple[str, ...]:
    import inspect

    from ..landscapes import LANDSCAPES

    return tuple(n for n, c in LANDSCAPES.items() if "sharpness" in inspect.signature(c.__init__).parameters)


def swept_landscape_section() -> Section:
    """``[landscape]`` of an experiment that sweeps the sharpness k of ``L_k`` (fig6, sde-fidelity)."""
    return Section(
        {"name": Key(String(_swept_landscapes()), REQUIRED, "the landscape (its sharpness k is swept)")},
        "The landscape L_k; `sharpness` comes from `run.sharpness`.",
        dynamic=("name", _landscape_keys),
        dynamic_doc="and the landscape's parameters",
    )


def sharpness_key() -> Key:
    return Key(ListOf(Number(gt=0), "numbers > 0", distinct=True), REQUIRED, "the values of k swept")


SCHEMA = Schema(
    "escape-rates",
    "Escape rates against sharpness (paper Fig. 6): one cell per (optimizer, k), each an `escape_times` run "
    "(or an SDE solve with `run.mode = \"sde\"`); `results.csv`, `fit.csv`, `escape_rates.png`. "
    "Tutorial: [Fig. 6](tutorials/fig6.md).",
    Section(
        {"seed": seed_key(),
         "pooled_from": Key(Anything("a list of tables"), UNSET, "set by `escape pool`: the runs pooled here")},
        sections={
            "landscape": swept_landscape_section(),
            "run": Section({
                "sharpness": sharpness_key(),
                "mode": Key(String(("discrete", "sde")), "discrete",
                            "the discrete optimizers, or their continuous-time models (one solver step per iteration)"),
                "closure": Key(String(("quasi-static", "augmented", "stochastic")), "quasi-static",
                               "SDE mode: the second-moment closure of the Adam, RMSProp and Adai models "
                               "(the papers' quasi-static, or the improved stochastic one; docs/models/adam.md)"),
                "order": Key(Integer(min=1, max=2), 1,
                             "SDE mode: order in eta of the SGD and heavy-ball models (2: the stochastic modified equation)"),
                "shared_normal": Key(Boolean(), False,
                                     "SDE mode, stochastic closure: draw the noise of g^2 from the gradient's own normal "
                                     "(a weak scheme of the same SDE that keeps, at dt = eta, the optimizer's dependence "
                                     "between a kick and its square; docs/models/adai.md)"),
                "batch_size": batch_size_key(),
                "n_particles": particles_key(),
                "max_steps": Key(Integer(min=1), 100000, "horizon in iterations; particles still in are censored"),
                "chunk_size": Key(Integer(min=1), 2048, "steps per compiled chunk (speed only; results do not change)"),
            }, "How every cell is run."),
            "optimizers": optimizer_table({
                "burn_in": Key(Integer(min=0), 0, "escapes before this step are the relaxation transient, reported apart"),
                "batch_size": Key(Integer(min=1), UNSET, "this optimizer's batch size (default: run.batch_size)"),
                "max_steps": Key(Integer(min=1), UNSET, "this optimizer's horizon (default: run.max_steps)"),
            }, "The optimizers compared."),
            "fit": OptionalSection({
                "prefactor": Key(OneOf(String(("none", "fit", "tied")), Number()), "none",
                                 "Kramers prefactor term -q log k: none, a fixed q, fitted, or tied to p"),
                "min_mean_steps": Key(Number(ge=0), 50, "quasi-equilibrium window: least mean escape time fitted"),
                "max_mean_steps": Key(Number(ge=0), 100000.0, "quasi-equilibrium window: largest mean escape time fitted"),
                "bootstrap": Key(Integer(min=1), UNSET, "bootstrap replicates for an interval of p (over particles)"),
            }, "The fit of -log rate = a + b k^-p over the cells inside the window."),
        },
    ),
    resumable=("run.chunk_size", "fit"),
)


def validate(config: dict) -> None:
    """Check a resolved escape-rate config beyond its types (one-line ConfigError naming the key): the
    fit window, and that every optimizer, landscape (and SDE model) builds."""
    run = config["run"]
    _validate_fit(config.get("fit", {}))
    ks = run["sharpness"]
    # Build everything once so that bad names and hyperparameters fail before any work.
    for label in config["optimizers"]:
        _build_optimizer(config, label)
    for k in ks:
        _build_landscape(config, k)
    if run.get("mode", "discrete") == "sde":
        for label in config["optimizers"]:
            _build_dynamics(config, label, ks[0])


def _window(fit: dict) -> tuple:
    """The quasi-equilibrium window of mean escape times fitted (``[fit]`` keys, default [50, 1e5] steps)."""
    return fit.get("min_mean_steps", 50), fit.get("max_mean_steps", 1e5)


def _validate_fit(fit: dict) -> None:
    """The fit window's order (the schema has checked each bound's type and sign)."""
    lo, hi = _window(fit)
    if lo >= hi:
        raise ConfigError(f"config: fit.min_mean_steps ({lo}) must be below fit.max_mean_steps ({hi})")


def _build_dynamics(config: dict, label: str, k: float):
    """The continuous-time model of ``label`` (``run.mode = "sde"``): ``escape.dynamics.make_dynamics``."""
    from ..dynamics import DYNAMICS, make_dynamics

    name, hyper, over = _optimizer_settings(config, label)
    run = config["run"]
    accepted = inspect.signature(DYNAMICS[name]).parameters
    model = {key: run[key] for key in ("closure", "order", "shared_normal") if key in run and key in accepted}
    if model.get("closure") != "stochastic":
        model.pop("shared_normal", None)
    try:
        return make_dynamics(
            name, _build_landscape(config, k), batch_size=int(over.get("batch_size", run["batch_size"])), **hyper, **model
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config: optimizers.{label}: {e}") from None


def _build_landscape(config: dict, k: float):
    params = dict(config["landscape"])
    name = params.pop("name", None)
    if name is None:
        raise ConfigError("config: landscape.name is missing")
    try:
        return make_landscape(name, **params, sharpness=float(k))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _optimizer_settings(config: dict, label: str) -> tuple[str, dict, dict]:
    spec = dict(config["optimizers"][label])
    if "optimizer" not in spec:
        raise ConfigError(f"config: optimizers.{label}.optimizer is missing")
    name = spec.pop("optimizer")
    overrides = {k: spec.pop(k) for k in ("batch_size", "max_steps", "burn_in") if k in spec}
    burn = overrides.get("burn_in", 0)
    if isinstance(burn, bool) or not isinstance(burn, int) or burn < 0:
        raise ConfigError(f"config: optimizers.{label}.burn_in must be an integer >= 0, got {burn!r}")
    return name, spec, overrides


def _build_optimizer(config: dict, label: str):
    name, hyper, _ = _optimizer_settings(config, label)
    try:
        return make_optimizer(name, **hyper)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config: optimizers.{label}: {e}") from None


def _cell_name(label: str, k: float) -> str:
    return f"{label}__k{float(k):g}"


def work(config: dict) -> list:
    """Every cell's path under the run directory and its work (escape.experiments._cost): the CLI's estimate."""
    from ._cost import Work

    run_cfg = config["run"]
    method = "sde" if run_cfg.get("mode", "discrete") == "sde" else "engine"
    cells = []
    for label in config["optimizers"]:
        name, _, over = _optimizer_settings(config, label)
        steps = int(over.get("max_steps", run_cfg["max_steps"]))
        w = Work(method, name, int(config["landscape"]["dim"]), int(run_cfg["n_particles"]), steps)
        cells += [(f"cells/{_cell_name(label, k)}.npz", w) for k in run_cfg["sharpness"]]
    return cells


def _cell_key(seed: int, label: str, k: float):
    tag = zlib.crc32(f"{label}|{float(k)!r}".encode())
    return jax.random.fold_in(jax.random.key(seed), tag)


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every cell of a resolved config, then write results.csv, fit.csv and the figure."""
    out = prepare_run_dir(out, config)
    run_cfg = config["run"]
    seed = int(config.get("seed", 0))
    cells = [(label, k) for label in config["optimizers"] for k in run_cfg["sharpness"]]
    todo = pending(cells, lambda c: (out / "cells" / f"{_cell_name(*c)}.npz").exists())
    console = Console(progress, len(cells), done=len(cells) - len(todo), unit="cell", where=out)
    optimizers = {}  # one object per label: cells of a label share one compiled engine chunk
    try:
        for label, k in todo:
            console.begin(_cell_name(label, k))
            _, hyper, over = _optimizer_settings(config, label)
            if run_cfg.get("mode", "discrete") == "sde":
                # One solver step per iteration (dt = eta), horizon eta * max_steps; times come back in iterations.
                from ..dynamics import solve_sde

                eta = float(hyper["learning_rate"])
                res = solve_sde(
                    _build_dynamics(config, label, k),
                    n_particles=int(run_cfg["n_particles"]),
                    t1=eta * int(over.get("max_steps", run_cfg["max_steps"])),
                    dt=eta,
                    key=_cell_key(seed, label, k),
                    chunk_size=int(run_cfg.get("chunk_size", 2048)),
                    progress=console.inner,
                )
            else:
                res = escape_times(
                    _build_landscape(config, k),
                    optimizers.setdefault(label, _build_optimizer(config, label)),
                    batch_size=int(over.get("batch_size", run_cfg["batch_size"])),
                    n_particles=int(run_cfg["n_particles"]),
                    max_steps=int(over.get("max_steps", run_cfg["max_steps"])),
                    chunk_size=int(run_cfg.get("chunk_size", 2048)),
                    key=_cell_key(seed, label, k),
                    progress=console.inner,
                )
            buf = io.BytesIO()
            np.savez(
                buf,
                first_passage=np.asarray(res.first_passage),
                first_divergence=np.asarray(res.first_divergence),
                steps_run=res.steps_run,
                max_steps=res.max_steps,
            )
            atomic_write_bytes(out / "cells" / f"{_cell_name(label, k)}.npz", buf.getvalue())
            if not is_writer():  # a multi-process run: process 0 writes and reports
                console.done(_cell_name(label, k))
                continue
            table = write_results(config, out)
            row = table[(table["optimizer"] == label) & (table["sharpness"] == float(k))].iloc[0]
            console.done(cell_line(row))
    finally:
        console.close()
    return _finish(config, out)[0] if is_writer() else None


def cell_line(row) -> str:
    """One line about a finished cell: its counts (early escapes included) and its rate."""
    early = f" (+{int(row['early_escapes'])} before burn-in {int(row['burn_in'])})" if row["early_escapes"] else ""
    rate = (f"rate {row['rate']:.3g} [{row['rate_lower']:.3g}, {row['rate_upper']:.3g}]"
            if row["escapes"] else "no escape after burn-in: no rate")
    return (f"{row['optimizer']} k={row['sharpness']:g}: {int(row['escapes'])} escapes{early}, "
            f"{int(row['censored'])} censored, {int(row['diverged'])} diverged; {rate}")


def _finish(config: dict, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write results.csv, fit.csv and the figure from the finished cells; the two tables."""
    table = write_results(config, out)
    fit_table = write_fit(config, out, table)
    from ._plots import plot_escape_rates

    plot_escape_rates(out)
    return table, fit_table


@functools.lru_cache(maxsize=256)
def _landscape_summary(landscape_json: str, k: float) -> tuple[float, float]:
    """(barrier, smallest Hessian eigenvalue at the minimum) of the landscape at sharpness k.

    results.csv is rebuilt after every cell; building a landscape (its data set, its critical points) per
    row each time cost ~0.1 s a row, so the summary is computed once per (landscape config, k).
    """
    cp = _build_landscape({"landscape": json.loads(landscape_json)}, k).critical_points()
    barrier = cp.barrier if cp.barrier is not None else np.nan
    hessian_min = float(np.min(cp.hessian_minimum)) if cp.hessian_minimum is not None else np.nan
    return barrier, hessian_min


def quasi_stationary_rate(fp, fd, steps_run: int, burn: int):
    """The censored MLE of the rate after ``burn`` steps: ``(estimate, times, escaped, diverged, early)``.

    Left-truncated at ``burn``: memorylessness makes the survivors' residual times exponential with the same
    rate; escapes before ``burn`` are the relaxation transient (``early``), reported apart.
    """
    escaped, diverged, _ = (np.asarray(m) for m in passage_masks(fp, fd))
    fp = np.asarray(fp)
    times = np.where(escaped, fp, steps_run).astype(float)
    early = escaped & (fp <= burn)
    keep = ~early
    est = stats.censored_rate(times[keep] - burn, escaped[keep], steps_run - burn, diverged=diverged[keep])
    return est, times, escaped, diverged, early


def _cell_row(config: dict, label: str, k: float, cell: dict) -> dict:
    fp, fd = cell["first_passage"], cell["first_divergence"]
    steps_run = int(cell["steps_run"])
    name, hyper, over = _optimizer_settings(config, label)
    burn = int(over.get("burn_in", 0))
    est, times, escaped, diverged, early = quasi_stationary_rate(fp, fd, steps_run, burn)
    keep = ~early
    lo, hi = _window(config.get("fit", {}))
    if escaped.all():
        pr = stats.paper_rate(times)
        paper = (pr.rate, pr.lower, pr.upper)
    else:
        paper = (np.nan, np.nan, np.nan)
    late = escaped & keep
    ks_p = (
        stats.exponential_ks(times[keep] - burn, escaped[keep], steps_run - burn, diverged=diverged[keep]).pvalue
        if late.sum() >= 5
        else np.nan
    )
    barrier, hessian_min = _landscape_summary(json.dumps(config["landscape"], sort_keys=True), float(k))
    mean_time = est.mean_time
    return {
        "optimizer": label,
        "algorithm": name,
        "sharpness": float(k),
        "learning_rate": hyper.get("learning_rate", np.nan),
        "batch_size": int(over.get("batch_size", config["run"]["batch_size"])),
        "rate": est.rate,
        "rate_lower": est.lower,
        "rate_upper": est.upper,
        "paper_rate": paper[0],
        "paper_lower": paper[1],
        "paper_upper": paper[2],
        "particles": int(fp.shape[0]),
        "escapes": int(late.sum()),
        "early_escapes": int(early.sum()),
        "burn_in": burn,
        "censored": int((~escaped & ~diverged).sum()),
        "diverged": int(diverged.sum()),
        "mean_escape_time": mean_time,
        "ks_pvalue": ks_p,
        "steps_run": steps_run,
        "barrier": barrier,
        "hessian_min": hessian_min,
        "in_window": bool(est.events > 0 and lo <= mean_time <= hi),
    }


def results_table(config: dict, out: Path) -> pd.DataFrame:
    """The results table of the finished cell files of ``out`` under ``config`` (writes nothing)."""
    rows = []
    for label in config["optimizers"]:
        for k in config["run"]["sharpness"]:
            path = Path(out) / "cells" / f"{_cell_name(label, k)}.npz"
            if path.exists():
                rows.append(_cell_row(config, label, k, load_cell(path, CELL_KEYS)))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """Rebuild results.csv from the finished cell files (deterministic given the cells)."""
    table = results_table(config, out)
    atomic_write_text(Path(out) / "results.csv", table.to_csv(index=False, float_format="%.10g"))
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fit -log rate against k per optimizer over the cells inside the quasi-equilibrium window."""
    out = Path(out)
    if table is None:
        table = pd.read_csv(out / "results.csv")
    fit_table = fit_sharpness(config, table)
    atomic_write_text(out / "fit.csv", fit_table.to_csv(index=False, float_format="%.10g"))
    return fit_table


def fit_sharpness(config: dict, table: pd.DataFrame) -> pd.DataFrame:
    """One row per optimizer: the exponent fit over its in-window cells of ``table`` (writes nothing)."""
    fit_cfg = config.get("fit", {})
    prefactor = fit_cfg.get("prefactor", None)
    if prefactor == "none":
        prefactor = None
    rows = []
    for label in config["optimizers"]:
        sub = table[(table["optimizer"] == label) & table["in_window"].astype(bool)]
        row = {"optimizer": label, "n_cells": int(len(sub))}
        try:
            fit = stats.fit_sharpness_exponent(
                sub["sharpness"].to_numpy(),
                sub["rate"].to_numpy(),
                events=sub["escapes"].to_numpy(),
                prefactor=prefactor,
                bootstrap=fit_cfg.get("bootstrap"),
                seed=0,
            )
            row.update(fit.to_dict())
        except ValueError as e:
            need = 4 if prefactor == "fit" else 3
            lo, hi = _window(fit_cfg)
            have = int(sub.loc[sub["escapes"] > 0, "sharpness"].nunique())
            row["note"] = (f"no fit: {have} value{'s' * (have != 1)} of k with escapes inside the fit window "
                           f"[{lo:g}, {hi:g}] mean escape steps; the model needs {need}"
                           + _why_outside(table[table["optimizer"] == label], label) if have < need else f"no fit: {e}")
        row["warning"] = fit_warning(row)
        rows.append(row)
    return pd.DataFrame(rows)


def _why_outside(rows: pd.DataFrame, label: str) -> str:
    """Why cells fell outside the fit, and the knob for each reason."""
    ks = lambda mask: ", ".join(f"{k:g}" for k in rows.loc[mask, "sharpness"])  # noqa: E731
    early = (rows["escapes"] == 0) & (rows["early_escapes"] > 0)
    none = (rows["escapes"] == 0) & (rows["early_escapes"] == 0)
    outside = (rows["escapes"] > 0) & ~rows["in_window"].astype(bool)
    reasons = []
    if early.any():
        reasons.append(f"at k = {ks(early)} every escape came before burn-in (lower optimizers.{label}.burn_in or "
                       "the learning rate)")
    if none.any():
        reasons.append(f"at k = {ks(none)} no particle escaped (raise run.max_steps or the learning rate)")
    if outside.any():
        reasons.append(f"at k = {ks(outside)} the mean escape time lies outside the window (widen run.sharpness or "
                       "fit.min_mean_steps / fit.max_mean_steps)")
    return ": " + "; ".join(reasons) if reasons else " (widen run.sharpness)"


def fit_warning(row: dict) -> str:
    """What a reader of one fit row should be told, in words ("" when nothing): no fit, an estimate at
    the edge of the searched p range, or zero degrees of freedom."""
    if "p_hat" not in row or not np.isfinite(row.get("p_hat", np.nan)):
        return row.get("note", "no fit")
    notes = []
    if row.get("p_at_grid_edge"):
        notes.append(f"p = {row['p_hat']:g} lies at the edge of the searched range [{P_GRID[0]:g}, {P_GRID[-1]:g}]: the "
                     "best p may lie beyond it and its interval is open there")
    if row.get("dof", 1) == 0:
        notes.append("as many cells as fitted parameters (0 degrees of freedom): the curve passes through every "
                     "cell, nothing tests the model, and the goodness-of-fit p-value is undefined")
    elif row.get("dof", 1) < 3:
        notes.append(f"only {int(row['dof'])} degrees of freedom: the interval rests on few cells")
    return "; ".join(notes)



def pool(sources: list, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool independent replicate runs of one escape-rate config into the run directory ``out``.

    The sources must hold the same config up to ``seed`` and ``run.n_particles`` (and ``run.chunk_size``,
    which does not change results), with distinct seeds: their particles are then independent draws of
    the same cells. Each cell's per-particle first-passage and divergence steps are concatenated (a cell
    must be finished in every source) and the rows and fits are recomputed with the same estimators, so
    a pooled cell is exactly the cell one run with all the particles would report, up to which particles
    were drawn. ``out`` gets ``cells/``, ``results.csv``, ``fit.csv``, the figure and a manifest whose
    config lists the sources and seeds and the total particle count. Returns the results and fit tables.
    """
    if len(sources) < 2:
        raise ConfigError("pool: give at least two run directories")
    configs = []
    for src in sources:
        cfg = stored_config(src, "pool")
        if cfg.get("kind", "escape-rates") != "escape-rates":
            raise ConfigError(f"pool: {src} is a {cfg.get('kind')!r} run; only escape-rate runs can be pooled")
        configs.append(_resolved_or_raw(cfg))

    def core(cfg):  # what replicates share: all but the seed, the particle count and keys no cell depends on
        return without(cfg, (*SCHEMA.resumable, "seed", "pooled_from", "run.n_particles"))

    seeds = [int(c.get("seed", 0)) for c in configs]
    for src, cfg in zip(sources[1:], configs[1:]):
        if core(cfg) != core(configs[0]):
            raise ConfigError(f"pool: {src} differs from {sources[0]} in more than seed and n_particles: "
                              f"{describe_diff(core(configs[0]), core(cfg), sources[0], src)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"pool: the sources must have distinct seeds (got {seeds}): equal seeds repeat particles")
    config = json.loads(json.dumps(configs[0]))
    config.pop("preset", None)
    config["seed"] = seeds[0]
    config["run"]["n_particles"] = int(sum(int(c["run"]["n_particles"]) for c in configs))
    config["pooled_from"] = [{"directory": str(Path(s).resolve()), "seed": sd} for s, sd in zip(sources, seeds)]
    out = prepare_run_dir(out, config)
    for label in config["optimizers"]:
        for k in config["run"]["sharpness"]:
            name = f"{_cell_name(label, k)}.npz"
            parts = []
            for src in sources:
                path = Path(src) / "cells" / name
                if not path.is_file():
                    raise ConfigError(f"pool: {src} has no finished cell {name}; finish (resume) that run first")
                parts.append(load_cell(path, (*CELL_KEYS, "max_steps")))
            buf = io.BytesIO()
            np.savez(
                buf,
                first_passage=np.concatenate([p["first_passage"] for p in parts]),
                first_divergence=np.concatenate([p["first_divergence"] for p in parts]),
                # Censored particles exist only where a run went to its horizon; one that stopped early had
                # none left, so the longest run sets the shared horizon.
                steps_run=max(int(p["steps_run"]) for p in parts),
                max_steps=max(int(p["max_steps"]) for p in parts),
            )
            atomic_write_bytes(out / "cells" / name, buf.getvalue())
    return _finish(config, out)
