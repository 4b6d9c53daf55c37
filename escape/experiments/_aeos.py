"""The adaptive-edge-of-stability experiment (Cohen et al., "Adaptive Gradient Methods at the Edge of Stability").

Full-batch training of a fully connected tanh network (MSE on one-hot targets, ``loss = (1/2) mean_n
||f(x_n) - y_n||^2``) on standardised inputs: scikit-learn's digits by default, the first ``n_examples`` CIFAR-10
training images when ``[data] name = "cifar10"`` and ``data_dir`` points at the python files. Each
``[runs.LABEL]`` is one optimizer at one learning rate, from the same initialisation:

- ``adam``, ``rmsprop``: preconditioner read from the optax state as the next update uses it
  ([`escape.curvature.preconditioner`][]); lines ``(2 + 2 b1) / ((1 - b1) eta)`` and ``2 / eta``;
- ``gd``: ``P = I``, line ``2 / eta`` (the classic edge of stability);
- ``frozen-adam``: Adam at ``source_learning_rate`` trained ``from_step`` steps, then its preconditioner frozen
  and its momentum carried on ([`escape.stability.frozen_adam`][]);
- ``preconditioned-heavy-ball``: EMA heavy ball from the initialisation with a fixed diagonal preconditioner,
  the Adam preconditioner of that same source state.

Every ``run.every`` steps: the loss, ``lambda_1(H)``, the top ``run.top_k`` eigenvalues of ``P^-1 H`` (warm-started
Lanczos) and the line. Each run is a cell written atomically (``cells/LABEL.npz``): an interrupted experiment
resumes at the next unfinished run. Outputs: ``aeos.csv`` (one row per run), ``curves.csv``, ``aeos.png``
(preconditioned sharpness against step, dashed lines: the paper's Fig. 1), ``aeos_raw.png`` (raw sharpness,
Fig. 8), ``manifest.json``.
"""

import io
import json
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..curvature import preconditioner
from ..stability import frozen_adam, scale_by_preconditioner, stability_threshold
from ..stability._track import edge_summary, track_sharpness, train_full_batch
from ._config import ConfigError, prepare_run_dir
from ._console import Console
from ._io import atomic_write_bytes, atomic_write_text, finished_cells, read_table, rebuild_outputs
from ._schema import (
    Integer, Key, Number, OptionalSection, REQUIRED, Schema, Section, String, Table, UNSET, seed_key,
)

ALGORITHMS = ("adam", "rmsprop", "gd", "frozen-adam", "preconditioned-heavy-ball")
_LINE = {"adam": "adam", "rmsprop": "rmsprop", "gd": "gd", "frozen-adam": "adam",
         "preconditioned-heavy-ball": "heavy-ball-ema"}

def mlp_section(width: int, depth: int, loss: str) -> OptionalSection:
    """The ``[model]`` section of the experiments that train this network."""
    return OptionalSection({
        "width": Key(Integer(min=1), width, "hidden width"),
        "depth": Key(Integer(min=1), depth, "tanh hidden layers"),
    }, f"Fully connected tanh network, {loss}.")


SCHEMA = Schema(
    "aeos",
    "Adaptive edge of stability: full-batch training of a tanh network, the preconditioned sharpness "
    "lambda_1(P^-1 H) against its stability line and the raw lambda_1(H), per optimizer and learning rate; "
    "`aeos.csv`, `curves.csv`, `aeos.png`, `aeos_raw.png`. Tutorial: [AEoS](tutorials/aeos.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "data": OptionalSection({
                "name": Key(String(("digits", "cifar10")), "digits", "the data set (inputs standardised per feature)"),
                "data_dir": Key(String(), UNSET, "directory of the CIFAR-10 python files (cifar10 only)"),
                "n_examples": Key(Integer(min=10), UNSET, "first n training examples (default: all digits, 5000 CIFAR)"),
            }, "The training set (full batch)."),
            "model": mlp_section(200, 2, "MSE on one-hot targets"),
            "run": OptionalSection({
                "steps": Key(Integer(min=1), 2000, "full-batch updates per run"),
                "every": Key(Integer(min=1), 20, "updates between curvature measurements"),
                "top_k": Key(Integer(min=1), 2, "eigenvalues of P^-1 H per measurement"),
                "lanczos_iters": Key(Integer(min=2), 40, "the most Lanczos steps (HVPs) per eigen-solve"),
                "tol": Key(Number(gt=0), 1e-3, "relative Lanczos residual to stop at"),
                "entry": Key(Number(gt=0), 0.9, "ratio lambda_1(P^-1 H) / threshold that counts as having reached the line"),
            }, "Training and measurement."),
            "runs": Table(Section({
                "optimizer": Key(String(ALGORITHMS), REQUIRED, "the method"),
                "learning_rate": Key(Number(gt=0), REQUIRED, "eta"),
                "b1": Key(Number(ge=0, lt=1), 0.9, "Adam's (and frozen Adam's) beta1; the heavy ball's beta"),
                "b2": Key(Number(ge=0, lt=1), 0.99, "Adam's beta2, RMSProp's decay"),
                "eps": Key(Number(ge=0), 1e-8, "Adam's and RMSProp's eps (outside the root)"),
                "steps": Key(Integer(min=1), UNSET, "this run's updates (default: run.steps)"),
                "source_learning_rate": Key(Number(gt=0), UNSET,
                                            "frozen / preconditioned runs: the Adam run whose state is used (default: learning_rate)"),
                "from_step": Key(Integer(min=1), UNSET, "frozen / preconditioned runs: the source Adam's step (required for them)"),
            }), "The runs; each is a cell."),
        },
    ),
)


def validate(config: dict) -> None:
    """Checks beyond types: CIFAR needs data_dir; frozen and preconditioned runs need from_step."""
    data = config["data"]
    if data["name"] == "cifar10":
        if "data_dir" not in data:
            raise ConfigError("config: data.data_dir is missing (data.name = \"cifar10\" reads the CIFAR-10 python files)")
        from ..data._cifar import _CIFAR10, _locate

        try:  # before anything is written: the files are there (their contents are read by the run)
            _locate(data["data_dir"], _CIFAR10)
        except ValueError as e:
            raise ConfigError(f"config: data.data_dir: {e}") from None
    for label, spec in config["runs"].items():
        if spec["optimizer"] in ("frozen-adam", "preconditioned-heavy-ball") and "from_step" not in spec:
            raise ConfigError(f"config: runs.{label}.from_step is missing (the source Adam state's step)")
        if "/" in label or "__" in label:
            raise ConfigError(f"config: run label {label!r} may not contain '/' or '__'")


def load_data(config: dict):
    """``(x, y)``: standardised flat inputs and one-hot targets (float32)."""
    from ..data import load_cifar10, load_digits

    data = config["data"]
    ds = load_digits() if data["name"] == "digits" else load_cifar10(data["data_dir"])
    n = data.get("n_examples", len(ds.train.labels) if data["name"] == "digits" else 5000)
    images = np.asarray(ds.train.images[:n], np.float64).reshape(min(n, len(ds.train.labels)), -1)
    std = images.std(axis=0)
    x = (images - images.mean(axis=0)) / np.where(std > 0, std, 1.0)
    y = np.eye(ds.num_classes)[np.asarray(ds.train.labels[:n])]
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def init_params(key, sizes) -> list:
    """Layers ``{"w", "b"}`` with ``w ~ N(0, 1 / fan_in)``, ``b = 0``."""
    return [{"w": jax.random.normal(jax.random.fold_in(key, i), (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]


def tanh_mlp(params: list, x):
    """The fully connected tanh network's outputs for a batch ``x`` (tanh hidden layers, linear last layer)."""
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"][None, :])
    return h @ params[-1]["w"] + params[-1]["b"][None, :]


def mse_loss(x, y):
    """``params -> (1/2) mean_n ||f(x_n) - y_n||^2`` of the tanh network."""
    return lambda params: 0.5 * jnp.mean(jnp.sum((tanh_mlp(params, x) - y) ** 2, axis=-1))


def _adam(spec, lr):
    return optax.adam(lr, b1=spec["b1"], b2=spec["b2"], eps=spec["eps"])


def _adam_p(spec):
    return lambda state, grads: preconditioner(state, grads=grads, b1=spec["b1"], b2=spec["b2"], eps=spec["eps"])


def build_run(config: dict, label: str, loss, params0):
    """``(optimizer, precondition, threshold, params, opt_state)`` of one run."""
    spec = config["runs"][label]
    algo, lr = spec["optimizer"], float(spec["learning_rate"])
    line = stability_threshold(_LINE[algo], lr, beta=spec["b1"])
    if algo == "adam":
        return _adam(spec, lr), _adam_p(spec), line, params0, None
    if algo == "rmsprop":
        opt = optax.rmsprop(lr, decay=spec["b2"], eps=spec["eps"], eps_in_sqrt=False)
        pre = lambda s, g: preconditioner(s, grads=g, decay=spec["b2"], eps=spec["eps"], eps_in_sqrt=False)  # noqa: E731
        return opt, pre, line, params0, None
    if algo == "gd":
        return optax.sgd(lr), None, line, params0, None
    source = _adam(spec, float(spec.get("source_learning_rate", lr)))
    params, state, _ = train_full_batch(loss, params0, source, spec["from_step"])
    p = _adam_p(spec)(state, jax.grad(loss)(params)).diagonal
    fixed = lambda s, g: p  # noqa: E731
    if algo == "frozen-adam":
        opt = frozen_adam(lr, p, b1=spec["b1"], mu=state[0].mu)
        return opt, fixed, line, params, None
    opt = optax.chain(optax.ema(spec["b1"], debias=False), scale_by_preconditioner(p), optax.scale_by_learning_rate(lr))
    return opt, fixed, line, params0, None


def _cell_path(out: Path, label: str) -> Path:
    return Path(out) / "cells" / f"{label}.npz"


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) every run of a resolved config, then write the tables and figures."""
    out = prepare_run_dir(out, config)
    labels = list(config["runs"])
    todo = [lb for lb in labels if not _cell_path(out, lb).exists()]
    console = Console(progress, len(labels), done=len(labels) - len(todo), unit="run", where=out)
    cfg = config["run"]
    try:
        if todo:
            x, y = load_data(config)
            loss = mse_loss(x, y)
            sizes = (x.shape[1], *[config["model"]["width"]] * config["model"]["depth"], y.shape[1])
            params0 = init_params(jax.random.key(int(config["seed"])), sizes)
        for label in todo:
            console.begin(label)
            opt, pre, line, params, state = build_run(config, label, loss, params0)
            steps = int(config["runs"][label].get("steps", cfg["steps"]))
            bar = _inner_bar(console, steps, label)
            traj = track_sharpness(
                loss, params, opt, steps=steps, every=cfg["every"], precondition=pre, opt_state=state,
                k=cfg["top_k"], lanczos_iters=cfg["lanczos_iters"], tol=cfg["tol"],
                key=jax.random.fold_in(jax.random.key(int(config["seed"])), zlib.crc32(label.encode())),
                on_measure=bar,
            )
            if hasattr(bar, "close"):
                bar.close()
            buf = io.BytesIO()
            np.savez(buf, step=traj.step, loss=traj.loss, raw=traj.raw, preconditioned=traj.preconditioned,
                     hvps=traj.hvps, diverged=traj.diverged, threshold=line)
            atomic_write_bytes(_cell_path(out, label), buf.getvalue())
            row = write_results(config, out).set_index("optimizer").loc[label]
            console.done(_line(label, row))
    finally:
        console.close()
    table = rebuild_outputs(sys.modules[__name__], config, out)
    return table


class _Bar:
    def __init__(self, total: int, label: str):
        from tqdm.auto import tqdm

        self.tqdm = tqdm(total=total, desc=label, unit="step", leave=False, dynamic_ncols=True)

    def __call__(self, step, loss, raw, pre):
        self.tqdm.update(step - self.tqdm.n)
        self.tqdm.set_postfix(loss=f"{loss:.3g}", raw=f"{raw:.3g}", pre=f"{pre[0]:.3g}")

    def close(self):
        self.tqdm.close()


def _inner_bar(console: Console, steps: int, label: str):
    return _Bar(steps, label) if console.inner else None


def _line(label: str, row) -> str:
    reached = (f"reached the line (ratio median {row['ratio_median']:.3f}); raw sharpness {row['raw_sharpness_at_entry']:.4g}"
               f" at entry, {row['raw_sharpness_final']:.4g} at the end" if row["reached"] else
               f"did not reach the line (largest ratio {row['ratio_max']:.3f})")
    if row["diverged"]:
        reached = f"diverged (the loss grew without bound){'; it ' + reached if row['reached'] else ''}"
    return f"{label}: {row['algorithm']} eta {row['learning_rate']:g}, final loss {row['final_loss']:.3g}; {reached}"


RESULT_COLUMNS = ["optimizer", "algorithm", "learning_rate", "beta1", "beta2", "threshold", "ratio_median",
                  "ratio_max", "raw_sharpness_at_entry", "raw_sharpness_final", "final_loss", "reached", "diverged",
                  "steps", "entry_step", "hvps_per_measurement"]


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """Rebuild aeos.csv (one row per finished run) and curves.csv (every measurement) from the cells."""
    out = Path(out)
    rows, curves = [], []
    for label, c in finished_cells(out, config["runs"]):
        spec, line = config["runs"][label], float(c["threshold"])
        ratio = c["preconditioned"][:, 0] / line
        algo = spec["optimizer"]
        # Adam's and RMSProp's first 1 / (1 - b2) steps: v still forming, P far below its later size.
        warmup = 1 / (1 - spec["b2"]) if algo in ("adam", "rmsprop") else 0
        skip = int(np.sum(c["step"] < warmup))
        s = edge_summary(ratio, c["raw"], entry=config["run"]["entry"], skip=skip)
        rows.append({
            "optimizer": label, "algorithm": algo, "learning_rate": spec["learning_rate"],
            "beta1": spec["b1"] if algo != "rmsprop" and algo != "gd" else 0.0,
            "beta2": spec["b2"] if algo in ("adam", "rmsprop", "frozen-adam") else np.nan,
            "threshold": line, "ratio_median": s["ratio_median"], "ratio_max": float(np.max(ratio[skip:])) if ratio.size > skip else np.nan,
            "raw_sharpness_at_entry": s["raw_sharpness_at_entry"], "raw_sharpness_final": s["raw_sharpness_final"],
            "final_loss": float(c["loss"][-1]), "reached": s["reached"], "diverged": bool(c["diverged"]),
            "steps": int(c["step"][-1]), "entry_step": int(c["step"][s["entry_index"]]) if s["reached"] else -1,
            "hvps_per_measurement": float(np.mean(c["hvps"])),
        })
        for i in range(len(c["step"])):
            curves.append({"optimizer": label, "step": int(c["step"][i]), "loss": float(c["loss"][i]),
                           "raw_sharpness": float(c["raw"][i]), "threshold": line, "ratio": float(ratio[i]),
                           **{f"preconditioned_{j + 1}": float(v) for j, v in enumerate(c["preconditioned"][i])}})
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    atomic_write_text(out / "aeos.csv", table.to_csv(index=False, float_format="%.8g"))
    atomic_write_text(out / "curves.csv", pd.DataFrame(curves).to_csv(index=False, float_format="%.8g"))
    return table


def write_fit(config: dict, out: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """aeos.csv is the summary; nothing is fitted (kept for the runner's interface)."""
    return table if table is not None else pd.read_csv(Path(out) / "aeos.csv")


def report(out: Path) -> str:
    """aeos.csv as text (what ``escape run aeos`` prints)."""
    out = Path(out)
    table = pd.read_csv(out / "aeos.csv")
    cols = ["optimizer", "algorithm", "learning_rate", "threshold", "ratio_median", "raw_sharpness_at_entry",
            "raw_sharpness_final", "final_loss", "reached", "diverged"]
    text = table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    note = ("ratio_median: median of lambda_1(P^-1 H) / threshold from the first measurement at or above "
            "run.entry on (after Adam's and RMSProp's first 1 / (1 - b2) steps); raw sharpness lambda_1(H) at that "
            "entry and at the end")
    return f"{text}\n{note}\nwrote {out}/aeos.csv, curves.csv, manifest.json, aeos.png, aeos_raw.png"


def plot(out: Path) -> Path:
    """aeos.png (preconditioned sharpness and the dashed lines, a panel per method) and aeos_raw.png."""
    from ._plots import plt, save_figure

    out = Path(out)
    config = json.loads((out / "manifest.json").read_text())["config"]
    curves = read_table(out / "curves.csv", columns=["optimizer", "step"])
    algos = [a for a in ALGORITHMS if any(s["optimizer"] == a for s in config["runs"].values())]
    for name, column, ylabel, lines in (("aeos.png", "preconditioned_1", r"$\lambda_1(P^{-1}H)$", True),
                                        ("aeos_raw.png", "raw_sharpness", r"$\lambda_1(H)$", False)):
        fig, axes = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 3.8), squeeze=False, constrained_layout=True)
        for ax, algo in zip(axes[0], algos):
            labels = [lb for lb, s in config["runs"].items() if s["optimizer"] == algo]
            for i, label in enumerate(labels):
                sub = curves[curves["optimizer"] == label]
                if not len(sub):
                    continue
                eta = config["runs"][label]["learning_rate"]
                ax.plot(sub["step"], sub[column], color=f"C{i}", lw=1.2, label=f"{label} (eta {eta:g})")
                if lines:
                    ax.axhline(float(sub["threshold"].iloc[0]), color=f"C{i}", ls="--", lw=0.9)
            ax.set_title(algo, fontsize=10)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.set_yscale("log" if lines else "linear")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        what = "preconditioned sharpness; dashed: each run's stability line" if lines else "raw sharpness"
        fig.suptitle(f"{config.get('name', 'aeos')}: {what}", fontsize=10)
        path = save_figure(fig, out / name)
    return out / "aeos.png" if path else path
