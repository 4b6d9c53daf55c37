"""The ``escape`` command: list, run, fit and plot experiments.

Bad input gives a one-line message on stderr and exit code 2, never a traceback
(set ``ESCAPE_DEBUG=1`` to see one).
"""

import os
import sys

import click

from .experiments import (
    ConfigError,
    apply_overrides,
    available_experiments,
    fit_experiment,
    load_config,
    plot_experiment,
    run_experiment,
)


def _fail(message: str) -> None:
    click.echo(f"escape: error: {message}", err=True)
    sys.exit(2)


def _print_tables(table, fit_table) -> None:
    import pandas as pd

    cols = ["optimizer", "sharpness", "learning_rate", "rate", "rate_lower", "rate_upper", "escapes",
            "censored", "diverged", "mean_escape_time", "ks_pvalue", "in_window"]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        click.echo(table[[c for c in cols if c in table]].to_string(index=False))
        click.echo("")
        fcols = ["optimizer", "n_cells", "p_hat", "p_lower", "p_upper", "r2_p1", "r2_p05", "q_hat", "note"]
        click.echo(fit_table[[c for c in fcols if c in fit_table]].to_string(index=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="escape")
def cli():
    """Study how optimizers escape from minima and saddles."""


@cli.command("list")
def list_cmd():
    """List the bundled experiments."""
    for name, path in available_experiments().items():
        try:
            desc = load_config(str(path)).get("description", "")
        except ConfigError as e:
            desc = f"(unreadable: {e})"
        click.echo(f"{name:12s} {desc}")


@cli.command("run")
@click.argument("experiment")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory (resumes if it exists).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (dotted; TOML value). preset=NAME applies a preset.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def run_cmd(experiment, out, sets, progress):
    """Run (or resume) EXPERIMENT, a bundled name or a TOML file."""
    config = apply_overrides(load_config(experiment), list(sets))
    table = run_experiment(config, out, progress=progress)
    _, fit_table = fit_experiment(out)
    _print_tables(table, fit_table)
    click.echo(f"\nwrote {out}/results.csv, fit.csv, manifest.json, escape_rates.png")


@cli.command("fit")
@click.argument("directory", type=click.Path(file_okay=False))
def fit_cmd(directory):
    """Recompute fit.csv of a run DIRECTORY and print the fits."""
    table, fit_table = fit_experiment(directory)
    _print_tables(table, fit_table)


@cli.command("plot")
@click.argument("directory", type=click.Path(file_okay=False))
def plot_cmd(directory):
    """Redraw the figure of a run DIRECTORY."""
    click.echo(str(plot_experiment(directory)))


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="escape", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.exceptions.ClickException as e:
        _fail(e.format_message().replace("\n", " "))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (ConfigError, ValueError) as e:
        if os.environ.get("ESCAPE_DEBUG"):
            raise
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        click.echo("escape: interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
