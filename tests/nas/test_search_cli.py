"""`python -m glit_models.nas.search`: bad input, and a run killed twice that resumes to the same result."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glit_models.nas.config import SearchConfig
from glit_models.nas.search import PRESETS, build_parser, main, requested_config
from glit_models.training.config import TrainConfig
from glit_models.utils.run_folder import parse_flags

TINY = ['--epochs', '2', '--population', '4', '--generations', '3', '--parents', '2', '--mutations', '2',
        '--crossovers', '1', '--top-k', '2', '--calib-batches', '1', '--compare-random', '1', '--retrain-epochs', '1',
        '--no-progress']

RUN_JSON_BEFORE = {
    'stem': {'embed_dim': 48, 'num_heads': 3, 'depth': 4, 'patch_size': 4, 'img_size': 32},
    'budget': {'kind': 'flops', 'limit': 8000000.0}, 'method': 'hierarchical', 'stage': '1', 'distributions': None,
    'data': {'data_dir': None, 'heldout': 0.2, 'test_split': 0.1, 'score_images': None,
             'augmentation': {'scale': [0.7, 1.0], 'ratio': [0.9, 1.1], 'hflip': 0.0, 'color_jitter': 0.0, 'aa': None,
                              'reprob': 0.0, 'no_aug': False},
             'bad_images': 'refuse', 'workers': 0, 'memory_limit_mb': 1024, 'seed': 0},
    'supernet': {'epochs': 1, 'opt': 'adamw', 'lr': 0.002, 'momentum': 0.9, 'weight_decay': 0.05, 'batch_size': 64,
                 'label_smoothing': 0.1, 'warmup_epochs': 0, 'amp': False, 'seed': 0},
    'evolution': {'population': 4, 'generations': 1, 'parents': 2, 'mutations': 1, 'mutation_prob': 0.1,
                  'crossovers': 1, 'top_k': 2, 'resample_factor': 10, 'seed': 0},
    'calib_batches': 1, 'retrain_top': False,
    'retrain': {'epochs': 1, 'batch_size': 64, 'lr': 0.002, 'opt': 'adamw', 'momentum': 0.9, 'weight_decay': 0.05,
                'sched': 'cosine', 'min_lr': 1e-05, 'warmup_lr': 1e-06, 'warmup_epochs': 0, 'smoothing': 0.1,
                'mixup': 0.0, 'cutmix': 0.0, 'model_ema': False, 'model_ema_decay': 0.99996, 'clip_grad': None,
                'amp': False, 'seed': 0, 'layer_decay': None},
    'compare_random': 0, 'warm_start_stage2': False, 'in_chans': 3, 'latency_batch': 1, 'latency_cache': None}
"""run.json's settings as the search wrote them before the presets became SearchConfig values (python -m
glit_models.nas.search with SHORT), its data fingerprint aside: every record written since reads back the same."""
SHORT = ['--stage', '1', '--epochs', '1', '--population', '4', '--generations', '1', '--parents', '2', '--mutations',
         '1', '--crossovers', '1', '--top-k', '2', '--calib-batches', '1', '--retrain-epochs', '0', '--compare-random',
         '0', '--no-progress']


def config_of(argv):
    """The SearchConfig a command line asks for."""
    args, given = parse_flags(build_parser(), argv)
    return requested_config(args.preset, given)


def run_main(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob('*') if p.is_file()} if folder.exists() else {}


@pytest.fixture
def output(tmp_path):
    """An existing, empty output folder, which bad input must leave as it is."""
    folder = tmp_path / 'out'
    folder.mkdir()
    return folder


@pytest.mark.parametrize('argv, message', [
    (['--data-dir', '{tmp}/missing'], 'does not exist'),
    (['--data-dir', '{tmp}/empty'], 'has no class sub-folders'),
    (['--budget-flops', 'banana'], "argument --budget-flops: 'banana': expected a positive number"),
    (['--budget-flops', '1M'], r'1M FLOPs is below the cheapest candidate of the stage1 space (7.33M FLOPs)'),
    (['--budget-params', '10'], 'below the cheapest candidate'),
    (['--preset', 'huge'], "argument --preset: invalid choice: 'huge'"),
    (['--method', 'bayes'], "argument --method: invalid choice: 'bayes'"),
    (['--stage', '2', '--distributions', '3,4,0,0'], '--distributions'),
    (['--method', 'spos', '--stage', '2'], 'the spos method has 1 stage'),
    (['--resume'], 'holds no search (run.json is missing)'),
    (['--flops-convention', 'macs'], 'needs --budget-flops'),
    (['--population', '0'], '--population 0: must be at least 1'),
    (['--heldout', 'nan'], 'argument --heldout: nan is not a finite number'),
    (['--aa', 'garbage'], '--aa garbage: not a policy timm knows'),
    (['--distributions', '3,0,1,3'], '--distributions: the hierarchical search with --stage both starts with stage1, '
                                     'which searches the distributions itself, so they would not be used'),
    (['--method', 'spos', '--distributions', '3,0,1,3'], '--distributions: the spos search with --stage both'),
    (['--population', '4', '--parents', '10'], 'parents=10 must be at most population=4'),
    (['--heldout', '1.5'], '--heldout 1.5: must be'),
    (['--lr', '-1'], '--lr -1.0: must be a positive number'),
    (['--workers', '-1'], '--workers -1: must be 0'),
    (['--budget-latency', '5ms', '--latency-cache', '{tmp}/bad.json'], 'latency cache'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, output, capsys, argv, message):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'bad.json').write_text('{"cpu": ')
    before = snapshot(output)
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, err = run_main(argv + ['--output', str(output)], capsys)
    assert code != 0
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    assert message in err
    assert snapshot(output) == before


def test_workers_are_a_data_setting_not_part_of_the_recipe():
    demo = config_of([])
    assert demo.data.workers == 0  # the demo's preset: its images are too few to gain from worker processes
    more = config_of(['--workers', '3'])
    assert more.data.workers == 3 and more.retrain == demo.retrain  # the retraining units stay the same


@pytest.mark.parametrize('resume', [False, True])
def test_files_it_did_not_write_are_refused_before_work(output, capsys, resume):
    """A stale or garbage search.jsonl would be merged into the log, or crash it after a whole stage."""
    (output / 'search.jsonl').write_text('{"stage": 1, "generation": 0}\n' if not resume else 'garbage\n')
    if resume:
        (output / 'run.json').write_text('{}')
    before = snapshot(output)
    code, err = run_main(['--output', str(output), *(['--resume'] if resume else [])], capsys)
    assert code == 2 and err.count('\n') == 1
    assert ('search.jsonl line 1 is not a generation' if resume else
            'is not empty (search.jsonl); an output folder belongs to one search') in err
    assert snapshot(output) == before


def test_a_second_search_into_a_held_folder_is_refused(output, capsys):
    from glit_models.utils.run_lock import hold_output

    with hold_output(output):
        code, err = run_main(['--output', str(output)], capsys)
    assert code == 2 and err.count('\n') == 1 and f'{output} is in use by another run (pid {os.getpid()}' in err


def test_bad_input_from_the_command_line(tmp_path):
    output = tmp_path / 'out'
    done = subprocess.run([sys.executable, '-m', 'glit_models.nas.search', '--budget-flops', 'banana',
                           '--output', str(output)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m glit_models.nas.search: error: argument --budget-flops: 'banana': expected a positive number with "
        "an optional K, M, G or T suffix, e.g. 1.4G or 1400M"]
    assert not output.exists()


@pytest.mark.parametrize('trained', [True, False])
def test_the_end_of_run_hint_loads_best_with_its_weights(capsys, trained):
    from glit_models.nas.search import _print_summary

    _print_summary(dict(method='hierarchical', budget='2M FLOPs', arch='a', cost=1e6, budget_kind='flops', params=1e5,
                        flops=1e6, supernet_top1=50., heldout_top1=60. if trained else None,
                        test_top1=58. if trained else None, best_trained=trained, seconds=750., runs=2),
                   Path('out'), Path('data'))
    captured = capsys.readouterr()
    out = captured.err
    assert captured.out == ''  # the summary is for the person: stderr
    assert 'timm.create_model("local-dir:out/best", pretrained=True)' in out
    assert ('untrained' in out) != trained
    # the retraining command names the data to retrain on, so it runs as printed
    assert ('python -m glit_models.train --data-dir data --arch out/best --output out/retrained' in out) != trained
    assert ('retrained: held-out 60.00%, test 58.00%' in out) == trained
    assert '0.10 M params, 1.00 M FLOPs' in out and 'cost' not in out  # a FLOPs budget's cost is said once
    assert 'search time: 12.5 min over 2 runs' in out


def test_presets_follow_the_paper():
    tiny = config_of(['--preset', 'tiny'])
    assert (tiny.stem.embed_dim, tiny.stem.num_heads, tiny.stem.depth, tiny.stem.img_size) == (192, 3, 12, 224)
    assert tiny.budget.kind == 'flops' and tiny.budget.limit == 1.4e9
    assert (tiny.supernet.epochs, tiny.supernet.batch_size, tiny.supernet.lr) == (100, 1024, 0.2)
    evo = tiny.evolution
    assert (evo.population, evo.generations, evo.parents, evo.mutations, evo.mutation_prob, evo.crossovers) == \
        (50, 20, 10, 25, 0.1, 25)
    # the paper's protocol: each stage's top 5 retrained, the best kept; baselines at equal compute
    assert tiny.retrain_top and tiny.retrain.epochs == 30 and evo.top_k == 5
    assert config_of(['--preset', 'small']).budget.limit == 4.4e9
    assert config_of(['--preset', 'base']).budget.limit == 17.0e9
    assert PRESETS['small'].stem.embed_dim == 384 and PRESETS['base'].stem.num_heads == 12
    overridden = config_of(['--preset', 'tiny', '--epochs', '3', '--budget-flops', '1400M'])
    assert overridden.supernet.epochs == 3 and overridden.budget.limit == 1.4e9


def _start(output: Path, resume: bool = False) -> subprocess.Popen:
    argv = [sys.executable, '-m', 'glit_models.nas.search', '--output', str(output), *TINY]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen(argv + (['--resume'] if resume else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_for(process: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f'the search ended before {path} appeared: {process.communicate()}'
        assert time.time() < deadline, f'{path} did not appear'
        time.sleep(0.05)


def _finish(process: subprocess.Popen) -> str:
    """The search's human lines (stderr), once it ended well."""
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return err


@pytest.mark.slow  # 50 s: the engine, SPOS, evolution and train CLI tests cover resuming each phase
def test_demo_killed_twice_resumes_to_the_same_architecture(tmp_path):
    reference, killed = tmp_path / 'reference', tmp_path / 'killed'
    first = _start(reference)
    second = _start(killed)
    # SIGKILL in the middle of stage 1's evolution
    _wait_for(second, killed / 'stage1' / 'evolution.json')
    second.send_signal(signal.SIGKILL)
    second.wait()
    # resumed, then interrupted (Ctrl-C) while the stage-2 supernet trains
    third = _start(killed, resume=True)
    _wait_for(third, killed / 'stage2' / 'supernet.pth.tar')
    third.send_signal(signal.SIGINT)
    _, err = third.communicate(timeout=60)
    assert third.returncode != 0 and 'Traceback' not in err
    final = _start(killed, resume=True)
    out = _finish(final)
    reference_out = _finish(first)

    expected = json.loads((reference / 'result.json').read_text())
    got = json.loads((killed / 'result.json').read_text())
    for key in ('arch', 'candidate', 'supernet_top1', 'heldout_top1', 'test_top1', 'cost', 'comparison'):
        assert got[key] == expected[key], key
    assert (killed / 'search.jsonl').read_text() == (reference / 'search.jsonl').read_text()
    assert (killed / 'best' / 'model.safetensors').read_bytes() == \
        (reference / 'best' / 'model.safetensors').read_bytes()
    # the demo's report: the found architecture beside the median of random ones of the same budget
    assert 'found' in out and '1 random architectures of the same budget, trained the same way: median' in out
    assert 'not that the method beats random search' in out
    def summary(text: str) -> str:
        return text[text.index('found ('):text.index('search time: ')]
    assert summary(out) == summary(reference_out).replace(str(reference), str(killed))
    # the killed search's time counts its three runs, the reference's its one
    assert (got['runs'], expected['runs']) == (3, 1) and 'min over 3 runs' in out
    # one plain line per generation of each stage, with or without progress bars
    assert reference_out.count('[stage1] generation') == 3 and reference_out.count('[stage2] generation') == 3


@pytest.mark.slow
def test_under_torchrun_only_rank_zero_writes(tmp_path):
    output = tmp_path / 'out'
    done = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '-m', 'glit_models.nas.search',
         '--output', str(output), *TINY], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count('found (hierarchical') == 1 and len(done.stdout.splitlines()) == 1
    result = json.loads((output / 'result.json').read_text())
    assert result['cost'] <= result['budget_limit']
    assert not list(output.rglob('*.tmp'))


def test_a_short_resume_takes_the_saved_settings(tmp_path, capsys):
    """As train's: --output and --resume alone continue the search with the settings in run.json."""
    output = tmp_path / 'out'
    assert main(['--output', str(output), *SHORT]) == 0
    first = json.loads((output / 'result.json').read_text())
    saved = json.loads((output / 'run.json').read_text())
    # the same settings as the earlier form held, the retraining recorded whole in TrainConfig's own form
    assert SearchConfig.from_record({k: v for k, v in saved.items() if k != 'data_fingerprint'}) == \
        SearchConfig.from_record(RUN_JSON_BEFORE)
    assert saved['retrain'] == TrainConfig.from_json(saved['retrain']).to_json()
    captured = capsys.readouterr()
    assert first['runs'] == 1 and 'search time: ' in captured.err
    assert json.loads(captured.out) == {key: first[key] for key in json.loads(captured.out)}
    assert json.loads(captured.out)['arch'] == first['arch']
    code, err = run_main(['--output', str(output), '--resume', '-j', '0', '--no-progress'], capsys)
    assert code == 0, err
    again = json.loads((output / 'result.json').read_text())
    assert again['arch'] == first['arch']
    # the search's time counts both runs: the first one's seconds carried over from clock.json
    assert again['runs'] == 2 and again['seconds'] > first['seconds'] > 0
    code, err = run_main(['--output', str(output), '--resume', '--epochs', '3'], capsys)
    assert code == 2 and f'the settings differ from the search in {output}: --epochs (supernet.epochs): 1 saved, ' \
        '3 given; resume without those flags' in err  # only the flag given, not the others it saved (--population)
    # a flag repeated with its saved value, the others left out: the saved search goes on
    code, err = run_main(['--output', str(output), '--resume', '--epochs', '1', '--no-progress'], capsys)
    assert code == 0, err


def test_a_run_json_of_the_earlier_form_reads_back_and_resumes(tmp_path, capsys):
    """A search killed right after it wrote run.json, before the presets became SearchConfig values: --resume
    alone runs it with its saved settings and finds what a search of the same flags finds."""
    from glit_models.data.fingerprint import fingerprint, list_image_files
    from glit_models.nas.config import SearchConfig
    from glit_models.nas.demo import write_digits

    saved = SearchConfig.from_record(RUN_JSON_BEFORE)
    assert saved == config_of(SHORT) and SearchConfig.from_record(saved.to_record()) == saved
    assert saved.retrain.drop_path == 0.  # the earlier form trained without drop path and did not record it
    killed, fresh = tmp_path / 'killed', tmp_path / 'fresh'
    root = write_digits(killed / 'digits')
    listing = list_image_files(root, [root / 'train', root / 'val'])
    (killed / 'run.json').write_text(json.dumps(dict(RUN_JSON_BEFORE, data_fingerprint=fingerprint(listing))))
    code, err = run_main(['--output', str(killed), '--resume', '--no-progress'], capsys)
    assert code == 0, err
    assert main(['--output', str(fresh), *SHORT]) == 0
    resumed, expected = (json.loads((folder / 'result.json').read_text()) for folder in (killed, fresh))
    assert (resumed['arch'], resumed['supernet_top1']) == (expected['arch'], expected['supernet_top1'])


def test_a_resume_on_changed_data_is_refused_unless_allowed(tmp_path, capsys, caplog):
    output = tmp_path / 'out'
    tiny = ['--stage', '1', '--epochs', '1', '--population', '2', '--generations', '1', '--parents', '1',
            '--mutations', '1', '--crossovers', '0', '--top-k', '1', '--calib-batches', '1', '--retrain-epochs', '0',
            '--compare-random', '0', '--no-progress']
    assert main(['--output', str(output), *tiny]) == 0
    capsys.readouterr()
    assert json.loads((output / 'run.json').read_text())['data_fingerprint']['files'] == 1797
    digit = output / 'digits' / 'train' / '3'
    (digit / 'copy.png').write_bytes(next(digit.iterdir()).read_bytes())
    code, err = run_main(['--output', str(output), '--resume'], capsys)
    assert code == 2 and err.count('\n') == 1, err
    assert 'changed since the run started: 1 added (e.g. train/3/copy.png); restore it, or pass ' \
           '--allow-data-change' in err
    code, err = run_main(['--output', str(output), '--resume', '--allow-data-change', '--no-progress'], capsys)
    assert code == 0, err
    assert 'the run goes on with the data' in caplog.text
    assert json.loads((output / 'run.json').read_text())['data_fingerprint']['files'] == 1798


def test_a_refused_budget_claims_no_folder(tmp_path, capsys):
    """The budget is refused before run.json is written: a retry with another budget is judged on its own."""
    from tests.helpers import assert_one_line, run_main

    output = tmp_path / 'out'
    for budget in ('1K', '2M'):
        assert_one_line(run_main('glit_models.nas.search', ['--budget-flops', budget, '--output', output], capsys),
                        f'{budget} FLOPs is below the cheapest candidate')
        assert not output.exists()  # nor an empty folder
    assert_one_line(run_main('glit_models.nas.search', ['--seed', str(2 ** 70), '--output', output], capsys),
                    f'--seed {2 ** 70}: must be in [0, 2**63)')


def test_resume_allows_other_workers_and_names_the_flag_that_differs(tmp_path, capsys):
    from glit_models.nas.search import _claim
    from tests.helpers import assert_one_line, run_main

    output = tmp_path / 'out'
    output.mkdir()
    saved = config_of(['--workers', '0']).to_record()
    (output / 'run.json').write_text(json.dumps(saved))
    resumed, _ = _claim(output, True, config_of(['--workers', '2']), {'workers': 2})
    assert resumed.data.workers == 2 and resumed.to_record() == dict(saved, data=dict(saved['data'], workers=2))
    assert_one_line(run_main('glit_models.nas.search', ['--output', output, '--resume', '--epochs', '3'], capsys),
                    '--resume: the settings differ', '--epochs (supernet.epochs): 8 saved, 3 given')
    (output / 'run.json').write_text('{"stem": [')
    assert_one_line(run_main('glit_models.nas.search', ['--output', output, '--resume'], capsys),
                    'run.json: not readable JSON')


def test_bad_images_are_named_with_the_flag_the_search_has(tmp_path, capsys):
    from tests.helpers import assert_one_line, run_main, write_bad_images, write_image_folder

    data = write_image_folder(tmp_path / 'data', classes=2, per_class=20)
    write_bad_images(data / 'class_0')
    output = tmp_path / 'out'
    assert_one_line(run_main('glit_models.nas.search', ['--data-dir', data, '--output', output], capsys),
                    'zero.png', 'skip them with --bad-images skip')
    assert not (output / 'run.json').exists()
    assert '--bad-images' in run_main('glit_models.nas.search', ['--help'], capsys).stdout
