"""The CPU layout JAX runs on: how many XLA host devices, and XLA's preferred vector width.

Both are XLA options read once, when JAX starts its CPU backend (the first JAX operation), so they are set
through ``XLA_FLAGS`` before that. [`escape.configure_cpu`][] is what ``escape run`` calls; a script or notebook
calls it right after its imports. Options the user already put in ``XLA_FLAGS`` are kept.

Measured on a 2-core AVX-512 machine (docs/results.md, "Engine layout"): the whole ``escape run fig6`` and the
engine's fresh-sample step both run fastest with one host device per core and 512-bit vectors.
"""

import os
import re

_COUNT = "xla_force_host_platform_device_count"
_WIDTH = "xla_cpu_prefer_vector_width"


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def has_avx512() -> bool:
    """Whether the CPU has AVX-512F (read from /proc/cpuinfo; False where that cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def _flag(flags: str, name: str) -> str | None:
    found = re.findall(rf"--{name}=(\S+)", flags)
    return found[-1] if found else None


def _backend_started() -> bool:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def configure_cpu(devices: int | None = None, *, owner: str = "configure_cpu") -> int:
    """Set the CPU layout before JAX starts: ``devices`` host devices (default: one per core) and 512-bit vectors.

    Precedence: an explicit ``devices``, then a device count already in ``XLA_FLAGS``, then one device per core.
    The vector width is set only on CPUs with AVX-512 and only if ``XLA_FLAGS`` does not set it. Particles are
    sharded over the devices; every result is bit-identical whatever their number (noise is keyed by particle).
    On a machine with GPUs nothing changes for them: these options concern XLA's CPU backend only.

    Args:
        devices: the number of XLA host devices (an integer >= 1), or None.
        owner: the name in error messages (``--devices`` for the CLI).

    Returns:
        The number of CPU devices JAX will have.

    Raises:
        ValueError: ``devices`` is not a positive integer, or JAX's CPU backend has already started with another
            number of devices (the layout can no longer change in this process).
    """
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"{owner}: the number of devices must be an integer >= 1, got {devices!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    user_count = _flag(flags, _COUNT)
    count = devices if devices is not None else int(user_count) if user_count else cpu_cores()
    if _backend_started():
        import jax

        have = len(jax.devices("cpu"))
        if devices is not None and have != devices:
            raise ValueError(f"{owner}: JAX has already started with {have} CPU device(s); set the number of "
                             f"devices before the first JAX operation (or XLA_FLAGS=--{_COUNT}={devices})")
        return have
    if user_count is None or (devices is not None and int(user_count) != devices):
        flags = re.sub(rf"\s*--{_COUNT}=\S+", "", flags) + f" --{_COUNT}={count}"
    if _flag(flags, _WIDTH) is None and has_avx512():
        flags += f" --{_WIDTH}=512"
    os.environ["XLA_FLAGS"] = flags.strip()
    return count
