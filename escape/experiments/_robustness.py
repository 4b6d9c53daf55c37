"""The robustness grid (Adai paper, Fig. 5): test error over a learning rate x weight decay grid, per optimizer,
over several seeds; heat maps and the size of each optimizer's basin of good settings.

Config: ``seeds``; ``basin_margin`` (a cell is in its optimizer's basin when its mean test error over the seeds
is at most the optimizer's best mean plus this margin); ``[run]``, the [`escape.train.TrainConfig`][] fields
shared by every run (data, model, width, epochs, batch size, milestones, ...); ``[optimizers.LABEL]``, the
``optimizer`` name, its ``learning_rates`` and ``weight_decays`` (the grid's axes) and any hyperparameter of
the optimizer.

Every grid point and seed is a full training run; the runs of one (optimizer, learning rate) are trained
together, ``vmap``-ed over the seeds and weight decays by [`escape.train.train_grid`][] (one compilation per
optimizer), and saved as one cell ``cells/LABEL__lrI.npz``: an interrupted experiment resumes at the first
unfinished row. ``results.csv`` (one row per run), ``grid.csv`` (per grid point: mean and standard deviation
over seeds), ``basins.csv`` (per optimizer: best point, basin size) and ``robustness.png`` (heat maps).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ._compare import _check_label, _optimizer_keys, _train_fields, _train_name, dataset_of
from ._cells import run_cells
from ._config import ConfigError
from ._io import atomic_write_text, finished_cells, read_table
from ._schema import Integer, Key, ListOf, Name, Number, REQUIRED, Schema, schema_on_first_use, Section, Table

# The TrainConfig fields a grid run uses (no curvature is measured; one device per cell shard).
_RUN_FIELDS = ("data", "data_dir", "model", "width", "epochs", "batch_size", "milestones", "gamma", "bf16",
               "augment", "eval_batch_size", "train_examples", "test_examples")
RESULT_COLUMNS = ["optimizer", "algorithm", "learning_rate", "weight_decay", "seed", "test_error", "test_loss",
                  "train_loss", "train_eval_loss", "train_eval_error", "diverged"]


def _schema() -> Schema:
    fields = _train_fields()
    run_keys = {k: Key(*fields[k]) for k in _RUN_FIELDS}
    positive = ListOf(Number(gt=0), "numbers > 0", increasing=True)
    entry = Section(
        {"optimizer": Key(Name(_train_name, "an optimizer name (escape.optim registry, or any optax optimizer)"),
                          REQUIRED, "which optimizer (stored as its canonical name)"),
         "learning_rates": Key(positive, REQUIRED, "the grid's learning rates (increasing)"),
         "weight_decays": Key(ListOf(Number(ge=0), "numbers >= 0", increasing=True), REQUIRED,
                              "the grid's weight decays (increasing; in the optimizer's convention)")},
        dynamic=("optimizer", _optimizer_keys),
        dynamic_doc="and the optimizer's hyperparameters with their defaults (see *Optimizers* below)",
    )
    return Schema(
        "robustness",
        "Robustness to the hyperparameters (Adai paper Fig. 5): test error over a learning rate x weight decay "
        "grid per optimizer and seed, every run a full training run (vmapped); `results.csv`, `grid.csv`, "
        "`basins.csv`, `robustness.png`. Tutorial: [robustness](tutorials/robustness.md).",
        Section(
            {"seeds": Key(ListOf(Integer(min=0), "integers >= 0", distinct=True), REQUIRED,
                          "one run per grid point and seed"),
             "basin_margin": Key(Number(ge=0), 0.01, "basin: grid points whose mean test error is at most the "
                                                     "optimizer's best plus this")},
            sections={
                "run": Section(run_keys, "escape.train.TrainConfig fields shared by every run."),
                "optimizers": Table(entry, "The optimizers and their grids.", check_label=_check_label),
            },
        ),
        resumable=("basin_margin",),
    )


__getattr__ = schema_on_first_use(_schema, __name__)  # as compare's: it reads escape.train


def _base_config(config: dict, label: str):
    """The TrainConfig of ``label``'s runs (its learning rate, weight decay and seed are the grid's)."""
    from ..train import TrainConfig

    spec = config["optimizers"][label]
    args = {k: v for k, v in spec.items() if k not in ("optimizer", "learning_rates", "weight_decays")}
    try:
        return TrainConfig.from_dict({**config["run"], "optimizer": spec["optimizer"], "sharpness": False,
                                      "learning_rate": spec["learning_rates"][0], "seed": config["seeds"][0],
                                      "weight_decay": spec["weight_decays"][0], "optimizer_args": args})
    except ValueError as e:
        raise ConfigError(f"config: optimizers.{label}: {e}") from None


def cell_names(config: dict) -> list[str]:
    """``LABEL__lrI`` for every optimizer (sorted) and learning-rate index."""
    return [f"{label}__lr{i}" for label in sorted(config["optimizers"])
            for i in range(len(config["optimizers"][label]["learning_rates"]))]


def validate(config: dict) -> None:
    for label in config["optimizers"]:
        _base_config(config, label)


def run_cell(config: dict, name: str) -> dict:
    """Every seed x weight decay at one learning rate of one optimizer, trained together."""
    from ..train import train_grid

    label, index = name.rsplit("__lr", 1)
    spec, base = config["optimizers"][label], _base_config(config, label)
    seeds, wds = np.meshgrid(np.asarray(config["seeds"]), np.asarray(spec["weight_decays"], float), indexing="ij")
    lr = np.full(seeds.size, spec["learning_rates"][int(index)])
    out = train_grid(base, lr, wds.ravel(), seeds.ravel(), dataset=dataset_of(base))
    shape = seeds.shape  # (seeds, weight decays)
    return {"test_error": 1.0 - out.test_acc.reshape(shape), "test_loss": out.test_loss.reshape(shape),
            "train_loss": out.train_loss[:, -1].reshape(shape), "train_eval_loss": out.train_eval_loss.reshape(shape),
            "train_eval_error": 1.0 - out.train_eval_acc.reshape(shape), "diverged": out.diverged.reshape(shape)}


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every (optimizer, learning rate) row of a resolved config, then the tables and figure."""

    def summary(name: str, cell: dict) -> str:
        label, index = name.rsplit("__lr", 1)
        lr = config["optimizers"][label]["learning_rates"][int(index)]
        err = cell["test_error"].mean(axis=0)
        return (f"{label} lr {lr:g}: mean test error {' '.join(f'{e:.3f}' for e in err)} over weight decays"
                + (f"; {int(cell['diverged'].sum())} diverged" if cell["diverged"].any() else ""))

    return run_cells(__name__, config, out, cell_names(config), run_cell, progress=progress, summary=summary,
                     unit="row")


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """results.csv: one row per finished run (optimizer, learning rate, weight decay, seed)."""
    rows = []
    for name, cell in finished_cells(out, cell_names(config)):
        label, index = name.rsplit("__lr", 1)
        spec = config["optimizers"][label]
        for s, seed in enumerate(config["seeds"]):
            for w, wd in enumerate(spec["weight_decays"]):
                rows.append({"optimizer": label, "algorithm": spec["optimizer"],
                             "learning_rate": spec["learning_rates"][int(index)], "weight_decay": wd, "seed": seed,
                             **{k: cell[k][s, w] for k in RESULT_COLUMNS[5:]}})
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table["diverged"] = table["diverged"].astype(bool)
    atomic_write_text(Path(out) / "results.csv", table.to_csv(index=False, float_format="%.10g"))
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """grid.csv (per grid point: mean and standard deviation of the test error over seeds, diverged runs) and
    basins.csv (per optimizer: best mean test error and where, the basin's size); returns basins.csv's table."""
    out = Path(out)
    table = read_table(out / "results.csv", RESULT_COLUMNS) if table is None else table
    grid = (table.groupby(["optimizer", "learning_rate", "weight_decay"], sort=True)
            .agg(runs=("seed", "size"), test_error_mean=("test_error", "mean"), test_error_std=("test_error", "std"),
                 test_loss_mean=("test_loss", "mean"), train_eval_loss_mean=("train_eval_loss", "mean"),
                 diverged=("diverged", "sum")).reset_index())
    atomic_write_text(out / "grid.csv", grid.to_csv(index=False, float_format="%.10g"))
    margin, rows = float(config["basin_margin"]), []
    for label in sorted(config["optimizers"]):
        spec = config["optimizers"][label]
        sub = grid[grid["optimizer"] == label]
        size = len(spec["learning_rates"]) * len(spec["weight_decays"])
        if sub.empty:
            continue
        ok = sub[sub["diverged"] == 0]
        best = ok.loc[ok["test_error_mean"].idxmin()] if len(ok) else None
        basin = ok[ok["test_error_mean"] <= best["test_error_mean"] + margin + 1e-12] if best is not None else ok
        rows.append({"optimizer": label, "algorithm": spec["optimizer"], "grid_points": size, "finished": len(sub),
                     "best_test_error": np.nan if best is None else best["test_error_mean"],
                     "best_learning_rate": np.nan if best is None else best["learning_rate"],
                     "best_weight_decay": np.nan if best is None else best["weight_decay"],
                     "margin": margin, "basin_points": len(basin), "basin_fraction": len(basin) / size,
                     "diverged_runs": int(sub["diverged"].sum())})
    basins = pd.DataFrame(rows)
    atomic_write_text(out / "basins.csv", basins.to_csv(index=False, float_format="%.10g"))
    return basins


def report(out: Path) -> str:
    """The basins table as text (what ``escape run robustness`` prints)."""
    out = Path(out)
    basins = read_table(out / "basins.csv")
    lines = [f"{'optimizer':<10} {'best test error':>15} {'at lr':>8} {'wd':>8}  {'basin':>11}  diverged"]
    for _, r in basins.iterrows():
        lines.append(f"{r['optimizer']:<10} {r['best_test_error']:>15.4f} {r['best_learning_rate']:>8.3g} "
                     f"{r['best_weight_decay']:>8.2g}  {int(r['basin_points']):>4} of {int(r['grid_points']):<4}  "
                     f"{int(r['diverged_runs'])}")
    if len(basins):
        lines.append(f"basin: grid points whose mean test error (over seeds) is within {basins['margin'].iloc[0]:g} "
                     "of the optimizer's best")
    lines.append(f"wrote {out}/results.csv, grid.csv, basins.csv, manifest.json, robustness.png")
    return "\n".join(lines)


def plot(out: Path) -> Path:
    """robustness.png: one heat map per optimizer of the mean test error over seeds (learning rate across,
    weight decay down, one colour scale for all), each point's error in percent, its basin outlined, points
    with a diverged run crossed."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    from ._plots import plt, save_figure
    from ._io import read_manifest

    out = Path(out)
    config = read_manifest(out / "manifest.json")["config"]
    grid, basins = read_table(out / "grid.csv"), read_table(out / "basins.csv")
    labels = sorted(config["optimizers"])
    fig, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels), 4.2), constrained_layout=True, squeeze=False)
    # A log colour scale: the differences that matter are between 0.5% and 3%, beside failures near 90%.
    errors = grid["test_error_mean"].dropna() if len(grid) else pd.Series(dtype=float)
    floor = 0.5 / max(int(config["run"].get("test_examples") or 360), 1)  # half an example (digits: 360)
    errors = errors.clip(lower=floor)
    vmin = float(errors.min()) if len(errors) else floor
    vmax = float(max(errors.max(), vmin * 1.5)) if len(errors) else 1.0
    norm = LogNorm(vmin=vmin, vmax=vmax)
    image = None
    for ax, label in zip(axes[0], labels):
        spec = config["optimizers"][label]
        lrs, wds = spec["learning_rates"], spec["weight_decays"]
        values = np.full((len(wds), len(lrs)), np.nan)
        diverged = np.zeros_like(values, bool)
        sub = grid[grid["optimizer"] == label] if len(grid) else grid
        for _, r in sub.iterrows():
            i, j = wds.index(r["weight_decay"]), lrs.index(r["learning_rate"])
            values[i, j], diverged[i, j] = r["test_error_mean"], r["diverged"] > 0
        image = ax.imshow(np.clip(values, floor, None), cmap="viridis_r", norm=norm, aspect="auto", origin="lower")
        b = basins[basins["optimizer"] == label] if len(basins) else basins
        limit = float(b["best_test_error"].iloc[0] + b["margin"].iloc[0]) if len(b) else -np.inf
        for i in range(len(wds)):
            for j in range(len(lrs)):
                if np.isnan(values[i, j]):
                    continue
                ax.text(j, i, f"{100 * values[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if norm(max(values[i, j], floor)) > 0.6 else "black")
                if diverged[i, j]:
                    ax.plot([j - 0.45, j + 0.45], [i - 0.45, i + 0.45], color="red", lw=1)
                elif values[i, j] <= limit + 1e-12:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], fontsize=7)
        ax.set_yticks(range(len(wds)), [f"{v:g}" for v in wds], fontsize=7)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("weight decay")
        count = f"{int(b['basin_points'].iloc[0])} of {int(b['grid_points'].iloc[0])}" if len(b) else "-"
        ax.set_title(f"{label} ({spec['optimizer']}): basin {count}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="test error (mean over seeds, log scale)")
    margin = config.get("basin_margin", 0.01)
    fig.suptitle(f"{config.get('name', '')}: test error over the grid, {len(config['seeds'])} seeds; red boxes: "
                 f"within {margin:g} of the best; red strokes: a run diverged", fontsize=9)
    return save_figure(fig, out / "robustness.png")
