"""The implicit-bias experiment through `escape run`: its smoke preset, tables, figures, resume, bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from _exits import assert_run_exits_2
from escape.cli import main


def test_smoke_run_tables_figures_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    main(["run", "implicit_bias", "--set", "preset=smoke", "--out", str(out), "--quiet"])
    orders = pd.read_csv(out / "orders.csv")
    assert set(orders["problem"]) == {"bilinear", "network", "minibatch"}
    assert set(orders["ode"]) == {"modified", "modified-asymptotic", "zeroth-order"}
    assert np.all(orders["error"] > 0) and np.all(orders["steps"] * orders["learning_rate"] > 0)
    fit = pd.read_csv(out / "fit.csv")
    big = fit[fit["variable"] == "eps"]
    assert len(big) == 1 and abs(float(big["slope"].iloc[0]) + 1) < 0.15  # exact 1 / eps law even in the smoke run
    regimes = pd.read_csv(out / "regimes.csv")
    assert list(np.sign(regimes["shift"])) == [-1.0, 1.0]  # beta > rho below the limit, rho > beta above
    grid = pd.read_csv(out / "grid.csv")
    assert list(grid["b2"]) == [0.99, 0.999] and np.all(grid["peak_norm"] >= grid["end_norm"])
    assert np.all(grid["end_norm"] >= grid["norm_floor"] * (1 - 1e-6))  # ||g||_{1,eps} >= p sqrt(eps)
    curves = pd.read_csv(out / "norm_curves.csv")
    assert len(curves) == 2 * 2 * 20  # grid points x seeds x measurements
    for name in ("implicit_bias.png", "grid.png", "large_eps.csv"):
        assert (out / name).stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["kind"] == "implicit-bias" and manifest["config"]["regimes"]["learning_rates"] == [1e-2]
    expected = {n: (out / n).read_text() for n in ("orders.csv", "fit.csv", "regimes.csv", "grid.csv")}
    (out / "cells" / "regimes.npz").unlink()
    capsys.readouterr()
    main(["run", "implicit_bias", "--set", "preset=smoke", "--out", str(out), "--log"])
    err = capsys.readouterr().err
    assert "6 of 7 cells done" in err and "regimes: limit one-norm" in err
    assert {n: (out / n).read_text() for n in expected} == expected


@pytest.mark.parametrize("sets,needle", [
    (["regimes.b1=[0.9]"], "regimes.b1 and regimes.b2 must have the same length"),
    (["bilinear.b1=1.0"], "bilinear.b1"),
    (["network.eps=-1e-3"], "network.eps"),
    (["bilinear.horizon=1e-4", "bilinear.h_max=1e-3"], "bilinear.horizon is shorter than one step"),
    (["network.n_examples=201"], "network.n_examples must be a multiple of network.minibatches"),
    (["run.parts=['orders', 'hills']"], "run.parts"),
    (["grid.learning_rate=0"], "grid.learning_rate"),
])
def test_bad_config_exits_2(sets, needle, tmp_path, capsys):
    assert_run_exits_2("implicit_bias", sets, needle, tmp_path, capsys)
