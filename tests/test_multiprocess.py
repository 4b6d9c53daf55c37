"""The engine, the SDE solve and ``escape run fig6`` across processes: two local processes on JAX's distributed
runtime (gloo CPU collectives on 127.0.0.1, one host device each) against one process with the same total device
count (two host devices) and against one device.

Every random number is keyed by (key, particle, step block), so the sharded programs compute the same numbers
in the same order: the results are compared bit for bit, and results.csv byte for byte.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _multiprocess import free_port, worker_env

_TIMEOUT = 300

# Adam on 2-d Styblinski-Tang with fresh samples (a particle count no multiple of the device count: padding),
# saved positions and states; the SGD Langevin SDE of the same landscape with save times.
_WORK = textwrap.dedent(
    """
    import sys, jax, jax.numpy as jnp, numpy as np
    from escape import _distributed
    if len(sys.argv) > 2:
        assert _distributed.initialize(f"127.0.0.1:{sys.argv[2]}", 2, int(sys.argv[3]))
    from escape.landscapes import StyblinskiTang
    from escape.optim import make_optimizer
    from escape.simulate import escape_times
    from escape.dynamics import SGDLangevin, solve_sde
    assert jax.device_count() == 2, jax.devices()
    st = StyblinskiTang(dim=2, sharpness=3.0, noise="data", n_data="fresh")
    res = escape_times(st, make_optimizer("adam", learning_rate=0.2), batch_size=1, n_particles=37,
                       max_steps=300, key=jax.random.key(5), chunk_size=64, save_steps=[10, 300], save_state=True)
    sde = solve_sde(SGDLangevin(StyblinskiTang(dim=2, sharpness=1.0, noise="isotropic", sigma=3.0), 0.05),
                    n_particles=21, t1=10.0, dt=0.05, key=jax.random.key(6), saveat_times=[1.0, 5.0])
    arrays = {"fp": res.first_passage, "fd": res.first_divergence, "final": res.final, "pos": res.positions,
              "sde_fp": sde.first_passage_step, "sde_final": sde.final, "sde_ys": sde.ys,
              **{f"state{i}": leaf for i, leaf in enumerate(jax.tree.leaves(res.states))}}
    if jax.process_index() == 0:
        np.savez(sys.argv[1], steps_run=res.steps_run, sde_steps=sde.n_steps,
                 **{k: np.asarray(v) for k, v in arrays.items()})
    """
)


def _wait(procs, names):
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=_TIMEOUT))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("timed out after %d s:\n%s" % (_TIMEOUT, "\n---\n".join(p.communicate()[1][-3000:] for p in procs)))
    for name, p, (_, err) in zip(names, procs, outputs):
        assert p.returncode == 0, f"{name} exited {p.returncode}:\n{err[-3000:]}"
    return outputs


def test_engine_and_sde_in_two_processes_are_bit_identical(tmp_path):
    """2 processes x 1 device against 1 process x 2 devices: first passages, divergences, final and saved
    positions, saved optimizer states and the SDE's first passages, finals and saves, bit for bit."""
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", _WORK, str(tmp_path / "multi.npz"), port, str(i)], env=worker_env(1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    procs.append(subprocess.Popen([sys.executable, "-c", _WORK, str(tmp_path / "one.npz")], env=worker_env(2),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    _wait(procs, ("process 0", "process 1", "one process"))
    multi, one = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "one.npz")
    assert sorted(multi.files) == sorted(one.files) and len(one.files) > 9
    for k in one.files:
        np.testing.assert_array_equal(multi[k], one[k], err_msg=k)
    assert (one["fp"] >= 0).any() and (one["fp"] < 0).any()  # some escape within the horizon, some do not
    assert one["fp"].shape == (37,) and one["sde_fp"].shape == (21,)


_FIG6 = ["run", "fig6", "--set", "preset=smoke", "--set", "run.n_particles=10", "--no-progress"]


def test_fig6_results_are_byte_identical_across_devices_and_processes(tmp_path):
    """``escape run fig6`` (smoke preset) with --devices 1, --devices 2 and in two processes (--coordinator
    127.0.0.1:PORT --num-processes 2 --process-id I): results.csv byte-identical; the two-process run directory
    holds the same files as the one-process run; a rerun of the two-process command computes nothing again."""
    cli = [sys.executable, "-m", "escape.cli"]
    port = str(free_port())
    out = {k: tmp_path / k for k in ("d1", "d2", "multi")}
    multi = lambda i: [*cli, *_FIG6, "--out", str(out["multi"]), "--coordinator", f"127.0.0.1:{port}",  # noqa: E731
                       "--num-processes", "2", "--process-id", str(i)]
    procs = [subprocess.Popen(multi(i), env=worker_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    procs += [subprocess.Popen([*cli, *_FIG6, "--out", str(out[k]), "--devices", k[1]], env={**os.environ,
              "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in ("d1", "d2")]
    _wait(procs, ("process 0", "process 1", "--devices 1", "--devices 2"))
    csv = {k: (d / "results.csv").read_bytes() for k, d in out.items()}
    assert csv["d1"] == csv["d2"] == csv["multi"] and csv["d1"].count(b"\n") > 2
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    assert files(out["multi"]) == files(out["d1"])
    manifest = json.loads((out["multi"] / "manifest.json").read_text())
    stamp = {p: p.stat().st_mtime_ns for p in (out["multi"] / "cells").glob("*.npz")}
    port = str(free_port())
    procs = [subprocess.Popen(multi(i), env=worker_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    _wait(procs, ("rerun process 0", "rerun process 1"))
    assert stamp and {p: p.stat().st_mtime_ns for p in stamp} == stamp  # no cell written again
    assert (out["multi"] / "results.csv").read_bytes() == csv["d1"]
    assert json.loads((out["multi"] / "manifest.json").read_text())["config"] == manifest["config"]
