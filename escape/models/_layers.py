"""Pieces shared by every model of `escape.models`: single-draw initialisation, ConvBN, pooling, ``forward``.

Layout: channel-first. A model maps **one** image ``(channels, height, width)`` to logits ``(classes,)``;
batches go through [`escape.models.forward`][], which vmaps the model over the leading axis with the axis
name [`escape.models.BATCH_AXIS`][] that BatchNorm reduces over. See ``docs/api/models.md``.
"""

import math
import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

BATCH_AXIS = "batch"
"""Name of the vmapped batch axis that BatchNorm statistics are averaged over."""

_BN_MOMENTUM = 0.9  # running = 0.9 running + 0.1 batch, PyTorch's BatchNorm2d(momentum=0.1)
_BN_EPS = 1e-5  # PyTorch's and Equinox's default


def _cast(tree, dtype):
    """Cast every floating array of ``tree`` to ``dtype`` (no-op when ``dtype`` is None)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _shape_only(layer, *args, **kwargs):
    """The layer with ``jax.ShapeDtypeStruct`` placeholders for its arrays: no random numbers drawn yet.

    Every model fills its placeholders from one uniform draw (``_fill_uniform``): drawing per layer would
    compile a random-number kernel for each distinct weight shape (about a second each on CPU, some 20 s for
    ResNet-18).
    """
    return eqx.filter_eval_shape(layer, *args, key=jax.random.key(0), **kwargs)


def _is_placeholder(x) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _is_layer(x) -> bool:
    return isinstance(x, (eqx.nn.Conv, eqx.nn.Linear))


def _fill_uniform(tree, key: PRNGKeyArray, bias_fan_in: int | None = None):
    """Replace every placeholder of ``tree`` by uniform values on ``±1 / sqrt(fan_in)``.

    That is the default of Equinox and PyTorch for ``Conv2d`` and ``Linear``, weights and biases alike
    (PyTorch's ``kaiming_uniform_(a=sqrt(5))`` and its bias rule). Inside a convolution or linear layer,
    ``fan_in`` is the product of the trailing dimensions of the layer's weight (``in * k * k``, ``in``), for
    its weight and its bias. A placeholder outside such a layer uses the product of its own trailing
    dimensions, or ``bias_fan_in`` if it is 1-D. The placeholders are filled in the order of the tree's
    leaves from one draw, so the values depend only on ``key`` and the list of shapes.
    """
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda x: _is_placeholder(x) or _is_layer(x))
    slots, shapes, bounds = [], [], []  # slot: (leaf index, index inside the layer or None)
    layers = {}
    for i, leaf in enumerate(leaves):
        if _is_layer(leaf):
            sub, subdef = jax.tree.flatten(leaf, is_leaf=_is_placeholder)
            layers[i] = (sub, subdef)
            fan_in = math.prod(tuple(leaf.weight.shape)[1:])
            for j, x in enumerate(sub):
                if _is_placeholder(x):
                    slots.append((i, j))
                    shapes.append(tuple(x.shape))
                    bounds.append(1 / math.sqrt(fan_in))
        elif _is_placeholder(leaf):
            sh = tuple(leaf.shape)
            if len(sh) == 1 and bias_fan_in is None:
                raise ValueError(f"models: a 1-D placeholder of shape {sh} outside a layer needs bias_fan_in")
            slots.append((i, None))
            shapes.append(sh)
            bounds.append(1 / math.sqrt(math.prod(sh[1:]) if len(sh) > 1 else bias_fan_in))
    placeholders = [leaves[i] if j is None else layers[i][0][j] for i, j in slots]
    dtypes = {x.dtype for x in placeholders}
    if len(dtypes) > 1:
        raise ValueError(f"models: parameters of mixed dtypes {dtypes}")
    if not slots:
        return tree
    arrays = _draw_uniform(key, tuple(shapes), tuple(bounds), jnp.dtype(dtypes.pop()))
    for (i, j), a in zip(slots, arrays):
        if j is None:
            leaves[i] = a
        else:
            layers[i][0][j] = a
    for i, (sub, subdef) in layers.items():
        leaves[i] = jax.tree.unflatten(subdef, sub)
    return jax.tree.unflatten(treedef, leaves)


@eqx.filter_jit
def _draw_uniform(key, shapes, bounds, dtype):
    """One uniform draw on ``[-1, 1)``, cut into arrays of ``shapes`` scaled by ``bounds`` (one compilation)."""
    total = sum(math.prod(sh) for sh in shapes)
    flat = jax.random.uniform(key, (total,), dtype, -1.0, 1.0)
    out, start = [], 0
    for sh, b in zip(shapes, bounds):
        n = math.prod(sh)
        out.append(flat[start : start + n].reshape(sh) * jnp.asarray(b, dtype))
        start += n
    return out


def _batch_norm(norm: eqx.nn.BatchNorm, x, state: eqx.nn.State, inference: bool | None):
    """``norm`` applied in its parameters' dtype (float32 unless x64 is on), the result cast back to ``x``'s."""
    norm_dtype = norm.weight.dtype if norm.weight is not None else jnp.float32
    y, state = norm(x.astype(norm_dtype), state, inference=inference)
    return y.astype(x.dtype), state


def _new_norm(channels: int, eps: float = _BN_EPS) -> eqx.nn.BatchNorm:
    return eqx.nn.BatchNorm(channels, axis_name=BATCH_AXIS, eps=eps, momentum=_BN_MOMENTUM, mode="batch")


class ConvBN(eqx.Module):
    """A convolution (bias-free unless ``use_bias``) followed by BatchNorm.

    The convolution runs in the compute dtype; BatchNorm always runs in its parameters' dtype (float32
    unless x64 is on), so batch statistics of bfloat16 activations are accumulated in float32. Built with a
    shape-only convolution (internal: the enclosing model draws its weights with ``_fill_uniform``).
    """

    conv: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, *, use_bias: bool = False,
        eps: float = _BN_EPS,
    ):
        self.conv = _shape_only(
            eqx.nn.Conv2d, in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            use_bias=use_bias,
        )
        self.norm = _new_norm(out_channels, eps)

    def __call__(
        self, x: Float[Array, "cin h w"], state: eqx.nn.State, *, compute_dtype: Any, inference: bool | None
    ) -> tuple[Float[Array, "cout h2 w2"], eqx.nn.State]:
        y = _cast(self.conv, compute_dtype)(x)
        norm_dtype = self.norm.weight.dtype if self.norm.weight is not None else jnp.float32
        y, state = self.norm(y.astype(norm_dtype), state, inference=inference)
        return y.astype(x.dtype), state


def _max_pool(x: Float[Array, "c h w"], window, stride, padding: int = 0) -> Float[Array, "c h2 w2"]:
    """Max pool of one channel-first image; padding with ``-inf`` (PyTorch's ``MaxPool2d``)."""
    window = (window, window) if isinstance(window, int) else tuple(window)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    pad = ((0, 0), (padding, padding), (padding, padding))
    # A Python scalar init lets lax pick its differentiable max-pool primitive (a traced one would not).
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window), (1, *stride), pad)


def _avg_pool(x: Float[Array, "c h w"], window: int) -> Float[Array, "c h2 w2"]:
    """Average pool with stride ``window`` and no padding (PyTorch's ``avg_pool2d(x, window)``, floor mode)."""
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window), (1, window, window), "VALID")
    return s / jnp.asarray(window * window, x.dtype)


def forward(
    model: eqx.Module,
    state: eqx.nn.State,
    images: Float[Array, "batch channels height width"],
    *,
    inference: bool | None = None,
    key: PRNGKeyArray | None = None,
) -> tuple[Float[Array, "batch classes"], eqx.nn.State]:
    """Apply a per-example stateful model to a batch, BatchNorm reducing over the whole batch.

    ``jax.vmap(model, axis_name=BATCH_AXIS, in_axes=(0, None), out_axes=(0, None))``. Under ``jit`` with the
    batch sharded over devices, the BatchNorm means become cross-device reductions (global batch statistics,
    as synchronised BatchNorm), so the result does not depend on the number of devices.

    Args:
        model: e.g. a [`escape.models.ResNet`][].
        state: its state.
        images: a batch, channel-first.
        inference: passed to the model (see [`escape.models.ResNet.__call__`][]).
        key: randomness of stochastic layers (the dropout of [`escape.models.GoogLeNet`][]): example ``n``
            gets ``jax.random.split(key, N)[n]``. ``None``: the model is called without a key, as it must be
            in inference mode or for models without stochastic layers (which ignore a key).

    Returns:
        ``(logits, new_state)``; in inference mode ``new_state`` equals ``state``.
    """
    if key is None:
        fn = lambda x, s: model(x, s, inference=inference)
        return jax.vmap(fn, axis_name=BATCH_AXIS, in_axes=(0, None), out_axes=(0, None))(images, state)
    keys = _shard_like(jax.random.split(key, images.shape[0]), images)
    fn = lambda x, s, k: model(x, s, inference=inference, key=k)
    return jax.vmap(fn, axis_name=BATCH_AXIS, in_axes=(0, None, 0), out_axes=(0, None))(images, state, keys)


def _shard_like(keys, images):
    """Under an ``Explicit`` mesh, vmap needs the keys sharded over the batch axis as the images are."""
    sharding = jax.typeof(images).sharding
    spec = getattr(sharding, "spec", None)
    if spec and spec[0] is not None:
        target = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[0]))
        keys = jax.sharding.reshard(keys, target)
    return keys


def count_parameters(model: eqx.Module) -> int:
    """Number of trainable scalars: elements of every floating array leaf (BatchNorm state excluded).

    Works on shape-only models too (``eqx.filter_eval_shape(resnet18, 10, key=key)``).
    """
    is_float = lambda a: hasattr(a, "shape") and hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact)
    return sum(math.prod(a.shape) for a in jax.tree.leaves(model) if is_float(a))


def _zero_debiased_state(model: eqx.Module, state: eqx.nn.State) -> eqx.nn.State:
    """Start every BatchNorm's running variance at 0 instead of Equinox's 1.

    ``eqx.nn.BatchNorm(mode="batch")`` keeps ``hidden <- m hidden + (1 - m) batch`` and reads
    ``hidden / (1 - m^k)`` after ``k`` steps: an exact average of the batch statistics only if ``hidden``
    starts at 0. From Equinox's initial variance 1, the read variance is off by ``m^k / (1 - m^k)`` (0.45
    after 11 steps at ``m = 0.9``, one epoch of digits at batch 128), which distorts early evaluations.
    """
    norms = [x for x in jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, eqx.nn.BatchNorm))
             if isinstance(x, eqx.nn.BatchNorm)]
    for bn in norms:
        mean, var = state.get(bn.batch_state_index)
        state = state.set(bn.batch_state_index, (jnp.zeros_like(mean), jnp.zeros_like(var)))
    return state


def _build(cls, *args, **kwargs):
    """``eqx.nn.make_with_state(cls)(*args, **kwargs)`` with the running statistics starting at 0."""
    model, state = eqx.nn.make_with_state(cls)(*args, **kwargs)
    return model, _zero_debiased_state(model, state)


def _is_positive_int(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and float(value).is_integer() and value >= 1)


def _check_width(owner: str, width) -> int:
    """``width`` as an int, or a one-line ``ValueError`` naming it (integral floats such as ``8.0`` pass)."""
    if not _is_positive_int(width):
        raise ValueError(f"{owner}: width must be a positive integer, got {width!r}")
    return int(width)


def _check_sizes(owner: str, **sizes) -> None:
    """A one-line ``ValueError`` naming the first of ``sizes`` that is not a positive integer."""
    for name, value in sizes.items():
        if not _is_positive_int(value):
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
