"""Dispatch an experiment config to its runner by ``kind``."""

import json
from pathlib import Path

from . import _compare, _escape_rates, _saddle
from ._config import ConfigError

RUNNERS = {"escape-rates": _escape_rates, "compare": _compare, "saddle": _saddle}


def _module(config: dict):
    kind = config.get("kind", "escape-rates")
    if kind not in RUNNERS:
        raise ConfigError(f"config: unknown kind {kind!r} (known: {', '.join(RUNNERS)})")
    return RUNNERS[kind]


def run_experiment(config: dict, out, *, progress: bool = True):
    """Run or resume ``config`` in directory ``out``; returns the results table."""
    return _module(config).run(config, Path(out), progress=progress)


def _stored_config(out) -> dict:
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"DIR: {out} has no manifest.json (not an experiment directory)")
    return json.loads(path.read_text())["config"]


def fit_experiment(out):
    """Recompute fit.csv for a finished (or partial) run directory."""
    config = _stored_config(out)
    mod = _module(config)
    table = mod.write_results(config, Path(out))
    return table, mod.write_fit(config, Path(out), table)


def plot_experiment(out):
    """Redraw the figure of a run directory (the runner's own ``plot`` where it has one)."""
    from ._plots import plot_escape_rates

    mod = _module(_stored_config(out))
    if hasattr(mod, "plot"):
        return mod.plot(Path(out))
    return plot_escape_rates(Path(out))


def experiment_report(out, config: dict | None = None) -> str | None:
    """The runner's own text report of a run directory, or None where the runner has none."""
    mod = _module(config if config is not None else _stored_config(out))
    return mod.report(Path(out)) if hasattr(mod, "report") else None
