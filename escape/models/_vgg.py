"""CIFAR VGG-11/13/16/19 (Simonyan and Zisserman 2015, with BatchNorm) in Equinox, as in the official Adai code.

A port of ``model/vgg.py`` of ``zeke-xie/adaptive-inertia-adai`` (itself ``kuangliu/pytorch-cifar``):
3x3 convolutions with bias, each followed by BatchNorm and ReLU, 2x2 max-pools, a linear classifier on the
512 features of the final 1x1 map. One image per call; batches through [`escape.models.forward`][].
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import _build, _check_sizes, _check_width, _fill_uniform, _max_pool, _shape_only, ConvBN

_CFG = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
"""The official layer lists at ``width=64``: output channels of a 3x3 ConvBN-ReLU, or ``"M"`` for a max-pool."""


class VGG(eqx.Module):
    """A VGG: ``cfg`` read left to right, an integer ``c`` a 3x3 convolution (padding 1, with bias) to ``c``
    channels followed by BatchNorm and ReLU, ``"M"`` a 2x2 max-pool of stride 2; then a linear classifier.

    The official model ends with ``AvgPool2d(1, 1)`` (the identity) and flattens the map, which is 1x1 for
    32x32 inputs after the five pools, into the linear layer's 512 inputs. Here the final map is averaged
    over its spatial positions instead, which is the same for a 1x1 map (exactly the official model on
    CIFAR) and keeps the head at ``cfg[-2]`` inputs for other sizes (for 64x64 inputs the official flatten
    would need a head of 4 x 512 inputs). A max-pool along an axis of length 1 leaves that axis alone
    (PyTorch raises an error), so 8x8 or 16x16 images work as well, with fewer effective pools.
    Weights and biases are uniform on ``±1/sqrt(fan_in)`` (PyTorch's default), from one draw of ``key``.

    Attributes:
        features: the ConvBN layers (convolutions with bias), in order.
        cfg: the layer list (static).
        head: the linear classifier.
        compute_dtype: dtype of convolutions and activations (``None``: the parameters' dtype); BatchNorm,
            the final average and the head run in the parameters' dtype.
    """

    features: tuple[ConvBN, ...]
    cfg: tuple[int | str, ...] = eqx.field(static=True)
    head: eqx.nn.Linear
    compute_dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        cfg: Sequence[int | str],
        num_classes: int,
        *,
        key: PRNGKeyArray,
        in_channels: int = 3,
        compute_dtype: Any = None,
    ):
        cfg = tuple(x if x == "M" else int(x) for x in cfg)
        convs = [c for c in cfg if c != "M"]
        if not convs or min(convs) < 1:
            raise ValueError(f"VGG: cfg needs at least one convolution and positive channel counts, got {cfg}")
        _check_sizes("VGG", num_classes=num_classes, in_channels=in_channels)
        features, channels = [], int(in_channels)
        for c in convs:
            features.append(ConvBN(channels, c, 3, 1, use_bias=True))
            channels = c
        head = _shape_only(eqx.nn.Linear, channels, int(num_classes))
        self.features, self.head = _fill_uniform((tuple(features), head), key)
        self.cfg = cfg
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
        h = x.astype(dtype)
        convs = iter(self.features)
        for item in self.cfg:
            if item == "M":
                window = tuple(2 if n >= 2 else 1 for n in h.shape[1:])
                h = _max_pool(h, window, window)
            else:
                h, state = next(convs)(h, state, compute_dtype=dtype, inference=inference)
                h = jax.nn.relu(h)
        h = jnp.mean(h.astype(self.head.weight.dtype), axis=(1, 2))  # 1x1 map: the official flatten
        return self.head(h), state


def _vgg(name: str, num_classes, key, in_channels, width, compute_dtype) -> tuple[VGG, eqx.nn.State]:
    w = _check_width(name, width)
    cfg = tuple(c if c == "M" else c * w // 64 for c in _CFG[name])  # every c is a multiple of 64
    return _build(VGG, cfg, num_classes, key=key, in_channels=in_channels, compute_dtype=compute_dtype)


def vgg11(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[VGG, eqx.nn.State]:
    """CIFAR VGG-11 with BatchNorm: ``[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]``, linear head.

    9,231,114 parameters for 10 classes at ``width=64``.

    Args:
        num_classes: size of the output.
        key: PRNG key for the initialisation (uniform ``±1/sqrt(fan_in)``, the Equinox and PyTorch default).
        in_channels: channels of the input images.
        width: channels of the first convolution; the four widths of the network are ``width * (1, 2, 4, 8)``
            (64 is the official model; 8 gives 8/16/32/64).
        compute_dtype: e.g. ``jnp.bfloat16`` for bf16 convolutions with float32 parameters and BatchNorm.

    Returns:
        ``(model, state)``, the running BatchNorm statistics starting at 0 (see [`escape.models.resnet18`][]).
    """
    return _vgg("vgg11", num_classes, key, in_channels, width, compute_dtype)


def vgg13(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[VGG, eqx.nn.State]:
    """CIFAR VGG-13 with BatchNorm (two convolutions per resolution). 9,416,010 parameters for 10 classes at
    ``width=64``. Arguments as [`escape.models.vgg11`][]."""
    return _vgg("vgg13", num_classes, key, in_channels, width, compute_dtype)


def vgg16(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[VGG, eqx.nn.State]:
    """CIFAR VGG-16 with BatchNorm (2, 2, 3, 3, 3 convolutions per resolution). 14,728,266 parameters for 10
    classes at ``width=64``. Arguments as [`escape.models.vgg11`][]."""
    return _vgg("vgg16", num_classes, key, in_channels, width, compute_dtype)


def vgg19(
    num_classes: int, *, key: PRNGKeyArray, in_channels: int = 3, width: int = 64, compute_dtype: Any = None
) -> tuple[VGG, eqx.nn.State]:
    """CIFAR VGG-19 with BatchNorm (2, 2, 4, 4, 4 convolutions per resolution). 20,040,522 parameters for 10
    classes at ``width=64``. Arguments as [`escape.models.vgg11`][]."""
    return _vgg("vgg19", num_classes, key, in_channels, width, compute_dtype)
