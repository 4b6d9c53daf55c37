"""Equinox models for CIFAR-size images, BatchNorm in ``eqx.nn.State``: ResNet-18/34/50/101/152, a small ResNet
for 8x8 images, and the rest of the official Adai zoo (VGG-11/13/16/19, DenseNet-121, GoogLeNet)."""

from ._densenet import DenseNet as DenseNet, densenet121 as densenet121
from ._googlenet import GoogLeNet as GoogLeNet, googlenet as googlenet
from ._layers import BATCH_AXIS as BATCH_AXIS, count_parameters as count_parameters, forward as forward
from ._resnet import (
    ResNet as ResNet,
    resnet18 as resnet18,
    resnet34 as resnet34,
    resnet50 as resnet50,
    resnet101 as resnet101,
    resnet152 as resnet152,
    small_resnet as small_resnet,
)
from ._vgg import VGG as VGG, vgg11 as vgg11, vgg13 as vgg13, vgg16 as vgg16, vgg19 as vgg19
from ._lstm import LSTMLanguageModel as LSTMLanguageModel, lstm_parameter_count as lstm_parameter_count
