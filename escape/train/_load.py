"""Loading a trained run back: its Trainer and its last checkpointed state, ready to evaluate or predict."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import data as _data
from ._checkpoint import load_checkpoint, read_checkpoint_record
from ._loop import Trainer, TrainState


def load_trained(
    directory,
    *,
    dataset: _data.Dataset | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Trainer, TrainState]:
    """The [`Trainer`][escape.train.Trainer] of a run directory and its last checkpointed state.

    Reads the configuration from the run's ``checkpoint.json``, rebuilds the trainer (data set, model,
    optimizer, device mesh), reads the checkpoint into a freshly initialised state of that configuration
    ([`escape.train.load_checkpoint`][]: checksum, structure, shapes and dtypes checked) and replicates it over
    the trainer's devices. The state is the one after the last completed epoch, bit for bit, so
    ``trainer.evaluate(ts, trainer.dataset.test)`` gives that epoch's ``test_loss`` and ``test_acc``.

    ```python
    trainer, ts = load_trained("runs/tiny")
    loss, acc = trainer.evaluate(ts, trainer.dataset.test)
    ```

    Args:
        directory: a run directory written by [`escape.train.train`][] (or ``escape train --out``).
        dataset: the data set to use instead of loading the configuration's (as in ``train``); it must be the
            run's (already cut to size): the input normalisation is fitted on its training images.
        overrides: configuration fields to change, e.g. ``{"devices": 1}`` on a machine with fewer devices,
            or ``{"data_dir": ...}`` when the CIFAR files have moved. Only ``devices``, ``data_dir`` and
            ``eval_batch_size`` may change: the others determine the state that was saved.

    Returns:
        ``(trainer, ts)``; the checkpoint's record (epoch, step, metric rows) is
        ``read_checkpoint_record(directory)``.

    Raises:
        ValueError: one line, if ``directory`` has no checkpoint, the checkpoint does not fit its
            configuration, or an override names another field.
    """
    directory = Path(directory)
    record = read_checkpoint_record(directory)
    if record is None:
        raise ValueError(f"load_trained: {directory} has no checkpoint ({directory / 'checkpoint.json'} is missing)")
    config = dict(record["config"])
    for key, value in dict(overrides or {}).items():
        if key not in ("devices", "data_dir", "eval_batch_size"):
            raise ValueError(
                f"load_trained: cannot override {key!r} (only devices, data_dir and eval_batch_size: the other "
                "fields determine the saved state)"
            )
        config[key] = value
    trainer = Trainer(config, dataset=dataset)
    ts, _ = load_checkpoint(directory, trainer.init())
    return trainer, trainer.place(ts)
