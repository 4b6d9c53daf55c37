"""The whole suite in one pytest process per core (`make test`): whole test files per shard (`--shard I/N` of
conftest.py, balanced by the recorded seconds per file in tests/_durations.json), each shard with its own
temporary directory, output lines prefixed by the shard, exit status the first failing shard's.

Most of the suite's time is XLA compilation, which is single-threaded, beside computations that use every
core: one shard per core (on 2 AVX2 cores, 2 shards kept the CPUs 185 % busy and took 16 min 26 s against 21-24
min for one process; 3 shards took longer, 17 min 16 s). ``TEST_WORKERS=N`` sets the number of shards (1: plain
pytest); further arguments go to every pytest (``python tests/_parallel.py -x``). The processes that the tests
start share one persistent compilation cache in the run's temporary directory (conftest.py). With
``TEST_DURATIONS=1`` a passing run writes its seconds per file to tests/_durations.json, the shards' balance.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    try:
        workers = int(os.environ.get("TEST_WORKERS", str(os.cpu_count() or 1)))
    except ValueError:
        print(f"_parallel.py: TEST_WORKERS must be an integer, got {os.environ['TEST_WORKERS']!r}", file=sys.stderr)
        return 2
    if workers <= 1:
        return subprocess.call([sys.executable, "-m", "pytest", "-q", *argv], cwd=ROOT)
    start = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="escape-tests-"))
    env = {**os.environ, "ESCAPE_TEST_COMPILATION_CACHE": str(base / "jax_cache")}
    # Each program's machine code in one piece: XLA would split it into parts compiled on a thread pool, which
    # with one shard per core only competes with the other shards (2 cores: test_modified alone 55 s -> 52 s,
    # test_engine + test_random 33 s -> 30 s; the whole suite 6 min 31 s and 6 min 43 s against 6 min 38-41 s,
    # within its noise). XLA reads its flags at the first computation; the processes the tests start inherit it.
    if "xla_cpu_parallel_codegen_split_count" not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_parallel_codegen_split_count=1".strip()
    if os.environ.get("TEST_DURATIONS") == "1":
        env["ESCAPE_TEST_DURATIONS"] = str(base / "durations")
    procs = [subprocess.Popen([sys.executable, "-m", "pytest", "-q", f"--shard={i}/{workers}",
                               f"--basetemp={base / f'shard{i}'}", "-p", "no:cacheprovider", *argv],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
             for i in range(workers)]
    lock = threading.Lock()

    def relay(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with lock:
                sys.stdout.write(f"[shard {i + 1}/{workers}] {line}")
                sys.stdout.flush()

    threads = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    codes = [p.wait() for p in procs]
    for t in threads:
        t.join()
    shutil.rmtree(base / "jax_cache", ignore_errors=True)
    if "ESCAPE_TEST_DURATIONS" in env and not any(codes):
        seconds = {}
        for part in sorted((base / "durations").glob("*.json")):
            seconds.update(json.loads(part.read_text()))
        (ROOT / "tests" / "_durations.json").write_text(
            json.dumps({k: round(v, 1) for k, v in sorted(seconds.items())}, indent=1) + "\n")
        print(f"wrote tests/_durations.json ({len(seconds)} files)")
    minutes, seconds = divmod(time.perf_counter() - start, 60)
    print(f"{workers} shards, exit codes {codes}; whole suite {int(minutes)} min {seconds:.0f} s wall")
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
