"""Image classification data: CIFAR-10/100 readers, scikit-learn's digits, batching, JAX augmentation."""

from ._augment import (
    augment as augment,
    augment_batch as augment_batch,
    Normalization as Normalization,
    random_crop as random_crop,
    random_flip as random_flip,
    to_unit_float as to_unit_float,
)
from ._batches import Batch as Batch, Batches as Batches
from ._cifar import load_cifar10 as load_cifar10, load_cifar100 as load_cifar100
from ._dataset import Dataset as Dataset, Split as Split
from ._digits import load_digits as load_digits
from ._ptb import batchify as batchify, bptt_windows as bptt_windows, Corpus as Corpus, load_ptb as load_ptb
