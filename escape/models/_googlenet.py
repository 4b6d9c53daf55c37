"""CIFAR GoogLeNet (Szegedy et al. 2015, with BatchNorm) in Equinox, as in the official Adai code.

A port of ``model/googlenet.py`` of ``zeke-xie/adaptive-inertia-adai`` (itself ``weiaicunzai/pytorch-cifar100``):
a 3x3 prelayer, nine Inception modules in groups of 2, 5 and 2 with a 3x3 max-pool of stride 2 between
groups, a global average pool, dropout 0.4 and a linear classifier. One image per call; batches through
[`escape.models.forward`][], which passes the dropout key.
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import _build, _check_sizes, _check_width, _fill_uniform, _max_pool, _shape_only, ConvBN

_INCEPTIONS = (
    ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)),  # a3, b3: 32x32
    (
        (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
    ),  # a4 .. e4: 16x16
    ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)),  # a5, b5: 8x8
)
"""The official Inception modules at ``width=64``: ``(n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj)``."""
_PRELAYER = 192


class Inception(eqx.Module):
    """Four branches concatenated along the channels, every convolution with bias, BatchNorm and ReLU:
    1x1; 1x1 then 3x3; 1x1 then two 3x3 (the 5x5 branch); 3x3 max-pool (stride 1, padding 1) then 1x1.

    As in the official code, the BatchNorm after the first 3x3 of the 5x5 branch is
    ``nn.BatchNorm2d(n5x5, n5x5)``, whose second argument is PyTorch's ``eps``: it has ``eps = n5x5``
    (32 to 128 at the official widths) instead of 1e-5. The port keeps that.
    """

    b1: ConvBN
    b2: tuple[ConvBN, ConvBN]
    b3: tuple[ConvBN, ConvBN, ConvBN]
    b4: ConvBN

    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int,
                 pool_proj: int):
        conv = lambda a, b, k, **kw: ConvBN(a, b, k, 1, use_bias=True, **kw)
        self.b1 = conv(in_channels, n1x1, 1)
        self.b2 = (conv(in_channels, n3x3_reduce, 1), conv(n3x3_reduce, n3x3, 3))
        self.b3 = (conv(in_channels, n5x5_reduce, 1), conv(n5x5_reduce, n5x5, 3, eps=float(n5x5)), conv(n5x5, n5x5, 3))
        self.b4 = conv(in_channels, pool_proj, 1)

    def __call__(self, x, state, **kw):
        def run(layers, h, state):
            for layer in layers:
                h, state = layer(h, state, **kw)
                h = jax.nn.relu(h)
            return h, state

        y1, state = run((self.b1,), x, state)
        y2, state = run(self.b2, x, state)
        y3, state = run(self.b3, x, state)
        y4, state = run((self.b4,), _max_pool(x, 3, 1, 1), state)
        return jnp.concatenate([y1, y2, y3, y4], axis=0), state


def _scaled(c: int, width: int) -> int:
    """``c * width / 64`` rounded half up, at least 1."""
    return max(1, (c * width + 32) // 64)


class GoogLeNet(eqx.Module):
    """GoogLeNet for small images (the ``weiaicunzai/pytorch-cifar100`` version of the official Adai code).

    Prelayer: 3x3 convolution with bias to 192 channels, BatchNorm, ReLU (no down-sampling). Inception
    modules a3, b3; max-pool 3x3 stride 2 padding 1; a4 .. e4; the same max-pool; a5, b5 (1024 channels at
    the official widths, an 8x8 map for 32x32 inputs); global average pool; dropout; linear. Every channel
    count is the official one times ``width / 64`` (rounded half up, at least 1). Weights and biases are
    uniform on ``±1/sqrt(fan_in)`` (PyTorch's default), from one draw of ``key``.

    ``prelayer`` (192) and ``inceptions`` (the official table: groups of ``(n1x1, n3x3_reduce, n3x3,
    n5x5_reduce, n5x5, pool_proj)``, a max-pool between groups) describe other networks of the same kind,
    e.g. one Inception per group for quick tests; every module's input width follows from the previous one.

    Dropout: the official ``nn.Dropout2d(p=0.4)`` acts on the ``(N, 1024, 1, 1)`` pooled map, so it zeroes
    whole channels, each of them a single feature: the same as element-wise dropout of the 1024 pooled
    features, which is what ``dropout`` (an ``eqx.nn.Dropout``) does, scaling the kept ones by ``1 / 0.6``.
    It is active in training (``inference=False``, or ``None`` with the layer's own flag off) and then needs
    the ``key`` of ``__call__`` ([`escape.models.forward`][] gives every example its own); off in inference.

    Attributes:
        prelayer: the 3x3 ConvBN (with bias).
        stages: the Inception modules, in three groups separated by the max-pools.
        dropout: the dropout before the head.
        head: the linear classifier.
        compute_dtype: dtype of convolutions and activations (``None``: the parameters' dtype); BatchNorm,
            the final average, the dropout and the head run in the parameters' dtype.
    """

    prelayer: ConvBN
    stages: tuple[tuple[Inception, ...], ...]
    dropout: eqx.nn.Dropout
    head: eqx.nn.Linear
    compute_dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        *,
        key: PRNGKeyArray,
        in_channels: int = 3,
        width: int = 64,
        dropout: float = 0.4,
        prelayer: int = _PRELAYER,
        inceptions: Sequence[Sequence[Sequence[int]]] = _INCEPTIONS,
        compute_dtype: Any = None,
    ):
        width = _check_width("GoogLeNet", width)
        _check_sizes("GoogLeNet", num_classes=num_classes, in_channels=in_channels, prelayer=prelayer)
        if not 0 <= dropout < 1:
            raise ValueError(f"GoogLeNet: dropout must be in [0, 1), got {dropout!r}")
        inceptions = tuple(tuple(tuple(int(c) for c in spec) for spec in group) for group in inceptions)
        if not inceptions or not all(group for group in inceptions) or any(
            len(spec) != 6 or min(spec) < 1 for group in inceptions for spec in group
        ):
            raise ValueError("GoogLeNet: inceptions must be non-empty groups of 6 positive channel counts, got "
                             f"{inceptions}")
        channels = _scaled(int(prelayer), width)
        stem = ConvBN(int(in_channels), channels, 3, 1, use_bias=True)
        stages = []
        for group in inceptions:
            modules = []
            for spec in group:
                n1, n3r, n3, n5r, n5, pp = (_scaled(c, width) for c in spec)
                modules.append(Inception(channels, n1, n3r, n3, n5r, n5, pp))
                channels = n1 + n3 + n5 + pp
            stages.append(tuple(modules))
        head = _shape_only(eqx.nn.Linear, channels, int(num_classes))
        self.prelayer, self.stages, self.head = _fill_uniform((stem, tuple(stages), head), key)
        self.dropout = eqx.nn.Dropout(float(dropout))
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
            inference: as [`escape.models.ResNet.__call__`][]; it also switches the dropout off (``True``)
                or on (``False``; ``None`` follows the dropout layer's own flag, as ``eqx.nn.inference_mode``
                sets it).
            key: the dropout key of this example; required when the dropout is on.

        Returns:
            ``(logits, state)``.
        """
        off = self.dropout.inference if inference is None else inference
        if not off and self.dropout.p > 0 and key is None:
            raise ValueError("GoogLeNet: training mode needs a dropout key: forward(model, state, x, key=key), "
                             "or inference=True")
        dtype = self.compute_dtype if self.compute_dtype is not None else self.head.weight.dtype
        kw = dict(compute_dtype=dtype, inference=inference)
        h, state = self.prelayer(x.astype(dtype), state, **kw)
        h = jax.nn.relu(h)
        for i, group in enumerate(self.stages):
            if i > 0:
                h = _max_pool(h, 3, 2, 1)
            for module in group:
                h, state = module(h, state, **kw)
        h = jnp.mean(h.astype(self.head.weight.dtype), axis=(1, 2))
        h = self.dropout(h, key=key, inference=inference)
        return self.head(h), state


def googlenet(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[GoogLeNet, eqx.nn.State]:
    """CIFAR GoogLeNet with BatchNorm and dropout 0.4 (the official ``GoogleNet``, whose ``num_class``
    defaults to 100; here the number of classes is required).

    6,258,500 parameters for 100 classes and 6,166,250 for 10 at ``width=64``.

    Args:
        num_classes: size of the output.
        key: PRNG key for the initialisation (uniform ``±1/sqrt(fan_in)``, the Equinox and PyTorch default).
        in_channels: channels of the input images.
        width: scales every channel count by ``width / 64``, rounded half up, at least 1 (64 is the official
            model: prelayer 192, final 1024 features; 8 gives 24 and 128).
        compute_dtype: e.g. ``jnp.bfloat16`` for bf16 convolutions with float32 parameters and BatchNorm.

    Returns:
        ``(model, state)``, the running BatchNorm statistics starting at 0 (see [`escape.models.resnet18`][]).
        The model must be called with a key in training mode (see [`escape.models.GoogLeNet`][]).
    """
    w = _check_width("googlenet", width)
    return _build(GoogLeNet, num_classes, key=key, in_channels=in_channels, width=w, compute_dtype=compute_dtype)
