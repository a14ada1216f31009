"""The training recipes: their rules, and (slow) that the documented fine-tune and retrain commands learn."""
import json
import subprocess
import sys

import pytest

from glit_models.training.config import TrainConfig
from glit_models.training.recipes import RECIPES, Recipe, read_recipe


def test_the_recipes_follow_their_sources():
    scratch, finetune = RECIPES['scratch'].config, RECIPES['finetune'].config
    assert scratch.global_lr(512) == pytest.approx(5e-4) and scratch.warmup(300) == 5 and scratch.warmup(6) == 0
    assert (scratch.mixup, scratch.cutmix, scratch.aa, scratch.reprob, scratch.model_ema) == \
        (0.8, 1.0, 'rand-m9-mstd0.5-inc1', 0.25, True)
    # BEiT's 4e-3 at batch 1024, square-root scaled below it; a warm-up of at least one epoch
    assert finetune.global_lr(1024) == pytest.approx(4e-3) and finetune.global_lr(32) == pytest.approx(7.07e-4, 1e-3)
    assert (finetune.warmup(5), finetune.warmup(100), finetune.warmup(1)) == (1, 5, 0)
    assert (finetune.mixup, finetune.cutmix, finetune.aa, finetune.reprob, finetune.model_ema) == \
        (0., 0., None, 0., False)
    # crops sized to the image: timm's 8% at 224 px, about 24 px across at 32 px
    assert finetune.crop_scale(224) == (0.08, 1.) and finetune.crop_scale(32) == (0.562, 1.)
    assert scratch.crop_scale(32) == (0.08, 1.)
    described = RECIPES['finetune'].describe()
    assert 'recipe finetune' in described and 'sqrt(global batch / 256)' in described


def test_the_finetune_recipe_fits_epochs_and_batch_to_the_data():
    finetune = RECIPES['finetune'].config
    # about 700 images: batch 64 leaves 11 steps an epoch, 46 epochs make 506 updates
    assert finetune.fit(715) == (46, 64)
    assert finetune.fit(200) == (42, 16)  # 12 steps an epoch
    assert finetune.fit(50) == (84, 8)  # no batch of 8 or more leaves ten steps: the smallest, 6 steps
    assert finetune.fit(1_281_167) == (10, 128)  # ImageNet: at least ten epochs at the command line's batch
    assert finetune.fit(715, processes=8) == (46, 8)  # a global batch of 64, as on one process
    assert finetune.fit(715, batch_size=32) == (23, 32)  # a given batch: epochs for it
    assert finetune.fit(20, batch_size=1) == (25, 1)
    assert RECIPES['scratch'].config.updates is None


def test_a_folder_without_a_recipe_has_none_and_a_bad_one_is_named(tmp_path):
    assert read_recipe(tmp_path) is None
    (tmp_path / 'recipe.json').write_text('{"lr": ')
    with pytest.raises(ValueError, match='recipe.json: not a readable recipe'):
        read_recipe(tmp_path)
    (tmp_path / 'recipe.json').write_text(json.dumps(dict(name='search', source='s', lr=1e-3, scale=[0.7, 1],
                                                          unknown_later_key=1)))
    assert read_recipe(tmp_path) == Recipe('search', 's', TrainConfig(lr=1e-3, scale=(0.7, 1.)))


@pytest.mark.slow
def test_a_finetune_with_the_default_recipe_learns_far_past_scratch(tmp_path):
    """docs/benchmarks.md's figures, smaller: pretrain on digits 0-4, fine-tune on 5-9 with the defaults."""
    done = subprocess.run([sys.executable, 'benchmarks/finetune_digits.py', '--output', str(tmp_path),
                           '--results', str(tmp_path), '--pretrain-epochs', '10'],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / 'finetune_digits.json').read_text())['summary']
    finetune, scratch = summary['finetune']['top1_mean'], summary['scratch']['top1_mean']
    assert finetune > 60, summary  # chance: 20%
    assert finetune > scratch + 20, summary
    record = json.loads((tmp_path / 'finetune-seed0' / 'args.json').read_text())
    assert record['recipe'] == 'finetune'


@pytest.mark.slow
def test_retraining_a_searchs_find_with_the_readme_command_learns(tmp_path):
    """train --arch OUTPUT/best takes the search's recipe from best/recipe.json and learns the digits."""
    output = tmp_path / 'search'
    search = [sys.executable, '-m', 'glit_models.nas.search', '--output', str(output), '--stage', '1', '--epochs', '2',
              '--population', '4', '--generations', '1', '--parents', '2', '--mutations', '1', '--crossovers', '1',
              '--top-k', '1', '--retrain-epochs', '5', '--compare-random', '0', '--no-progress']
    done = subprocess.run(search, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    train = [sys.executable, '-m', 'glit_models.train', '--data-dir', str(output / 'digits'), '--arch',
             str(output / 'best'), '--output', str(tmp_path / 'found'), '--no-progress']
    done = subprocess.run(train, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'recipe search (the retraining of glit_models.nas.search' in done.stderr
    record = json.loads((tmp_path / 'found' / 'args.json').read_text())
    assert (record['recipe'], record['epochs'], record['mixup'], record['hflip']) == ('search', 5, 0., 0.)
    assert json.loads(done.stdout.splitlines()[-1])['top1'] > 40  # the digits' val split; chance: 10%
