"""Atomic writes and run manifests (config, seed, versions, commit)."""

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
    collaborators on a shared machine can read results, figures, metrics and checkpoints.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def finished_cells(out: Path, names):
    """``(name, arrays)`` of every ``out/cells/NAME.npz`` that exists, in the order of ``names``."""
    import numpy as np

    for name in names:
        path = Path(out) / "cells" / f"{name}.npz"
        if path.exists():
            with np.load(path) as cell:
                yield name, {k: cell[k] for k in cell.files}


def read_table(path: Path, columns=None):
    """A results CSV as a DataFrame; an empty one (with ``columns``) where the file is missing or holds no rows."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame(columns=columns)
