"""The sde-fidelity experiment at smoke size: cells, the ratio to the optimizer's rate, resume, bad input."""

import numpy as np
import pandas as pd
import pytest

from escape.experiments import apply_overrides, load_config, run_experiment
from escape.experiments._config import ConfigError
from escape.experiments import check_config


def test_smoke_run_ratios_and_resume(tmp_path):
    cfg = apply_overrides(load_config("sde_fidelity"), ["preset=smoke"])
    out = tmp_path / "sf"
    run_experiment(cfg, out, progress=False)
    table = pd.read_csv(out / "results.csv")
    # every (optimizer, method, variant) of the preset, the optimizer's own rate as the reference (ratio 1)
    assert len(table) == 2 * (len(cfg["run"]["discrete"]) + len(cfg["run"]["models"]))
    ref = table[(table.method == "discrete") & (table.variant == "optimizer")]
    assert np.allclose(ref.ratio, 1.0)
    finite = table[np.isfinite(table.ratio)]
    assert np.allclose(finite.ratio, finite.rate / finite.optimizer.map(ref.set_index("optimizer").rate))
    assert (finite.ratio_lower <= finite.ratio).all() and (finite.ratio <= finite.ratio_upper).all()
    assert (out / "sde_fidelity.png").stat().st_size > 10_000
    before = (out / "results.csv").read_text()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.npz")}
    run_experiment(cfg, out, progress=False)  # every cell is done: none is computed or written again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.npz")} == stamps
    assert (out / "results.csv").read_text() == before


def test_only_adam_and_adai_have_ablations():
    cfg = apply_overrides(load_config("sde_fidelity"), ["preset=smoke", "optimizers.adam.optimizer=sgd"])
    with pytest.raises(ConfigError, match="optimizers.adam.optimizer must be one of adam, adai"):
        check_config(cfg)
