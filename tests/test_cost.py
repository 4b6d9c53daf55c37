"""The cost model the CLI prints before a run: exact particle-step counts from the config, finished cells left out,
the time linear in particle-steps and in 1 / cores, the largest cell setting the memory."""

import pytest

from escape.experiments import _escape_rates, _saddle, apply_overrides, check_config, load_config
from escape.experiments._cost import Work, describe, estimate, run_estimate


def test_fig6_work_counts_every_cell_and_skips_finished_ones(tmp_path):
    config = check_config(apply_overrides(load_config("fig6"), ["preset=smoke", "optimizers.adam.max_steps=500"]))
    cells = _escape_rates.work(config)
    assert len(cells) == 4 * 3 and len({path for path, _ in cells}) == 12
    total = estimate([w for _, w in cells], cores=2)
    assert total["particle_steps"] == 32 * (3 * 3 * 2000 + 3 * 500)  # Adam's own horizon
    (tmp_path / "cells").mkdir()
    for path, _ in cells[:5]:  # five finished cells (the four sgd-first ones and one more)
        (tmp_path / path).touch()
    line = run_estimate(_escape_rates, config, tmp_path, cores=2)
    assert line.startswith("cost: 7 cell(s) to run (5 finished), ")
    for path, _ in cells:
        (tmp_path / path).touch()
    assert run_estimate(_escape_rates, config, tmp_path, cores=2).startswith("cost: all 12 cells are finished")


def test_time_scales_with_work_and_cores_and_memory_with_the_largest_cell():
    a, b = Work("engine", "sgd", 10, 1000, 100), Work("engine", "adai", 10, 4000, 100)
    one, two = estimate([a], 2), estimate([a, a], 2)
    assert two["seconds"] == pytest.approx(2 * one["seconds"]) and two["bytes"] == one["bytes"]
    assert estimate([a], 4)["seconds"] == pytest.approx(one["seconds"] / 2)
    assert estimate([b], 2)["seconds"] > 4 * one["seconds"]  # Adai costs an adaptive optimizer's step
    assert estimate([a, b], 2)["bytes"] == estimate([b], 2)["bytes"] > one["bytes"]
    assert estimate([a], None)["seconds"] is None and "on this CPU" not in describe(estimate([a], None), 1)


def test_saddle_work_runs_to_the_last_horizon():
    config = check_config(apply_overrides(load_config("saddle"), ["preset=small"]))
    cells = _saddle.work(config)
    run = config["run"]
    assert len(cells) == len(config["optimizers"]) * len(run.get("methods", _saddle.METHODS))
    assert all(w.particles == run["n_particles"] and w.steps >= max(run["horizons"]) for _, w in cells)
    assert {w.method for _, w in cells} <= {"engine", "sde"} and all(w.dim >= 1 for _, w in cells)


@pytest.mark.parametrize("method", ["engine", "sde"])
def test_time_grows_with_the_dimension_continuously_through_the_reference(method):
    """(d / 10)^c with one exponent below d = 10 and another above: increasing in d, continuous at 10."""
    times = [estimate([Work(method, "sgd", d, 1000, 100)], 2)["seconds"] for d in (1, 2, 5, 9, 10, 11, 50, 200)]
    assert all(a < b for a, b in zip(times, times[1:]))
    near = [estimate([Work(method, "sgd", 10 + e, 10**6, 100)], 2)["seconds"] for e in (-1e-9, 0, 1e-9)]
    assert near[0] == pytest.approx(near[1], rel=1e-6) and near[2] == pytest.approx(near[1], rel=1e-6)
