"""The compare experiment: a tiny run (2 optimizers x 2 seeds x 2 epochs) through `escape run`, its table,
figure and per-run resumption; config validation."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from escape.cli import main
from escape.experiments import ConfigError, check_config, load_config
from escape.experiments._compare import run_configs

TINY_TOML = """
name = "compare-tiny"
kind = "compare"
seeds = [0, 1]
compilation_cache = true

[run]
data = "digits"
width = 4
epochs = 2
milestones = [1]
batch_size = 32
eval_batch_size = 128
train_examples = 256
test_examples = 128
sharpness_examples = 128
lanczos_iters = 3
top_eigenvalues = 2
hutchinson_samples = 2
sharpness_samples = 2

[optimizers.adai]
optimizer = "adai"
learning_rate = 1.0
weight_decay = 5e-4

[optimizers.momentum]
optimizer = "momentum"
learning_rate = 0.1
beta = 0.9
"""


def _run(toml, out):
    cmd = [sys.executable, "-m", "escape.cli", "run", str(toml), "--out", str(out), "--no-progress"]
    # Unoptimised XLA compiles about twice as fast; these runs are all compilation and no computation.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_tiny_compare_writes_table_and_figure_and_resumes_per_run(tmp_path, capsys):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    out = tmp_path / "out"
    printed = _run(toml, out)  # a subprocess: the compilation cache it turns on stays out of this process
    assert "adai" in printed and "momentum" in printed and "wall time" in printed
    for name in ("results.csv", "summary.csv", "curves.csv", "manifest.json", "timing.json"):
        assert (out / name).is_file(), name
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = pd.read_csv(out / "results.csv")
    assert sorted(zip(results["optimizer"], results["seed"])) == [("adai", 0), ("adai", 1), ("momentum", 0), ("momentum", 1)]
    for col in ("test_acc", "train_eval_loss", "lambda_max", "hessian_trace", "expected_sharpness"):
        assert results[col].notna().all(), col
    assert (results["epochs"] == 2).all() and (results["sharpness_examples"] == 128).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["optimizer"]) == ["adai", "momentum"]  # sorted labels and (summary["runs"] == 2).all()
    row = summary.iloc[0]
    sub = results[results["optimizer"] == "adai"]["test_acc"]
    assert row["test_acc_mean"] == pytest.approx(sub.mean()) and row["test_acc_std"] == pytest.approx(sub.std(ddof=1))
    spectra = pd.read_csv(out / "spectra.csv")  # the top-2 eigenvalues of every solution, largest first
    assert len(spectra) == 8 and set(spectra["rank"]) == {1, 2}
    top = spectra[spectra["rank"] == 1].set_index(["optimizer", "seed"])["eigenvalue"]
    second = spectra[spectra["rank"] == 2].set_index(["optimizer", "seed"])["eigenvalue"]
    assert (top >= second).all()
    lam = results.set_index(["optimizer", "seed"])["lambda_max"]
    pd.testing.assert_series_equal(top.sort_index(), lam.sort_index(), check_names=False)
    assert (out / "spectra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "top-2 Hessian" in printed
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 8 and set(curves["lr"].round(6)) == {1.0, 0.1, 0.01}  # milestone after epoch 1

    # Resume per run: remove one finished run; only it is redone, with identical metrics.
    shutil.rmtree(out / "runs" / "momentum__seed1")
    _run(toml, out)
    again = pd.read_csv(out / "results.csv")
    timing = ["train_time", "sharpness_time"]
    pd.testing.assert_frame_equal(results.drop(columns=timing), again.drop(columns=timing))
    assert len(json.loads((out / "timing.json").read_text())["sessions"]) == 2

    # `escape plot` and `escape fit` on the directory.
    main(["plot", str(out)])
    assert "learning_curves.png" in capsys.readouterr().out
    main(["fit", str(out)])
    assert "test acc" in capsys.readouterr().out


def test_bundled_config_builds_five_seeds_of_three_optimizers():
    runs = run_configs(check_config(load_config("compare")))
    assert sorted({label for label, _ in runs}) == ["adai", "adam", "momentum"]
    assert sorted({seed for _, seed in runs}) == [0, 1, 2, 3, 4]
    cfg = runs[("momentum", 0)]
    assert cfg.optimizer == "momentum" and cfg.optimizer_args == {"beta": 0.9} and cfg.milestones == (15, 25)
    # the registry's defaults are resolved into every run's hyperparameters
    assert runs[("adam", 0)].optimizer_args == {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
    assert cfg.top_eigenvalues == 10 and cfg.lanczos_iters == 40


def test_paper_optimizers_preset_builds_the_papers_list():
    """preset=paper-optimizers: the twelve optimizers of the Adai paper's comparison, two seeds each."""
    from escape.experiments import apply_overrides

    runs = run_configs(check_config(apply_overrides(load_config("compare"), ["preset=paper-optimizers"])))
    algorithms = {label: cfg.optimizer for (label, _), cfg in runs.items()}
    assert sorted(set(algorithms.values())) == sorted(
        ["momentum", "adam", "amsgrad", "adamw", "adabound", "padam", "yogi", "radam", "adabelief", "adai", "adaiw",
         "adaiv2"])
    assert sorted({seed for _, seed in runs}) == [0, 1]
    assert runs[("adamw", 0)].weight_decay == 0.5 and runs[("adaiv2", 0)].optimizer_args["dampening"] == 0.5


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["run.epochs=0"], "epochs"),
        (["optimizers.adai.learning_rate=-1.0"], "learning_rate"),
        (["optimizers.adam.b1=1.5"], "b1"),
        (["optimizers.adai.optimizer='lion2'"], "lion2"),
        (["seeds=[]"], "seeds"),
        (["run.milestones=[40]"], "milestones"),
    ],
)
def test_bad_config_exits_2_with_one_line(sets, needle, tmp_path, capsys):
    argv = ["run", "compare", "--out", str(tmp_path / "o"), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_unknown_run_key_is_rejected():
    config = load_config("compare")
    config["run"]["colour"] = 3
    with pytest.raises(ConfigError, match="run.colour"):
        check_config(config)
