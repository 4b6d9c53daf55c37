"""The ``escape`` command: list, run, fit, pool and plot experiments; train a model.

Bad input gives a one-line message on stderr and exit code 2, never a traceback
(set ``ESCAPE_DEBUG=1`` to see one). Ctrl-C exits with 130 and says that rerunning resumes.
"""

import errno
import os
import sys
from pathlib import Path

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
from .experiments._runner import check_config
from .experiments._config import _parse_value
from .experiments._runner import experiment_report
from .train import DATASETS, MODELS


def _fail(message: str) -> None:
    click.echo(f"escape: error: {message}", err=True)
    sys.exit(2)


def _progress(output: dict) -> str:
    """The output mode of --progress / --log / --quiet (default: bars on a terminal, lines otherwise)."""
    progress, log, quiet = output["progress"], output["log"], output["quiet"]
    if sum([bool(log), bool(quiet), progress is not None]) > 1:
        raise click.UsageError("give only one of --progress, --no-progress, --log and --quiet")
    if quiet or progress is False:
        return "none"
    return "log" if log else "bar" if progress else "auto"


_OUTPUT_OPTIONS = [
    click.option("--progress/--no-progress", "progress", default=None,
                 help="Progress bars, or nothing while running (default: bars on a terminal, --log otherwise)."),
    click.option("--log", is_flag=True, help="One plain line per finished cell, run or epoch (for logs and pipes)."),
    click.option("--quiet", "-q", is_flag=True, help="Nothing while running (same as --no-progress)."),
]


_DISTRIBUTED_OPTIONS = [
    click.option("--coordinator", default=None, metavar="HOST:PORT",
                 help="Multi-process run: process 0's address (the same for every process)."),
    click.option("--num-processes", type=int, default=None, help="Multi-process run: the number of processes."),
    click.option("--process-id", type=int, default=None, help="Multi-process run: this process's index, from 0."),
]


def _distributed_options(f):
    for option in reversed(_DISTRIBUTED_OPTIONS):
        f = option(f)
    return f


def _output_options(f):
    for option in reversed(_OUTPUT_OPTIONS):
        f = option(f)
    return f


def _print_tables(table, fit_table) -> None:
    import pandas as pd

    cols = ["optimizer", "sharpness", "learning_rate", "rate", "rate_lower", "rate_upper", "escapes",
            "early_escapes", "censored", "diverged", "mean_escape_time", "ks_pvalue", "in_window"]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        click.echo(table[[c for c in cols if c in table]].to_string(index=False))
        click.echo("")
        fcols = ["optimizer", "n_cells", "p_hat", "p_lower", "p_upper", "r2_p1", "r2_p05", "q_hat", "dof"]
        if "n_boot" in fit_table and (fit_table["n_boot"] > 0).any():
            fcols[5:5] = ["p_boot_lower", "p_boot_upper"]
        click.echo(fit_table[[c for c in fcols if c in fit_table]].to_string(index=False))
    click.echo("rates per step with exact 95% intervals; early_escapes: before the optimizer's burn_in, not in the "
               "rate; p: -log rate = a + b k^-p, 95% interval [p_lower, p_upper]")
    for _, row in fit_table.iterrows():
        if isinstance(row.get("warning"), str) and row["warning"]:
            click.echo(f"warning: {row['optimizer']}: {row['warning']}", err=True)


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
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set any config key (dotted; TOML value), e.g. run.n_particles=2000. preset=NAME applies a preset.")
@click.option("--devices", type=int, default=None,
              help="XLA host devices to shard particles over on a CPU (default: one per core, or XLA_FLAGS' count); "
                   "results are identical whatever the number.")
@_distributed_options
@_output_options
def run_cmd(experiment, out, sets, devices, coordinator, num_processes, process_id, **output):
    """Run (or resume) EXPERIMENT, a bundled name or a TOML file.

    Every key is checked before anything is written to OUT (docs: config reference). Rerunning the same
    command after an interrupt resumes where it stopped. With --coordinator, --num-processes and --process-id
    (or under SLURM / Open MPI) every process runs this same command; particles are sharded over the devices
    of all of them, and process 0 writes OUT and prints.
    """
    from . import _distributed
    from ._host import configure_cpu

    configure_cpu(devices, owner="--devices")
    raw = apply_overrides(load_config(experiment), list(sets))
    _distributed.initialize(coordinator, num_processes, process_id, owner="run")  # before JAX's first operation
    config = check_config(raw)
    mode = _progress(output) if _distributed.is_writer() else "none"
    if mode != "none":
        _print_estimate(config, out)
    table = run_experiment(config, out, progress=mode)
    if not _distributed.is_writer():
        return
    report = experiment_report(out, config)
    if report is not None:
        click.echo(report)
        return
    _, fit_table = fit_experiment(out)
    _print_tables(table, fit_table)
    click.echo(f"\nwrote {out}/results.csv, fit.csv, manifest.json, escape_rates.png")


def _print_estimate(config: dict, out) -> None:
    """The run's cost line on stderr (kinds with a cost model: escape.experiments._cost)."""
    import jax

    from ._host import cpu_cores
    from .experiments._cost import run_estimate
    from .experiments._runner import _module

    cores = None  # off a CPU no time is estimated (the constants are CPU measurements)
    if jax.default_backend() == "cpu":  # several processes: one core per device, their default layout
        cores = cpu_cores() if jax.process_count() == 1 else jax.device_count()
    line = run_estimate(_module(config), config, out, cores)
    if line:
        click.echo(line, err=True)


@cli.command("fit")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--set", "sets", multiple=True, metavar="fit.KEY=VALUE",
              help="Refit under other fit settings (e.g. fit.prefactor=1.0) and print; nothing is written.")
def fit_cmd(directory, sets):
    """Recompute fit.csv of a run DIRECTORY and print the fits (with --set: print an alternative fit only)."""
    if sets:
        from .experiments._runner import refit_experiment

        table, fit_table = refit_experiment(directory, list(sets))
        click.echo(f"refit with {', '.join(sets)} (not written; {directory}/fit.csv keeps the run's settings)\n")
        _print_tables(table, fit_table)
        return
    table, fit_table = fit_experiment(directory)
    report = experiment_report(directory)
    if report is not None:
        click.echo(report)
        return
    _print_tables(table, fit_table)


@cli.command("pool")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory of the pooled run.")
def pool_cmd(directories, out):
    """Pool replicate escape-rate runs (same config, distinct seeds) into one run directory and fit it."""
    from .experiments._escape_rates import pool

    table, fit_table = pool(list(directories), Path(out))
    _print_tables(table, fit_table)
    click.echo(f"\nwrote {out}/results.csv, fit.csv, manifest.json, escape_rates.png")


@cli.command("plot")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--against", type=click.Path(file_okay=False), multiple=True,
              help="Another escape-rate run (e.g. mode = sde) to compare rates with, cell by cell; repeat it to "
                   "show several (the papers' closure and the improved model).")
def plot_cmd(directory, against):
    """Redraw the figure of a run DIRECTORY (or compare its rates with other runs)."""
    if against:
        from .experiments._plots import plot_rate_comparison

        from .experiments._config import stored_config

        for d in (directory, *against):
            kind = stored_config(d, "plot").get("kind", "escape-rates")
            if kind != "escape-rates" or not os.path.isfile(os.path.join(d, "results.csv")):
                raise ConfigError(f"plot: --against compares escape-rate runs; {d} is a {kind!r} run"
                                  if kind != "escape-rates" else f"plot: {d} has no results.csv yet")
        click.echo(str(plot_rate_comparison(directory, list(against))))
        return
    click.echo(str(plot_experiment(directory)))


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise ValueError(f"train: --milestones must be comma-separated epochs such as 15,25, got {text!r}") from None


def _optimizer_args(items) -> dict:
    args = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"train: --opt expects KEY=VALUE (e.g. beta0=0.1), got {item!r}")
        key, value = item.split("=", 1)
        args[key.strip()] = _parse_value(value.strip())
    return args


@cli.command("train")
@click.option("--data", type=click.Choice((*DATASETS, "ptb")), default="digits", show_default=True,
              help="Data set (ptb: word-level Penn TreeBank from --data-dir, the LSTM language model).")
@click.option("--model", type=click.Choice(list(MODELS)), default=None,
              help="Network (default: small_resnet for digits, resnet18 for CIFAR).")
@click.option("--optimizer", default="adai", show_default=True,
              help="adai, adaiw, sgd, momentum (= sgd-momentum), momentum-ema, adam, adamw, rmsprop (any case), "
                   "or any optax optimizer name.")
@click.option("--lr", "learning_rate", type=float, default=0.1, show_default=True, help="Initial learning rate.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=None,
              help="A multiple of the number of devices (default 64; ptb: 20 streams).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory (resumes from its checkpoint if it has one).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True,
              help="L2, except decoupled for adaiw and adamw.")
@click.option("--milestones", default="", help="Epochs after which the learning rate is multiplied by --gamma, e.g. 15,25.")
@click.option("--gamma", type=float, default=0.1, show_default=True, help="Learning-rate factor at each milestone.")
@click.option("--bf16", is_flag=True, help="bfloat16 convolutions and activations (float32 parameters).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of the CIFAR python files, or of ptb.train.txt / ptb.valid.txt / ptb.test.txt.")
@click.option("--bptt", type=int, default=None, help="ptb: tokens per BPTT window (default 35).")
@click.option("--clip", type=float, default=None, help="ptb: global gradient-norm bound (default 0.25).")
@click.option("--dropout", type=float, default=None, help="ptb: the LSTM's dropout (default 0.5).")
@click.option("--embed", type=int, default=None, help="ptb: embedding size (default 512).")
@click.option("--hidden", type=int, default=None, help="ptb: LSTM hidden size (default 512).")
@click.option("--width", type=int, default=None, help="Model width (default: the model's).")
@click.option("--opt", "opt_args", multiple=True, metavar="KEY=VALUE", help="Optimizer hyperparameter, e.g. beta0=0.1.")
@click.option("--augment/--no-augment", default=None, help="Crop and flip (default: on for CIFAR, off for digits).")
@click.option("--train-examples", type=int, default=None, help="Train on the first N training examples only.")
@click.option("--test-examples", type=int, default=None, help="Evaluate on the first N test examples only.")
@click.option("--devices", type=int, default=None, help="Number of local devices to use (default: all).")
@click.option("--sharpness/--no-sharpness", default=True, show_default=True, help="Measure the solution's sharpness.")
@click.option("--sharpness-examples", type=int, default=None, help="Training examples for the sharpness (default: all).")
@click.option("--compilation-cache/--no-compilation-cache", default=True, show_default=True,
              help="Persistent JAX compilation cache in OUT/.jax_cache (process 0's only in a multi-process run).")
@_distributed_options
@_output_options
def train_cmd(out, milestones, opt_args, compilation_cache, coordinator, num_processes, process_id, progress, log,
              quiet, **settings):
    """Train a model (or resume training it in OUT) and measure the sharpness of the solution.

    With --coordinator, --num-processes and --process-id (or under SLURM / Open MPI) every process runs this same
    command: the batch is split over the devices of all of them (data-parallel), and process 0 writes OUT
    (checkpoints included) and prints.
    """
    from . import _distributed
    from .experiments._console import progress_mode
    from .train import TrainConfig, train, use_compilation_cache

    settings = {k: v for k, v in settings.items() if v is not None}
    lm_only = ("bptt", "clip", "dropout", "embed", "hidden")
    if settings.get("data") == "ptb":
        _train_lm(out, milestones, opt_args, settings, progress, log, quiet)
        return
    for key in lm_only:
        if key in settings:
            raise ValueError(f"train: --{key} is for --data ptb (the language model)")
    config = TrainConfig(milestones=_milestones(milestones), optimizer_args=_optimizer_args(opt_args), **settings)
    _distributed.initialize(coordinator, num_processes, process_id, owner="train")
    writer = _distributed.is_writer()
    if compilation_cache and writer:  # one process writes the cache directory, as it writes the rest of OUT
        use_compilation_cache(os.path.join(out, ".jax_cache"))
    mode = progress_mode(_progress({"progress": progress, "log": log, "quiet": quiet})) if writer else "none"
    history = train(config, out, progress=mode)
    if not writer:
        return
    for row in history.epochs[-3:]:
        click.echo(f"epoch {row['epoch']:>3}  lr {row['lr']:.3g}  train loss {row['train_loss']:.4f}  "
                   f"train acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f}  test acc {row['test_acc']:.4f}")
    final = history.final or {}
    if "lambda_max" in final:
        click.echo(f"sharpness: lambda_max {final['lambda_max']:.4g}  trace {final['hessian_trace']:.4g} "
                   f"± {final['hessian_trace_stderr']:.2g}  expected {final['expected_sharpness']:.4g} "
                   f"± {final['expected_sharpness_stderr']:.2g} (sigma {final['sigma']:g})")
    click.echo(f"wrote {out}/metrics.csv, metrics.json, checkpoint.json, manifest.json")


def _train_lm(out, milestones, opt_args, settings, progress, log, quiet) -> None:
    """``escape train --data ptb``: the LSTM language model."""
    from .train import train_lm

    settings = {k: v for k, v in settings.items() if not (k == "bf16" and v is False)}
    image_only = sorted(set(settings) - {"data", "optimizer", "learning_rate", "epochs", "batch_size", "seed",
                                         "weight_decay", "gamma", "data_dir", "bptt", "clip", "dropout", "embed",
                                         "hidden", "sharpness"})
    if image_only:
        raise ValueError(f"train: --{image_only[0].replace('_', '-')} is for image data, not --data ptb")
    settings = {k: v for k, v in settings.items() if k not in ("data", "sharpness")}
    history = train_lm({**settings, "milestones": _milestones(milestones), "optimizer_args": _optimizer_args(opt_args)},
                       out, progress=not quiet)
    for row in history["epochs"][-3:]:
        click.echo(f"epoch {row['epoch']:>3}  lr {row['lr']:.3g}  train loss {row['train_loss']:.4f}  "
                   f"valid ppl {row['valid_ppl']:.2f}")
    click.echo(f"test perplexity {history['final']['test_ppl']:.2f}")
    click.echo(f"wrote {out}/metrics.csv, metrics.json, checkpoint.json, manifest.json")


def _interrupted() -> None:
    click.echo("escape: interrupted; finished cells, runs and epochs are kept: rerun the same command to resume",
               err=True)
    sys.exit(130)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="escape", standalone_mode=False)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (Ctrl-C) and EOF at a prompt
        _interrupted()
    except click.exceptions.ClickException as e:
        _fail(e.format_message().replace("\n", " "))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (ConfigError, ValueError) as e:
        if os.environ.get("ESCAPE_DEBUG"):
            raise
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except OSError as e:
        if os.environ.get("ESCAPE_DEBUG"):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)  # what was finished is on disk (atomic writes)
        _fail(f"{where}{e.strerror or e}" + ("; finished work is kept: free some space and rerun the same command "
                                             "to resume" if full else ""))
    except KeyboardInterrupt:
        _interrupted()


if __name__ == "__main__":
    main()
