"""The training flags are made from TrainConfig's own declarations: one place per setting."""
from dataclasses import fields

import pytest

from glit_models.nas.search import build_parser as search_parser
from glit_models.train import build_parser as train_parser
from glit_models.training.config import AUGMENTATION_SETTINGS, TrainConfig
from glit_models.training.flags import flag_settings, shown_value
from glit_models.training.recipes import RECIPES
from glit_models.utils.run_folder import parse_flags

_DEFAULTS = TrainConfig()
# a value of each flag as the command line gives it, and as the config holds it
_GIVEN = {
    'epochs': (['7'], 7), 'batch_size': (['6'], 6), 'lr': (['0.01'], 0.01), 'lr_base': (['0.002'], 0.002),
    'lr_base_size': (['64'], 64), 'lr_base_scale': (['sqrt'], 'sqrt'), 'opt': (['sgd'], 'sgd'),
    'momentum': (['0.5'], 0.5), 'weight_decay': (['0.01'], 0.01), 'layer_decay': (['0.5'], 0.5),
    'sched': (['step'], 'step'), 'min_lr': (['1e-6'], 1e-6), 'warmup_lr': (['1e-7'], 1e-7),
    'warmup_epochs': (['2'], 2), 'smoothing': (['0.2'], 0.2), 'mixup': (['0.1'], 0.1), 'cutmix': (['0.3'], 0.3),
    'drop_path': (['0.05'], 0.05), 'model_ema': ([], False), 'model_ema_decay': (['0.9'], 0.9),
    'clip_grad': (['1.5'], 1.5), 'amp': ([], True), 'seed': (['3'], 3), 'aa': (['none'], None),
    'reprob': (['0.5'], 0.5), 'scale': (['0.3', '1'], (0.3, 1.0)), 'ratio': (['0.5', '2'], (0.5, 2.0)),
    'hflip': (['0'], 0.0), 'color_jitter': (['0.1'], 0.1),
}


def _flag(name):
    return {'model_ema': '--no-model-ema'}.get(name, '--' + name.replace('_', '-'))


def test_every_flag_of_the_recipe_group_is_a_setting_of_the_config():
    """train's recipe flags are the config's declared settings and nothing written beside them."""
    declared = {f.name for f in flag_settings()}
    assert declared == set(_GIVEN)
    assert declared <= TrainConfig.names() and {'updates', 'warmup_min', 'warmup_max'} == TrainConfig.names() - declared
    parser = train_parser()
    group = next(g for g in parser._action_groups if g.title.startswith('recipe'))
    assert {a.dest for a in group._group_actions} - {'recipe'} == declared
    for action in group._group_actions:
        assert action.help and '(default: ' in action.help, action.dest  # each says its recipes' values


@pytest.mark.parametrize('name', sorted(_GIVEN))
def test_a_flag_given_sets_its_setting_and_nothing_else(name):
    argv, expected = _GIVEN[name]
    args, given = parse_flags(train_parser(), [_flag(name), *argv])
    assert set(given) == {name}
    config = _DEFAULTS.with_flags(given)
    assert getattr(config, name) == expected
    assert [f.name for f in fields(config) if getattr(config, f.name) != getattr(_DEFAULTS, f.name)] == [name]


def test_the_search_takes_the_augmentation_flags_as_train_declares_them():
    train, search = train_parser(), search_parser()
    for name in AUGMENTATION_SETTINGS:
        flag = _flag(name)
        ours, theirs = train._option_string_actions[flag], search._option_string_actions[flag]
        assert (ours.type, ours.nargs, ours.metavar) == (theirs.type, theirs.nargs, theirs.metavar), flag
        argv, expected = _GIVEN[name]
        given = parse_flags(search, [flag, *argv])[1]
        assert given == parse_flags(train, [flag, *argv])[1] and set(given) == {name}
        assert getattr(_DEFAULTS.with_flags(given), name) == expected


@pytest.mark.parametrize('name', sorted(n for n, (argv, _) in _GIVEN.items() if argv))
def test_a_value_as_the_start_line_shows_it_parses_back_to_itself(name):
    """train's start line writes each given value with ``shown_value``: pasted back, it sets the same value."""
    _, expected = _GIVEN[name]
    given = parse_flags(train_parser(), [_flag(name), *shown_value(expected).split()])[1]
    assert getattr(_DEFAULTS.with_flags(given), name) == expected


def test_shown_value_writes_switches_unset_values_and_sequences_as_flags_do():
    assert (shown_value(True), shown_value(False), shown_value(None)) == ('on', 'off', 'none')
    assert shown_value((0.75, 4 / 3)) == '0.75 1.33333' and shown_value([0.3, 1.0]) == '0.3 1'
    assert shown_value(5e-4) == '0.0005' and shown_value('cosine') == 'cosine'


def test_every_default_the_help_gives_is_a_value_its_flag_takes():
    """The help's "scratch X, finetune Y" are written by ``shown_value``; each parses as its flag's value."""
    parser = train_parser()
    for setting in flag_settings():
        action = parser._option_string_actions[_flag(setting.name)]
        if action.nargs == 0:
            continue  # a switch: its default is on or off
        for recipe in ('scratch', 'finetune'):
            if f'{{value[{recipe}]}}' not in setting.metadata['defaults']:
                continue  # the help describes this default in words (fitted to the data, the lr rule)
            value = getattr(RECIPES[recipe].config, setting.name)
            given = parse_flags(parser, [_flag(setting.name), *shown_value(value).split()])[1]
            parsed = getattr(_DEFAULTS.with_flags(given), setting.name)
            assert shown_value(parsed) == shown_value(value), (setting.name, recipe)  # equal to 6 digits
