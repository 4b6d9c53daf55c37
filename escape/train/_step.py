"""The data-parallel training step: the image pipeline, the training state, one optimizer step, the evaluation
step and the curvature loss (what [`escape.train.Trainer`][] jits on its device mesh)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from .. import data as _data
from .. import models as _models


class Pipeline(eqx.Module):
    """Images as trained on: to float in ``[0, 1]``, augmented (optional), normalised per channel.

    Attributes:
        normalization: the per-channel standardisation fitted on the training images.
        augment: pad-4 random crop and horizontal flip ([`escape.data.augment_batch`][]) in training.
    """

    normalization: _data.Normalization
    augment: bool = eqx.field(static=True)

    def __call__(self, images, key: PRNGKeyArray | None = None):
        """Training images if ``key`` is given (augmented when ``augment``), evaluation images otherwise."""
        x = _data.to_unit_float(images)
        if self.augment and key is not None:
            x = _data.augment_batch(key, x)
        return self.normalization(x)


class TrainState(eqx.Module):
    """Everything that changes during training; each step returns a new one.

    Attributes:
        model: the network (parameters and static structure).
        bn_state: its BatchNorm running statistics.
        opt_state: the optimizer state (including the schedule's step count).
        step: the number of optimizer steps done, ``()`` int32.
        key: the key of the step's randomness: step ``t`` augments with ``jax.random.fold_in(key, t)`` and
            draws the dropout masks (of models that have dropout) from ``fold_in(fold_in(key, t), 1)``.
    """

    model: eqx.Module
    bn_state: eqx.nn.State
    opt_state: PyTree
    step: Int[Array, ""]
    key: PRNGKeyArray


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


@eqx.filter_jit
def train_step(
    ts: TrainState, images, labels, optimizer: optax.GradientTransformation, pipeline: Pipeline, replicated=None
) -> tuple[TrainState, Array, Array]:
    """One optimizer step on a batch (training-mode BatchNorm): ``(new_state, mean_loss, correct_count)``.

    Jitted; with the batch sharded over a mesh axis and ``ts`` replicated, this is data parallelism: the
    BatchNorm statistics, the loss and the gradients are reduced over the whole (global) batch, and
    ``replicated`` (a sharding) keeps the new state replicated.
    """
    step_key = jax.random.fold_in(ts.key, ts.step)
    x = pipeline(images, step_key)
    dropout_key = jax.random.fold_in(step_key, 1)  # models without dropout ignore it

    def loss_fn(model):
        logits, bn_state = _models.forward(model, ts.bn_state, x, inference=False, key=dropout_key)
        return jnp.mean(_cross_entropy(logits, labels)), (bn_state, logits)

    (loss, (bn_state, logits)), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(ts.model)
    updates, opt_state = optimizer.update(grads, ts.opt_state, eqx.filter(ts.model, eqx.is_inexact_array))
    new = TrainState(eqx.apply_updates(ts.model, updates), bn_state, opt_state, ts.step + 1, ts.key)
    if replicated is not None:
        new = eqx.filter_shard(new, replicated)
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == labels).astype(jnp.int32))
    return new, loss, correct


@eqx.filter_jit
def _eval_step(model, bn_state, images, labels, mask, pipeline: Pipeline):
    """Summed loss and correct count over the unmasked rows, inference-mode BatchNorm."""
    logits, _ = _models.forward(model, bn_state, pipeline(images), inference=True)
    losses = jnp.where(mask, _cross_entropy(logits, labels), 0.0)
    correct = jnp.where(mask, jnp.argmax(logits, axis=-1) == labels, False)
    return jnp.sum(losses), jnp.sum(correct.astype(jnp.int32))


_normalise = eqx.filter_jit(lambda pipeline, images: pipeline(images))


def _curvature_loss(static):
    """The training loss in inference mode as a function of the parameters (for `escape.curvature`).

    The batch carries the BatchNorm state, so that it is an argument of the compiled products rather than a
    constant baked into them: runs that differ only in their arrays then compile to the same program.
    """

    def loss_fn(params, batch):
        x, y, bn_state = batch
        logits, _ = _models.forward(eqx.combine(params, static), bn_state, x, inference=True)
        return jnp.mean(_cross_entropy(logits, y))

    return loss_fn
