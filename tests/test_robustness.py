"""The robustness experiment through `escape run`: tables consistent with each other and with the grid's
definition of a basin, resume per row with identical output, the figure, bad input."""

import numpy as np
import pandas as pd
import pytest

from _exits import assert_run_exits_2
from escape.cli import main

TINY = """
name = "robustness-tiny"
kind = "robustness"
seeds = [0, 1]
basin_margin = 0.05
[run]
width = 4
epochs = 2
milestones = [1]
batch_size = 32
train_examples = 128
test_examples = 64
[optimizers.adai]
optimizer = "adai"
learning_rates = [0.3, 1.0]
weight_decays = [0.0, 5e-3]
[optimizers.sgdm]
optimizer = "momentum"
learning_rates = [0.1]
weight_decays = [0.0, 5e-3]
"""


def test_tiny_run_tables_basins_figure_and_resume(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    main(["run", str(path), "--out", str(out), "--quiet"])
    results = pd.read_csv(out / "results.csv")
    assert len(results) == (2 * 2 + 1 * 2) * 2  # grid points x seeds
    assert set(results["algorithm"]) == {"adai", "momentum"} and not results["diverged"].any()
    assert np.all((results["test_error"] >= 0) & (results["test_error"] <= 1))
    assert np.allclose(results["test_error"] * 64, np.round(results["test_error"] * 64))  # counts of 64 examples
    grid = pd.read_csv(out / "grid.csv")
    mean = results.groupby(["optimizer", "learning_rate", "weight_decay"])["test_error"].mean()
    np.testing.assert_allclose(grid.set_index(["optimizer", "learning_rate", "weight_decay"])["test_error_mean"],
                               mean, rtol=1e-12)
    basins = pd.read_csv(out / "basins.csv").set_index("optimizer")
    for label, sub in mean.groupby(level=0):
        best = sub.min()
        assert basins.loc[label, "best_test_error"] == pytest.approx(best)
        assert basins.loc[label, "basin_points"] == int((sub <= best + 0.05 + 1e-12).sum())
    assert basins.loc["adai", "grid_points"] == 4 and basins.loc["sgdm", "grid_points"] == 2
    assert (out / "robustness.png").stat().st_size > 10_000
    report = capsys.readouterr().out
    assert "basin" in report and "adai" in report

    # Resume: a lost row is recomputed, the rest read back; every table comes out byte-identical.
    before = {f: (out / f).read_bytes() for f in ("results.csv", "grid.csv", "basins.csv")}
    (out / "cells" / "adai__lr1.npz").unlink()
    main(["run", str(path), "--out", str(out), "--quiet"])
    assert {f: (out / f).read_bytes() for f in before} == before


@pytest.mark.parametrize("sets, needle", [
    (["optimizers.adai.learning_rates=[1.0, 0.3]"], "optimizers.adai.learning_rates must be a non-empty list"),
    (["optimizers.momentum.learning_rates=[-0.1]"], "optimizers.momentum.learning_rates[0] must be a number > 0"),
    (["optimizers.adai.weight_decays=[]"], "optimizers.adai.weight_decays must be a non-empty list"),
    (["basin_margin=-1"], "basin_margin must be a number >= 0"),
])
def test_bad_config_exits_2_with_one_line(sets, needle, tmp_path, capsys):
    assert_run_exits_2("robustness", sets, needle, tmp_path, capsys)
