"""Checkpoints that resume exactly: the arrays with ``eqx.tree_serialise_leaves``, the rest in a JSON sidecar.

A checkpoint of directory ``DIR`` is two files:

- ``DIR/checkpoint-EEEE.eqx``: every array of the training state (model parameters, BatchNorm state,
  optimizer state, step counter, augmentation key as raw key data), in the leaf order of a freshly built
  state of the same configuration (the ``like`` tree given to [`escape.train.load_checkpoint`][]);
- ``DIR/checkpoint.json``: the commit record: which ``.eqx`` file is current and its SHA-256, the position
  in the data order (completed epochs, global step), the configuration, and the metrics history so far.

Both are written atomically (temporary file, fsync, rename), the ``.eqx`` file first under a new name and the
sidecar last, so a run killed at any moment leaves the previous checkpoint or the new one, never a mix. Older
``.eqx`` files are deleted after the sidecar that stops naming them is in place.

In a multi-process run (``jax.distributed``) every process calls [`escape.train.save_checkpoint`][] (the
state is replicated, so each can read it back) and only process 0 writes; [`escape.train.train`][] reads a
checkpoint on process 0 and broadcasts its bytes (`read_checkpoint_files`,
`checkpoint_from_bytes`), so the other processes need not
see the run directory.
"""

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree

from .. import _distributed
from ..experiments._io import atomic_write_bytes, atomic_write_json

SIDECAR = "checkpoint.json"
_FORMAT = 1


def _to_storable(tree: PyTree) -> PyTree:
    """Typed PRNG keys become their raw ``uint32`` key data (``np.save`` cannot store key arrays)."""
    is_key = lambda x: isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def _from_storable(stored: PyTree, like: PyTree) -> PyTree:
    is_key = lambda x: isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree.map(
        lambda s, l: jax.random.wrap_key_data(s, impl=jax.random.key_impl(l)) if is_key(l) else s, stored, like
    )


def save_checkpoint(directory, state: PyTree, record: dict[str, Any]) -> Path:
    """Write ``state`` and the JSON ``record`` as the current checkpoint of ``directory``.

    Args:
        directory: the run directory (created if needed).
        state: a pytree of arrays (e.g. an [`escape.train.TrainState`][]); typed PRNG keys are stored as key data.
        record: JSON-serialisable metadata; must hold an integer ``"epoch"`` (completed epochs), which names
            the ``.eqx`` file. ``"file"``, ``"sha256"`` and ``"format"`` are added.

    Returns:
        The path of the sidecar.

    In a multi-process run every process calls it: the arrays are read back on each (an all-gather for any
    that is not replicated, so that every process takes part in the same collectives) and only process 0
    (`escape._distributed.is_writer`) writes or deletes files.
    """
    directory = Path(directory)
    epoch = int(record["epoch"])
    host = jax.tree.map(lambda x: _distributed.fetch(x) if isinstance(x, jax.Array) else x, _to_storable(state))
    if not _distributed.is_writer():
        return directory / SIDECAR
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, host)
    data = buf.getvalue()
    name = f"checkpoint-{epoch:04d}.eqx"
    atomic_write_bytes(directory / name, data)
    sidecar = {**record, "file": name, "sha256": hashlib.sha256(data).hexdigest(), "format": _FORMAT}
    atomic_write_json(directory / SIDECAR, sidecar)
    for old in directory.glob("checkpoint-*.eqx"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / SIDECAR


def read_checkpoint_record(directory) -> dict | None:
    """The sidecar of ``directory``'s current checkpoint, or ``None`` if there is none."""
    path = Path(directory) / SIDECAR
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"checkpoint: cannot read {path} ({type(e).__name__}: {e}); delete it to start afresh") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT or "file" not in record:
        raise ValueError(f"checkpoint: {path} is not a checkpoint record of format {_FORMAT}; delete it to start afresh")
    return record


def read_checkpoint_files(directory) -> tuple[bytes, dict] | None:
    """The raw ``.eqx`` bytes and the record of ``directory``'s current checkpoint (checksum verified), or
    ``None`` if there is none: the file-reading half of [`escape.train.load_checkpoint`][].

    Raises:
        ValueError: one line, if the record or the array file is unreadable, missing or fails its checksum.
    """
    directory = Path(directory)
    record = read_checkpoint_record(directory)
    if record is None:
        return None
    path = directory / record["file"]
    if not path.is_file():
        raise ValueError(f"checkpoint: {path} named by {directory / SIDECAR} is missing; delete the sidecar to start afresh")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise ValueError(f"checkpoint: {path} does not match the checksum in {SIDECAR} (corrupt or replaced)")
    return data, record


def checkpoint_from_bytes(data: bytes, like: PyTree, where="checkpoint") -> PyTree:
    """The state serialised in ``data`` (an ``.eqx`` file's bytes) in the structure of ``like``: the
    deserialising half of [`escape.train.load_checkpoint`][]; ``where`` names the file in errors.

    Raises:
        ValueError: one line, if ``data`` does not fit the structure, shapes or dtypes of ``like``.
    """
    storable_like = jax.device_get(_to_storable(like))
    try:
        stored = eqx.tree_deserialise_leaves(io.BytesIO(data), storable_like)
    except Exception as e:  # wrong structure: the file belongs to another configuration
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"checkpoint: {where} does not fit this configuration ({msg})") from None
    for got, want in zip(jax.tree.leaves(stored), jax.tree.leaves(storable_like)):
        if hasattr(want, "shape") and (got.shape != want.shape or got.dtype != want.dtype):
            raise ValueError(
                f"checkpoint: {where} does not fit this configuration (an array of shape {got.shape} {got.dtype} "
                f"where {want.shape} {want.dtype} is expected)"
            )
    return _from_storable(stored, like)


def load_checkpoint(directory, like: PyTree) -> tuple[PyTree, dict] | None:
    """Read the current checkpoint of ``directory`` into the structure of ``like``.

    Args:
        directory: the run directory.
        like: a state of the same structure, shapes and dtypes (e.g. a freshly initialised one).

    Returns:
        ``(state, record)``, or ``None`` if ``directory`` has no checkpoint. The arrays are host-backed JAX
        arrays, bit-identical to those saved; place them on devices as needed.

    Raises:
        ValueError: one line, if the record or the array file is unreadable, missing, or does not match its
            checksum or the structure of ``like``.
    """
    found = read_checkpoint_files(directory)
    if found is None:
        return None
    data, record = found
    return checkpoint_from_bytes(data, like, Path(directory) / record["file"]), record
