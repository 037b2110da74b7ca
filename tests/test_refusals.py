"""Settings no run can use, and a second run into a busy --output-dir, are refused in one line with exit code 2
(issue 18): schedule lengths, batch sizes, learning rates, probabilities and rates, intervals, data.classes
(pretrain.config.check_values); cosub.num_submodels before the ESD batch check; the run-directory lock
(pretrain.engine.run_dir). CPU, about half a minute."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pretrain.config import parse
from pretrain.engine.run_dir import LOCK_FILE, lock_holder, lock_run_dir
from pretrain.train import train
from transfer.finetune import finetune

from conftest import ROOT

TINY = ['--epochs', '1', '--batch-size', '64', '--num-workers', '0', '--device', 'cpu', '--cfg-options',
        'model.embed_dim=32', 'model.depth=2', 'model.num_heads=2', 'data.classes=[0,1]']


def refused(capsys, entry, argv, *words) -> str:
    """`entry(argv)` ends with exit code 2 and one line on stderr holding `words`; the line."""
    with pytest.raises(SystemExit) as e:
        entry(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, (e.value.code, err)
    for w in words:
        assert w in err[0], err[0]
    return err[0]


# -- values no run can use ------------------------------------------------------------------------------------------
BAD = [  # (flags, what the line must name)
    (['--epochs', '-1'], '--epochs -1: expected a whole number >= 1'),
    (['--epochs', '0'], '--epochs 0: expected a whole number >= 1'),
    (['--batch-size', '0'], '--batch-size 0'),
    (['--num-workers', '-1'], '--num-workers -1: expected a whole number >= 0'),
    (['--cfg-options', 'schedule.warmup_epochs=-1'], 'schedule.warmup_epochs=-1'),
    (['--cfg-options', 'schedule.min_lr=-1e-5'], 'schedule.min_lr=-1e-05'),
    (['--cfg-options', 'optimizer.lr=-0.1'], 'optimizer.lr=-0.1: expected a positive number'),
    (['--cfg-options', 'optimizer.lr=0'], 'optimizer.lr=0'),  # would fall back to the computed LR, exit 0
    (['--cfg-options', 'optimizer.weight_decay=-0.02'], 'optimizer.weight_decay=-0.02: expected a number >= 0'),
    (['--cfg-options', 'optimizer.clip_grad=0'], 'optimizer.clip_grad=0'),  # would clip nothing
    (['--cfg-options', 'micro_batch_size=0'], 'micro_batch_size=0'),
    (['--cfg-options', 'micro_batch_size=128'], 'micro_batch_size=128: expected a divisor of batch_size=64'),
    (['--cfg-options', 'micro_batch_size=48'], 'a divisor of batch_size=64'),
    (['--cfg-options', 'eval_batch_size=0'], 'eval_batch_size=0'),
    (['--cfg-options', 'data.classes=[]'], 'data.classes=[]: expected a non-empty list'),
    (['--cfg-options', 'data.classes=[1,1]'], 'each class once'),
    (['--cfg-options', 'data.classes=[3,12]'], 'digits among 0-9'),
    (['--cfg-options', 'data.repeated_aug=0'], 'data.repeated_aug=0'),
    (['--cfg-options', 'data.std=[0.5,0,0.5]'], 'data.std'),
    (['--cfg-options', 'data.train_transform.rrc_scale=[0.9,0.5]'], 'data.train_transform.rrc_scale'),
    (['--cfg-options', 'data.train_transform.hflip=1.5'], 'expected a probability in [0, 1]'),
    (['--cfg-options', 'mixup.prob=-0.1'], 'mixup.prob=-0.1'),
    (['--cfg-options', 'mixup.cutmix_alpha=-1.0'], 'mixup.cutmix_alpha=-1.0'),
    (['--cfg-options', 'loss.label_smoothing=1.0'], 'loss.label_smoothing=1.0: expected a number in [0, 1)'),
    (['--cfg-options', 'model.drop_path_rate=1.0'], 'model.drop_path_rate=1.0: expected a number in [0, 1)'),
    (['--cfg-options', 'train.eval_interval=0'], 'train.eval_interval=0'),  # a division by zero after epoch 1
    (['--cfg-options', 'train.checkpoint_interval=0'], 'train.checkpoint_interval=0'),
    (['--cfg-options', 'seed=-1'], 'seed=-1'),
]


@pytest.mark.parametrize('flags,words', BAD, ids=lambda x: ' '.join(x) if isinstance(x, list) else '')
def test_values_no_run_can_use_are_refused(capsys, flags, words):
    # --dry-run: a value that slipped through would print the plan and exit 0 (no SystemExit: the test fails)
    line = refused(capsys, train, ['--cfg', 'demo', '--dry-run', *flags], words)
    assert ': error: ' in line and line.endswith('(see --help)')


def test_transfer_refuses_them_too(capsys):
    refused(capsys, finetune, ['--dataset', 'digits', '--dry-run', '--epochs', '0'], '--epochs 0')


def test_a_parameter_filter_that_matches_nothing_is_refused(capsys, tmp_path):
    """optimizer.only=['.attn.', 'haed.'] (a typo) would freeze the new head at its random init, exit 0."""
    line = refused(capsys, train, ['--cfg', 'demo', '--output-dir', str(tmp_path / 'run'), *TINY,
                                   "optimizer.only=['.attn.','haed.']"],
                   "optimizer.only: 'haed.' matches no parameter of the model", "'head.bias'")
    assert line.startswith('error: ') and not (tmp_path / 'run').exists()  # a refused run leaves nothing


@pytest.mark.parametrize('flags,words', [
    (['--num-workers', '-2'], '--num-workers -2: expected a whole number >= 0'),
    (['--draws', '0'], '--draws 0: expected a whole number >= 1'),
    (['--min-blocks', '0'], '--min-blocks 0'),
    (['--max-images', '0'], '--max-images 0'),
    (['--device', 'tpu'], '--device tpu: expected auto, cpu, cuda or cuda:N'),
])
def test_the_submodel_analysis_checks_its_flags(capsys, flags, words):
    from pretrain.analysis import main as analysis
    refused(capsys, analysis, ['checkpoint.pth', *flags], words)  # before the checkpoint is read


@pytest.mark.parametrize('flags,words', [
    (['--nodes', '0'], '--nodes 0: expected a whole number >= 1'),
    (['--gpus-per-node', '-1'], '--gpus-per-node -1'),
    (['--timeout-min', '0'], '--timeout-min 0'),
    (['--max-requeues', '-1'], '--max-requeues -1: expected a whole number >= 0'),
])
def test_the_slurm_launcher_checks_its_flags(capsys, flags, words):
    from pretrain.submit import main as submit
    refused(capsys, submit, ['--cfg', 'demo', '--partition', 'p', '--dry-run', *flags], words)


def test_values_at_the_edges_are_kept():
    cfg = parse(['--cfg', 'demo', '--num-workers', '0', '--cfg-options', 'schedule.warmup_epochs=0',
                 'schedule.min_lr=0', 'optimizer.weight_decay=0', 'mixup.prob=0', 'mixup.switch_prob=1.0',
                 'loss.label_smoothing=0', 'model.drop_path_rate=0', 'micro_batch_size=16', 'data.classes=[9,0]',
                 'data.train_transform.rrc_scale=[1,1]', 'optimizer.clip_grad=None', 'optimizer.lr=None'])
    assert (cfg.micro_batch_size, cfg.data.classes, cfg.schedule.warmup_epochs) == (16, [9, 0], 0)
    assert parse(['--cfg', 'demo', '--cfg-options', 'data.classes=None']).data.classes is None  # all ten digits


def test_the_issue_command_ends_in_one_line_not_timms_assert(tmp_path):
    out = subprocess.run([sys.executable, 'pretrain/train.py', '--cfg', 'demo', '--epochs', '-1', '--output-dir',
                          str(tmp_path / 'run')], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        'train.py: error: --epochs -1: expected a whole number >= 1 (see --help)'], out.stderr
    assert 'Traceback' not in out.stdout + out.stderr and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('k', ['0', '1'])
def test_num_submodels_is_checked_before_the_esd_batch(capsys, k):
    line = refused(capsys, train, ['--cfg', 'demo', '--cfg-options', f'cosub.num_submodels={k}'],
                   f'cosub.num_submodels={k}: co-training needs at least 2 submodels')
    assert 'per-device batch' not in line


# -- one run per output folder --------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_dir_is_refused(capsys, tmp_path):
    out = tmp_path / 'run'
    lock = lock_run_dir(out)  # as a live run holds it
    line = refused(capsys, train, ['--cfg', 'demo', '--output-dir', str(out), *TINY], str(out), 'in use by another run',
                   f'pid {os.getpid()}')
    assert line.startswith('error: ')
    assert lock_holder(out)['pid'] == os.getpid() and sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    lock.release()
    assert lock_holder(out) is None and (out / LOCK_FILE).read_text() == ''  # released: emptied, not deleted


def test_a_stopped_runs_lock_is_taken_over_and_transfer_is_locked_too(capsys, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({'pid': dead.pid, 'host': 'node7', 'started': '2026-01-01 00:00:00 UTC'}))
    train(['--cfg', 'demo', '--output-dir', str(out), *TINY])
    assert (f'took over the lock of a stopped run (pid {dead.pid} on node7, started 2026-01-01 00:00:00 UTC)'
            in (out / 'train.log').read_text())
    assert lock_holder(out) is None and (out / LOCK_FILE).read_text() == ''
    capsys.readouterr()
    # transfer/finetune.py goes through the same engine: refused while the folder is in use
    busy = tmp_path / 'transfer'
    lock = lock_run_dir(busy)
    try:
        refused(capsys, finetune, ['--dataset', 'digits', '--finetune', str(out / 'checkpoint.pth'), '--output-dir',
                                   str(busy), '--epochs', '1', '--num-workers', '0', '--device', 'cpu',
                                   '--cfg-options', 'model.embed_dim=32', 'model.depth=2', 'model.num_heads=2'],
                str(busy), f'pid {os.getpid()}')
    finally:
        lock.release()


HOLD = ('import sys; from pathlib import Path; from pretrain.engine.run_dir import lock_run_dir; '
        'lock = lock_run_dir(Path(sys.argv[1])); print("held", flush=True); sys.stdin.read()')


def test_the_lock_of_another_process_and_of_a_killed_one(capsys, tmp_path):
    out = tmp_path / 'run'
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == 'held'
        refused(capsys, train, ['--cfg', 'demo', '--output-dir', str(out), *TINY], f'pid {holder.pid}')
        (out / 'log.jsonl').write_text('{"epoch": 0}\n')  # it has logged an epoch: still "in use", not "earlier run"
        refused(capsys, train, ['--cfg', 'demo', '--output-dir', str(out), *TINY], 'in use', f'pid {holder.pid}')
    finally:
        holder.kill()  # kill -9: no cleanup ran, the OS dropped the flock
        holder.wait()
    assert lock_holder(out) is None
    lock = lock_run_dir(out)
    assert lock.previous['pid'] == holder.pid  # the file still names it: the next run says it took over
    lock.release()


# -- a refused run leaves nothing (issue 23) ------------------------------------------------------------------------
def test_a_run_refused_before_training_leaves_nothing(capsys, tmp_path):
    """No data folder: refused after the run took its folder (lock, train.log); the folder, the lock, the log and
    the parent folders the run made are gone. A folder that held something keeps it, and an earlier run's files
    are never touched."""
    no_data = ['--cfg-options', 'data.type=imagenet', f'data.path={tmp_path / "nowhere"}']
    out = tmp_path / 'new' / 'parents' / 'run'
    with pytest.raises(SystemExit) as e:
        train(['--cfg', 'demo', '--output-dir', str(out), *TINY[:-1], *no_data[1:]])
    assert f'--data-path {tmp_path / "nowhere"}: no such folder' in str(e.value.code)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    kept = tmp_path / 'kept'
    kept.mkdir()
    (kept / 'notes.txt').write_text('mine')
    with pytest.raises(SystemExit):
        train(['--cfg', 'demo', '--output-dir', str(kept), *TINY[:-1], *no_data[1:]])
    assert sorted(p.name for p in kept.iterdir()) == ['notes.txt']

    earlier = tmp_path / 'earlier'
    train(['--cfg', 'demo', '--output-dir', str(earlier), *TINY])
    files = {p.name: p.read_bytes() for p in earlier.iterdir() if p.is_file() and p.name != 'train.log'}
    capsys.readouterr()
    refused(capsys, train, ['--cfg', 'demo', '--output-dir', str(earlier), *TINY, "optimizer.only=['haed.']",
                            '--resume'], "optimizer.only: 'haed.' matches no parameter")
    assert {p.name: p.read_bytes() for p in earlier.iterdir() if p.is_file() and p.name != 'train.log'} == files
    assert (earlier / 'train.log').is_file()


def test_finetune_names_first_what_to_fix_first(tmp_path, monkeypatch):
    """`finetune.py --dataset inat18` and nothing else: the missing data first, in plain words; given the data,
    the missing weights to start from. Neither leaves anything behind."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        finetune(['--dataset', 'inat18'])
    assert str(e.value.code).startswith('error: --data-path data/inat2018: no such folder; expected the iNaturalist')
    with pytest.raises(SystemExit) as e:
        finetune(['--dataset', 'digits', '--cfg-options', 'model.name=None'])  # its data is built in
    assert str(e.value.code).startswith('error: nothing to fine-tune: pass --finetune CHECKPOINT')
    assert list(tmp_path.iterdir()) == []
