"""Experiments: configs, runners, results tables, figures."""

from ._config import (
    ConfigError as ConfigError,
    apply_overrides as apply_overrides,
    available_experiments as available_experiments,
    load_config as load_config,
)
from ._runner import fit_experiment as fit_experiment, plot_experiment as plot_experiment, run_experiment as run_experiment
