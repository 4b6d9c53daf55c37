"""Cost scaling of the escape engine and of the SDE solve: wall time and peak memory against particles, steps, dim.

The workload is Fig. 6's (experiments/fig6.toml): ``StyblinskiTang(dim, sharpness 1, noise="data",
n_data="fresh")``, batch 1, for ``escape.simulate.escape_times`` with SGD and Adam (``make_optimizer``) and for
``escape.dynamics.solve_sde(make_dynamics(...), dt = eta)`` (one solver step per iteration). The learning rate
(1e-4) is small enough that no particle escapes, so every run takes all its steps (the table's ``escaped``
column checks it). Three one-dimensional sweeps around a base point (particles N, steps S, dimension d): N at
the base S and d, S at the base N and d, d at the base N and S.

Time: each configuration is called once to compile and warm up, then timed (the fastest of ``--repeats`` calls,
fewer when one call takes over a second). Memory: each configuration runs in a fresh process, and its peak
resident set (``getrusage(RUSAGE_SELF).ru_maxrss``) less that of a baseline process that imported jax and
escape and built the landscape but ran nothing is the run's extra memory; on a GPU the device's
``peak_bytes_in_use`` is recorded too (ru_maxrss sees host memory only). By default the processes are forked
from this one, which imports jax and escape but starts no backend (so the fork is safe and skips the imports);
``--spawn`` starts a fresh interpreter per configuration instead (slower; the default off Linux).

Fits (numpy): log-log slopes time ~ N^a (particle sweep), S^b (steps sweep), d^c (dim sweep); a joint
least-squares model t = A N^a S^b d^c over all points of an engine/optimizer pair; the linear model
t = t0 + k N S over the particle sweep (k: the marginal cost of one particle-step at the base d, t0: the fixed
cost of a call); and the memory per particle, the slope of the extra peak RSS against N. All timings on a
shared machine are noisy; the quick sizes are dominated by per-call overhead (slopes below 1).

The engine and the SDE solve shard particles over all local devices; on a CPU the layout is the CLI's default
(``escape.configure_cpu``: one host device per core) unless XLA_FLAGS or ``--devices`` say otherwise.

    python benchmarks/scaling.py                        # N 1e3..1e6, S 64..4096, d 2, 10, 50 (~30 min, 2 CPU cores)
    python benchmarks/scaling.py --quick                # tiny sizes, < 60 s on 2 CPU cores (tests/test_benchmarks.py)
    python benchmarks/scaling.py --out scaling.json     # also write the measurements (pandas.read_json(path))
    python benchmarks/scaling.py --engine adam --sde none --particles 1e3,1e5 --steps 512 --dims 10
    python benchmarks/scaling.py --once --engine sgd --sde none --particles 1e6 --steps 4096 --dims 10   # one point
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import traceback

import jax
import numpy as np

from escape import configure_cpu
from escape.dynamics import make_dynamics, solve_sde
from escape.landscapes import StyblinskiTang
from escape.optim import make_optimizer
from escape.simulate import escape_times

QUICK = dict(particles=[1000, 8000], steps=[64, 256], dims=[2, 10], base=(1000, 256, 10), sde=["sgd"], repeats=1,
             baselines=1)
FULL = dict(particles=[1_000, 10_000, 100_000, 1_000_000], steps=[64, 256, 1024, 4096], dims=[2, 10, 50],
            base=(10_000, 512, 10), sde=["sgd", "adam"], repeats=3, baselines=3)
_LONG_CALL_S = 1.0  # no more timed calls once one call took this long


def _landscape(dim: int) -> StyblinskiTang:
    return StyblinskiTang(dim, 1.0, noise="data", n_data="fresh")


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def _device_peak_bytes() -> int | None:
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    return int(sum(peaks)) if peaks and all(p is not None for p in peaks) else None


def _baseline(dim: int) -> dict:
    """Import (already done), build the landscape, start the backend, run nothing."""
    land = _landscape(dim)
    jax.block_until_ready(jax.tree.leaves(land))
    return {"peak_rss_bytes": _peak_rss_bytes(), "backend": jax.default_backend(), "devices": str(jax.devices())}


def _measure(cfg: dict) -> dict:
    """Compile and warm up one configuration, time it, and read this process's peak memory."""
    kind, name, n, steps, dim, lr = (cfg[k] for k in ("kind", "optimizer", "particles", "steps", "dim",
                                                      "learning_rate"))
    land = _landscape(dim)
    key = jax.random.key(0)
    if kind == "engine":
        opt = make_optimizer(name, learning_rate=lr)

        def call():
            return escape_times(land, opt, batch_size=1, n_particles=n, max_steps=steps, key=key,
                                chunk_size=cfg["chunk_size"])
    elif kind == "sde":
        dyn = make_dynamics(name, land, batch_size=1, learning_rate=lr)

        def call():
            return solve_sde(dyn, n_particles=n, t1=lr * steps, dt=lr, key=key, chunk_size=cfg["chunk_size"])
    else:
        raise ValueError(f"unknown kind {kind!r}")
    t0 = time.perf_counter()
    jax.block_until_ready(call().final)
    compile_s = time.perf_counter() - t0
    times = []
    while len(times) < cfg["repeats"] and not (times and max(times) > _LONG_CALL_S):
        t0 = time.perf_counter()
        out = call()
        jax.block_until_ready(out.final)
        times.append(time.perf_counter() - t0)
    if kind == "engine":
        first, diverged, run = out.first_passage, out.first_divergence, out.steps_run
    else:
        first, diverged, run = out.first_passage_step, out.first_divergence_step, out.n_steps
    seconds = min(times)
    return {**cfg, "seconds": seconds, "compile_seconds": compile_s - seconds, "timed_calls": len(times),
            "particle_steps_per_s": n * steps / seconds, "steps_run": int(run),
            "escaped": int(np.sum(np.asarray(first) >= 0)), "diverged": int(np.sum(np.asarray(diverged) >= 0)),
            "peak_rss_bytes": _peak_rss_bytes(), "device_peak_bytes": _device_peak_bytes(),
            "backend": jax.default_backend(), "devices": str(jax.devices())}


# ------------------------------------------------------------------------------------------ fresh processes


def _forked(fn, arg) -> dict:
    """``fn(arg)`` in a child forked from this process (which must not have started a jax backend)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            payload = json.dumps({"ok": fn(arg)})
        except BaseException:  # noqa: BLE001 - report anything to the parent
            payload = json.dumps({"error": traceback.format_exc()})
        with os.fdopen(write, "w") as f:
            f.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"child for {arg!r} died (wait status {status})")
    reply = json.loads(data)
    if "error" in reply:
        raise RuntimeError(f"child for {arg!r} failed:\n{reply['error']}")
    return reply["ok"]


def _spawned(fn, arg) -> dict:
    """``fn(arg)`` in a fresh interpreter running this script with ``--worker``."""
    job = json.dumps({"fn": fn.__name__, "arg": arg})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", job], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {arg!r} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- fits


def _loglog_slope(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(np.unique(x)) < 2 or np.any(y <= 0):
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _fits(records: list[dict], base: tuple[int, int, int]) -> list[dict]:
    n0, s0, d0 = base
    out = []
    pairs = list(dict.fromkeys((r["kind"], r["optimizer"]) for r in records))
    for kind, name in pairs:
        rs = [r for r in records if (r["kind"], r["optimizer"]) == (kind, name)]
        by_n = sorted((r for r in rs if r["steps"] == s0 and r["dim"] == d0), key=lambda r: r["particles"])
        by_s = sorted((r for r in rs if r["particles"] == n0 and r["dim"] == d0), key=lambda r: r["steps"])
        by_d = sorted((r for r in rs if r["particles"] == n0 and r["steps"] == s0), key=lambda r: r["dim"])
        fit = {"kind": kind, "optimizer": name,
               "a_particles": _loglog_slope([r["particles"] for r in by_n], [r["seconds"] for r in by_n]),
               "b_steps": _loglog_slope([r["steps"] for r in by_s], [r["seconds"] for r in by_s]),
               "c_dim": _loglog_slope([r["dim"] for r in by_d], [r["seconds"] for r in by_d])}
        # joint log-log model over every point of the pair (each variable varies in its own sweep)
        cols = [c for c in ("particles", "steps", "dim") if len({r[c] for r in rs}) > 1]
        if len(rs) > len(cols):
            design = np.column_stack([np.ones(len(rs))] + [np.log([r[c] for r in rs]) for c in cols])
            coef = np.linalg.lstsq(design, np.log([r["seconds"] for r in rs]), rcond=None)[0]
            fit["model_A"] = float(np.exp(coef[0]))
            fit.update({f"model_{c}": float(v) for c, v in zip(cols, coef[1:])})
        if len(by_n) >= 2:
            work = np.array([r["particles"] * r["steps"] for r in by_n], float)
            k, t0 = np.polyfit(work, [r["seconds"] for r in by_n], 1)
            fit["seconds_per_particle_step"] = float(k)
            fit["overhead_seconds"] = float(t0)
            extra = [r["extra_rss_bytes"] for r in by_n]
            fit["bytes_per_particle"] = float(np.polyfit([r["particles"] for r in by_n], extra, 1)[0])
            dev = [r["device_peak_bytes"] for r in by_n]
            if all(v is not None for v in dev):
                fit["device_bytes_per_particle"] = float(np.polyfit([r["particles"] for r in by_n], dev, 1)[0])
        if by_n:
            big = by_n[-1]
            fit["seconds_per_particle_step_at_max_n"] = big["seconds"] / (big["particles"] * big["steps"])
        out.append(fit)
    return out


def _fmt(x, spec=".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _print_tables(records: list[dict], fits: list[dict], base: tuple[int, int, int]) -> None:
    print("\n| kind | optimizer | particles | steps | dim | seconds | particle-steps/s | ns / particle-step "
          "| compile s | extra peak RSS MiB | device peak MiB | escaped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        dev = None if r["device_peak_bytes"] is None else r["device_peak_bytes"] / 2**20
        print(f"| {r['kind']} | {r['optimizer']} | {r['particles']} | {r['steps']} | {r['dim']} | "
              f"{r['seconds']:.4g} | {r['particle_steps_per_s']:.3e} | "
              f"{1e9 * r['seconds'] / (r['particles'] * r['steps']):.3g} | {r['compile_seconds']:.3g} | "
              f"{r['extra_rss_bytes'] / 2**20:.1f} | {_fmt(dev, '.1f')} | {r['escaped']} |")
    n0, s0, d0 = base
    print(f"\nFits (base point N = {n0}, S = {s0}, d = {d0}; a: time ~ N^a at S, d; b: ~ S^b at N, d; "
          f"c: ~ d^c at N, S):\n")
    print("| kind | optimizer | a (particles) | b (steps) | c (dim) | s / particle-step (slope) "
          "| overhead s / call | s / particle-step at max N | bytes / particle (RSS) | bytes / particle (device) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in fits:
        print(f"| {f['kind']} | {f['optimizer']} | {_fmt(f['a_particles'])} | {_fmt(f['b_steps'])} | "
              f"{_fmt(f['c_dim'])} | {_fmt(f.get('seconds_per_particle_step'))} | "
              f"{_fmt(f.get('overhead_seconds'))} | {_fmt(f.get('seconds_per_particle_step_at_max_n'))} | "
              f"{_fmt(f.get('bytes_per_particle'), '.0f')} | {_fmt(f.get('device_bytes_per_particle'), '.0f')} |")
    print("\nModel coefficients (seconds for N particles, S steps, dimension d; copy into docs):")
    for f in fits:
        label = f"{f['kind']} {f['optimizer']}"
        if "model_A" in f:
            terms = " * ".join(f"{s}^{f['model_' + c]:.3f}" for c, s in (("particles", "N"), ("steps", "S"),
                                                                          ("dim", "d")) if "model_" + c in f)
            print(f"  {label:<12} log-log: seconds = {f['model_A']:.3e} * {terms}")
        if "seconds_per_particle_step" in f:
            print(f"  {label:<12} linear (d = {d0}): seconds = {f['overhead_seconds']:.3e} + "
                  f"{f['seconds_per_particle_step']:.3e} * N * S;  memory = {_fmt(f['bytes_per_particle'], '.0f')}"
                  f" bytes * N (peak RSS)")


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [] if text.strip().lower() in ("", "none") else [v.strip() for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (< 60 s on 2 CPU cores)")
    p.add_argument("--particles", type=_ints, help="particle counts, comma-separated (1e3 is read as 1000)")
    p.add_argument("--steps", type=_ints, help="step counts, comma-separated")
    p.add_argument("--dims", type=_ints, help="dimensions, comma-separated")
    p.add_argument("--base", type=_ints, help="base point N,S,d of the sweeps")
    p.add_argument("--engine", type=_names, default=["sgd", "adam"], help="engine optimizers ('none': skip)")
    p.add_argument("--sde", type=_names, help="optimizers of the SDE solve ('none': skip)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--repeats", type=int, help="timed calls per configuration (fastest reported)")
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--once", action="store_true",
                   help="time every combination of --particles, --steps, --dims in this process; no sweeps or fits")
    p.add_argument("--spawn", action="store_true", help="a fresh interpreter per configuration instead of fork")
    p.add_argument("--out", help="write the measurements to this JSON file (a list of records)")
    p.add_argument("--devices", type=int, help="XLA host devices on a CPU (default: escape's layout, one per core)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    configure_cpu(args.devices, owner="--devices")  # before the backend starts (forked workers inherit it)

    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps({"_measure": _measure, "_baseline": _baseline}[job["fn"]](job["arg"])))
        return
    preset = QUICK if args.quick else FULL
    particles = args.particles or preset["particles"]
    steps = args.steps or preset["steps"]
    dims = args.dims or preset["dims"]
    sde = preset["sde"] if args.sde is None else args.sde
    repeats = args.repeats or preset["repeats"]
    pairs = [("engine", n) for n in args.engine] + [("sde", n) for n in sde]
    common = dict(learning_rate=args.learning_rate, chunk_size=args.chunk_size, repeats=repeats)

    if args.once:
        print(f"devices: {jax.devices()} (backend {jax.default_backend()}); Styblinski-Tang, data noise, fresh "
              f"samples, batch 1, learning rate {args.learning_rate:g}", flush=True)
        records = []
        for kind, name in pairs:
            for n in particles:
                for s in steps:
                    for d in dims:
                        r = _measure(dict(kind=kind, optimizer=name, particles=n, steps=s, dim=d, **common))
                        records.append(r)
                        print(f"{kind} {name} {d}-d: {n} particles x {s} steps in {r['seconds']:.4g} s "
                              f"(compile {r['compile_seconds']:.3g} s, escaped {r['escaped']}): "
                              f"{r['particle_steps_per_s']:.4e} particle-steps/s", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(records, f, indent=1)
        return

    base = tuple(args.base) if args.base else preset["base"]
    if len(base) != 3:
        p.error("--base takes three numbers: N,S,d")
    n0, s0, d0 = base
    points = sorted({(n, s0, d0) for n in particles} | {(n0, s, d0) for s in steps} | {(n0, s0, d) for d in dims},
                    key=lambda c: (c[0] * c[1] * c[2], c))
    run = _spawned if (args.spawn or not sys.platform.startswith("linux")) else _forked
    t_start = time.perf_counter()
    dims_run = sorted({c[2] for c in points})
    baselines = {d: [run(_baseline, d) for _ in range(preset["baselines"])] for d in dims_run}
    baseline_rss = {d: float(np.median([b["peak_rss_bytes"] for b in bs])) for d, bs in baselines.items()}
    first = baselines[d0 if d0 in baselines else min(baselines)][0]
    print(f"devices: {first['devices']} (backend {first['backend']}); Styblinski-Tang, data noise, fresh samples, "
          f"batch 1, learning rate {args.learning_rate:g}; {'fork' if run is _forked else 'spawn'} per "
          f"configuration; baseline peak RSS {baseline_rss[min(baseline_rss)] / 2**20:.0f} MiB", flush=True)
    records = []
    for kind, name in pairs:
        for n, s, d in points:
            r = run(_measure, dict(kind=kind, optimizer=name, particles=n, steps=s, dim=d, **common))
            r["baseline_rss_bytes"] = baseline_rss[d]
            r["extra_rss_bytes"] = r["peak_rss_bytes"] - baseline_rss[d]
            records.append(r)
            print(f"  {kind:<6} {name:<5} N={n:<8} S={s:<6} d={d:<3} {r['seconds']:9.4f} s  "
                  f"{r['particle_steps_per_s']:.3e} particle-steps/s  +{r['extra_rss_bytes'] / 2**20:.1f} MiB",
                  flush=True)
    fits = _fits(records, base)
    _print_tables(records, fits, base)
    escaped = sum(r["escaped"] for r in records)
    if escaped:
        print(f"\nWARNING: {escaped} particles escaped: lower --learning-rate so that every step runs")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {len(records)} records to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
