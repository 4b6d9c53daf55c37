"""Many training runs at once: one run per (seed, learning rate, weight decay) cell, ``vmap``-ed into a single
compiled step (hyperparameter grids such as the Adai paper's robustness figure).

Every cell is the run that [`escape.train.train`][] makes of the same [`escape.train.TrainConfig`][] with that
cell's ``seed``, ``learning_rate`` and ``weight_decay``: the same initialisation, data order, learning-rate
schedule and optimizer (the registry's or optax's, with its weight-decay convention). The learning rate and
the weight decay are hyperparameters of ``optax.inject_hyperparams`` held in each cell's optimizer state, so
one compilation serves every grid of the same size and optimizer, whatever its values. The cells are sharded
over the local devices (``jax.sharding``) when their number divides evenly.
"""

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .. import data as _data
from ._config import as_config, MODELS, TrainConfig
from ._optimizers import make_train_optimizer
from ._step import _eval_step, Pipeline, train_step, TrainState

CELL_AXIS = "cells"
"""Name of the device-mesh axis that the cells are sharded over."""


class GridResult(NamedTuple):
    """What [`escape.train.train_grid`][] returns: one entry per cell, in the order given.

    Attributes:
        test_loss, test_acc: on the whole test split, inference-mode BatchNorm, after the last epoch.
        train_eval_loss, train_eval_acc: the same on the whole training split.
        train_loss: ``(cells, epochs)``, the mean training-mode loss of every epoch's batches.
        diverged: whether a training loss was not finite at some step (the cell's other numbers are then
            those of a broken network: read them as failures).
    """

    test_loss: np.ndarray
    test_acc: np.ndarray
    train_eval_loss: np.ndarray
    train_eval_acc: np.ndarray
    train_loss: np.ndarray
    diverged: np.ndarray


def _grid_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """``config``'s optimizer with the learning rate and the weight decay injected (state entries); one object
    per optimizer and hyperparameters, so that grids of other values reuse the compiled step."""
    args = tuple(sorted(config.optimizer_args.items()))
    try:
        return _injected(config.optimizer, args)
    except TypeError:  # unhashable hyperparameter values
        return _injected.__wrapped__(config.optimizer, args)


@functools.lru_cache(maxsize=32)
def _injected(name: str, args: tuple) -> optax.GradientTransformation:
    def factory(learning_rate, weight_decay):
        return make_train_optimizer(name, learning_rate, weight_decay, **dict(args))

    return optax.inject_hyperparams(factory)(learning_rate=1.0, weight_decay=0.0)


def _scheduled(rate, step, boundaries: tuple[int, ...], gamma: float):
    """The learning rate of update ``step``: ``rate`` times ``gamma`` once per boundary passed (as
    `escape.train.learning_rate_schedule`)."""
    for b in boundaries:
        rate = jnp.where(step >= b, rate * gamma, rate)
    return rate


@eqx.filter_jit
def _grid_step(ts, images, labels, rates, optimizer, pipeline: Pipeline, boundaries, gamma):
    """One optimizer step of every cell: ``vmap`` of [`escape.train.train_step`][] with the cell's scheduled
    learning rate written into its optimizer state first."""

    def one(ts, images, labels, rate):
        lr = ts.opt_state.hyperparams["learning_rate"]
        rate = _scheduled(rate.astype(lr.dtype), ts.step, boundaries, gamma)
        ts = eqx.tree_at(lambda s: s.opt_state.hyperparams["learning_rate"], ts, rate)
        return train_step(ts, images, labels, optimizer, pipeline)

    return eqx.filter_vmap(one)(ts, images, labels, rates)


@eqx.filter_jit
def _grid_eval(model, bn_state, images, labels, mask, pipeline: Pipeline):
    return eqx.filter_vmap(lambda m, s: _eval_step(m, s, images, labels, mask, pipeline))(model, bn_state)


def _as_cells(name: str, values, n: int | None) -> np.ndarray:
    out = np.asarray(values, np.float64).reshape(-1)
    if n is not None and out.size != n:
        raise ValueError(f"train_grid: {name} has {out.size} entries, not {n} (one per cell)")
    return out


def _stack(trees: list):
    """One tree whose leaves stack the leaves of ``trees`` (typed PRNG keys through their key data)."""

    def stack(*xs):
        if jax.dtypes.issubdtype(xs[0].dtype, jax.dtypes.prng_key):
            data = jnp.stack([jax.random.key_data(x) for x in xs])
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(xs[0]))
        return jnp.stack(xs)

    arrays = [eqx.filter(t, eqx.is_array) for t in trees]
    static = eqx.partition(trees[0], eqx.is_array)[1]
    return eqx.combine(jax.tree.map(stack, *arrays), static)


def train_grid(
    config: "TrainConfig | Mapping",
    learning_rates: Sequence[float],
    weight_decays: Sequence[float],
    seeds: Sequence[int] | None = None,
    *,
    dataset: _data.Dataset | None = None,
    devices: int | None = None,
    progress: bool = False,
) -> GridResult:
    """Train one run per cell, all cells in one ``vmap``-ed step; return each cell's final metrics.

    Cell ``i`` is ``config`` with ``learning_rate = learning_rates[i]``, ``weight_decay = weight_decays[i]``
    and ``seed = seeds[i]`` (default: ``config.seed`` for all). No curvature is measured and nothing is written.

    Args:
        config: a [`escape.train.TrainConfig`][] or a mapping of its fields (its ``devices`` is ignored).
        learning_rates, weight_decays: one value per cell (``> 0`` and ``>= 0``).
        seeds: one seed per cell.
        dataset: the data set to use instead of loading ``config.data``.
        devices: shard the cells over this many local devices (default: as many as divide the number of cells).
        progress: show a tqdm bar over the steps.

    Raises:
        ValueError: one line naming the argument (lengths that differ, values out of range).
    """
    from ._loop import load_dataset

    config = as_config(config)
    lr = _as_cells("learning_rates", learning_rates, None)
    n = lr.size
    if n == 0:
        raise ValueError("train_grid: learning_rates is empty (give one value per cell)")
    wd = _as_cells("weight_decays", weight_decays, n)
    seeds = np.full(n, config.seed, np.int64) if seeds is None else np.asarray(seeds).reshape(-1)
    if seeds.size != n or not np.issubdtype(seeds.dtype, np.integer) or (seeds < 0).any():
        raise ValueError(f"train_grid: seeds must be {n} integers >= 0 (one per cell), got {seeds.tolist()}")
    if not (np.isfinite(lr).all() and (lr > 0).all()):
        raise ValueError(f"train_grid: learning_rates must be finite and > 0, got {lr.tolist()}")
    if not (np.isfinite(wd).all() and (wd >= 0).all()):
        raise ValueError(f"train_grid: weight_decays must be finite and >= 0, got {wd.tolist()}")
    dataset = dataset if dataset is not None else load_dataset(config)
    train_split, test_split = dataset.train, dataset.test
    if len(train_split.labels) < config.batch_size:
        raise ValueError(f"train_grid: {len(train_split.labels)} training examples make no batch of "
                         f"{config.batch_size}")

    available = jax.local_devices()
    if devices is None:
        devices = max(d for d in range(1, len(available) + 1) if n % d == 0)
    elif not 1 <= devices <= len(available) or n % devices:
        raise ValueError(f"train_grid: devices={devices} must divide the {n} cells and be at most "
                         f"{len(available)} (the local devices)")
    mesh = jax.make_mesh((devices,), (CELL_AXIS,), axis_types=(AxisType.Auto,), devices=available[:devices])
    by_cell = NamedSharding(mesh, PartitionSpec(CELL_AXIS))

    def put(tree):  # arrays with their leading (cell) axis sharded over the mesh
        arrays, static = eqx.partition(tree, eqx.is_array)
        return eqx.combine(jax.device_put(arrays, by_cell), static)

    distinct = sorted(set(int(s) for s in seeds))
    batches = {s: _data.Batches(train_split.images, train_split.labels, batch_size=config.batch_size, seed=s)
               for s in distinct}
    steps_per_epoch = batches[distinct[0]].steps_per_epoch
    boundaries = tuple(int(m) * steps_per_epoch for m in config.milestones)
    optimizer = _grid_optimizer(config)
    pipeline = Pipeline(_data.Normalization.fit(train_split.images), config.augmented)

    width = {} if config.width is None else {"width": config.width}
    compute = jnp.bfloat16 if config.bf16 else None
    initial = {}
    for s in distinct:  # as Trainer.init: model from fold_in(key(seed), 0), step key fold_in(key(seed), 1)
        root = jax.random.key(s)
        model, bn_state = MODELS[config.model_name](
            dataset.num_classes, key=jax.random.fold_in(root, 0), in_channels=dataset.image_shape[0],
            compute_dtype=compute, **width)
        initial[s] = (model, bn_state, jax.random.fold_in(root, 1))
    states = []
    for i in range(n):
        model, bn_state, key = initial[int(seeds[i])]
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        hyper = opt_state.hyperparams
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr[i], hyper["learning_rate"].dtype)
        opt_state.hyperparams["weight_decay"] = jnp.asarray(wd[i], hyper["weight_decay"].dtype)
        states.append(TrainState(model, bn_state, opt_state, jnp.zeros((), jnp.int32), key))
    ts = put(_stack(states))
    rates = put(jnp.asarray(lr, jnp.float32))
    slot = np.array([distinct.index(int(s)) for s in seeds])

    losses = np.zeros((n, config.epochs))
    finite = np.ones(n, bool)
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress, desc=f"{config.optimizer} grid",
               unit="step", dynamic_ncols=True, leave=False)
    try:
        for epoch in range(config.epochs):
            per_step = []
            for parts in zip(*(batches[s].epoch(epoch) for s in distinct)):
                images = np.stack([b.arrays[0] for b in parts])[slot]
                labels = np.stack([b.arrays[1] for b in parts])[slot]
                ts, loss, _ = _grid_step(ts, *put((images, labels)), rates, optimizer, pipeline, boundaries,
                                         float(config.gamma))
                per_step.append(loss)
                bar.update(1)
            per_step = np.asarray(jax.device_get(per_step), np.float64)  # (steps, cells)
            finite &= np.isfinite(per_step).all(axis=0)
            losses[:, epoch] = per_step.mean(axis=0)
    finally:
        bar.close()

    def evaluate(split):
        size = min(config.eval_batch_size, len(split.labels))
        loss, correct = np.zeros(n), np.zeros(n)
        for b in _data.Batches(split.images, split.labels, batch_size=size, shuffle=False,
                               remainder="pad").epoch(0):
            bl, bc = _grid_eval(ts.model, ts.bn_state, *b.arrays, b.mask, pipeline)
            loss += np.asarray(bl, np.float64)
            correct += np.asarray(bc, np.float64)
        return loss / len(split.labels), correct / len(split.labels)

    test_loss, test_acc = evaluate(test_split)
    train_eval_loss, train_eval_acc = evaluate(train_split)
    return GridResult(test_loss, test_acc, train_eval_loss, train_eval_acc, losses, ~finite)
