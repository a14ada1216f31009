"""Search methods as data: each a list of stages, each stage a space builder and a picker from a registry.

One runner (``pipeline.run_search``) walks a method's stages; nothing branches on a method's name. Adding a
baseline is one ``register_method`` call, a new way to choose candidates one ``register_picker`` call.

- hierarchical (GLiT): stage 1 (distributions) then stage 2 (low-level choices under stage 1's pick), each
  a SPOS supernet and the EA under the budget;
- spos: one stage over the joint space whose supernet trains as long as both hierarchical stages together
  and whose EA scores as many candidates;
- random: the paper's random search: candidates drawn uniformly under the budget, no supernet.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from ..utils.distributed import is_main_process
from .cost import SpaceCost
from .evolution import Scored, evolve
from .sampling import sample_under_budget
from .space import SearchSpace, Stem, joint_space, stage1_space, stage2_space
from .stages import StageServices
from .supernet import Supernet

__all__ = ['METHODS', 'PICKERS', 'SPACES', 'Method', 'Picker', 'SpaceBuilder', 'StagePlan', 'method_help',
           'register_method', 'register_picker']


@dataclass(frozen=True)
class SpaceBuilder:
    """How a stage's space is made from the stem and, when ``needs_previous``, the global thirds per block
    of the previous stage's pick (or of ``--distributions`` when the stage runs alone)."""

    build: Callable[[Stem, Optional[Sequence[int]]], SearchSpace]
    needs_previous: bool = False


SPACES: dict[str, SpaceBuilder] = {
    'stage1': SpaceBuilder(lambda stem, _: stage1_space(stem)),
    'stage2': SpaceBuilder(lambda stem, distributions: stage2_space(stem, tuple(distributions)), needs_previous=True),
    'joint': SpaceBuilder(lambda stem, _: joint_space(stem)),
}

PickFn = Callable[[StageServices, 'StagePlan', SearchSpace, SpaceCost], tuple[list[Scored], Optional[Supernet]]]


@dataclass(frozen=True)
class Picker:
    """How a stage chooses its top candidates (best first) from its space with the services it is given;
    ``scores`` is False when the candidates come unscored (random draws), so only retraining can choose
    among them."""

    pick: PickFn
    scores: bool = True


def _by_evolution(services: StageServices, plan: 'StagePlan', space: SearchSpace,
                  cost: SpaceCost) -> tuple[list[Scored], Optional[Supernet]]:
    """SPOS: train the stage's supernet, then the EA under the budget scores paths with it."""
    supernet = services.supernets.train(plan.name, space, plan.scale, plan.warm_start)
    evo = replace(services.evolution, generations=services.evolution.generations * plan.scale)
    main = is_main_process()
    with tqdm(total=evo.population * evo.generations, desc=f'[{plan.name}] evolution', dynamic_ncols=True,
              disable=not (services.progress and main)) as bar:
        result = evolve(space.choices, services.scoring.scorer(supernet), cost, services.budget, evo,
                        services.output / plan.name / 'evolution.json', services.resume, write_state=main,
                        on_generation=services.scoring.on_generation(plan.name, space, evo.generations),
                        progress=bar.update)
    return result.top, supernet


def _by_sampling(services: StageServices, plan: 'StagePlan', space: SearchSpace,
                 cost: SpaceCost) -> tuple[list[Scored], Optional[Supernet]]:
    """Random search: the top-k drawn uniformly under the budget, unscored, no supernet."""
    rng = random.Random(f'{plan.name}:{services.evolution.seed}')
    candidates = sample_under_budget(space, cost, services.budget, services.evolution.top_k, rng)
    return [Scored(c, float('nan'), cost(c), 0) for c in candidates], None


PICKERS: dict[str, Picker] = {
    'evolution': Picker(_by_evolution),
    'sample': Picker(_by_sampling, scores=False),
}


@dataclass(frozen=True)
class StagePlan:
    """One stage of a method: its ``space`` (a key of SPACES) and ``pick`` (a key of PICKERS). ``scale``
    multiplies the supernet epochs and the EA generations (equal compute for a one-stage method).
    ``warm_start``: the earlier stage whose trained supernet initialises the options this one shares with
    it, when the search asks for warm starts (``--warm-start-stage2``)."""

    name: str
    space: str
    pick: str
    scale: int = 1
    warm_start: Optional[str] = None

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f'stage {self.name}: unknown space {self.space!r}; one of {", ".join(SPACES)}')
        if self.pick not in PICKERS:
            raise ValueError(f'stage {self.name}: unknown picker {self.pick!r}; one of {", ".join(PICKERS)}')

    @property
    def builder(self) -> SpaceBuilder:
        return SPACES[self.space]

    @property
    def picker(self) -> Picker:
        return PICKERS[self.pick]


@dataclass(frozen=True)
class Method:
    """A search method: its stages in order and one line for ``--method``'s help."""

    name: str
    summary: str
    stages: tuple[StagePlan, ...]

    def __post_init__(self) -> None:
        names = [plan.name for plan in self.stages]
        for index, plan in enumerate(self.stages):
            if plan.warm_start is not None and plan.warm_start not in names[:index]:
                raise ValueError(f'{self.name}: stage {plan.name} warm-starts from {plan.warm_start}, which is not '
                                 'an earlier stage')

    def select(self, stage: str) -> tuple[StagePlan, ...]:
        """The stages to run: 'both' (all of them) or one stage's number, '1', '2', ..."""
        if stage == 'both':
            return self.stages
        if not stage.isdigit() or not 1 <= int(stage) <= len(self.stages):
            numbers = ', '.join(str(i) for i in range(1, len(self.stages) + 1))
            raise ValueError(f'--stage {stage}: the {self.name} method has {len(self.stages)} stage(s); '
                             + (f'choose {numbers} or both' if len(self.stages) > 1 else 'run it whole (--stage both)'))
        return self.stages[int(stage) - 1:int(stage)]


METHODS: dict[str, Method] = {}
"""The registered methods; the paper's (its Table 5) at equal compute are below."""


def register_method(method: Method) -> Method:
    """Add ``method`` to METHODS (``--method`` lists it); refused when its name is taken."""
    if method.name in METHODS:
        raise ValueError(f'a method named {method.name!r} is registered already')
    METHODS[method.name] = method
    return method


def register_picker(name: str, picker: Picker) -> Picker:
    """Add a way to choose candidates that stages can name; refused when its name is taken."""
    if name in PICKERS:
        raise ValueError(f'a picker named {name!r} is registered already')
    PICKERS[name] = picker
    return picker


def method_help() -> str:
    """``--method``'s help, one clause per registered method."""
    return '; '.join(f'{name}: {method.summary}' for name, method in METHODS.items())


register_method(Method(
    'hierarchical', 'GLiT (default): stage 1 then stage 2, each a supernet, the EA and the top-k retrained',
    (StagePlan('stage1', 'stage1', 'evolution'), StagePlan('stage2', 'stage2', 'evolution', warm_start='stage1'))))
register_method(Method(
    'spos', 'one supernet over the joint space trained as long as both hierarchical stages together, the EA '
    'scoring as many candidates, the top-k retrained', (StagePlan('joint', 'joint', 'evolution', scale=2),)))
register_method(Method(
    'random', 'the paper\'s random search, top-k architectures drawn under the budget and retrained, no supernet',
    (StagePlan('random', 'joint', 'sample'),)))
