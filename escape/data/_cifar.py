"""CIFAR-10 / CIFAR-100 from the standard python-pickle files (no download: the user names a directory).

Layouts read (https://www.cs.toronto.edu/~kriz/cifar.html, the "python version" archives):

```
ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
ROOT/cifar-100-python/{train, test, meta}
```

``ROOT`` may also be the ``cifar-10-batches-py`` or ``cifar-100-python`` folder itself. Each batch file is a
pickled dict with ``b"data"`` (``uint8``, ``(n, 3072)``: 1024 red, 1024 green, 1024 blue values, row-major
32x32) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100).

Pickles are read with a restricted unpickler that only builds dicts, lists, strings, numbers and NumPy
arrays, so a hostile file cannot run code.
"""

import io
import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from ._dataset import Dataset, Split

_IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32

_CIFAR10 = dict(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    listing="data_batch_1..5, test_batch, batches.meta",
)
_CIFAR100 = dict(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train=("train",),
    test=("test",),
    meta="meta",
    listing="train, test, meta",
)
_URL = "https://www.cs.toronto.edu/~kriz/"

# Globals a CIFAR pickle may name: NumPy's array reconstruction (numpy.core before NumPy 2, numpy._core
# after) and the latin-1 codec that protocol-2 pickles use for the raw bytes of an array.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _CorruptFile(Exception):
    """Internal: the reason a file is not a valid CIFAR pickle (turned into a one-line ValueError)."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise _CorruptFile(f"pickle refers to {module}.{name}, which a CIFAR file never does")
        return super().find_class(*target)


def _load_pickle(path: Path) -> dict:
    try:
        data = path.read_bytes()
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _CorruptFile:
        raise
    except Exception as e:  # truncated, not a pickle, ...: any failure to unpickle is corruption
        raise _CorruptFile(f"not a readable pickle ({type(e).__name__}: {e})".replace("\n", " ")) from None
    if not isinstance(obj, dict):
        raise _CorruptFile(f"expected a pickled dict, got {type(obj).__name__}")
    # Python 2 pickles give bytes keys; files re-pickled under Python 3 may have str keys.
    return {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}


def _get(d: dict, key: bytes):
    if key not in d:
        keys = ", ".join(sorted(repr(k) for k in d)) or "none"
        raise _CorruptFile(f"missing key {key!r} (keys: {keys})")
    return d[key]


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    data = _get(d, b"data")
    labels = _get(d, label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _CorruptFile(f"b'data' must be a uint8 array of shape (n, {_ROW}), got {desc}")
    try:
        labels = np.asarray(labels)
    except Exception:
        raise _CorruptFile(f"{label_key!r} is not a list of integers") from None
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise _CorruptFile(
            f"{label_key!r} must be {data.shape[0]} integers (one per row of b'data'), "
            f"got {labels.dtype} array of shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise _CorruptFile(f"{label_key!r} must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return data.reshape((-1, *_IMAGE_SHAPE)), labels.astype(np.int32)


def _read_names(path: Path, key: bytes, num_classes: int) -> tuple[str, ...]:
    names = _get(_load_pickle(path), key)
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        raise _CorruptFile(f"{key!r} must list {num_classes} class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _locate(root, spec: dict) -> Path:
    """The folder holding the files; one-line ValueError saying what to put where if anything is missing."""
    root = Path(root).expanduser()
    files = (*spec["train"], *spec["test"], spec["meta"])
    how = (
        f"download {_URL}{spec['archive']} and extract it into {root} so that "
        f"{root / spec['folder']} holds {spec['listing']}"
    )
    if not root.is_dir():
        raise ValueError(f"{spec['title']}: directory {root} not found; {how}")
    for folder in (root / spec["folder"], root):
        if any((folder / f).exists() for f in files):
            missing = [f for f in files if not (folder / f).is_file()]
            if missing:
                raise ValueError(f"{spec['title']}: missing {', '.join(missing)} in {folder}; {how}")
            return folder
    raise ValueError(f"{spec['title']}: no {spec['folder']} folder in {root}; {how}")


def _load(root, spec: dict, label_key: bytes, names_key: bytes, num_classes: int) -> Dataset:
    folder = _locate(root, spec)

    def read(files):
        parts = []
        for f in files:
            try:
                parts.append(_read_batch(folder / f, label_key, num_classes))
            except _CorruptFile as e:
                raise ValueError(f"{spec['title']}: corrupt file {folder / f}: {e}") from None
        return Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    train, test = read(spec["train"]), read(spec["test"])
    try:
        names = _read_names(folder / spec["meta"], names_key, num_classes)
    except _CorruptFile as e:
        raise ValueError(f"{spec['title']}: corrupt file {folder / spec['meta']}: {e}") from None
    return Dataset(spec["name"], train, test, names)


def load_cifar10(root) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (or ``root`` itself if it holds the batch files).

    Args:
        root: a directory; the files are not downloaded.

    Returns:
        A [`escape.data.Dataset`][]: images ``uint8`` ``(n, 3, 32, 32)`` (50,000 train, 10,000 test for the
        full set), ``int32`` labels, 10 class names from ``batches.meta``.

    Raises:
        ValueError: one line, if the directory or a file is missing (saying which files to put where), or if a
            file is corrupt (naming it and what is wrong: not a pickle, a missing key, a wrong shape).
    """
    return _load(root, _CIFAR10, b"labels", b"label_names", 10)


def load_cifar100(root, *, labels: Literal["fine", "coarse"] = "fine") -> Dataset:
    """CIFAR-100 from ``root/cifar-100-python`` (or ``root`` itself if it holds ``train``, ``test``, ``meta``).

    Args:
        root: a directory; the files are not downloaded.
        labels: ``"fine"`` (100 classes, ``b"fine_labels"``) or ``"coarse"`` (20 superclasses).

    Returns:
        A [`escape.data.Dataset`][] as [`escape.data.load_cifar10`][], with 100 (or 20) class names.

    Raises:
        ValueError: as [`escape.data.load_cifar10`][].
    """
    if labels == "fine":
        return _load(root, _CIFAR100, b"fine_labels", b"fine_label_names", 100)
    if labels == "coarse":
        return _load(root, _CIFAR100, b"coarse_labels", b"coarse_label_names", 20)
    raise ValueError(f"load_cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
