"""The adam-dynamics experiment through `escape run`: smoke preset, tables, resume, bad input."""

import numpy as np
import pandas as pd
import pytest

from _exits import assert_run_exits_2
from escape.cli import main
from escape.theory import adam_flat_bound, adam_step_bound


def test_smoke_run_tables_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    main(["run", "adam_dynamics", "--set", "preset=smoke", "--out", str(out), "--quiet"])
    bounds = pd.read_csv(out / "bounds.csv")
    assert bounds["step_bound"].iloc[0] == pytest.approx(adam_step_bound(0.9, 0.999))
    assert bounds["flat_bound"].iloc[0] == pytest.approx(adam_flat_bound(0.9, 0.999))
    assert np.all(bounds[[c for c in bounds if c.endswith("max_ratio")]] <= 1 + 1e-5)
    saddle = pd.read_csv(out / "saddle.csv").set_index("optimizer")
    assert np.all(saddle["escaped"] == 1.0)
    sign_like = saddle.loc[["adagrad", "rmsprop", "adam"], "median_direction_angle_deg"]
    assert np.all(np.abs(sign_like - 45) < 10) and saddle.loc["sgd", "median_direction_angle_deg"] < 5
    valleys = pd.read_csv(out / "valleys.csv")
    assert set(valleys["valley"]) == {"smooth", "sharp"} and len(valleys) == 12
    cycle = pd.read_csv(out / "two_cycle.csv")
    np.testing.assert_allclose(cycle["jump"], cycle["prop4_c_plus_eps"], rtol=1e-6)
    noise = pd.read_csv(out / "noise.csv")
    se = noise["exact_var_m"] * np.sqrt(2 / 255)  # the standard error of a variance from 256 Gaussian samples
    assert np.mean(np.abs(noise["var_m"] - noise["exact_var_m"]) < 3 * se) > 0.97
    assert (out / "adam_dynamics.png").stat().st_size > 0
    expected = {n: (out / n).read_text() for n in ("bounds.csv", "saddle.csv", "valleys.csv", "two_cycle.csv")}
    (out / "cells" / "saddle.npz").unlink()
    capsys.readouterr()
    main(["run", "adam_dynamics", "--set", "preset=smoke", "--out", str(out), "--log"])
    assert "5 of 6 cells done" in capsys.readouterr().err
    assert {n: (out / n).read_text() for n in expected} == expected


@pytest.mark.parametrize("sets,needle", [
    (["bounds.b1=[0.99]", "bounds.b2=[0.95]"], "bounds needs b1 < sqrt(b2)"),
    (["bounds.b1=[0.9, 0.5]"], "bounds.b1 and bounds.b2 must have the same length"),
    (["noise.b2=1.0"], "noise.b2"),
    (["saddle.learning_rate=0"], "saddle.learning_rate"),
    (["valleys.optimizers=['adamax']"], "valleys.optimizers"),
    (["saddle.exit_radius=1e-4"], "saddle needs start_radius < direction_radius <= exit_radius"),
])
def test_bad_config_exits_2(sets, needle, tmp_path, capsys):
    assert_run_exits_2("adam_dynamics", sets, needle, tmp_path, capsys)
