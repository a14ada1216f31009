"""The GLiT model family for timm: the model file with its registered variants, weights, checkpoints, folders."""
from .checkpoint import CheckpointError, read_checkpoint
from .glit import (
    GlobalLocalTransformer,
    NoPretrainedWeightsError,
    checkpoint_filter_fn,
    glit_base,
    glit_small,
    glit_tiny,
)
from .model_folder import is_trained, read_model_config, save_model_folder
