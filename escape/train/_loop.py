"""Training image classifiers: the trainer (data, model, optimizer, mesh, jitted steps of ``_step``) and the loop.

Data flows one way: [`escape.train.TrainConfig`][] -> data set, model, optimizer (with its learning-rate
schedule) -> [`escape.train.Trainer`][] (one jitted step on a device mesh) -> per-epoch metrics and
checkpoints -> final metrics and the sharpness of the solution. [`escape.train.train`][] runs the whole of it
and resumes from a run directory's checkpoint.

Across processes (JAX's distributed runtime, `escape._distributed.initialize`) the same code is data
parallel over every device of every process: each process loads the same data set and walks the same seeded
batch order, places its own devices' shards (`escape._distributed.put`), and process 0 alone writes the
metrics, the manifest and the checkpoints and reads a checkpoint to resume from (its bytes are broadcast).
"""

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from jaxtyping import PyTree
from tqdm.auto import tqdm

from .. import _distributed
from .. import data as _data
from .. import models as _models
from ..experiments._console import Console, progress_mode
from ..experiments._io import atomic_write_json, manifest
from ._checkpoint import checkpoint_from_bytes, read_checkpoint_files, read_checkpoint_record, save_checkpoint
from ._config import MODELS, TrainConfig, as_config
from ._optimizers import build_optimizer
from ._metrics import History, MetricsWriter, solution_sharpness
from ._step import _curvature_loss, _eval_step, _is_key, _normalise, Pipeline, train_step, TrainState

DATA_AXIS = "data"
"""Name of the device-mesh axis that the batch is sharded over."""
# Keys of a TrainConfig that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "data_dir", "devices")


# ---------------------------------------------------------------------------------------------- data, model


def load_dataset(config: TrainConfig) -> _data.Dataset:
    """The data set of ``config``, cut to ``train_examples`` / ``test_examples`` if set."""
    if config.data == "digits":
        ds = _data.load_digits()
    elif config.data == "cifar10":
        ds = _data.load_cifar10(config.data_dir)
    else:
        ds = _data.load_cifar100(config.data_dir)
    cut = lambda split, n: split if n is None else _data.Split(split.images[:n], split.labels[:n])
    return ds._replace(train=cut(ds.train, config.train_examples), test=cut(ds.test, config.test_examples))


# ----------------------------------------------------------------------------------------------------- trainer


class Trainer:
    """The pieces of one run: data, model constructor, optimizer, device mesh and the jitted steps.

    ```python
    trainer = Trainer(TrainConfig(optimizer="adai", learning_rate=1.0, epochs=2))
    ts = trainer.init()
    for epoch in range(2):
        ts, row = trainer.train_epoch(ts, epoch)       # row: train_loss, train_acc, lr, ...
        print(trainer.evaluate(ts, trainer.dataset.test))
    print(trainer.solution_metrics(ts))                # final losses and sharpness
    ```

    Data parallelism: a one-axis mesh over ``config.devices`` local devices (all by default, ``AxisType.Auto``);
    every batch is placed with its leading axis sharded over the mesh and the training state is replicated.
    On one device this is the ordinary single-device step. In a multi-process run (``jax.process_count() > 1``)
    the mesh spans every device of every process (``jax.devices()``) and ``config.devices`` must be ``None``
    or this process's number of local devices; every process builds the same Trainer (same data, same seed)
    and places only its own shards (`escape._distributed.put`). Batch sizes are multiples of the number
    of devices in the mesh (all processes together).

    Args:
        config: a [`escape.train.TrainConfig`][] or a mapping of its fields.
        dataset: the data set to use instead of loading ``config.data`` (already cut to size).
    """

    def __init__(self, config: "TrainConfig | Mapping", *, dataset: _data.Dataset | None = None):
        self.config = config = as_config(config)
        self.dataset = dataset if dataset is not None else load_dataset(config)
        available = jax.local_devices()
        if jax.process_count() > 1:  # every device of every process
            if config.devices not in (None, len(available)):
                raise ValueError(f"train: devices={config.devices}, but a multi-process run uses every device "
                                 f"({len(available)} on this process); leave devices unset")
            self.devices = jax.devices()
        else:
            n = len(available) if config.devices is None else config.devices
            if n > len(available):
                raise ValueError(f"train: devices={n} but only {len(available)} local devices are available")
            self.devices = available[:n]
        n = len(self.devices)
        for field in ("batch_size", "eval_batch_size"):
            if getattr(config, field) % n:
                raise ValueError(f"train: {field}={getattr(config, field)} is not a multiple of the {n} devices")
        self.mesh = jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=self.devices)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
        train = self.dataset.train
        if len(train.labels) < config.batch_size:
            raise ValueError(f"train: {len(train.labels)} training examples make no batch of {config.batch_size}")
        self.batches = _data.Batches(train.images, train.labels, batch_size=config.batch_size, seed=config.seed)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.optimizer, self.schedule = build_optimizer(config, self.steps_per_epoch)
        # Placed like the state: every argument of the jitted steps is then a global array of the mesh.
        self.pipeline = self.place(Pipeline(_data.Normalization.fit(train.images), config.augmented))

    def _make_model(self, key, compute_dtype):
        kwargs = {} if self.config.width is None else {"width": self.config.width}
        return MODELS[self.config.model_name](
            self.dataset.num_classes, key=key, in_channels=self.dataset.image_shape[0],
            compute_dtype=compute_dtype, **kwargs,
        )

    def place(self, tree: PyTree) -> PyTree:
        """Replicate every array of ``tree`` over the mesh (from host values that are the same on every
        process; typed PRNG keys travel as their key data)."""
        arrays, static = eqx.partition(tree, eqx.is_array)
        data = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, arrays)
        placed = _distributed.put(data, self.replicated)
        placed = jax.tree.map(
            lambda p, x: jax.random.wrap_key_data(p, impl=jax.random.key_impl(x)) if _is_key(x) else p, placed, arrays
        )
        return eqx.combine(placed, static)

    def _shard(self, *arrays):
        """Host arrays (the same on every process) with their leading axis sharded over the mesh."""
        return tuple(_distributed.put(a, self.batch_sharding) for a in arrays)

    def init(self) -> TrainState:
        """The initial state: model from ``fold_in(key(seed), 0)``, augmentation key ``fold_in(key(seed), 1)``."""
        root = jax.random.key(self.config.seed)
        model, bn_state = self._make_model(jax.random.fold_in(root, 0), jnp.bfloat16 if self.config.bf16 else None)
        opt_state = self.optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        return self.place(TrainState(model, bn_state, opt_state, jnp.zeros((), jnp.int32), jax.random.fold_in(root, 1)))

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of every step of (0-based) ``epoch``: ``learning_rate * gamma ** k`` with ``k`` the
        number of milestones ``<= epoch`` (in float64; the schedule computes the same in float32)."""
        cfg = self.config
        return cfg.learning_rate * cfg.gamma ** sum(m <= epoch for m in cfg.milestones)

    def info(self) -> dict:
        """Facts about the run for ``metrics.json``."""
        model, _ = eqx.filter_eval_shape(self._make_model, jax.random.key(0), None)
        return {
            "devices": [str(d) for d in self.devices],
            "backend": jax.default_backend(),
            "steps_per_epoch": self.steps_per_epoch,
            "model": self.config.model_name,
            "num_parameters": _models.count_parameters(model),
            "train_examples": int(len(self.dataset.train.labels)),
            "test_examples": int(len(self.dataset.test.labels)),
            "augment": self.config.augmented,
        }

    def train_epoch(self, ts: TrainState, epoch: int, *, bar=None) -> tuple[TrainState, dict]:
        """Every step of (0-based) ``epoch`` in the seeded order of [`escape.data.Batches`][].

        Returns:
            The new state and ``{"lr", "train_loss", "train_acc"}``: the learning rate, and the mean over the
            epoch's batches of the training-mode loss and accuracy (accumulated in float64 on the host; the
            per-step scalars are replicated, so every process reads them locally).
        """
        losses, corrects = [], []
        for b in self.batches.epoch(epoch):
            images, labels = self._shard(*b.arrays)
            ts, loss, correct = train_step(ts, images, labels, self.optimizer, self.pipeline, self.replicated)
            losses.append(loss)
            corrects.append(correct)
            if bar is not None:
                bar.update(1)
        losses = np.asarray(jax.device_get(losses), np.float64)
        corrects = np.asarray(jax.device_get(corrects), np.float64)
        return ts, {
            "lr": self.learning_rate(epoch),
            "train_loss": float(losses.mean()),
            "train_acc": float(corrects.sum() / (len(corrects) * self.config.batch_size)),
        }

    def evaluate(self, ts: TrainState, split: _data.Split) -> tuple[float, float]:
        """Mean loss and accuracy over every example of ``split``, inference-mode BatchNorm, no augmentation."""
        n = len(split.labels)
        size = min(self.config.eval_batch_size, -(-n // len(self.devices)) * len(self.devices))
        batches = _data.Batches(split.images, split.labels, batch_size=size, shuffle=False, remainder="pad")
        total_loss, total_correct = 0.0, 0
        for b in batches.epoch(0):
            images, labels, mask = self._shard(*b.arrays, b.mask)
            loss, correct = _eval_step(ts.model, ts.bn_state, images, labels, mask, self.pipeline)
            total_loss += float(loss)
            total_correct += int(correct)
        return total_loss / n, total_correct / n

    def _float32_model(self, model):
        """The trained parameters in a model that computes in float32 (curvature is not measured in bf16)."""
        skeleton, _ = eqx.filter_eval_shape(self._make_model, jax.random.key(0), None)
        return jax.tree.unflatten(jax.tree.structure(skeleton), jax.tree.leaves(model))

    def curvature_batches(self, ts: TrainState) -> list:
        """The sharpness data: ``(images, labels, bn_state)`` batches of equal size covering the subset.

        The subset is ``sharpness_examples`` training examples drawn without replacement with seed 0 (the same
        for every run), or the whole training set; it is cut into ``ceil(n / eval_batch_size)`` batches of
        equal size (a multiple of the devices), dropping the few examples left over.
        """
        cfg, train = self.config, self.dataset.train
        n = len(train.labels)
        index = np.arange(n)
        if cfg.sharpness_examples is not None and cfg.sharpness_examples < n:
            index = np.sort(np.random.default_rng(0).permutation(n)[: cfg.sharpness_examples])
        k = -(-len(index) // cfg.eval_batch_size)
        size = len(index) // k // len(self.devices) * len(self.devices)
        if size == 0:
            raise ValueError(f"train: sharpness_examples={len(index)} leaves no batch for {len(self.devices)} devices")
        out = []
        for i in range(k):
            rows = index[i * size : (i + 1) * size]
            images, labels = self._shard(train.images[rows], train.labels[rows])
            out.append((_normalise(self.pipeline, images), labels, ts.bn_state))
        return out

    def solution_metrics(self, ts: TrainState) -> dict:
        """Final metrics: test and (whole) training-set loss and accuracy in inference mode, and, if
        ``config.sharpness``, the sharpness of the training loss (inference-mode BatchNorm, float32 compute)
        by [`escape.train.solution_sharpness`][]."""
        cfg = self.config
        test_loss, test_acc = self.evaluate(ts, self.dataset.test)
        train_loss, train_acc = self.evaluate(ts, self.dataset.train)
        final = {"test_loss": test_loss, "test_acc": test_acc, "train_eval_loss": train_loss, "train_eval_acc": train_acc}
        if cfg.sharpness:
            params, static = eqx.partition(self._float32_model(ts.model), eqx.is_inexact_array)
            batches = self.curvature_batches(ts)
            key = jax.random.fold_in(jax.random.key(cfg.seed), 2)
            final.update(solution_sharpness(
                _curvature_loss(static), params, batches, key=key, lanczos_iters=cfg.lanczos_iters,
                hutchinson_samples=cfg.hutchinson_samples, sigma=cfg.sharpness_sigma,
                sharpness_samples=cfg.sharpness_samples, top_eigenvalues=cfg.top_eigenvalues,
            ))
            final["sharpness_examples"] = int(sum(b[1].shape[0] for b in batches))
        return final


# -------------------------------------------------------------------------------------------------- the loop


def _check_resumable(stored: dict, config: TrainConfig, where: Path) -> None:
    current = config.to_dict()
    # A field added after the run was made: the stored run had its default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    for key in sorted(set(stored) | set(current)):
        if key in _RESUMABLE_CHANGES:
            continue
        if stored.get(key, defaults.get(key)) != current.get(key):
            raise ValueError(
                f"train: {where} holds a run with {key}={stored.get(key)!r}, not {current.get(key)!r}; "
                "choose another output directory or delete it"
            )


def _read_run(out: Path | None, config: TrainConfig) -> tuple[History | None, dict | None, bytes | None]:
    """What ``out`` holds for ``config``: ``(stored, record, data)``: the stored history if the run is finished
    (to return as is), else the current checkpoint's record and ``.eqx`` bytes (or ``None``s: start afresh).

    Raises:
        ValueError: ``out`` holds another configuration, more epochs, or an unreadable checkpoint.
    """
    if out is None:
        return None, None, None
    if (out / "metrics.json").is_file():
        stored = History.load(out)
        _check_resumable(stored.config, config, out)
        if stored.complete and len(stored.epochs) == config.epochs:
            return stored, None, None
    record = read_checkpoint_record(out)
    if record is None:
        return None, None, None
    _check_resumable(record["config"], config, out)
    if record["epoch"] > config.epochs:
        raise ValueError(f"train: {out} holds {record['epoch']} epochs, more than epochs={config.epochs}")
    found = read_checkpoint_files(out)
    if found is None:  # the sidecar went away in between
        return None, None, None
    data, record = found
    return None, record, data


def _broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others pass ``None``)."""
    if jax.process_count() == 1:
        return data
    writer = _distributed.is_writer()
    size = np.frombuffer(len(data).to_bytes(8, "little"), np.uint8) if writer else np.zeros(8, np.uint8)
    n = int.from_bytes(_distributed.broadcast(size).tobytes(), "little")
    if n == 0:
        return b""
    buf = np.frombuffer(data, np.uint8) if writer else np.zeros(n, np.uint8)
    return _distributed.broadcast(buf).tobytes()


def _read_run_on_writer(out: Path | None, config: TrainConfig):
    """`_read_run` on process 0, its result (or its error) on every process.

    A multi-process run reads its run directory on process 0 alone and broadcasts what it found: the finished
    history, or the checkpoint's record and its ``.eqx`` bytes (checksum verified on process 0; deserialised
    on every process into its own fresh state). So the other processes need no view of the directory (no
    shared file system), and all of them take the same decision (return, resume, start afresh) or raise.
    """
    if jax.process_count() == 1:
        return _read_run(out, config)
    error, header, data = None, {}, None
    if _distributed.is_writer():
        try:
            stored, record, data = _read_run(out, config)
            header = {"stored": None if stored is None else stored.to_json(), "record": record}
        except Exception as e:  # raised everywhere, or the others would wait for a broadcast that never comes
            error, header = e, {"error": str(e) or type(e).__name__}
    header = json.loads(_broadcast_bytes(json.dumps(header).encode() if _distributed.is_writer() else None))
    if error is not None:
        raise error
    if "error" in header:
        raise ValueError(header["error"])
    data = _broadcast_bytes((data or b"") if _distributed.is_writer() else None)
    stored = None if header["stored"] is None else History.from_json(header["stored"])
    return stored, header["record"], data if header["record"] is not None else None


def use_compilation_cache(directory) -> bool:
    """Turn on JAX's persistent compilation cache in ``directory`` unless a cache directory is already set.

    Programs that are the same up to their array arguments then compile once per directory, within a
    process and across processes: the curvature products (compiled afresh by every call of
    `escape.curvature`) and a resumed run's steps. Global to the process. Returns whether it was set here.
    """
    if jax.config.jax_compilation_cache_dir:
        return False
    Path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    return True


def train(
    config: "TrainConfig | Mapping",
    out=None,
    *,
    progress: "bool | str" = True,
    stop_after: int | None = None,
    dataset: _data.Dataset | None = None,
    tensorboard: bool = True,
) -> History:
    """Train (or resume training) a model and return its [`escape.train.History`][].

    With ``out``, the run directory receives ``metrics.csv`` and ``metrics.json`` after every epoch, a
    checkpoint after every epoch ([`escape.train.save_checkpoint`][]) and TensorBoard event files when a
    TensorBoard writer is importable. If ``out`` holds a checkpoint, training resumes from it: the state is
    restored bit for bit and the data order, augmentation and schedule are functions of (seed, epoch, step), so
    the later epochs are those of an uninterrupted run. A finished run is returned as stored. A directory
    that holds a run of a different configuration is refused (only ``epochs``, ``data_dir`` and ``devices``
    may change).

    Multi-process (after `escape._distributed.initialize`): every process calls ``train`` with the same
    arguments (``out`` too) and trains data-parallel over every device of every process; process 0 alone
    reads ``out`` (its findings and checkpoint bytes are broadcast, so ``out`` need not be on a shared file
    system), writes the files and shows progress. Every process returns the same history.

    Args:
        config: a [`escape.train.TrainConfig`][] or a mapping of its fields.
        out: run directory, or ``None`` to keep nothing on disk.
        progress: ``True`` or ``"bar"``: a tqdm bar over the steps; ``"log"``: one line per epoch on stderr;
            ``False``: nothing.
        stop_after: stop (as if interrupted) once this many epochs are complete, before the final metrics.
        dataset: use this data set instead of loading ``config.data``.
        tensorboard: also write TensorBoard event files if possible.

    Returns:
        The history; ``history.final`` holds the final metrics and the sharpness, ``None`` if stopped early.
    """
    config = as_config(config)
    out = None if out is None else Path(out)
    stored, record, data = _read_run_on_writer(out, config)
    if stored is not None:
        return stored
    trainer = Trainer(config, dataset=dataset)
    ts = trainer.init()
    history = History(config=config.to_dict(), info=trainer.info())
    if record is not None:
        ts = trainer.place(checkpoint_from_bytes(data, ts, out / record["file"]))
        history.epochs = list(record["history"])
    writes = out is not None and _distributed.is_writer()
    writer = MetricsWriter(out if writes else None, history, tensorboard=tensorboard)
    if writes:
        _write_manifest(out, config)
    start = len(history.epochs)
    elapsed = history.epochs[-1]["elapsed"] if history.epochs else 0.0
    label = f"{config.optimizer} seed {config.seed}"
    mode = progress_mode(progress)  # checked on every process, shown on process 0
    mode = mode if _distributed.is_writer() else "none"
    console = Console("none" if mode == "bar" else mode, config.epochs, done=start, unit="epoch", where=out)
    bar = tqdm(total=config.epochs * trainer.steps_per_epoch, initial=start * trainer.steps_per_epoch,
               disable=mode != "bar", desc=label, unit="step", dynamic_ncols=True, leave=False)
    try:
        for epoch in range(start, config.epochs):
            if stop_after is not None and epoch >= stop_after:
                return history
            t0 = time.perf_counter()
            ts, row = trainer.train_epoch(ts, epoch, bar=bar)
            test_loss, test_acc = trainer.evaluate(ts, trainer.dataset.test)
            seconds = time.perf_counter() - t0
            elapsed += seconds
            row = {"epoch": epoch + 1, "step": (epoch + 1) * trainer.steps_per_epoch, **row,
                   "test_loss": test_loss, "test_acc": test_acc, "time": seconds, "elapsed": elapsed}
            writer.epoch(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", test_acc=f"{test_acc:.3f}")
            if out is not None:
                save_checkpoint(out, ts, {"epoch": epoch + 1, "step": row["step"], "seed": config.seed,
                                          "config": config.to_dict(), "history": history.epochs})
            # After the checkpoint: an epoch reported done is one a rerun resumes after.
            console.done(f"{label} epoch {epoch + 1}: lr {row['lr']:.3g}, train loss {row['train_loss']:.4f}, "
                         f"train acc {row['train_acc']:.4f}, test loss {test_loss:.4f}, test acc {test_acc:.4f}")
        if stop_after is not None and config.epochs > stop_after:
            return history
        bar.set_description(f"{label}: sharpness")
        final = trainer.solution_metrics(ts)
        final["train_loss"] = history.epochs[-1]["train_loss"]
        final["train_time"] = elapsed
        writer.finish(final)
        return history
    finally:
        bar.close()
        console.close()
        writer.close()


def resolved_config(config: TrainConfig) -> dict:
    """``config.to_dict()`` with what its ``None`` fields and its defaults mean filled in: the model, the
    augmentation, and every hyperparameter of the optimizer (its factory's defaults)."""
    import inspect

    from ._optimizers import _factory

    out = config.to_dict()
    out["model"], out["augment"] = config.model_name, config.augmented
    if out["width"] is None:
        out["width"] = inspect.signature(MODELS[config.model_name]).parameters["width"].default
    if out["devices"] is None:
        out["devices"] = len(jax.local_devices())
    _, factory, _ = _factory(config.optimizer)
    defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()
                if k not in ("learning_rate", "weight_decay", "mask") and p.default is not inspect.Parameter.empty
                and isinstance(p.default, (int, float, str, bool))}
    out["optimizer_args"] = {**defaults, **config.optimizer_args}
    return out


def _write_manifest(out: Path, config: TrainConfig) -> None:
    """``out/manifest.json`` like an experiment's: the resolved config, seed, versions, commit, devices."""
    path = Path(out) / "manifest.json"
    resolved = resolved_config(config)
    try:
        if path.is_file() and json.loads(path.read_text()).get("config") == resolved:
            return
    except (OSError, ValueError):
        pass
    atomic_write_json(path, manifest(resolved))
