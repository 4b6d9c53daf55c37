"""On-device augmentation (pad-and-crop, horizontal flip) and per-channel normalisation, in JAX.

Every function takes channel-first images and is jit-able and vmap-able. Per-example functions take one
image ``(channels, height, width)`` and one key; [`escape.data.augment_batch`][] splits a key into one key per
example, so the result for a batch depends only on the key and the images (not on how the batch is sharded
over devices).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Shaped


def to_unit_float(images, dtype=jnp.float32) -> Array:
    """Images as floats in ``[0, 1]``: ``uint8`` is divided by 255, floating input is only cast."""
    images = jnp.asarray(images)
    if jnp.issubdtype(images.dtype, jnp.integer):
        return images.astype(dtype) / 255
    return images.astype(dtype)


def random_crop(
    key: PRNGKeyArray, image: Shaped[Array, "channels height width"], padding: int = 4
) -> Shaped[Array, "channels height width"]:
    """Zero-pad ``padding`` pixels on each side, then cut a window of the original size at a uniform offset.

    The offset ``(i, j)`` is uniform on ``{0, ..., 2 padding}^2``; the output is
    ``pad(image)[:, i:i+H, j:j+W]`` (torchvision's ``RandomCrop(H, padding)``, fill 0).
    """
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding!r}")
    c, h, w = image.shape
    padded = jnp.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    i, j = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (jnp.zeros_like(i), i, j), (c, h, w))


def random_flip(
    key: PRNGKeyArray, image: Shaped[Array, "channels height width"]
) -> Shaped[Array, "channels height width"]:
    """Reverse the width axis with probability 1/2 (a horizontal, left-right flip)."""
    return jnp.where(jax.random.bernoulli(key), image[..., ::-1], image)


def augment(
    key: PRNGKeyArray, image: Shaped[Array, "channels height width"], *, padding: int = 4, flip: bool = True
) -> Shaped[Array, "channels height width"]:
    """Random crop (``padding > 0``) then random horizontal flip (``flip=True``) of one image."""
    crop_key, flip_key = jax.random.split(key)
    if padding > 0:
        image = random_crop(crop_key, image, padding)
    if flip:
        image = random_flip(flip_key, image)
    return image


def augment_batch(
    key: PRNGKeyArray, images: Shaped[Array, "batch channels height width"], *, padding: int = 4, flip: bool = True
) -> Shaped[Array, "batch channels height width"]:
    """[`escape.data.augment`][] on every image of a batch, example ``n`` with ``jax.random.split(key, N)[n]``.

    Augment before normalising, so that the padding is black in pixel space, as in torchvision's
    ``RandomCrop`` followed by ``Normalize``.
    """
    keys = _shard_like(jax.random.split(key, images.shape[0]), images)
    return jax.vmap(lambda k, x: augment(k, x, padding=padding, flip=flip))(keys, images)


def _shard_like(keys, images):
    """Under an ``Explicit`` mesh, vmap needs the keys sharded over the batch axis as the images are."""
    sharding = jax.typeof(images).sharding
    spec = getattr(sharding, "spec", None)
    if spec and spec[0] is not None:
        target = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[0]))
        keys = jax.sharding.reshard(keys, target)
    return keys


class Normalization(eqx.Module):
    """Per-channel standardisation ``(x - mean_c) / std_c`` of images in ``[0, 1]``.

    Build it from the training images with [`escape.data.Normalization.fit`][]; apply it to one image
    ``(C, H, W)`` or a batch ``(N, C, H, W)``.

    Attributes:
        mean: ``(channels,)``.
        std: ``(channels,)``.
    """

    mean: Float[Array, " channels"]
    std: Float[Array, " channels"]

    def __init__(self, mean, std):
        self.mean = jnp.asarray(mean, jnp.float32)
        self.std = jnp.asarray(std, jnp.float32)

    @classmethod
    def fit(cls, images, *, chunk: int = 4096) -> "Normalization":
        """Mean and (population) standard deviation of each channel over all images and pixels.

        Args:
            images: ``(n, channels, height, width)``, ``uint8`` (divided by 255) or float in ``[0, 1]``; a
                host array is reduced in float64 chunks of ``chunk`` images.
        """
        images = np.asarray(images)
        scale = 255.0 if np.issubdtype(images.dtype, np.integer) else 1.0
        c = images.shape[1]
        total, total_sq, count = np.zeros(c), np.zeros(c), 0
        for start in range(0, images.shape[0], chunk):
            x = images[start : start + chunk].astype(np.float64) / scale
            total += x.sum(axis=(0, 2, 3))
            total_sq += np.square(x).sum(axis=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
        if np.any(std == 0):
            raise ValueError("Normalization.fit: a channel is constant (std 0); cannot standardise it")
        return cls(mean, std)

    def __call__(self, images: Float[Array, "*batch channels height width"]) -> Float[Array, "*batch channels height width"]:
        shape = (1,) * (images.ndim - 3) + (self.mean.shape[0], 1, 1)
        mean = self.mean.reshape(shape).astype(images.dtype)
        std = self.std.reshape(shape).astype(images.dtype)
        return (images - mean) / std
