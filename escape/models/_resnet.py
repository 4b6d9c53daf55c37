"""CIFAR-style ResNets (He et al. 2016) in Equinox, with BatchNorm state in an ``eqx.nn.State``.

Layout: channel-first. A model maps **one** image ``(channels, height, width)`` to logits ``(classes,)``;
batches go through [`escape.models.forward`][], which vmaps the model over the leading axis with the axis
name [`escape.models.BATCH_AXIS`][] that BatchNorm reduces over. See ``docs/api/models.md``.
"""

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

BATCH_AXIS = "batch"
"""Name of the vmapped batch axis that BatchNorm statistics are averaged over."""

_BN_MOMENTUM = 0.9  # running = 0.9 running + 0.1 batch, PyTorch's BatchNorm2d(momentum=0.1)


def _cast(tree, dtype):
    """Cast every floating array of ``tree`` to ``dtype`` (no-op when ``dtype`` is None)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _shape_only(layer, *args, **kwargs):
    """The layer with ``jax.ShapeDtypeStruct`` placeholders for its arrays: no random numbers drawn yet.

    [`escape.models.ResNet`][] fills every placeholder from one uniform draw (``_fill_uniform``): drawing
    per layer would compile a random-number kernel for each distinct weight shape (about a second each on
    CPU, some 20 s for ResNet-18).
    """
    return eqx.filter_eval_shape(layer, *args, key=jax.random.key(0), **kwargs)


def _fill_uniform(tree, key: PRNGKeyArray, bias_fan_in: int):
    """Replace every placeholder of ``tree`` by uniform values on ``±1 / sqrt(fan_in)``.

    That is the default of Equinox and PyTorch for ``Conv2d`` and ``Linear`` (PyTorch's
    ``kaiming_uniform_(a=sqrt(5))``). A weight's ``fan_in`` is the product of its trailing dimensions; the only
    1-D placeholder is the head's bias, whose ``fan_in`` is the head's input width ``bias_fan_in``.
    """
    is_placeholder = lambda x: isinstance(x, jax.ShapeDtypeStruct)
    leaves, treedef = jax.tree.flatten(tree, is_leaf=is_placeholder)
    slots = [i for i, leaf in enumerate(leaves) if is_placeholder(leaf)]
    shapes = tuple(tuple(leaves[i].shape) for i in slots)
    bounds = tuple(1 / math.sqrt(math.prod(sh[1:]) if len(sh) > 1 else bias_fan_in) for sh in shapes)
    dtypes = {leaves[i].dtype for i in slots}
    if len(dtypes) != 1:
        raise ValueError(f"ResNet: parameters of mixed dtypes {dtypes}")
    arrays = _draw_uniform(key, shapes, bounds, jnp.dtype(dtypes.pop()))
    for i, a in zip(slots, arrays):
        leaves[i] = a
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


class ConvBN(eqx.Module):
    """A bias-free convolution followed by BatchNorm.

    The convolution runs in the compute dtype; BatchNorm always runs in its parameters' dtype (float32
    unless x64 is on), so batch statistics of bfloat16 activations are accumulated in float32. Built with a
    shape-only convolution (internal: the enclosing [`escape.models.ResNet`][] draws its weights).
    """

    conv: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        self.conv = _shape_only(
            eqx.nn.Conv2d, in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, use_bias=False
        )
        self.norm = eqx.nn.BatchNorm(out_channels, axis_name=BATCH_AXIS, momentum=_BN_MOMENTUM, mode="batch")

    def __call__(
        self, x: Float[Array, "cin h w"], state: eqx.nn.State, *, compute_dtype: Any, inference: bool | None
    ) -> tuple[Float[Array, "cout h2 w2"], eqx.nn.State]:
        y = _cast(self.conv, compute_dtype)(x)
        norm_dtype = self.norm.weight.dtype if self.norm.weight is not None else jnp.float32
        y, state = self.norm(y.astype(norm_dtype), state, inference=inference)
        return y.astype(x.dtype), state


class BasicBlock(eqx.Module):
    """Two 3x3 ConvBN layers with an identity shortcut, or a 1x1 ConvBN shortcut when the shape changes."""

    conv1: ConvBN
    conv2: ConvBN
    shortcut: ConvBN | None

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        self.conv1 = ConvBN(in_channels, out_channels, 3, stride)
        self.conv2 = ConvBN(out_channels, out_channels, 3, 1)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBN(in_channels, out_channels, 1, stride)
        else:
            self.shortcut = None

    def __call__(self, x, state, *, compute_dtype, inference):
        out, state = self.conv1(x, state, compute_dtype=compute_dtype, inference=inference)
        out = jax.nn.relu(out)
        out, state = self.conv2(out, state, compute_dtype=compute_dtype, inference=inference)
        if self.shortcut is None:
            skip = x
        else:
            skip, state = self.shortcut(x, state, compute_dtype=compute_dtype, inference=inference)
        return jax.nn.relu(out + skip), state


class ResNet(eqx.Module):
    """A ResNet of BasicBlocks for small images: 3x3 stem (no max-pool), stages, global average pool, linear.

    Stage ``i`` has ``blocks[i]`` BasicBlocks of width ``widths[i]``; the first stage keeps the resolution and
    every later one halves it (stride 2 in its first block). Convolution and linear weights (and the head's
    bias) are uniform on ``±1/sqrt(fan_in)``, as Equinox's and PyTorch's defaults, drawn from ``key`` in one
    call; BatchNorm starts at scale 1, shift 0. Build one with [`escape.models.resnet18`][],
    [`escape.models.resnet34`][] or [`escape.models.small_resnet`][] (which also zero the initial running
    statistics, see their Returns), or directly through ``eqx.nn.make_with_state(ResNet)(...)``.

    Attributes:
        stem: the 3x3 stem ConvBN.
        stages: one tuple of BasicBlocks per stage.
        head: the linear classifier.
        compute_dtype: dtype of convolutions and activations (``None``: the parameters' dtype). Parameters
            and BatchNorm stay in their own dtype; logits are returned in the head's parameter dtype.
    """

    stem: ConvBN
    stages: tuple[tuple[BasicBlock, ...], ...]
    head: eqx.nn.Linear
    compute_dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        *,
        key: PRNGKeyArray,
        in_channels: int = 3,
        stem_width: int | None = None,
        compute_dtype: Any = None,
    ):
        blocks, widths = tuple(int(b) for b in blocks), tuple(int(w) for w in widths)
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"ResNet: blocks and widths must be non-empty and of equal length, got {blocks}, {widths}")
        if min(blocks) < 1 or min(widths) < 1:
            raise ValueError(f"ResNet: every entry of blocks and widths must be >= 1, got {blocks}, {widths}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if int(value) < 1:
                raise ValueError(f"ResNet: {name} must be >= 1, got {value!r}")
        stem_width = widths[0] if stem_width is None else int(stem_width)
        stem = ConvBN(in_channels, stem_width, 3, 1)
        stages, channels = [], stem_width
        for i, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(tuple(stage))
        head = _shape_only(eqx.nn.Linear, channels, num_classes)
        self.stem, self.stages, self.head = _fill_uniform((stem, tuple(stages), head), key, channels)
        self.compute_dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)

    def __call__(
        self,
        x: Float[Array, "channels height width"],
        state: eqx.nn.State,
        *,
        inference: bool | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " classes"], eqx.nn.State]:
        """Logits of one image. Must run under a vmap with ``axis_name=BATCH_AXIS`` (see ``forward``).

        Args:
            x: one image, channel-first, any float or integer dtype (cast to the compute dtype).
            state: the BatchNorm state.
            inference: ``True`` uses the running statistics and leaves ``state`` unchanged; ``False`` uses the
                batch statistics and updates the running ones; ``None`` follows each BatchNorm's own
                ``inference`` flag (as set by ``eqx.nn.inference_mode``).
            key: ignored (no stochastic layers).

        Returns:
            ``(logits, state)``.
        """
        del key
        dtype = self.compute_dtype if self.compute_dtype is not None else self.head.weight.dtype
        kw = dict(compute_dtype=dtype, inference=inference)
        h, state = self.stem(x.astype(dtype), state, **kw)
        h = jax.nn.relu(h)
        for stage in self.stages:
            for block in stage:
                h, state = block(h, state, **kw)
        h = jnp.mean(h.astype(self.head.weight.dtype), axis=(1, 2))  # pool in the parameters' dtype
        return self.head(h), state


def forward(
    model: eqx.Module,
    state: eqx.nn.State,
    images: Float[Array, "batch channels height width"],
    *,
    inference: bool | None = None,
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

    Returns:
        ``(logits, new_state)``; in inference mode ``new_state`` equals ``state``.
    """
    fn = lambda x, s: model(x, s, inference=inference)
    return jax.vmap(fn, axis_name=BATCH_AXIS, in_axes=(0, None), out_axes=(0, None))(images, state)


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


def _make(blocks, widths, num_classes, key, in_channels, compute_dtype) -> tuple[ResNet, eqx.nn.State]:
    model, state = eqx.nn.make_with_state(ResNet)(
        blocks, widths, num_classes, key=key, in_channels=in_channels, compute_dtype=compute_dtype
    )
    return model, _zero_debiased_state(model, state)


def _check_width(owner: str, width: int) -> int:
    if int(width) != width or width < 1:
        raise ValueError(f"{owner}: width must be a positive integer, got {width!r}")
    return int(width)


def resnet18(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """CIFAR ResNet-18: stages of [2, 2, 2, 2] BasicBlocks, widths ``width * (1, 2, 4, 8)`` (64-512).

    11,173,962 parameters for 10 classes at ``width=64`` (the count of the PyTorch CIFAR ResNet-18).

    Args:
        num_classes: size of the output.
        key: PRNG key for the initialisation (uniform ``±1/sqrt(fan_in)``, the Equinox and PyTorch default).
        in_channels: channels of the input images.
        width: width of the first stage; smaller values give cheap models of the same shape for tests.
        compute_dtype: e.g. ``jnp.bfloat16`` for bf16 convolutions with float32 parameters; ``None`` computes
            in the parameters' dtype.

    Returns:
        ``(model, state)`` from ``eqx.nn.make_with_state``, the running BatchNorm statistics starting at 0 so
        that their zero-debiased reads are exact averages of the batch statistics (a model in inference mode
        before any training step therefore divides by ``sqrt(eps)``: train or load a state first).
    """
    w = _check_width("resnet18", width)
    return _make((2, 2, 2, 2), (w, 2 * w, 4 * w, 8 * w), num_classes, key, in_channels, compute_dtype)


def resnet34(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """CIFAR ResNet-34: stages of [3, 4, 6, 3] BasicBlocks, widths ``width * (1, 2, 4, 8)``.

    21,282,122 parameters for 10 classes at ``width=64``. Arguments as [`escape.models.resnet18`][].
    """
    w = _check_width("resnet34", width)
    return _make((3, 4, 6, 3), (w, 2 * w, 4 * w, 8 * w), num_classes, key, in_channels, compute_dtype)


def small_resnet(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 1, width: int = 16, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """A ResNet for 8x8 images (the digits set): 3x3 stem of ``width`` channels, three stages of one
    BasicBlock each with widths ``width * (1, 2, 4)`` (16/32/64), resolutions 8, 4, 2.

    Arguments as [`escape.models.resnet18`][] (``in_channels`` defaults to 1).
    """
    w = _check_width("small_resnet", width)
    return _make((1, 1, 1), (w, 2 * w, 4 * w), num_classes, key, in_channels, compute_dtype)
