"""Training ResNets with any optimizer: config, data-parallel step, metrics, exact checkpoints, sharpness."""

from ._checkpoint import (
    load_checkpoint as load_checkpoint,
    read_checkpoint_record as read_checkpoint_record,
    save_checkpoint as save_checkpoint,
)
from ._load import load_trained as load_trained
from ._config import as_config as as_config, DATASETS as DATASETS, MODELS as MODELS, TrainConfig as TrainConfig
from ._optimizers import (
    build_optimizer as build_optimizer,
    learning_rate_schedule as learning_rate_schedule,
    make_train_optimizer as make_train_optimizer,
    OPTIMIZER_ALIASES as OPTIMIZER_ALIASES,
    optimizer_choices as optimizer_choices,
)
from ._loop import (
    DATA_AXIS as DATA_AXIS,
    load_dataset as load_dataset,
    train as train,
    Trainer as Trainer,
    use_compilation_cache as use_compilation_cache,
)
from ._step import Pipeline as Pipeline, train_step as train_step, TrainState as TrainState
from ._grid import GridResult as GridResult, train_grid as train_grid
from ._lm import LMConfig as LMConfig, perplexity as perplexity, plot_perplexity as plot_perplexity, train_lm as train_lm
from ._metrics import (
    EPOCH_COLUMNS as EPOCH_COLUMNS,
    History as History,
    MetricsWriter as MetricsWriter,
    solution_sharpness as solution_sharpness,
)
