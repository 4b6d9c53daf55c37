"""The optimizer comparison (paper section 6 and App. D, at the scale of a CPU): each optimizer over several
seeds; final test accuracy, training loss and the sharpness of the solution; learning curves.

Config: ``seeds`` (a list of integers); ``[run]``, fields of [`escape.train.TrainConfig`][] shared by every run
(data, model, epochs, batch size, milestones, sharpness settings, ...); ``[optimizers.LABEL]``, the ``optimizer``
name, and TrainConfig fields for that optimizer (``learning_rate``, ``weight_decay``, or any ``[run]`` field to
override); any other key is a hyperparameter of the optimizer (``beta0``, ``b1``, ...). ``compilation_cache``
(top level) turns on JAX's persistent compilation cache in ``OUT/.jax_cache``.

Every (optimizer, seed) run is an [`escape.train.train`][] run directory ``OUT/runs/LABEL__seedS``, which
checkpoints every epoch: an interrupted experiment resumes inside the interrupted run, and finished runs are
not repeated. ``results.csv`` (one row per run), ``summary.csv`` (one row per optimizer: mean and standard
deviation over seeds), ``curves.csv`` (every run's per-epoch metrics) and ``learning_curves.png`` are rebuilt
from the run directories; with ``run.top_eigenvalues = k > 1`` also ``spectra.csv`` (the top-k Hessian
eigenvalues of every solution) and ``spectra.png``.
"""

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._config import ConfigError, prepare_run_dir
from ._console import Console
from ._schema import (
    Anything,
    Boolean,
    Integer,
    Key,
    ListOf,
    Name,
    Number,
    REQUIRED,
    Schema,
    schema_on_first_use,
    Section,
    String,
    Table,
    UNSET,
    hyperparameter_keys,
)
from ._io import atomic_write_json, atomic_write_text, rebuild_outputs

RESULT_COLUMNS = [
    "optimizer", "algorithm", "seed", "learning_rate", "weight_decay", "epochs", "test_acc", "test_loss",
    "train_loss", "train_eval_loss", "train_eval_acc", "lambda_max", "hessian_trace", "hessian_trace_stderr",
    "expected_sharpness", "expected_sharpness_stderr", "sharpness_examples", "train_time", "sharpness_time",
]
SUMMARY_METRICS = ["test_acc", "test_loss", "train_loss", "train_eval_loss", "lambda_max", "hessian_trace",
                   "expected_sharpness"]
_RUN_OWNED = {"optimizer", "seed", "optimizer_args"}  # set by the experiment, not by [run]


@functools.cache
def _train_fields() -> dict:
    """``{field: (Spec, default, doc)}`` for every TrainConfig field: types from its annotations, defaults from
    the dataclass, one-line docs from its docstring."""
    import dataclasses
    import inspect
    import re
    import types
    import typing

    from ..train import DATASETS, MODELS, TrainConfig

    docs, current = {}, None
    for line in (inspect.getdoc(TrainConfig) or "").split("Attributes:", 1)[-1].splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2)
        elif current and line.startswith("        ") and not docs[current].endswith("."):
            docs[current] += " " + line.strip()
    choices = {
        "data": String(DATASETS), "model": String(tuple(MODELS)),
        **{k: Integer(min=1) for k in ("epochs", "batch_size", "eval_batch_size", "lanczos_iters", "width",
                                       "train_examples", "test_examples", "devices", "sharpness_examples")},
        **{k: Integer(min=2) for k in ("hutchinson_samples", "sharpness_samples")},
        **{k: Number(gt=0) for k in ("learning_rate", "gamma", "sharpness_sigma")},
        "weight_decay": Number(ge=0),
        "milestones": ListOf(Integer(min=1), "epochs >= 1", min_len=0, increasing=True),
    }
    simple = {int: Integer(), float: Number(), bool: Boolean(), str: String()}
    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _RUN_OWNED:
            continue
        tp = f.type
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:  # X | None: X, default unset
            tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        spec = choices.get(f.name, simple.get(tp, Anything()))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = UNSET if default is None else list(default) if isinstance(default, tuple) else default
        doc = re.split(r"(?<=[a-z)`])\. (?=[A-Z])", docs.get(f.name, ""))[0].rstrip(".")
        # Docstring markup to plain Markdown: ``x`` -> `x`, [`a.b`][] -> `a.b`; TOML has no None: "unset".
        doc = re.sub(r"\[(`[^`]+`)\]\[[^\]]*\]", r"\1", doc.replace("``", "`")).replace("`None`", "unset")
        out[f.name] = (spec, default, doc)
    return out


def _optimizer_keys(name: str) -> dict:
    """Hyperparameters of a training optimizer: the registry's with defaults, or an optax optimizer's."""
    import inspect

    from ..train._optimizers import _factory

    canonical, factory, registered = _factory(name)
    if registered:
        return hyperparameter_keys(canonical, skip=("learning_rate", "weight_decay"))
    params = inspect.signature(factory).parameters
    return {k: Key(Anything("a value"), UNSET, f"hyperparameter of optax.{canonical}")
            for k in params if k not in ("learning_rate", "weight_decay", "mask")}


def _train_name(value: str) -> str:
    from ..train._optimizers import _factory

    return _factory(value)[0]


def _check_label(label: str) -> None:
    if "__" in label or "/" in label:
        raise ValueError(f"optimizer label {label!r} may not contain '__' or '/'")


def _schema() -> Schema:
    fields = _train_fields()
    run_keys = {k: Key(spec, default, doc) for k, (spec, default, doc) in fields.items()}
    own = {k: Key(spec, UNSET, f"this optimizer's {k} (default: run.{k})") for k, (spec, _, _) in fields.items()}
    entry = Section(
        {"optimizer": Key(Name(_train_name, "an optimizer name (escape.optim registry, or any optax optimizer)"),
                          REQUIRED, "which optimizer (stored as its canonical name)"), **own},
        dynamic=("optimizer", _optimizer_keys),
        dynamic_doc="and the optimizer's hyperparameters with their defaults (see *Optimizers* below)",
    )
    return Schema(
        "compare",
        "Training comparison: every optimizer over several seeds, each run an `escape.train.train` run "
        "directory; `results.csv`, `summary.csv`, `curves.csv`, `learning_curves.png`. "
        "Tutorial: [compare](tutorials/compare.md).",
        Section(
            {"seeds": Key(ListOf(Integer(min=0), "integers >= 0", distinct=True), REQUIRED, "one run per optimizer and seed"),
             "compilation_cache": Key(Boolean(), False, "JAX's persistent compilation cache in OUT/.jax_cache")},
            sections={
                "run": Section(run_keys, "escape.train.TrainConfig fields shared by every run."),
                "optimizers": Table(entry, "The optimizers compared; any [run] key may be set per optimizer.",
                                    check_label=_check_label),
            },
        ),
        resumable=("compilation_cache",),
    )


__getattr__ = schema_on_first_use(_schema, __name__)


_DATASET: dict = {}


def dataset_of(cfg) -> "object":
    """The data set of a [`escape.train.TrainConfig`][], loaded once for the runs that share it (the last one
    asked for is kept): compare's runs and the robustness grid's rows."""
    from ..train import load_dataset

    key = (cfg.data, cfg.data_dir, cfg.train_examples, cfg.test_examples)
    if key not in _DATASET:
        _DATASET.clear()
        _DATASET[key] = load_dataset(cfg)
    return _DATASET[key]


def run_configs(config: dict) -> dict[tuple[str, int], "object"]:
    """The [`escape.train.TrainConfig`][] of every (optimizer label, seed) of a resolved config."""
    from ..train import TrainConfig

    fields = set(_train_fields())
    seeds = config["seeds"]
    shared = dict(config["run"])
    out = {}
    # Labels in sorted order: the order that earlier manifests (stored with sorted keys) gave reruns too.
    for label, spec in sorted(config["optimizers"].items()):
        own = {k: v for k, v in spec.items() if k in fields}
        args = {k: v for k, v in spec.items() if k not in fields and k != "optimizer"}
        for seed in seeds:
            try:
                out[(label, seed)] = TrainConfig.from_dict(
                    {**shared, **own, "optimizer": spec["optimizer"], "seed": seed, "optimizer_args": args})
            except ValueError as e:
                raise ConfigError(f"config: optimizers.{label}: {e}") from None
    return out


def validate(config: dict) -> None:
    """Check a resolved compare config beyond its types (every run's TrainConfig builds)."""
    run_configs(config)


def _run_dir(out: Path, label: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{label}__seed{seed}"


def _load_history(path: Path) -> dict | None:
    metrics = path / "metrics.json"
    if not metrics.is_file():
        return None
    return json.loads(metrics.read_text())


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every (optimizer, seed) run of a resolved config, then write the tables and the figure."""
    from ..train import train, use_compilation_cache

    runs = run_configs(config)
    out = prepare_run_dir(out, config)
    if config.get("compilation_cache", False):
        use_compilation_cache(out / ".jax_cache")
    start = time.perf_counter()
    done = {k for k in runs if (_load_history(_run_dir(out, *k)) or {}).get("complete")}
    console = Console(progress, len(runs), done=len(done), unit="run", where=out)
    try:
        for (label, seed), cfg in runs.items():
            if (label, seed) in done:
                continue
            console.begin(f"{label} seed {seed}")
            # Inner progress: the step bar in "bar" mode, one line per epoch in "log" mode.
            history = train(cfg, _run_dir(out, label, seed), progress=progress, dataset=dataset_of(cfg))
            write_results(config, out)
            final = history.final or {}
            console.done(f"{label} seed {seed}: test acc {final.get('test_acc', float('nan')):.4f}, "
                         f"train loss {final.get('train_loss', float('nan')):.3g}")
    finally:
        console.close()
    table = rebuild_outputs(sys.modules[__name__], config, out)
    _record_session(out, time.perf_counter() - start, len(runs) - len(done))
    return table


def _record_session(out: Path, seconds: float, runs_done: int) -> None:
    """Append this invocation's wall time to ``timing.json`` (one entry per invocation that did work)."""
    if runs_done == 0:
        return
    path = out / "timing.json"
    sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    sessions.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": seconds, "runs": runs_done})
    atomic_write_json(path, {"sessions": sessions, "total_seconds": sum(s["seconds"] for s in sessions)})


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """Rebuild results.csv (one row per finished run) and curves.csv from the run directories."""
    out = Path(out)
    rows, curves, spectra = [], [], []
    for (label, seed), cfg in run_configs(config).items():
        hist = _load_history(_run_dir(out, label, seed))
        if hist is None:
            continue
        for row in hist["epochs"]:
            curves.append({"optimizer": label, "seed": seed, **row})
        final = hist.get("final")
        if not final:
            continue
        rows.append({
            "optimizer": label, "algorithm": cfg.optimizer, "seed": seed, "learning_rate": cfg.learning_rate,
            "weight_decay": cfg.weight_decay, "epochs": len(hist["epochs"]),
            **{k: final.get(k, np.nan) for k in RESULT_COLUMNS[6:]},
        })
        for rank, value in enumerate(final.get("top_eigenvalues") or (), start=1):
            spectra.append({"optimizer": label, "algorithm": cfg.optimizer, "seed": seed, "rank": rank,
                            "eigenvalue": value})
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    atomic_write_text(out / "results.csv", table.to_csv(index=False, float_format="%.10g"))
    atomic_write_text(out / "curves.csv", pd.DataFrame(curves).to_csv(index=False, float_format="%.10g"))
    if spectra:  # run.top_eigenvalues > 1: the top of each solution's Hessian spectrum
        atomic_write_text(out / "spectra.csv", pd.DataFrame(spectra).to_csv(index=False, float_format="%.10g"))
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Aggregate results.csv per optimizer into summary.csv: mean and sample standard deviation over seeds."""
    out = Path(out)
    if table is None:
        table = pd.read_csv(out / "results.csv")
    rows = []
    for label in sorted(config["optimizers"]):
        sub = table[table["optimizer"] == label]
        spec = config["optimizers"][label]
        row = {"optimizer": label, "algorithm": spec["optimizer"],
               "learning_rate": spec.get("learning_rate", config["run"].get("learning_rate")),
               "weight_decay": spec.get("weight_decay", config["run"].get("weight_decay", 0.0)), "runs": len(sub)}
        for m in SUMMARY_METRICS:
            values = sub[m].to_numpy(float)
            row[f"{m}_mean"] = float(np.mean(values)) if len(values) else np.nan
            row[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.10g"))
    return summary


def report(out: Path) -> str:
    """The summary table as text (what ``escape run compare`` prints)."""
    out = Path(out)
    summary = pd.read_csv(out / "summary.csv")
    lines = [f"{'optimizer':<10} {'lr':>6} {'wd':>7} {'runs':>4}  {'test acc':>15}  {'train loss*':>19}  "
             f"{'lambda_max':>13}  {'trace(H)':>13}  {'exp. sharpness':>19}"]
    for _, r in summary.iterrows():
        pm = lambda m, fmt: f"{r[m + '_mean']:{fmt}} ± {r[m + '_std']:{fmt}}"
        lines.append(
            f"{r['optimizer']:<10} {r['learning_rate']:>6.3g} {r['weight_decay']:>7.2g} {int(r['runs']):>4}  "
            f"{pm('test_acc', '.4f'):>15}  {pm('train_eval_loss', '.2e'):>19}  {pm('lambda_max', '.3g'):>13}  "
            f"{pm('hessian_trace', '.3g'):>13}  {pm('expected_sharpness', '.2e'):>19}"
        )
    lines.append("mean ± std over seeds; *whole training set, inference mode (the loss whose Hessian is measured)")
    timing = out / "timing.json"
    if timing.is_file():
        lines.append(f"\nwall time {json.loads(timing.read_text())['total_seconds']:.0f} s")
    wrote = "results.csv, summary.csv, curves.csv, manifest.json, learning_curves.png"
    if (out / "spectra.csv").is_file():
        spectra = pd.read_csv(out / "spectra.csv")
        k = int(spectra["rank"].max())
        lines.append(f"\ntop-{k} Hessian eigenvalues at the solutions, mean over seeds (ranks 1, 2, 5, {k}):")
        means = spectra.groupby(["optimizer", "rank"])["eigenvalue"].mean().unstack()
        for label, r in means.iterrows():
            picks = [r.get(i, np.nan) for i in (1, 2, 5, k)]
            lines.append(f"  {label:<10} " + "  ".join(f"{v:10.4g}" for v in picks))
        wrote += ", spectra.csv, spectra.png"
    lines.append(f"wrote {out}/{wrote}")
    return "\n".join(lines)


def plot(out: Path) -> Path:
    """``learning_curves.png``: test accuracy and training loss against epoch, mean ± one standard deviation
    over seeds per optimizer (the band), from curves.csv."""
    from matplotlib.ticker import MaxNLocator

    from ._plots import plt, save_figure

    out = Path(out)
    try:
        curves = pd.read_csv(out / "curves.csv")
    except pd.errors.EmptyDataError:  # no epoch finished yet
        curves = pd.DataFrame()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = ((axes[0], "test_acc", "test accuracy", False), (axes[1], "train_loss", "training loss (epoch mean)", True))
    groups = list(curves.groupby("optimizer", sort=False)) if len(curves) else []
    colors = _colors(len(groups))
    for i, (label, sub) in enumerate(groups):
        for ax, metric, _, _ in panels:
            stats = sub.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
            epochs, mean = stats["epoch"].to_numpy(), stats["mean"].to_numpy()
            std = np.nan_to_num(stats["std"].to_numpy())
            n = int(sub["seed"].nunique())
            ax.plot(epochs, mean, color=colors[i], label=f"{label} ({n} seeds)")
            ax.fill_between(epochs, mean - std, mean + std, color=colors[i], alpha=0.25, lw=0)
    for ax, _, ylabel, log in panels:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2 if len(groups) > 6 else 1)
    name = json.loads((out / "manifest.json").read_text())["config"].get("name", "") if (out / "manifest.json").exists() else ""
    fig.suptitle(f"{name}: learning curves, mean ± std over seeds")
    path = save_figure(fig, out / "learning_curves.png")
    if (out / "spectra.csv").is_file():
        plot_spectra(out, name)
    return path


def _colors(n: int) -> list:
    """``n`` distinct colours: matplotlib's default cycle up to 10, tab20 beyond (the cycle repeats after 10)."""
    from ._plots import plt

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return [plt.get_cmap("tab20")(i % 20) for i in range(n)]


def plot_spectra(out: Path, name: str = "") -> Path:
    """``spectra.png``: the top-k Hessian eigenvalues of each solution against their rank (log scale), one thin
    line per seed and the mean over seeds per optimizer; beside it each optimizer's trace and expected
    sharpness (mean ± std over seeds), from spectra.csv and results.csv."""
    from ._plots import plt, save_figure

    out = Path(out)
    spectra, results = pd.read_csv(out / "spectra.csv"), pd.read_csv(out / "results.csv")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 5.2), constrained_layout=True,
                                 gridspec_kw={"width_ratios": [3, 2]})
    labels = list(dict.fromkeys(spectra["optimizer"]))
    colors = _colors(len(labels))
    for i, label in enumerate(labels):
        sub = spectra[spectra["optimizer"] == label]
        for _, run in sub.groupby("seed"):
            ax.plot(run["rank"], np.clip(run["eigenvalue"], 1e-6, None), color=colors[i], alpha=0.3, lw=0.8)
        mean = sub.groupby("rank")["eigenvalue"].mean()
        ax.plot(mean.index, np.clip(mean.to_numpy(), 1e-6, None), "o-", color=colors[i], ms=3,
                label=f"{label} ({sub['seed'].nunique()} seeds)")
    ax.set_yscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("Hessian eigenvalue (training loss, inference mode)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(labels), 4), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for j, metric in enumerate(("hessian_trace", "expected_sharpness")):
        stats = results.groupby("optimizer")[metric].agg(["mean", "std"]).reindex(labels)
        x = np.arange(len(labels)) + (j - 0.5) * 0.38
        target = bx if j == 0 else bx.twinx()
        target.bar(x, stats["mean"], 0.38, yerr=np.nan_to_num(stats["std"]), color=f"C{j}", alpha=0.6,
                   label=metric.replace("_", " "))
        target.set_ylabel(metric.replace("_", " "), color=f"C{j}")
    bx.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"{name}: top of the Hessian spectrum at each solution; trace and expected sharpness")
    return save_figure(fig, out / "spectra.png")
