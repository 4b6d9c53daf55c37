"""Experiments: configs, runners, results tables, figures."""

from ._config import (
    ConfigError as ConfigError,
    apply_overrides as apply_overrides,
    available_experiments as available_experiments,
    load_config as load_config,
)
from ._reference import config_reference as config_reference
from ._runner import (
    check_config as check_config,
    fit_experiment as fit_experiment,
    plot_experiment as plot_experiment,
    run_experiment as run_experiment,
    schema_for as schema_for,
)
from ._schema import Key as Key, Schema as Schema, Section as Section, Table as Table
