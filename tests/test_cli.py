"""The escape command: bad input handling, list/fit/plot, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from escape.cli import main

SMOKE = ["--set", "preset=smoke", "--no-progress"]


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    captured = capsys.readouterr()
    return e.value.code, captured.err


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["optimizers.sgd.learning_rate=-0.1"], "learning_rate"),
        (["optimizers.sgd.learning_rate=0"], "learning_rate"),
        (["run.sharpness=[0.0, 1.0]"], "sharpness"),
        (["optimizers.adam.b1=1.5"], "b1"),
        (["optimizers.adai.beta2=-0.2"], "beta2"),
        (["optimizers.momentum.beta=1.0"], "beta"),
        (["landscape.dim=0"], "dim"),
        (["optimizers.sgd.optimizer=lion"], "lion"),
        (["landscape.name=rosenbrock"], "rosenbrock"),
        (["run.n_particles=0"], "n_particles"),
        (["run.colour=3"], "run.colour"),
        (["optimizers.sgd.momentum=0.9"], "momentum"),
        (["preset=huge"], "huge"),
        (["noequals"], "key=value"),
        (["fit.min_mean_steps=abc"], "fit.min_mean_steps"),
        (["fit.prefactor=foo"], "fit.prefactor"),
    ],
)
def test_bad_input_exits_2_with_one_line(sets, needle, tmp_path, capsys):
    argv = ["run", "fig6", "--out", str(tmp_path / "o"), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    code, err = _run_main(argv, capsys)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("escape: error:"), err
    assert needle in lines[0] and "Traceback" not in err


def test_malformed_toml_and_unknown_experiment(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nbatch_size = 1\n")
    code, err = _run_main(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "malformed TOML" in err and len(err.strip().splitlines()) == 1
    code, err = _run_main(["run", "fig99", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "fig99" in err
    code, err = _run_main(["fit", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "manifest" in err


def test_entry_point_exit_code_and_no_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "escape.cli", "run", "fig6", "--out", str(tmp_path / "o"), "--set", "landscape.dim=-1"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    listing = subprocess.run([sys.executable, "-m", "escape.cli", "list"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "fig6" in listing.stdout


def _cmd(out: Path):
    return [sys.executable, "-m", "escape.cli", "run", "fig6", "--out", str(out), *SMOKE]


def test_sigkill_then_resume_gives_identical_results(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    full = tmp_path / "full"
    subprocess.run(_cmd(full), check=True, capture_output=True, timeout=600, env=env)
    expected = (full / "results.csv").read_bytes()
    table = pd.read_csv(full / "results.csv")
    assert len(table) == 12 and table["escapes"].sum() > 0

    part = tmp_path / "part"
    proc = subprocess.Popen(_cmd(part), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cells = part / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cells.glob("*.npz"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(cells.glob("*.npz")))
    assert 3 <= n_done < 12, n_done  # killed part-way
    subprocess.run(_cmd(part), check=True, capture_output=True, timeout=600, env=env)
    assert (part / "results.csv").read_bytes() == expected
    for name in ("fit.csv", "manifest.json", "escape_rates.png"):
        assert (part / name).is_file()


def test_fit_and_plot_commands(tmp_path, capsys):
    out = tmp_path / "run"
    cmd = ["run", "fig6", "--out", str(out), "--set", "preset=smoke", "--log", "--set", "run.sharpness=[3.0, 4.0, 5.0]",
           "--set", "run.n_particles=16"]
    main(cmd)
    captured = capsys.readouterr()
    printed = captured.out
    assert "p_hat" in printed and "sgd" in printed
    # the cost line before the run: 4 optimizers x 3 sharpnesses x 16 particles x 2000 steps = 384000
    assert "cost: 12 cell(s) to run, 3.8e+05 particle-steps at most, at most ~" in captured.err
    main(cmd)  # finished: nothing to compute, the same tables
    assert "cost: all 12 cells are finished; nothing to compute" in capsys.readouterr().err
    fit_before = (out / "fit.csv").read_text()
    (out / "fit.csv").unlink()
    main(["fit", str(out)])
    assert (out / "fit.csv").read_text() == fit_before
    # refit under other settings: printed, equal to a direct fit of the run's own cells, nothing written
    files = {name: (out / name).read_bytes() for name in ("results.csv", "fit.csv", "manifest.json")}
    capsys.readouterr()
    main(["fit", str(out), "--set", "fit.prefactor=1.0", "--set", "fit.bootstrap=20"])
    printed = capsys.readouterr().out
    assert "not written" in printed and "p_boot_lower" in printed
    assert {name: (out / name).read_bytes() for name in files} == files
    from escape.experiments._runner import refit_experiment
    from escape.stats import fit_sharpness_exponent

    stored = pd.read_csv(out / "results.csv")
    _, refit = refit_experiment(out, ["fit.prefactor=1.0"])
    sub = stored[(stored.optimizer == "sgd") & stored.in_window]
    direct = fit_sharpness_exponent(sub.sharpness, sub.rate, events=sub.escapes, prefactor=1.0)
    row = refit.set_index("optimizer").loc["sgd"]
    assert row.prefactor == "fixed" and row.q_hat == 1.0 and row.p_hat == pytest.approx(direct.p_hat, rel=1e-12)
    # a narrower window drops the cells whose mean escape time lies above it
    cap = float(sub.mean_escape_time.max()) * 0.999
    table, narrow = refit_experiment(out, [f"fit.max_mean_steps={cap}"])
    keep = stored.escapes.gt(0) & stored.mean_escape_time.between(1, cap)
    assert table.in_window.tolist() == keep.tolist()
    assert narrow.set_index("optimizer").loc["sgd"].n_cells == int((keep & (stored.optimizer == "sgd")).sum())
    code, err = _run_main(["fit", str(out), "--set", "run.n_particles=3"], capsys)
    assert code == 2 and "fit.* keys only" in err and "Traceback" not in err
    (out / "escape_rates.png").unlink()
    main(["plot", str(out)])
    assert (out / "escape_rates.png").stat().st_size > 10_000
    main(["plot", str(out), "--against", str(out)])  # a run against itself: every ratio is 1
    assert (out / f"rates_vs_{out.name}.png").stat().st_size > 10_000
    main(["plot", str(out), "--against", str(out), "--against", str(out)])  # several runs in one figure
    assert (out / f"rates_vs_{out.name}_{out.name}.png").stat().st_size > 10_000
    code, err = _run_main(["plot", str(out), "--against", str(tmp_path / "missing")], capsys)
    assert code == 2 and "missing has no manifest.json" in err
    # a second run with another config in the same directory is refused
    code, err = _run_main(["run", "fig6", "--out", str(out), *SMOKE], capsys)
    assert code == 2 and "different config" in err


def test_pool_adds_replicates_cell_by_cell(tmp_path, capsys):
    """Pooled cells hold both runs' particles: counts add, and each rate is the pooled MLE (total escapes
    over total exposure, each source's exposure being its escapes / rate)."""
    sets = [*SMOKE, "--set", "run.sharpness=[3.0, 4.0]", "--set", "run.n_particles=16"]
    a, b, p = tmp_path / "a", tmp_path / "b", tmp_path / "pooled"
    main(["run", "fig6", "--out", str(a), *sets])
    main(["run", "fig6", "--out", str(b), *sets, "--set", "seed=1", "--set", "run.n_particles=24"])
    main(["pool", str(a), str(b), "--out", str(p)])
    ra, rb, rp = (pd.read_csv(d / "results.csv") for d in (a, b, p))
    assert len(rp) == len(ra) == 8
    for col in ["particles", "escapes", "early_escapes", "censored", "diverged"]:
        np.testing.assert_array_equal(rp[col].to_numpy(), (ra[col] + rb[col]).to_numpy(), err_msg=col)
    both = (ra.escapes > 0) & (rb.escapes > 0)
    assert both.sum() >= 4
    exposure = ra.escapes / ra.rate + rb.escapes / rb.rate
    np.testing.assert_allclose(rp.rate[both], ((ra.escapes + rb.escapes) / exposure)[both], rtol=1e-9)
    manifest = json.loads((p / "manifest.json").read_text())
    assert manifest["config"]["run"]["n_particles"] == 40
    assert [s["seed"] for s in manifest["config"]["pooled_from"]] == [0, 1]
    assert (p / "fit.csv").is_file() and (p / "escape_rates.png").is_file()
    # the same seed twice would repeat particles; a different config is not a replicate
    code, err = _run_main(["pool", str(a), str(a), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "distinct seeds" in err and "Traceback" not in err
    c = tmp_path / "c"
    main(["run", "fig6", "--out", str(c), *sets, "--set", "seed=2", "--set", "optimizers.sgd.learning_rate=0.01"])
    code, err = _run_main(["pool", str(a), str(c), "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "differs" in err and f"optimizers.sgd.learning_rate: 0.0034 in {a}, 0.01 in {c}" in err
