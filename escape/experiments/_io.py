"""Atomic writes and run manifests (config, seed, versions, commit)."""

import errno
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PACKAGES = ("escape", "jax", "jaxlib", "equinox", "optax", "diffrax", "numpy", "scipy", "pandas")


def file_mode() -> int:
    """The mode an ordinary new file gets here: ``0o666`` less the process's umask (0644 under umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one.

    The file gets the usual permissions (``0o666`` less the umask), not ``mkstemp``'s private 0600, so that
    collaborators on a shared machine can read results, figures, metrics and checkpoints. In a multi-process
    run only process 0 writes (the call does nothing elsewhere).
    """
    from .._distributed import is_writer

    if not is_writer():  # a multi-process run: process 0 writes the files, the others compute with it
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a regular file where the directory should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), e.filename) from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # a full disk (ENOSPC) names no file: name the one written
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj, *, sort_keys: bool = False) -> None:
    """``obj`` as indented JSON (keys in insertion order: a config keeps the order it was written in)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=float) + "\n")


def git_commit() -> str:
    """The commit of the source tree the package runs from ('unknown' outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def manifest(config: dict) -> dict:
    import jax

    return {
        "config": config,
        "seed": config.get("seed"),
        "versions": versions(),
        "commit": git_commit(),
        "devices": [str(d) for d in jax.devices()],
        "command": " ".join(sys.argv),
    }


def rebuild_outputs(module, config: dict, out: Path):
    """A runner's tables and figures from its finished cells: ``write_results``, ``write_fit``, ``plot``;
    returns the results table."""
    table = module.write_results(config, out)
    module.write_fit(config, out, table)
    module.plot(out)
    return table


def _reason(e: BaseException) -> str:
    """An exception as a short phrase for a one-line message: its type and its first line (or sentence)."""
    text = str(e).splitlines()[0] if str(e) else ""
    if len(text) > 80:
        text = text.split(". ")[0]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_cell(path: Path, keys=()) -> dict:
    """The arrays of the finished cell file ``path`` (``cells/NAME.npz``).

    Raises ConfigError, one line naming the file and saying to delete it to recompute that cell, where it
    is empty, truncated, edited, a directory or not a cell (it lacks one of ``keys``); nothing is deleted:
    a file a person changed is theirs to remove.
    """
    import numpy as np

    from ._config import ConfigError

    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("an .npy array, not an .npz archive")
        with loaded:
            cell = {k: loaded[k] for k in loaded.files}
        missing = [k for k in keys if k not in cell]
        if missing:
            raise KeyError(f"no array {missing[0]!r}")
    except OSError as e:
        if not isinstance(e, IsADirectoryError):
            raise
        reason = "a directory"
    except Exception as e:  # whatever bytes the file holds: truncated zip, edited header, CRC, EOF...
        reason = _reason(e)
    else:
        return cell
    raise ConfigError(f"{path}: not a readable cell file ({reason}); delete it and rerun the same command to "
                      "recompute that cell")


def read_manifest(path: Path) -> dict:
    """The JSON object of a run's ``manifest.json``, with its ``config`` table.

    Raises ValueError with a short reason (not JSON, not UTF-8, no ``config`` table) where the file is
    damaged; the callers name the file and what to do. OS errors pass through.
    """
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(_reason(e)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict):
        raise ValueError("no \"config\" table")
    return obj


def finished_cells(out: Path, names):
    """``(name, arrays)`` of every ``out/cells/NAME.npz`` that exists, in the order of ``names`` (a damaged
    one is a ConfigError naming it: `load_cell`)."""
    for name in names:
        path = Path(out) / "cells" / f"{name}.npz"
        if path.exists():
            yield name, load_cell(path)


def read_table(path: Path, columns=None):
    """A results CSV as a DataFrame; an empty one (with ``columns``) where the file is missing or holds no rows."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame(columns=columns)
