"""What a training run records: per-epoch metrics (CSV, JSON, optional TensorBoard) and the sharpness of the
solution (top Hessian eigenvalue, Hessian trace, expected sharpness) by `escape.curvature`."""

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..curvature import expected_sharpness, hessian_eigenpairs, hessian_trace, top_hessian_eigenvalue
from ..experiments._io import atomic_write_json, atomic_write_text

EPOCH_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "time", "elapsed")
"""Columns of ``metrics.csv``, one row per epoch (``epoch`` 1-based; ``step``: optimizer steps done so far;
``lr``: the learning rate of every step of that epoch; ``train_*``: mean over the epoch's mini-batches in
training mode, augmented as trained on; ``test_*``: the whole test split in inference mode after the epoch;
``time``: wall seconds of the epoch, training and evaluation; ``elapsed``: cumulative, over resumptions)."""


@dataclasses.dataclass
class History:
    """Metrics of a run: one dict per epoch (keys [`escape.train.EPOCH_COLUMNS`][]) and the final results.

    Attributes:
        config: the [`escape.train.TrainConfig`][] as a dict.
        epochs: per-epoch rows, in order.
        final: ``None`` until the run has finished; then the final test and training-set metrics and the
            sharpness at the solution (see ``docs/api/train.md`` for the keys).
        info: run facts: devices, steps per epoch, number of parameters, data sizes.
    """

    config: dict
    epochs: list[dict] = dataclasses.field(default_factory=list)
    final: dict | None = None
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.final is not None

    def column(self, name: str) -> np.ndarray:
        """One metric over the epochs, e.g. ``history.column("test_acc")``."""
        return np.array([row[name] for row in self.epochs])

    def to_json(self) -> dict:
        return {"config": self.config, "epochs": self.epochs, "final": self.final, "info": self.info,
                "complete": self.complete}

    @classmethod
    def from_json(cls, obj: dict) -> "History":
        return cls(config=obj["config"], epochs=list(obj["epochs"]), final=obj.get("final"), info=obj.get("info", {}))

    @classmethod
    def load(cls, directory) -> "History":
        """The history of a run directory, read from its ``metrics.json`` (finished or not).

        Raises:
            ValueError: one line, if ``directory`` has no readable ``metrics.json``.
        """
        path = Path(directory) / "metrics.json"
        if not path.is_file():
            raise ValueError(f"History.load: {path} does not exist (not a training run directory?)")
        try:
            obj = json.loads(path.read_text())
            return cls.from_json(obj)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"History.load: cannot read {path} ({type(e).__name__}: {e})") from None

    def to_dataframe(self) -> pd.DataFrame:
        """The per-epoch rows as a pandas DataFrame, one row per epoch.

        Columns: [`escape.train.EPOCH_COLUMNS`][] in that order, then any other keys the rows carry. The values
        are the full-precision floats of ``metrics.json`` (``metrics.csv`` holds the same columns to 10
        significant digits). ``final``, ``config`` and ``info`` are per run and not in the table.
        """
        extra = [k for row in self.epochs for k in row if k not in EPOCH_COLUMNS]
        columns = [*EPOCH_COLUMNS, *dict.fromkeys(extra)]
        return pd.DataFrame(self.epochs, columns=columns)


def _tensorboard_writer(directory: Path):
    """A scalar writer for TensorBoard event files if ``tensorboardX`` or ``tensorboard`` is importable, else None."""
    try:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(directory))
        return lambda tag, value, step: writer.add_scalar(tag, value, step), writer.flush, writer.close
    except ImportError:
        pass
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        return None
    writer = EventFileWriter(str(directory))

    def add(tag, value, step):
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    return add, writer.flush, writer.close


class MetricsWriter:
    """Writes ``metrics.csv`` and ``metrics.json`` of a run directory after every epoch (atomically), and
    TensorBoard scalars under ``tensorboard/`` when a TensorBoard writer is importable.

    Args:
        directory: the run directory, or ``None`` to write nothing.
        history: the history so far (after a resumption, the epochs already done).
        tensorboard: write event files if possible.
    """

    def __init__(self, directory, history: History, *, tensorboard: bool = True):
        self.directory = None if directory is None else Path(directory)
        self.history = history
        self._tb = None
        if self.directory is not None and tensorboard:
            self._tb = _tensorboard_writer(self.directory / "tensorboard")

    def _write(self) -> None:
        if self.directory is None:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EPOCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in self.history.epochs:
            w.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.directory / "metrics.csv", buf.getvalue())
        atomic_write_json(self.directory / "metrics.json", self.history.to_json())

    def epoch(self, row: dict) -> None:
        """Record one epoch's row."""
        self.history.epochs.append(row)
        self._write()
        if self._tb is not None:
            add, flush, _ = self._tb
            for key in EPOCH_COLUMNS[2:]:
                if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                    add(f"epoch/{key}", row[key], row["epoch"])
            flush()

    def finish(self, final: dict) -> None:
        """Record the final results (the run is complete)."""
        self.history.final = final
        self._write()
        if self._tb is not None:
            add, flush, close = self._tb
            for key, value in final.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    add(f"final/{key}", value, len(self.history.epochs))
            flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb[2]()
            self._tb = None


def solution_sharpness(
    loss_fn: Callable[[PyTree, Any], Float[Array, ""]],
    params: PyTree,
    batches: Sequence,
    *,
    key: PRNGKeyArray,
    lanczos_iters: int = 20,
    hutchinson_samples: int = 20,
    sigma: float = 0.01,
    sharpness_samples: int = 16,
    top_eigenvalues: int = 1,
) -> dict:
    """Top Hessian eigenvalue, Hessian trace and expected sharpness of a loss at ``params``.

    Each measure is the one of `escape.curvature` on the mean of ``loss_fn(params, batch)`` over
    ``batches``: [`escape.curvature.top_hessian_eigenvalue`][] (Lanczos, ``lanczos_iters`` Hessian-vector
    products per batch), [`escape.curvature.hessian_trace`][] (Hutchinson, ``hutchinson_samples`` Rademacher
    probes) and [`escape.curvature.expected_sharpness`][] (antithetic, ``sharpness_samples`` Gaussian draws of
    standard deviation ``sigma`` on every parameter). The three use independent keys folded from ``key``.
    With ``top_eigenvalues = k > 1`` the eigenvalue step is [`escape.curvature.hessian_eigenpairs`][] for the top
    ``k`` (the same ``lanczos_iters`` steps), recorded as ``top_eigenvalues`` (largest first; ``lambda_max`` is
    the first).

    Returns:
        A dict: ``lambda_max`` (and ``top_eigenvalues`` for ``k > 1``), ``hessian_trace``,
        ``hessian_trace_stderr``, ``expected_sharpness``, ``expected_sharpness_stderr``, ``sigma`` and
        ``sharpness_time`` (wall seconds).
    """
    start = time.perf_counter()
    k_eig, k_trace, k_es = (jax.random.fold_in(key, i) for i in range(3))
    if top_eigenvalues > 1:
        pairs = hessian_eigenpairs(loss_fn, params, k=top_eigenvalues, key=k_eig, num_iters=lanczos_iters,
                                   batches=batches)
        top = [float(v) for v in pairs.eigenvalues]
    else:
        top = [float(top_hessian_eigenvalue(loss_fn, params, key=k_eig, num_iters=lanczos_iters,
                                            batches=batches).eigenvalue)]
    trace = hessian_trace(loss_fn, params, key=k_trace, num_samples=hutchinson_samples, batches=batches)
    es = expected_sharpness(loss_fn, params, key=k_es, sigma=sigma, num_samples=sharpness_samples, batches=batches)
    return {
        "lambda_max": top[0],
        **({"top_eigenvalues": top} if top_eigenvalues > 1 else {}),
        "hessian_trace": float(trace.value),
        "hessian_trace_stderr": float(trace.stderr),
        "expected_sharpness": float(es.value),
        "expected_sharpness_stderr": float(es.stderr),
        "sigma": float(sigma),
        "sharpness_time": time.perf_counter() - start,
    }
