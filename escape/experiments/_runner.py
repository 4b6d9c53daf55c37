"""Dispatch an experiment config to its runner by ``kind``."""

from pathlib import Path

from . import _adam_dynamics, _aeos, _compare, _escape_rates, _fidelity, _implicit_bias, _noise, _robustness, _saddle
from .._checks import suggest
from ._config import ConfigError, apply_overrides, stored_config
from ._console import progress_mode
from ._schema import Schema

RUNNERS = {"escape-rates": _escape_rates, "compare": _compare, "saddle": _saddle, "aeos": _aeos, "noise": _noise,
           "implicit-bias": _implicit_bias, "adam-dynamics": _adam_dynamics, "sde-fidelity": _fidelity,
           "robustness": _robustness}


def _module(config: dict):
    kind = config.get("kind", "escape-rates") if isinstance(config, dict) else None
    if kind not in RUNNERS:
        raise ConfigError(f"config: unknown kind {kind!r}{suggest(kind, RUNNERS)} (known: {', '.join(RUNNERS)})")
    return RUNNERS[kind]


def schema_for(config: dict) -> Schema:
    """The schema of ``config``'s kind."""
    return _module(config).SCHEMA


def check_config(config: dict) -> dict:
    """The resolved config (every key checked, every default filled in) after the kind's own checks.

    Raises:
        ConfigError: one line naming the offending key. Nothing is written anywhere.
    """
    mod = _module(config)
    resolved = mod.SCHEMA.resolve(config)
    mod.validate(resolved)
    return resolved


def run_experiment(config: dict, out, *, progress: "bool | str" = True):
    """Run or resume ``config`` in directory ``out``; returns the results table.

    The config is checked and resolved first ([`escape.experiments.check_config`][]): a bad config raises
    ConfigError before anything is written under ``out``. ``progress``: ``True`` (or ``"bar"``) for progress
    bars, ``"log"`` for one line per finished cell or epoch (for logs and pipes), ``False`` for silence.
    """
    resolved = check_config(config)
    return _module(resolved).run(resolved, Path(out), progress=progress_mode(progress))


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
    config = check_config(apply_overrides(config, sets))
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
