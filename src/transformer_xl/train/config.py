"""Moved to :mod:`transformer_xl.run.config` (framework-neutral, shared with the TF trainer)."""

from transformer_xl.run.config import *  # noqa: F403
from transformer_xl.run.config import (  # noqa: F401
    MODEL_FIELDS,
    TRAIN_FIELDS,
    RunConfig,
    TrainConfig,
    make_train_config,
    parse_override,
    read_config_file,
    resolve,
)
