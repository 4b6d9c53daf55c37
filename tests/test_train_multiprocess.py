"""escape.train across processes: two local processes on JAX's distributed runtime (gloo CPU collectives, one
host device each) train data-parallel, with process 0 writing the run directory and reading it to resume.

The reference is one process with two host devices, the same config: the same global mesh size, so the same
sharded program; only the transport of the cross-device reductions differs.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _multiprocess import free_port, worker_env

# The tiny setting of tests/test_train.py: digits, 256 training examples, width 4, batch 32 (8 steps per epoch),
# the learning rate divided by 10 after epoch 1; 2 epochs, no sharpness.
TINY = dict(data="digits", width=4, batch_size=32, train_examples=256, test_examples=100, optimizer="adai",
            learning_rate=1.0, weight_decay=5e-4, milestones=(1,), sharpness=False, epochs=2)
_METRICS = ("step", "lr", "train_loss", "train_acc", "test_loss", "test_acc")  # all but the wall times
_FINAL = ("test_loss", "test_acc", "train_eval_loss", "train_eval_acc", "train_loss")
_TIMEOUT = 300

# Each worker records, with an audit hook, every file it opens, creates, renames, removes or makes a directory
# of under the shared run directory: process 1 must touch nothing there (process 0 reads and writes it alone).
_WORKER = textwrap.dedent(
    """
    import json, os, sys
    index, port, out, cfg = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    touched = []

    def hook(event, args):
        if event in ("open", "os.rename", "os.remove", "os.mkdir", "os.rmdir") and args:
            paths = args[:2] if event == "os.rename" else args[:1]  # a rename: (source, destination)
            paths = [os.fsdecode(p) for p in paths if isinstance(p, (str, bytes, os.PathLike))]
            if any(p.startswith(out) for p in paths):
                touched.append(" ".join([event, *paths]))

    sys.addaudithook(hook)
    from escape import _distributed
    assert _distributed.initialize(f"127.0.0.1:{port}", 2, index)
    import jax
    from escape.train import train, TrainConfig
    assert jax.process_count() == 2 and jax.device_count() == 2 and jax.local_device_count() == 1
    config = TrainConfig(**cfg)
    part = train(config, out, progress=False, stop_after=1)      # epoch 1, checkpoint, stop
    assert len(part.epochs) == 1 and not part.complete
    resumed = train(config, out, progress=False)                 # process 0 reads the checkpoint, broadcasts it
    stored = train(config, out, progress=False)                  # finished: returned as stored (broadcast)
    metrics = lambda h: [[row[k] for k in ("step", "train_loss", "test_loss")] for row in h.epochs]
    assert stored.complete and metrics(stored) == metrics(resumed)
    try:                                                         # another config: refused on every process
        train(TrainConfig(**{**cfg, "seed": 1}), out, progress=False)
        refused = None
    except ValueError as e:
        refused = str(e)
    print(json.dumps({"epochs": resumed.epochs, "final": resumed.final, "touched": touched, "refused": refused}))
    """
)

_REFERENCE = textwrap.dedent(
    """
    import json, sys, jax
    from escape.train import train, TrainConfig
    assert jax.process_count() == 1 and jax.device_count() == 2
    h = train(TrainConfig(**json.loads(sys.argv[2])), sys.argv[1], progress=False)
    print(json.dumps({"epochs": h.epochs, "final": h.final}))
    """
)


def _files(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_two_processes_match_one_process_with_two_devices(tmp_path):
    """2 processes x 1 device (stop after epoch 1, resume, return the finished run) against 1 process x 2
    devices (uninterrupted), same config and seed.

    Tolerance: relative 1e-6 on every per-epoch metric and every final metric (the brief's; the two runs
    compile the same 2-device program and reduce in the same order, and were measured bit-identical, relative
    difference 0). Process 1 returns the same metrics as process 0. Files: one set in the shared run
    directory, the same names as the reference's, no temporary leftovers; process 1 opened, wrote, renamed
    or removed nothing under it (audit hook) while process 0 did. A different config is refused with the
    same one-line error on both processes (raised on process 0, broadcast to process 1).
    """
    shared, ref = tmp_path / "shared", tmp_path / "ref"
    cfg = json.dumps(TINY)
    port = str(free_port())
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(i), port, str(shared), cfg], env=worker_env(1),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    procs.append(subprocess.Popen([sys.executable, "-c", _REFERENCE, str(ref), cfg], env=worker_env(2),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=_TIMEOUT))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        errs = [p.communicate()[1][-3000:] for p in procs]
        pytest.fail("timed out after %d s; stderr:\n%s" % (_TIMEOUT, "\n---\n".join(errs)))
    for name, p, (_, err) in zip(("process 0", "process 1", "reference"), procs, outputs):
        assert p.returncode == 0, f"{name} exited {p.returncode}:\n{err[-3000:]}"
    p0, p1, one = (json.loads(o.strip().splitlines()[-1]) for o, _ in outputs)

    for a, b, c in zip(p0["epochs"], one["epochs"], p1["epochs"], strict=True):
        np.testing.assert_allclose([a[k] for k in _METRICS], [b[k] for k in _METRICS], rtol=1e-6, atol=0)
        assert [a[k] for k in _METRICS] == [c[k] for k in _METRICS]
    np.testing.assert_allclose([p0["final"][k] for k in _FINAL], [one["final"][k] for k in _FINAL], rtol=1e-6, atol=0)
    assert [p0["final"][k] for k in _FINAL] == [p1["final"][k] for k in _FINAL]
    written = json.loads((shared / "metrics.json").read_text())
    assert written["complete"] and [r["epoch"] for r in written["epochs"]] == [1, 2]
    assert [written["epochs"][i][k] for i in range(2) for k in _METRICS] == [
        p0["epochs"][i][k] for i in range(2) for k in _METRICS]
    assert len(written["info"]["devices"]) == 2
    assert _files(shared) == _files(ref)  # metrics.csv/json, checkpoint.json, checkpoint-0002.eqx, manifest.json
    assert p1["touched"] == [], p1["touched"]
    assert any(t.startswith("os.rename") and t.endswith("checkpoint.json") for t in p0["touched"])
    assert p0["refused"] and p0["refused"] == p1["refused"] and "seed=0, not 1" in p0["refused"]
