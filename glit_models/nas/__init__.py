"""GLiT's hierarchical neural architecture search.

space (candidates as plain data) -> supernet (SPOS choice blocks) -> spos (supernet training) ->
scoring (BatchNorm recalibration, held-out top-1) -> evolution (the EA under a budget, see budget) ->
pipeline (stage 1, stage 2 and the baselines) -> search (``python -m glit_models.nas.search``).
"""
from .evolution import EvolutionConfig, evolve, random_search
from .space import SearchSpace, Stem, joint_space, stage1_space, stage2_space
from .supernet import Supernet

__all__ = ['EvolutionConfig', 'SearchSpace', 'Stem', 'Supernet', 'evolve', 'joint_space', 'random_search',
           'stage1_space', 'stage2_space']
