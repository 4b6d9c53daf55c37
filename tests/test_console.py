"""What `escape run` prints and writes: log lines without a terminal, the resume line, Ctrl-C (SIGINT) saying
how to resume and exiting 130, fit warnings in words, files readable by others under umask 022."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from escape.cli import main
from escape.experiments._io import atomic_write_text

SMOKE = ["--set", "preset=smoke"]


def _cmd(out: Path, *extra):
    return [sys.executable, "-m", "escape.cli", "run", "fig6", "--out", str(out), *SMOKE, *extra]


def test_sigint_says_how_to_resume_and_the_rerun_says_what_it_resumed(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    out = tmp_path / "part"
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an ignored
    # SIGINT ignored: the child installs Python's KeyboardInterrupt handler itself (no preexec_fn: forking a
    # process that has started JAX's threads is unsafe).
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from escape.cli import main; main(sys.argv[1:])")
    cmd = [sys.executable, "-c", start, *_cmd(out, "--log")[3:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines = []
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("[3/12]"):  # three cells written (the line comes after the cell file)
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err and "rerun the same command to resume" in err and "Traceback" not in err
    done = len(list((out / "cells").glob("*.npz")))
    assert 3 <= done < 12, done
    rerun = subprocess.run(_cmd(out, "--log"), capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr
    lines = rerun.stderr.splitlines()  # the cost line first, then what it resumes
    assert lines[0].startswith(f"cost: {12 - done} cell(s) to run ({done} finished), "), lines[0]
    assert lines[1] == f"resuming {out}: {done} of 12 cells done", lines[1]
    assert f"[{done + 1}/12]" in rerun.stderr and "[12/12]" in rerun.stderr
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 12


def test_log_lines_fit_warnings_and_permissions(tmp_path, capsys):
    """Under umask 022 every file of a run is group- and world-readable; the log shows early escapes; a fit
    on three cells warns about its zero degrees of freedom; a k-grid with too few cells says so in words."""
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        main(["run", "fig6", "--out", str(out), *SMOKE, "--set", "run.n_particles=16", "--log"])
    finally:
        os.umask(old)
    captured = capsys.readouterr()
    log = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(log) == 12 and all("escapes" in line and "censored" in line for line in log)
    assert any("before burn-in 1000" in line for line in log if "adam" in line)
    assert "\r" not in captured.err and "\x1b" not in captured.err  # no bar control characters in a log
    assert "early_escapes" in captured.out and "95% intervals" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    fit = pd.read_csv(out / "fit.csv")
    for _, row in fit.iterrows():
        if row["n_cells"] == 3 and row["dof"] == 0:
            assert any(w.startswith(f"warning: {row['optimizer']}:") and "0 degrees of freedom" in w for w in warnings)
        if row["n_cells"] < 3:
            assert any(w.startswith(f"warning: {row['optimizer']}: no fit:") and "needs 3" in w and "ks" not in w
                       for w in warnings)
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"results.csv", "fit.csv", "manifest.json", "escape_rates.png"} <= names
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("flags,expect", [(["--quiet"], "none"), (["--log"], "log"), (["--progress"], "bar"),
                                          (["--no-progress"], "none"), ([], "log")])
def test_output_flags(flags, expect, tmp_path, monkeypatch, capsys):
    """--progress, --log, --quiet choose the mode; without a flag and without a terminal, lines."""
    import escape.cli

    seen = {}

    def fake_run(config, out, *, progress):
        from escape.experiments._console import progress_mode

        seen["mode"] = progress_mode(progress)
        raise KeyboardInterrupt

    monkeypatch.setattr(escape.cli, "run_experiment", fake_run)
    with pytest.raises(SystemExit) as e:
        main(["run", "fig6", "--out", str(tmp_path / "o"), *flags])
    assert e.value.code == 130 and seen["mode"] == expect
    assert "rerun the same command to resume" in capsys.readouterr().err
