"""The cell loop every experiment made of independent cells shares: resume, atomic cell files, progress."""

import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .._distributed import broadcast, is_writer
from ._config import prepare_run_dir
from ._console import Console
from ._io import atomic_write_bytes, rebuild_outputs


def pending(items: list, finished: Callable[[object], bool]) -> list:
    """The ``items`` not ``finished`` yet, as process 0 sees them, on every process of a multi-process run (all
    must step through the same cells: each cell's computation is collective)."""
    mask = broadcast(np.array([0 if finished(item) else 1 for item in items], np.int32))
    return [item for item, m in zip(items, mask) if m]


def run_cells(module_name: str, config: dict, out: Path, names: list[str], compute: Callable[[dict, str], dict],
              *, progress: str, summary: Callable[[str, dict], str] = lambda name, cell: name, unit: str = "cell"):
    """Run (or resume) the cells ``names`` of a resolved config in ``out`` (each ``compute(config, name)``, saved
    atomically as ``cells/NAME.npz``; finished ones are skipped; ``summary(name, cell)`` is its progress line),
    then rebuild the tables and figures with the
    module's ``write_results``, ``write_fit`` and ``plot``; returns the results table (None on the processes
    of a multi-process run other than process 0, which alone writes)."""
    out = prepare_run_dir(out, config)
    todo = pending(names, lambda n: (out / "cells" / f"{n}.npz").exists())
    console = Console(progress, len(names), done=len(names) - len(todo), unit=unit, where=out)
    try:
        for name in todo:
            console.begin(name)
            cell = compute(config, name)
            buf = io.BytesIO()
            np.savez(buf, **cell)
            atomic_write_bytes(out / "cells" / f"{name}.npz", buf.getvalue())
            console.done(summary(name, cell))
    finally:
        console.close()
    if not is_writer():  # tables and figures are process 0's
        return None
    return rebuild_outputs(sys.modules[module_name], config, out)
