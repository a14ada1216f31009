"""Every command's --help: each flag has a help, and each default it states is the parser's own."""
import argparse
import importlib

import pytest

COMMANDS = ('glit_models.train', 'glit_models.validate', 'glit_models.predict', 'glit_models.nas.search',
            'glit_models.nas.rank_check', 'glit_models.nas.budget_matched', 'glit_models.hub.convert',
            'glit_models.hub.push', 'glit_models.hub.release')


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ' '.join(map(str, value))
    return str(value)


@pytest.mark.parametrize('command', COMMANDS)
def test_every_flag_has_a_help_that_states_the_parser_s_default(command):
    parser = importlib.import_module(command).build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f'{command} {flag} has no help'
        text = formatter._expand_help(action)
        assert text.count('default') <= 1 + text.count('defaults'), f'{command} {flag}: {text}'
        if action.default not in (None, False, argparse.SUPPRESS, ()):
            assert _shown(action.default) in text, f'{command} {flag}: {text!r} does not state {action.default!r}'


def test_the_search_s_preset_defaults_are_the_ones_it_runs():
    from glit_models.nas.search import PRESETS, build_parser, requested_config

    helps = {action.option_strings[-1]: action.help for action in build_parser()._actions}
    demo = requested_config('demo', {})
    tiny = requested_config('tiny', {})
    for flag, demo_value, paper_value in (
            ('--retrain-epochs', demo.retrain.epochs, tiny.retrain.epochs),
            ('--epochs', demo.supernet.epochs, tiny.supernet.epochs),
            ('--top-k', demo.evolution.top_k, tiny.evolution.top_k),
            ('--population', demo.evolution.population, tiny.evolution.population),
            ('--compare-random', demo.compare_random, tiny.compare_random),
            ('--workers', demo.data.workers, tiny.data.workers)):
        assert f'the paper presets {paper_value}, the demo {demo_value})' in helps[flag], (flag, helps[flag])
    assert PRESETS['demo'].retrain.epochs == 12 and 'the demo 12' in helps['--retrain-epochs']


def test_validate_states_each_default_once():
    from glit_models.validate import build_parser

    text = ' '.join(build_parser().format_help().split())
    assert "--img-size IMG_SIZE input size (default: the checkpoint's recorded size, else the model's) --" in text


def test_the_finetune_defaults_in_train_s_help_are_the_recipe_s():
    from glit_models.train import build_parser
    from glit_models.training.recipes import MIN_STEPS, RECIPES

    helps = {action.option_strings[-1]: action.help for action in build_parser()._actions}
    assert f'about {RECIPES["finetune"].config.updates} updates' in helps['--epochs']
    assert f'at least {MIN_STEPS} steps an epoch' in helps['--batch-size']
