"""The training engine shared by ``python -m glit_models.train`` and the search's retrainings, and the
recipes (named sets of defaults) the command line chooses from."""
from .config import TrainConfig
from .engine import TrainingRun, TrainResult, evaluate, fit, load_training_state, train_model
from .recipes import RECIPES, Recipe, read_recipe
