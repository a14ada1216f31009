"""The training engine shared by ``python -m glit_models.train`` and the search's retrainings."""
from .engine import TrainConfig, TrainingRun, evaluate, fit, load_training_state, train_model
