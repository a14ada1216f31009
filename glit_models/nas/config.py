"""A search's settings: ``SearchConfig``, its record in the output folder's ``run.json``, the nas commands'
flags applied to it, what a resume may change, and the search's data.

The search command writes the record and a resume reads it back; ``rank_check`` and anything else that
works on a finished search reads it here, not from the command.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from ..data import Augmentation
from ..training.config import AUGMENTATION_SETTINGS, TrainConfig
from ..utils.distributed import world_size
from ..utils.errors import GlitError
from ..utils.run_folder import changed_settings, read_record, refuse_changes
from .budget import Budget, BudgetError
from .data import SearchData, SearchDataConfig
from .evolution import EvolutionConfig
from .methods import METHODS, StagePlan
from .space import Stem
from .spos import SupernetTrainConfig

__all__ = ['FINGERPRINT', 'MACHINE_FLAGS', 'RUN_FILE', 'STAGES', 'SearchConfig', 'SearchError', 'flag_of',
           'read_search_config', 'resumed_config', 'search_config', 'search_data', 'short_training']

STAGES = ('1', '2', 'both')
RUN_FILE = 'run.json'
"""In a search's output: its settings (``SearchConfig.to_record``) and its data's fingerprint."""
FINGERPRINT = 'data_fingerprint'
"""The key of run.json that holds the data's fingerprint, beside the settings."""


class SearchError(GlitError, ValueError):
    """Settings or a saved state the search cannot work with."""


def short_training(epochs: int, batch_size: int, seed: int = 0, amp: bool = False,
                   lr: Optional[float] = None) -> TrainConfig:
    """The recipe of the short from-scratch trainings that compare architectures: the DeiT optimiser
    and schedule without the regularisers a few epochs cannot use (mixup, cutmix, EMA, drop path)."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=min(1, epochs - 1), mixup=0.,
                       cutmix=0., drop_path=0., model_ema=False, amp=amp, seed=seed)


def _train_config(record: dict[str, Any]) -> TrainConfig:
    """A saved retraining recipe, typed; a record without ``drop_path`` is of a search that trained without it."""
    return TrainConfig.from_json({'drop_path': 0., **record})


@dataclass(frozen=True)
class SearchConfig:
    """One search: the space's stem, the budget, the method, the data and the settings of every phase.

    ``supernet`` and ``evolution`` are per stage (a method's ``scale`` multiplies them). ``retrain``: the
    short recipe that retrains each stage's top ``evolution.top_k`` (``retrain_top=False``: take the
    supernet's best instead; not possible for a method whose picker does not score). ``compare_random``:
    after the search, train this many random architectures of the same budget with ``retrain`` and report
    them beside the found one. ``warm_start_stage2``: initialise each stage that names a warm-start source
    from that stage's supernet (off: every option starts equal).
    """

    stem: Stem
    budget: Budget
    method: str = 'hierarchical'
    stage: str = 'both'
    distributions: Optional[tuple[int, ...]] = None
    data: SearchDataConfig = field(default_factory=SearchDataConfig)
    supernet: SupernetTrainConfig = field(default_factory=SupernetTrainConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    calib_batches: int = 200
    retrain_top: bool = True
    retrain: TrainConfig = field(default_factory=lambda: short_training(30, 128))
    compare_random: int = 0
    warm_start_stage2: bool = False
    in_chans: int = 3
    latency_batch: int = 1
    latency_cache: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SearchError(f'unknown method {self.method!r}; choose one of {", ".join(METHODS)}')
        try:
            stages = METHODS[self.method].select(self.stage)
        except ValueError as e:
            raise SearchError(str(e)) from None
        if self.distributions is not None and len(self.distributions) != self.stem.depth:
            raise SearchError(f'{len(self.distributions)} distributions given for {self.stem.depth} blocks')
        if self.distributions is not None and not stages[0].builder.needs_previous:
            raise SearchError(f'--distributions: the {self.method} search with --stage {self.stage} starts with '
                              f'{stages[0].name}, which searches the distributions itself, so they would not be '
                              'used; pass them with --stage 2 alone, or drop them')
        unscored = [plan.name for plan in stages if not plan.picker.scores]
        if unscored and not self.retrain_top:
            raise SearchError(f'{self.method} search picks by retraining its samples: --retrain-epochs must be '
                              'at least 1')

    def stages(self) -> tuple[StagePlan, ...]:
        """The stages this search runs, each warm-started only when asked for and its source runs too."""
        stages = METHODS[self.method].select(self.stage)
        names = {plan.name for plan in stages}
        return tuple(plan if self.warm_start_stage2 and plan.warm_start in names else replace(plan, warm_start=None)
                     for plan in stages)

    def to_record(self) -> dict[str, Any]:
        """The settings as JSON data, as run.json keeps them (``from_record`` reads them back)."""
        record = dataclasses.asdict(self)
        record['latency_cache'] = str(self.latency_cache) if self.latency_cache else None
        record['retrain'] = self.retrain.to_json()
        return json.loads(json.dumps(record))  # tuples as lists, as they come back from the file

    @classmethod
    def from_record(cls, record: Any, source: str = RUN_FILE) -> 'SearchConfig':
        """The settings a record holds (run.json's, its data fingerprint aside), typed again; SearchError
        naming ``source`` when it is not the record of a search."""
        try:
            fields = {key: value for key, value in record.items() if key != FINGERPRINT}
            data = dict(record['data'], augmentation=Augmentation(**record['data']['augmentation']))
            fields.update(
                stem=Stem(**record['stem']), budget=Budget(**record['budget']),
                distributions=tuple(record['distributions']) if record['distributions'] is not None else None,
                data=SearchDataConfig(**data), supernet=SupernetTrainConfig(**record['supernet']),
                evolution=EvolutionConfig(**record['evolution']), retrain=_train_config(record['retrain']),
                latency_cache=Path(record['latency_cache']) if record['latency_cache'] else None)
            return cls(**fields)
        except GlitError as e:
            raise SearchError(f'{source}: {e}') from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SearchError(f'{source} is not the record of a search ({type(e).__name__}: {e}); '
                              'it was edited or written by something else') from None


def read_search_config(output: Path) -> SearchConfig:
    """The settings saved in a search's output folder, typed (an error when it holds no search)."""
    return SearchConfig.from_record(read_record(output, RUN_FILE, 'search', mend='pass the --output of a search'),
                                    str(Path(output) / RUN_FILE))


def search_data(config: SearchConfig, output: Path) -> SearchData:
    """The loaders of the search ``config`` in ``output``: the same splits every time."""
    return config.data.build(output, config.stem.img_size, config.supernet.batch_size // world_size(),
                             config.in_chans, distributed=world_size() > 1)


_AUGMENTATION = (*AUGMENTATION_SETTINGS, 'no_aug')
_EVOLUTION = ('population', 'generations', 'parents', 'mutations', 'mutation_prob', 'crossovers', 'top_k')
_BUDGET_FLAGS = ('budget_flops', 'budget_params', 'budget_latency', 'flops_convention')
_SETTINGS: dict[str, tuple[str, ...]] = {
    'method': ('method',), 'stage': ('stage',), 'distributions': ('distributions',),
    'calib_batches': ('calib_batches',), 'compare_random': ('compare_random',),
    'warm_start_stage2': ('warm_start_stage2',), 'latency_batch': ('latency_batch',),
    'latency_cache': ('latency_cache',), 'epochs': ('supernet.epochs',), 'lr': ('supernet.lr',),
    'amp': ('supernet.amp', 'retrain.amp'), 'seed': ('supernet.seed', 'evolution.seed', 'data.seed', 'retrain.seed'),
    'batch_size': ('supernet.batch_size', 'retrain.batch_size', 'calib_batches'),
    'retrain_epochs': ('retrain_top', 'retrain.epochs', 'retrain.warmup_epochs'),
    **{dest: ('budget',) for dest in _BUDGET_FLAGS},
    'data_dir': ('data.data_dir',), 'heldout': ('data.heldout',), 'test_split': ('data.test_split',),
    'score_images': ('data.score_images',), 'workers': ('data.workers',), 'memory_limit': ('data.memory_limit_mb',),
    'bad_images': ('data.bad_images',),
    **{dest: (f'data.augmentation.{dest}',) for dest in _AUGMENTATION},
    **{dest: (f'evolution.{dest}',) for dest in _EVOLUTION},
}
"""The dest of each flag of the nas commands that sets a setting -> the settings it sets (dotted); a setting
no flag sets follows the search's --preset."""
_DERIVED = ('batch_size', 'retrain_epochs', *_BUDGET_FLAGS)
"""The flags whose settings ``search_config`` works out; each other flag's value is its settings' own."""
MACHINE_FLAGS = ('workers',)
"""The flags a resume may change (with --no-progress, which sets nothing saved): how to run on this machine."""
_AT_LEAST_1 = ('epochs', 'batch_size', 'population', 'generations', 'parents', 'top_k', 'calib_batches',
               'score_images', 'latency_batch')
_AT_LEAST_0 = ('workers', 'retrain_epochs', 'compare_random')


def _check_numbers(flags: Mapping[str, Any]) -> None:
    """SearchError for a count, rate or seed that cannot work (before anything is written)."""
    for name, least in [(name, 1) for name in _AT_LEAST_1] + [(name, 0) for name in _AT_LEAST_0]:
        if flags.get(name) is not None and flags[name] < least:
            raise SearchError(f'--{name.replace("_", "-")} {flags[name]}: must be '
                              + ('at least 1' if least else '0 or more'))
    if 'lr' in flags and not flags['lr'] > 0:
        raise SearchError(f'--lr {flags["lr"]}: must be a positive number')
    if 'seed' in flags and not 0 <= flags['seed'] < 2 ** 63:  # torch.manual_seed overflows beyond
        raise SearchError(f'--seed {flags["seed"]}: must be in [0, 2**63)')


def _budget(flags: Mapping[str, Any], base: Budget) -> Budget:
    """The budget a --budget-* flag (an amount the parser read) and --flops-convention give; ``base`` when
    none is given."""
    if 'budget_params' in flags:
        return Budget('params', flags['budget_params'])
    if 'budget_latency' in flags:
        return Budget('latency', flags['budget_latency'])
    kind = 'macs' if flags.get('flops_convention') == 'macs' else 'flops'
    if 'budget_flops' in flags:
        return Budget(kind, flags['budget_flops'])
    if kind == 'macs':
        raise BudgetError('--flops-convention macs needs --budget-flops: the presets\' budgets are in the '
                          'authors\' convention')
    return base


def _replaced(config: Any, settings: Mapping[str, Any]) -> Any:
    """``config`` with the dotted ``settings`` (``data.augmentation.scale``) in place, each nested dataclass by
    ``dataclasses.replace``; a part given whole is replaced before the settings inside it."""
    fields: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for setting, value in settings.items():
        name, _, rest = setting.partition('.')
        if rest:
            inner.setdefault(name, {})[rest] = value
        else:
            fields[name] = value
    for name, values in inner.items():
        fields[name] = _replaced(fields.get(name, getattr(config, name)), values)
    return replace(config, **fields)


def search_config(base: SearchConfig, flags: Mapping[str, Any]) -> SearchConfig:
    """``base`` (a preset, or a saved search) with the settings that command-line ``flags`` (parser dest ->
    value) set; SearchError, before anything is written, for a value that cannot work."""
    _check_numbers(flags)
    settings = {setting: value for dest, value in flags.items() if dest not in _DERIVED
                for setting in _SETTINGS.get(dest, ())}
    if 'batch_size' in flags:  # per process; the calibration keeps its images
        per_process, images = flags['batch_size'], base.calib_batches * base.supernet.batch_size
        settings.update({'supernet.batch_size': per_process * world_size(), 'retrain.batch_size': per_process,
                         'calib_batches': flags.get('calib_batches') or -(-images // per_process)})
    if 'retrain_epochs' in flags:  # 0: no retraining, with a recipe that stays valid
        epochs, recipe = flags['retrain_epochs'], base.retrain
        settings.update(retrain_top=epochs > 0, retrain=short_training(max(1, epochs), recipe.batch_size,
                                                                        recipe.seed, recipe.amp, recipe.lr))
    settings['budget'] = _budget(flags, base.budget)
    try:
        return _replaced(base, settings)
    except GlitError:
        raise
    except ValueError as e:  # EvolutionConfig's own checks
        raise SearchError(str(e)) from None


def flag_of(setting: str) -> tuple[str, list[str]]:
    """The flags that set a saved setting, as a resume names them (``supernet.epochs`` -> ``--epochs
    (supernet.epochs)``), and their dests."""
    dests = [dest for dest, settings in _SETTINGS.items()
             if any(setting == s or setting.startswith(f'{s}.') for s in settings)] or ['preset']
    return f'{" or ".join("--" + dest.replace("_", "-") for dest in dests)} ({setting})', dests


def resumed_config(saved: SearchConfig, wanted: SearchConfig, given: Mapping[str, Any],
                   output: Path) -> SearchConfig:
    """The search saved in ``output`` as a resume runs it, with the machine-only flags ``given``; UsageError
    when another flag given differs from its saved value (``wanted``: the search those flags ask for)."""
    resumed = _replaced(saved, {setting: given[dest] for dest in MACHINE_FLAGS if dest in given
                                for setting in _SETTINGS[dest]})
    machine = [setting for dest in MACHINE_FLAGS for setting in _SETTINGS[dest]]
    refuse_changes(changed_settings(saved.to_record(), wanted.to_record(), given, flag_of, machine), output,
                   'search')
    return resumed
