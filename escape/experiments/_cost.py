"""What a run will cost, printed before it starts: particle-steps, an upper bound on its time, its peak memory.

The model is the one ``benchmarks/scaling.py`` fits (docs/results.md, "Cost scaling"): the time of a cell is
linear in particles x steps, with a per-particle-step cost that depends on the optimizer's state and grows with
the dimension as ``(d / 10) ** c``; the memory is a baseline plus a fixed number of bytes per particle (cells
run one after another, so the largest cell sets the peak). The constants below were measured on the reference
machine (2 cores, AVX-512, one XLA host device per core); another CPU is assumed to scale with its cores. The
time is an upper bound: it counts every particle to the horizon, where escaped particles stop early (a cell
stops once all have escaped).
"""

import math
from pathlib import Path
from typing import NamedTuple

# Seconds per particle-step at d = 10 on the reference machine (2 cores), and the dimension exponent c.
_REFERENCE_CORES = 2
_SECONDS = {("engine", "sgd"): 1.2e-8, ("engine", "adam"): 2.0e-8, ("sde", "sgd"): 2.0e-8, ("sde", "adam"): 4.0e-8}
_DIM_EXPONENT = 0.8
_BYTES_PER_PARTICLE = {"engine": 400.0, "sde": 800.0}  # at d = 10, linear in d
_BASELINE_BYTES = 600e6  # the process with jax and escape imported and one cell compiled
# Optimizers with a second-moment state (the adaptive ones) cost about Adam's step; the rest about SGD's.
_ADAPTIVE = ("adam", "adamw", "adai", "adaiw", "rmsprop", "adagrad")


class Work(NamedTuple):
    """One cell's work: ``method`` ``"engine"`` (the discrete optimizer) or ``"sde"``; its optimizer's name."""

    method: str
    optimizer: str
    dim: int
    particles: int
    steps: int


def _seconds_per_particle_step(w: Work) -> float:
    family = "adam" if w.optimizer.lower() in _ADAPTIVE else "sgd"
    return _SECONDS[(w.method, family)] * (max(w.dim, 1) / 10.0) ** _DIM_EXPONENT


def estimate(work: list[Work], cores: int | None) -> dict:
    """Totals for the cells ``work``: particle-steps, seconds at most (None off a CPU: ``cores`` None), bytes."""
    steps = sum(w.particles * w.steps for w in work)
    seconds = None
    if cores is not None:
        speed = max(cores, 1) / _REFERENCE_CORES
        seconds = sum(w.particles * w.steps * _seconds_per_particle_step(w) for w in work) / speed
    peak = max((_BYTES_PER_PARTICLE[w.method] * w.dim / 10.0 * w.particles for w in work), default=0.0)
    return {"cells": len(work), "particle_steps": steps, "seconds": seconds, "bytes": _BASELINE_BYTES + peak}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(est: dict, total_cells: int) -> str:
    """The one line the CLI prints before a run."""
    if est["cells"] == 0:
        return f"cost: all {total_cells} cells are finished; nothing to compute"
    done = total_cells - est["cells"]
    head = f"cost: {est['cells']} cell(s) to run" + (f" ({done} finished)" if done else "")
    head += f", {est['particle_steps']:.2g} particle-steps at most"
    if est["seconds"] is not None:
        head += f", at most ~{_duration(est['seconds'])} on this CPU"
    return head + f", peak memory ~{math.ceil(est['bytes'] / 1e8) / 10:.1f} GB (docs: results, cost scaling)"


def run_estimate(module, config: dict, out, cores: int | None) -> str | None:
    """The CLI's line for a resolved ``config`` about to run in ``out``, or None for kinds without a cost model
    (a kind module opts in with ``work(config) -> [(cell_path, Work), ...]``)."""
    if not hasattr(module, "work"):
        return None
    cells = module.work(config)
    pending = [w for path, w in cells if not (Path(out) / path).exists()]
    return describe(estimate(pending, cores), len(cells))
