"""fig6 with ``run.mode = "sde"``: the continuous-time models give the discrete optimizers' escape rates."""

import numpy as np
import pytest

from escape.experiments import ConfigError, apply_overrides, load_config, run_experiment


def _config(mode: str) -> dict:
    cfg = apply_overrides(
        load_config("fig6"),
        ["preset=smoke", f"run.mode={mode}", "landscape.noise=hessian", "run.n_particles=256", "run.max_steps=3000"],
    )
    cfg["optimizers"] = {"sgd": cfg["optimizers"]["sgd"]}
    # Hessian noise is colder than the data noise at fig6's rate: eta * k = 0.075 puts the mean escape time
    # in the window within 3000 steps.
    cfg["optimizers"]["sgd"]["learning_rate"] = 0.025
    cfg["run"]["sharpness"] = [3.0]
    return cfg


def test_fig6_mode_validation():
    cfg = _config("sde")
    cfg["run"]["mode"] = "ode"
    with pytest.raises(ConfigError, match="run.mode"):
        run_experiment(cfg, "/nonexistent-never-created", progress=False)


def test_fig6_sde_rates_match_discrete(tmp_path):
    disc = run_experiment(_config("discrete"), tmp_path / "d", progress=False)
    sde = run_experiment(_config("sde"), tmp_path / "s", progress=False)
    assert (tmp_path / "s" / "results.csv").exists() and (tmp_path / "s" / "fit.csv").exists()
    both = disc.merge(sde, on=["optimizer", "sharpness"], suffixes=("_d", "_s"))
    cells = both[both["in_window_d"] & both["in_window_s"] & (both["escapes_d"] >= 20) & (both["escapes_s"] >= 20)]
    assert len(cells) >= 1, both[["sharpness", "escapes_d", "escapes_s", "mean_escape_time_d"]]
    ratio = (cells["rate_s"] / cells["rate_d"]).to_numpy()
    print("SDE / discrete rate ratios:", dict(zip(cells["sharpness"], np.round(ratio, 3))))
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
