"""Dispatch an experiment config to its runner by ``kind``."""

from pathlib import Path

from . import _compare, _escape_rates, _saddle
from ._config import ConfigError, apply_overrides, stored_config

RUNNERS = {"escape-rates": _escape_rates, "compare": _compare, "saddle": _saddle}


def _module(config: dict):
    kind = config.get("kind", "escape-rates")
    if kind not in RUNNERS:
        raise ConfigError(f"config: unknown kind {kind!r} (known: {', '.join(RUNNERS)})")
    return RUNNERS[kind]


def run_experiment(config: dict, out, *, progress: bool = True):
    """Run or resume ``config`` in directory ``out``; returns the results table."""
    return _module(config).run(config, Path(out), progress=progress)


def fit_experiment(out):
    """Recompute fit.csv for a finished (or partial) run directory."""
    config = stored_config(out)
    mod = _module(config)
    table = mod.write_results(config, Path(out))
    return table, mod.write_fit(config, Path(out), table)


def refit_experiment(out, sets: list[str]):
    """Results and fit tables of an escape-rate run under changed ``fit.*`` settings, written nowhere.

    ``sets`` are ``fit.KEY=VALUE`` overrides (prefactor, window, bootstrap); the run's own results.csv,
    fit.csv and manifest keep the settings it was run with.
    """
    config = stored_config(out)
    if config.get("kind", "escape-rates") != "escape-rates":
        raise ConfigError(f"--set: refitting with other settings is for escape-rate runs; {out} is {config['kind']!r}")
    for item in sets:
        if not item.strip().startswith("fit."):
            raise ConfigError(f"--set: escape fit changes fit.* keys only, got {item!r}")
    # A fit key the run's config leaves at its default (e.g. fit.bootstrap) may be set too.
    config.setdefault("fit", {})
    config = apply_overrides(config, sets, create=True)
    _escape_rates.validate(config)
    table = _escape_rates.results_table(config, Path(out))
    return table, _escape_rates.fit_sharpness(config, table)


def plot_experiment(out):
    """Redraw the figure of a run directory (the runner's own ``plot`` where it has one)."""
    from ._plots import plot_escape_rates

    mod = _module(stored_config(out))
    if hasattr(mod, "plot"):
        return mod.plot(Path(out))
    return plot_escape_rates(Path(out))


def experiment_report(out, config: dict | None = None) -> str | None:
    """The runner's own text report of a run directory, or None where the runner has none."""
    mod = _module(config if config is not None else stored_config(out))
    return mod.report(Path(out)) if hasattr(mod, "report") else None
