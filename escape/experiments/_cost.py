"""What a run will cost, printed before it starts: particle-steps, an upper bound on its time, its peak memory.

The model is the one ``benchmarks/scaling.py`` fits (docs/results.md, "Cost scaling"): the time of a cell is
linear in particles x steps, with a per-particle-step cost that depends on the optimizer's state and grows with
the dimension as ``(d / 10) ** c``; the memory is a baseline plus a fixed number of bytes per particle (cells
run one after another, so the largest cell sets the peak). The constants below were measured on the reference
machine (2 cores, one XLA host device per core); another CPU is assumed to scale with its cores. The
time is an upper bound: it counts every particle to the horizon, where escaped particles stop early (a cell
stops once all have escaped).
"""

import math
from pathlib import Path
from typing import NamedTuple

# Measured by benchmarks/scaling.py on the reference machine (2 cores of an AMD EPYC, AVX2, one XLA host device
# per core; docs/results.md, "Cost scaling"): the marginal seconds per particle-step at d = 10 (the slope of
# the linear fit over 1e3..1e6 particles), by method and optimizer family.
_REFERENCE_CORES = 2
_SECONDS = {("engine", "sgd"): 3.51e-8, ("engine", "adam"): 5.55e-8, ("sde", "sgd"): 3.71e-7, ("sde", "adam"): 6.25e-7}
# The cost grows with the dimension as (d / 10)^c, c below and above d = 10: measured between d = 2 and 10 and
# between 10 and 50, the exponent of each method that gives the larger time on that side (so the time stays an
# upper bound): engine 0.66 (Adam; SGD 0.73) and 1.07 (SGD; Adam 0.85), SDE 0.83 and 1.04.
_DIM_EXPONENT = {"engine": (0.66, 1.07), "sde": (0.83, 1.04)}
# Peak resident memory per particle at d = 10 (the slope of the extra peak RSS against N), taken as linear in d.
_BYTES_PER_PARTICLE = {("engine", "sgd"): 290.0, ("engine", "adam"): 660.0, ("sde", "sgd"): 920.0,
                       ("sde", "adam"): 1510.0}
_BASELINE_BYTES = 600e6  # escape run with one fig6 cell compiled (measured 539-554 MB peak for the default fig6)
# Optimizers with a second-moment state (the adaptive ones) cost about Adam's step; the rest about SGD's.
_ADAPTIVE = ("adam", "adamw", "adai", "adaiw", "adaiv2", "rmsprop", "adagrad", "amsgrad", "yogi", "radam",
             "adabelief", "adabound", "padam")


class Work(NamedTuple):
    """One cell's work: ``method`` ``"engine"`` (the discrete optimizer) or ``"sde"``; its optimizer's name."""

    method: str
    optimizer: str
    dim: int
    particles: int
    steps: int


def _family(w: Work) -> tuple[str, str]:
    return w.method, "adam" if w.optimizer.lower() in _ADAPTIVE else "sgd"


def _seconds_per_particle_step(w: Work) -> float:
    low, high = _DIM_EXPONENT[w.method]
    ratio = max(w.dim, 1) / 10.0
    return _SECONDS[_family(w)] * ratio ** (low if ratio < 1 else high)


def estimate(work: list[Work], cores: int | None) -> dict:
    """Totals for the cells ``work``: particle-steps, seconds at most (None off a CPU: ``cores`` None), bytes."""
    steps = sum(w.particles * w.steps for w in work)
    seconds = None
    if cores is not None:
        speed = max(cores, 1) / _REFERENCE_CORES
        seconds = sum(w.particles * w.steps * _seconds_per_particle_step(w) for w in work) / speed
    peak = max((_BYTES_PER_PARTICLE[_family(w)] * w.dim / 10.0 * w.particles for w in work), default=0.0)
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
