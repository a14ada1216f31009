"""GLiT's hierarchical neural architecture search.

space (candidates as plain data) -> supernet (SPOS choice blocks) -> spos (supernet training) ->
scoring (BatchNorm recalibration, held-out top-1) -> evolution (the EA under a budget: budget, cost,
latency) -> config (a search's settings and run.json) -> methods (each a list of stages, whose pickers use
the services of stages) -> pipeline (the walk over a method's stages; result reports what it found) -> search
(``python -m glit_models.nas.search``); ranking and rank_check measure how well a supernet ranks architectures.
"""
from .evolution import EvolutionConfig, evolve
from .space import SearchSpace, Stem, joint_space, stage1_space, stage2_space
from .supernet import Supernet

__all__ = ['EvolutionConfig', 'SearchSpace', 'Stem', 'Supernet', 'evolve', 'joint_space', 'stage1_space',
           'stage2_space']
