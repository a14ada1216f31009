"""Data: ImageFolder scanning, seeded splits, timm loaders, and the data config a model folder carries."""
from .config import DataConfig, loader_data_config, normalization
from .folder import (
    BAD_IMAGES,
    MIN_CLASSES,
    DataError,
    ImageFiles,
    check_image_folder,
    find_split,
    image_folder,
    open_image,
    resolve_split,
    scan_image_folder,
)
from .loader import (
    Augmentation,
    TrainData,
    TrainSets,
    build_train_data,
    check_one_batch,
    make_loader,
    separate_split,
    train_loaders,
    train_sets,
)
from .splits import check_heldout, heldout_count, shard, split_heldout, subset
