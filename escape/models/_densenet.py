"""CIFAR DenseNet-121 (Huang et al. 2017) in Equinox, as in the official Adai code.

A port of ``model/densenet.py`` of ``zeke-xie/adaptive-inertia-adai`` (itself ``kuangliu/pytorch-cifar``):
a 3x3 stem, four dense blocks of pre-activation bottlenecks (BatchNorm-ReLU before every convolution)
joined by transitions that halve the channels and the resolution, a final BatchNorm-ReLU, a global average
pool and a linear classifier. One image per call; batches through [`escape.models.forward`][].
"""

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import _avg_pool, _batch_norm, _build, _cast, _check_sizes, _check_width, _fill_uniform, _new_norm, _shape_only


class BNReLUConv(eqx.Module):
    """Pre-activation unit: BatchNorm (in its parameters' dtype), ReLU, then a bias-free convolution (padding
    ``kernel_size // 2``) in the compute dtype. Built with a shape-only convolution (the model draws it)."""

    norm: eqx.nn.BatchNorm
    conv: eqx.nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        self.norm = _new_norm(in_channels)
        self.conv = _shape_only(
            eqx.nn.Conv2d, in_channels, out_channels, kernel_size, padding=kernel_size // 2, use_bias=False
        )

    def __call__(self, x, state, *, compute_dtype, inference):
        h, state = _batch_norm(self.norm, x, state, inference)
        return _cast(self.conv, compute_dtype)(jax.nn.relu(h)), state


class DenseLayer(eqx.Module):
    """The official ``Bottleneck``: BN-ReLU-conv1x1 to ``4 * growth``, BN-ReLU-conv3x3 to ``growth``, and the
    input appended: output ``[new features, x]`` with ``in_channels + growth`` channels."""

    conv1: BNReLUConv
    conv2: BNReLUConv

    def __init__(self, in_channels: int, growth: int):
        self.conv1 = BNReLUConv(in_channels, 4 * growth, 1)
        self.conv2 = BNReLUConv(4 * growth, growth, 3)

    def __call__(self, x, state, **kw):
        out, state = self.conv1(x, state, **kw)
        out, state = self.conv2(out, state, **kw)
        return jnp.concatenate([out, x], axis=0), state


class Transition(eqx.Module):
    """BN-ReLU-conv1x1 (no bias) to ``out_channels``, then a 2x2 average pool of stride 2."""

    conv: BNReLUConv

    def __init__(self, in_channels: int, out_channels: int):
        self.conv = BNReLUConv(in_channels, out_channels, 1)

    def __call__(self, x, state, **kw):
        out, state = self.conv(x, state, **kw)
        return _avg_pool(out, 2), state


class DenseNet(eqx.Module):
    """A DenseNet of bottleneck dense layers (BN-ReLU-conv1x1-BN-ReLU-conv3x3, input appended) for small images.

    Stem: a 3x3 convolution (no bias, no BatchNorm) to ``2 * growth`` channels. Dense block ``i`` has
    ``blocks[i]`` layers, each adding ``growth`` channels; after every block but the last a transition maps
    ``n`` channels to ``floor(n * reduction)`` and halves the resolution. Then BatchNorm, ReLU, the average
    over the spatial positions (the official ``avg_pool2d(out, 4)`` on the 4x4 map of a 32x32 input; for
    other input sizes, where the official code would leave a map other than 1x1 for its flatten, the
    global average keeps the head's width) and a linear classifier. Weights (and the head's bias) are
    uniform on ``±1/sqrt(fan_in)`` (PyTorch's default), from one draw of ``key``; BatchNorm starts at
    scale 1, shift 0.

    Attributes:
        stem: the 3x3 stem convolution.
        blocks: one tuple of dense layers per block.
        transitions: the transitions after the first ``len(blocks) - 1`` blocks.
        norm: the final BatchNorm.
        head: the linear classifier.
        compute_dtype: dtype of convolutions and activations (``None``: the parameters' dtype); BatchNorm,
            the final average and the head run in the parameters' dtype.
    """

    stem: eqx.nn.Conv2d
    blocks: tuple[tuple[DenseLayer, ...], ...]
    transitions: tuple[Transition, ...]
    norm: eqx.nn.BatchNorm
    head: eqx.nn.Linear
    compute_dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        blocks: Sequence[int],
        growth: int,
        num_classes: int,
        *,
        key: PRNGKeyArray,
        reduction: float = 0.5,
        in_channels: int = 3,
        compute_dtype: Any = None,
    ):
        blocks = tuple(int(b) for b in blocks)
        if not blocks or min(blocks) < 1:
            raise ValueError(f"DenseNet: blocks must be non-empty and positive, got {blocks}")
        if not 0 < reduction <= 1:
            raise ValueError(f"DenseNet: reduction must be in (0, 1], got {reduction!r}")
        _check_sizes("DenseNet", growth=growth, num_classes=num_classes, in_channels=in_channels)
        growth = int(growth)
        channels = 2 * growth
        stem = _shape_only(eqx.nn.Conv2d, int(in_channels), channels, 3, padding=1, use_bias=False)
        dense, transitions = [], []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            dense.append(tuple(layers))
            if i < len(blocks) - 1:
                out = int(math.floor(channels * reduction))
                transitions.append(Transition(channels, out))
                channels = out
        head = _shape_only(eqx.nn.Linear, channels, int(num_classes))
        self.norm = _new_norm(channels)
        self.stem, self.blocks, self.transitions, self.head = _fill_uniform(
            (stem, tuple(dense), tuple(transitions), head), key
        )
        self.compute_dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)

    def __call__(
        self,
        x: Float[Array, "channels height width"],
        state: eqx.nn.State,
        *,
        inference: bool | None = None,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " classes"], eqx.nn.State]:
        """Logits of one image, under a vmap with ``axis_name=BATCH_AXIS``; arguments as
        [`escape.models.ResNet.__call__`][] (``key`` is ignored: no stochastic layers)."""
        del key
        dtype = self.compute_dtype if self.compute_dtype is not None else self.head.weight.dtype
        kw = dict(compute_dtype=dtype, inference=inference)
        h = _cast(self.stem, dtype)(x.astype(dtype))
        for i, block in enumerate(self.blocks):
            for layer in block:
                h, state = layer(h, state, **kw)
            if i < len(self.transitions):
                h, state = self.transitions[i](h, state, **kw)
        h, state = _batch_norm(self.norm, h.astype(self.head.weight.dtype), state, inference)
        h = jnp.mean(jax.nn.relu(h), axis=(1, 2))
        return self.head(h), state


def densenet121(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 32, compute_dtype: Any = None
) -> tuple[DenseNet, eqx.nn.State]:
    """CIFAR DenseNet-121: dense blocks of [6, 12, 24, 16] bottlenecks, growth rate ``width``, reduction 0.5.

    6,956,298 parameters for 10 classes at ``width=32`` (the official growth rate).

    Args:
        num_classes: size of the output.
        key: PRNG key for the initialisation (uniform ``±1/sqrt(fan_in)``, the Equinox and PyTorch default).
        in_channels: channels of the input images.
        width: the growth rate (32 is the official model; the stem has ``2 * width`` channels and every
            bottleneck's inner 1x1 convolution ``4 * width``).
        compute_dtype: e.g. ``jnp.bfloat16`` for bf16 convolutions with float32 parameters and BatchNorm.

    Returns:
        ``(model, state)``, the running BatchNorm statistics starting at 0 (see [`escape.models.resnet18`][]).
    """
    w = _check_width("densenet121", width)
    return _build(DenseNet, (6, 12, 24, 16), w, num_classes, key=key, in_channels=in_channels,
                  compute_dtype=compute_dtype)
