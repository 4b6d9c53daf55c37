"""Shared pieces of the multi-process tests: a free loopback port and the environment of a worker process."""

import os
import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(devices: int) -> dict:
    """CPU only, ``devices`` host devices; unoptimised XLA, which compiles about twice as fast (every run of a
    comparison is made alike, so bit-identity holds)."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
