"""CIFAR-style ResNets (He et al. 2016) in Equinox, with BatchNorm state in an ``eqx.nn.State``.

BasicBlock networks (ResNet-18/34, a small ResNet for 8x8 images) and Bottleneck networks (ResNet-50/101/152),
as in ``kuangliu/pytorch-cifar`` and the official Adai code. Layout: channel-first. A model maps **one**
image ``(channels, height, width)`` to logits ``(classes,)``; batches go through [`escape.models.forward`][],
which vmaps the model over the leading axis with the axis name [`escape.models.BATCH_AXIS`][] that BatchNorm
reduces over. See ``docs/api/models.md``.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import (  # re-exported: the historical home of these names
    _BN_MOMENTUM as _BN_MOMENTUM,
    _build,
    _cast as _cast,
    _check_width as _check_width,
    _draw_uniform as _draw_uniform,
    _fill_uniform,
    _shape_only as _shape_only,
    _zero_debiased_state as _zero_debiased_state,
    BATCH_AXIS as BATCH_AXIS,
    ConvBN as ConvBN,
    count_parameters as count_parameters,
    forward as forward,
)


class BasicBlock(eqx.Module):
    """Two 3x3 ConvBN layers with an identity shortcut, or a 1x1 ConvBN shortcut when the shape changes.

    Its output has ``out_channels`` channels (``expansion = 1``).
    """

    expansion: ClassVar[int] = 1
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


class Bottleneck(eqx.Module):
    """ResNet-50's block: 1x1 ConvBN to ``planes``, 3x3 ConvBN (the stride), 1x1 ConvBN to ``4 * planes``,
    plus the identity, or a 1x1 ConvBN projection (stride ``stride``) when the stride or the width changes,
    then ReLU; ReLU after the first two ConvBNs (``kuangliu/pytorch-cifar``'s ``Bottleneck``)."""

    expansion: ClassVar[int] = 4
    conv1: ConvBN
    conv2: ConvBN
    conv3: ConvBN
    shortcut: ConvBN | None

    def __init__(self, in_channels: int, planes: int, stride: int):
        out_channels = self.expansion * planes
        self.conv1 = ConvBN(in_channels, planes, 1, 1)
        self.conv2 = ConvBN(planes, planes, 3, stride)
        self.conv3 = ConvBN(planes, out_channels, 1, 1)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBN(in_channels, out_channels, 1, stride)
        else:
            self.shortcut = None

    def __call__(self, x, state, *, compute_dtype, inference):
        kw = dict(compute_dtype=compute_dtype, inference=inference)
        out, state = self.conv1(x, state, **kw)
        out, state = self.conv2(jax.nn.relu(out), state, **kw)
        out, state = self.conv3(jax.nn.relu(out), state, **kw)
        if self.shortcut is None:
            skip = x
        else:
            skip, state = self.shortcut(x, state, **kw)
        return jax.nn.relu(out + skip), state


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(eqx.Module):
    """A ResNet for small images: 3x3 stem (no max-pool), stages of blocks, global average pool, linear.

    Stage ``i`` has ``blocks[i]`` blocks of width ``widths[i]`` (BasicBlocks, ``block="basic"``, output
    ``widths[i]`` channels; or Bottlenecks, ``block="bottleneck"``, inner width ``widths[i]`` and output
    ``4 * widths[i]``); the first stage keeps the resolution and every later one halves it (stride 2 in its
    first block). Convolution and linear weights (and the head's bias) are uniform on ``±1/sqrt(fan_in)``, as
    Equinox's and PyTorch's defaults, drawn from ``key`` in one call; BatchNorm starts at scale 1, shift 0. Build one with [`escape.models.resnet18`][],
    [`escape.models.resnet34`][], [`escape.models.small_resnet`][], [`escape.models.resnet50`][],
    [`escape.models.resnet101`][] or [`escape.models.resnet152`][] (which also zero the initial running
    statistics, see their Returns), or directly through ``eqx.nn.make_with_state(ResNet)(...)``.

    Attributes:
        stem: the 3x3 stem ConvBN.
        stages: one tuple of blocks (BasicBlocks or Bottlenecks) per stage.
        head: the linear classifier.
        compute_dtype: dtype of convolutions and activations (``None``: the parameters' dtype). Parameters
            and BatchNorm stay in their own dtype; logits are returned in the head's parameter dtype.
    """

    stem: ConvBN
    stages: tuple[tuple[BasicBlock | Bottleneck, ...], ...]
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
        block: str = "basic",
    ):
        blocks, widths = tuple(int(b) for b in blocks), tuple(int(w) for w in widths)
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"ResNet: blocks and widths must be non-empty and of equal length, got {blocks}, {widths}")
        if min(blocks) < 1 or min(widths) < 1:
            raise ValueError(f"ResNet: every entry of blocks and widths must be >= 1, got {blocks}, {widths}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if int(value) < 1:
                raise ValueError(f"ResNet: {name} must be >= 1, got {value!r}")
        if block not in _BLOCKS:
            raise ValueError(f"ResNet: block must be one of {', '.join(_BLOCKS)}, got {block!r}")
        block_cls = _BLOCKS[block]
        stem_width = widths[0] if stem_width is None else int(stem_width)
        stem = ConvBN(in_channels, stem_width, 3, 1)
        stages, channels = [], stem_width
        for i, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(block_cls(channels, width, stride))
                channels = width * block_cls.expansion
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


def _make(blocks, widths, num_classes, key, in_channels, compute_dtype, block="basic") -> tuple[ResNet, eqx.nn.State]:
    return _build(
        ResNet, blocks, widths, num_classes, key=key, in_channels=in_channels, compute_dtype=compute_dtype, block=block
    )


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


def resnet50(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """CIFAR ResNet-50: stages of [3, 4, 6, 3] Bottlenecks, inner widths ``width * (1, 2, 4, 8)``, outputs four
    times those (256-2048), a 3x3 stem of ``width`` channels.

    23,520,842 parameters for 10 classes at ``width=64`` (the count of the PyTorch CIFAR ResNet-50 of
    ``kuangliu/pytorch-cifar`` and the Adai code, whose constructor defaults to 100 classes). Arguments as
    [`escape.models.resnet18`][].
    """
    w = _check_width("resnet50", width)
    return _make((3, 4, 6, 3), (w, 2 * w, 4 * w, 8 * w), num_classes, key, in_channels, compute_dtype, "bottleneck")


def resnet101(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """CIFAR ResNet-101: stages of [3, 4, 23, 3] Bottlenecks, as [`escape.models.resnet50`][].

    42,512,970 parameters for 10 classes at ``width=64``.
    """
    w = _check_width("resnet101", width)
    return _make((3, 4, 23, 3), (w, 2 * w, 4 * w, 8 * w), num_classes, key, in_channels, compute_dtype, "bottleneck")


def resnet152(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[ResNet, eqx.nn.State]:
    """CIFAR ResNet-152: stages of [3, 8, 36, 3] Bottlenecks, as [`escape.models.resnet50`][].

    58,156,618 parameters for 10 classes at ``width=64``.
    """
    w = _check_width("resnet152", width)
    return _make((3, 8, 36, 3), (w, 2 * w, 4 * w, 8 * w), num_classes, key, in_channels, compute_dtype, "bottleneck")
