"""Equinox models: CIFAR-style ResNet-18/34 and a small ResNet for 8x8 images, BatchNorm in ``eqx.nn.State``."""

from ._resnet import (
    BATCH_AXIS as BATCH_AXIS,
    count_parameters as count_parameters,
    forward as forward,
    ResNet as ResNet,
    resnet18 as resnet18,
    resnet34 as resnet34,
    small_resnet as small_resnet,
)
