"""The benchmark scripts run and print what they promise: `benchmarks/gpu.sh` (its CPU smoke mode) and
`benchmarks/scaling.py` (quick sizes), as subprocesses, both at once (about a minute on 2 cores); and the
scaling fits recover an exact power law."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start both scripts concurrently (they are mostly single-threaded compilation); wait for both."""
    out = tmp_path_factory.mktemp("scaling") / "scaling.json"
    # Unoptimised XLA: the tiny sizes are compilation; the tests check what is printed, not how fast.
    env = {**os.environ, "PYTHON": sys.executable, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    env.pop("GPU_SH_REDUCED", None)
    cmds = {
        "gpu": ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--cpu-smoke"],
        "scaling": [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--quick", "--out", str(out)],
    }
    procs = {k: subprocess.Popen(c, cwd=ROOT / "tests", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for k, c in cmds.items()}
    try:
        results = {k: (p.communicate(timeout=400)[0], p.returncode) for k, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    return results, out


def _positive(text: str) -> float:
    value = float(text)
    assert math.isfinite(value) and value > 0, text
    return value


def test_gpu_sh_cpu_smoke(runs):
    output, rc = runs[0]["gpu"]
    assert rc == 0, output
    assert "devices: [CpuDevice" in output
    for part in ("(a) escape engine", "(b) SDE time / discrete time", "(c) ResNet-18 training step"):
        assert f"== {part}" in output, part
    rate = re.search(rf"^engine sgd 10-d: 2048 particles x 128 steps in .*: {NUMBER} particle-steps/s$", output,
                     re.M)
    assert rate, output
    _positive(rate.group(1))
    ratio = re.search(rf"^sgd .* sde time / discrete time = {NUMBER}$", output, re.M)
    assert ratio, output
    _positive(ratio.group(1))
    step = rf"^  jax float32\s+(adai|adam)\s+{NUMBER} ms/step\s+{NUMBER} images/s$"
    images = {m[0]: m[2] for m in re.findall(step, output, re.M)}
    assert set(images) == {"adai", "adam"}, output
    for v in images.values():
        _positive(v)
    assert re.search(rf"jax float32\s+ratios: adai/adam {NUMBER}", output), output
    assert re.search(r"^gpu\.sh \(CPU smoke \(tiny sizes\)\) done in \d+ s$", output, re.M), output


def test_gpu_sh_full_mode_without_gpu_stops():
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    env.pop("GPU_SH_REDUCED", None)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "jax found no GPU" in proc.stderr
    assert "== (a)" not in proc.stdout


def test_scaling_quick(runs):
    output, rc = runs[0]["scaling"]
    assert rc == 0, output
    assert "devices: [CpuDevice" in output
    rows = re.findall(r"^\| (engine|sde) \| (sgd|adam) \| (\d+) \| (\d+) \| (\d+) \| " + NUMBER + r" \| "
                      + NUMBER + r" \|", output, re.M)
    assert len(rows) == 12, output  # 3 pairs x 4 points (N 1000/8000 at S 256, S 64, d 2, all at the base)
    for row in rows:
        _positive(row[5])
        _positive(row[6])
    fits = re.findall(r"^\| (engine|sde) \| (sgd|adam) \| " + r" \| ".join([NUMBER] * 3) + r" \| " + NUMBER
                      + r" \| " + NUMBER + r" \| " + NUMBER + r" \| " + NUMBER + r" \| - \|$", output, re.M)
    assert {(f[0], f[1]) for f in fits} == {("engine", "sgd"), ("engine", "adam"), ("sde", "sgd")}, output
    for f in fits:
        assert all(math.isfinite(float(v)) for v in f[2:5])  # slopes: noisy at these sizes, only finite
        _positive(f[7])  # seconds per particle-step at the largest N
        assert math.isfinite(float(f[8]))  # bytes per particle (noisy: the peak RSS moves by MiB)
    for label in ("engine sgd", "engine adam", "sde sgd"):
        assert re.search(rf"^  {label}\s+log-log: seconds = {NUMBER} \* N\^{NUMBER} \* S\^{NUMBER} \* d\^{NUMBER}$",
                         output, re.M), label
        assert re.search(rf"^  {label}\s+linear \(d = 10\): seconds = .* \* N \* S;  memory = {NUMBER} bytes \* N",
                         output, re.M), label
    records = json.loads(runs[1].read_text())
    assert len(records) == 12
    for r in records:
        assert r["escaped"] == 0 and r["diverged"] == 0 and r["steps_run"] == r["steps"], r
        assert r["seconds"] > 0 and r["peak_rss_bytes"] > r["baseline_rss_bytes"] > 0, r
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_json(runs[1])
    assert len(frame) == 12 and {"kind", "optimizer", "particles", "seconds", "extra_rss_bytes"} <= set(frame)


def test_scaling_fits_recover_a_power_law():
    spec = importlib.util.spec_from_file_location("scaling_bench", ROOT / "benchmarks" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    base = (1000, 256, 10)
    points = ([(n, 256, 10) for n in (1000, 10_000, 100_000)] + [(1000, s, 10) for s in (64, 1024)]
              + [(1000, 256, d) for d in (2, 50)])
    records = [dict(kind="engine", optimizer="sgd", particles=n, steps=s, dim=d,
                    seconds=3e-9 * n * s * d**0.5, extra_rss_bytes=5e6 + 300.0 * n, device_peak_bytes=None)
               for n, s, d in points]
    (fit,) = scaling._fits(records, base)
    assert fit["a_particles"] == pytest.approx(1.0) and fit["b_steps"] == pytest.approx(1.0)
    assert fit["c_dim"] == pytest.approx(0.5)
    assert fit["model_A"] == pytest.approx(3e-9) and fit["model_dim"] == pytest.approx(0.5)
    assert fit["seconds_per_particle_step"] == pytest.approx(3e-9 * 10**0.5)
    assert fit["overhead_seconds"] == pytest.approx(0.0, abs=1e-9)
    assert fit["bytes_per_particle"] == pytest.approx(300.0)
    assert "device_bytes_per_particle" not in fit
