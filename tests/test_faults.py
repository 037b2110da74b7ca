"""Faults a real run meets, injected on the CPU demo (digits 0-1, a 2-block ViT): a kill after each file write,
SIGTERM mid-epoch, re-running into an earlier run, --overwrite, strict --eval, a non-finite loss, a requeue
through submitit. Each must lose nothing, end as the uninterrupted run does, and name the cause in one line."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import backbones
from pretrain.engine import Trainer, loop
from pretrain.train import train

from conftest import ROOT

TINY = ['model.embed_dim=32', 'model.depth=2', 'model.num_heads=2', 'data.num_workers=0', 'data.classes=[0,1]',
        'train.log_interval=1']


def argv(out, *extra, epochs=2, options=()):
    return ['--cfg', 'demo', '--output-dir', str(out), '--epochs', str(epochs), '--batch-size', '64', *extra,
            '--cfg-options', *TINY, *options]


def weights(path):
    return backbones.load_file(path)['model']


def log_of(out):
    return [json.loads(line) for line in (Path(out) / 'log.jsonl').read_text().splitlines()]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f'{k} differs'


def error_of(args, capsys) -> tuple:
    with pytest.raises(SystemExit) as e:
        train(args)
    code = e.value.code
    return (1, code) if isinstance(code, str) else (code, capsys.readouterr().err)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, one_thread):
    """The uninterrupted run, with every file write counted."""
    out = tmp_path_factory.mktemp('faults') / 'reference'
    with pytest.MonkeyPatch.context() as m:
        writes = count_writes(m)
        train(argv(out))
    return out, writes[0]


class Killed(BaseException):
    """Stands for kill -9: nothing in the engine catches it."""


def count_writes(m, crash_at=None):
    """Count the engine's file writes (checkpoints, log records, small files, plots); raise after write crash_at."""
    count = [0]

    def counted(fn):
        def write(*a, **k):
            out = fn(*a, **k)
            count[0] += 1
            if count[0] == crash_at:
                raise Killed(f'killed after write {crash_at}')
            return out
        return write
    m.setattr(backbones, 'save_file', counted(backbones.save_file))
    for name in ('append_line', 'write_atomic', 'plot_training_curves'):
        m.setattr(loop, name, counted(getattr(loop, name)))
    return count


def test_kill_after_each_write_then_resume(reference, tmp_path):
    ref, total = reference
    assert total >= 8  # config, log, per epoch: record, plot, best, checkpoint
    for n in range(1, total):
        out = tmp_path / f'kill{n}'
        with pytest.MonkeyPatch.context() as m:
            count_writes(m, crash_at=n)
            with pytest.raises(Killed, match=f'killed after write {n}'):
                train(argv(out))
        train(argv(out, '--resume'))
        assert_same(weights(ref / 'checkpoint.pth'), weights(out / 'checkpoint.pth'))
        log, ref_log = log_of(out), log_of(ref)
        assert [r['epoch'] for r in log] == [0, 1], n
        assert [r['train_loss'] for r in log] == [r['train_loss'] for r in ref_log], n
        best = backbones.load_file(out / 'checkpoint_best.pth')
        assert best['val_top1'] == max(r['val_top1'] for r in log), n
        assert not list(out.glob('*.tmp')) and not list(out.glob('.*.tmp')), n


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_and_resume_equals_uninterrupted(reference, tmp_path, signum):
    """The signal arrives in the middle of step 3 (as SLURM's would, at any instant); pretrain.submit's test
    sends a real one to a separate process."""
    ref, _ = reference
    out = tmp_path / 'preempted'
    sent = []
    real_loss = Trainer._loss

    def signal_during_step(self, logits, targets, teacher):
        if (self.epoch, self.step_in_epoch) == (0, 2) and not sent:
            os.kill(os.getpid(), signum)
            sent.append(time.time())
        return real_loss(self, logits, targets, teacher)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, '_loss', signal_during_step)
        with pytest.raises(SystemExit) as e:
            train(argv(out))
    assert e.value.code == 143 and time.time() - sent[0] < 30
    ckpt = backbones.load_file(out / 'checkpoint.pth')
    assert (ckpt['epoch'], ckpt['step_in_epoch']) == (0, 3)  # the step in progress was finished
    assert f'{signal.Signals(signum).name}: stopped at epoch 0, step 3' in (out / 'train.log').read_text()
    train(argv(out, '--resume'))
    assert_same(weights(ref / 'checkpoint.pth'), weights(out / 'checkpoint.pth'))
    # the resumed epoch reports all its steps, not only those after the restart
    assert [r['train_loss'] for r in log_of(out)] == [r['train_loss'] for r in log_of(ref)]


def test_rerun_refused_and_overwrite_moves_the_earlier_run(reference, tmp_path, capsys):
    ref, _ = reference
    out = tmp_path / 'run'
    out.mkdir()
    for name in ('checkpoint.pth', 'log.jsonl', 'train.log'):
        (out / name).write_bytes((ref / name).read_bytes())
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, msg = error_of(argv(out), capsys)
    assert code == 2 and str(out) in msg and '--resume' in msg and '--overwrite' in msg
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written
    train(argv(out, '--overwrite', epochs=1))
    previous = [p for p in out.iterdir() if p.name.startswith('previous-')]
    assert len(previous) == 1 and sorted(p.name for p in previous[0].iterdir()) == sorted(before)
    assert (previous[0] / 'log.jsonl').read_text() == (ref / 'log.jsonl').read_text()
    assert [r['epoch'] for r in log_of(out)] == [0]


def test_resume_without_checkpoint_starts_fresh_and_changed_epochs_warn(reference, tmp_path, capsys):
    ref, _ = reference
    out = tmp_path / 'fresh'
    train(argv(out, '--resume', epochs=1))
    assert 'no checkpoint.pth in' in (out / 'train.log').read_text()
    train(argv(out, '--resume', epochs=2))
    text = (out / 'train.log').read_text()
    assert 'epochs 1 -> 2' in text and 'learning rate' in text


def test_eval_is_strict(reference, tmp_path, capsys):
    ref, _ = reference
    code, msg = error_of(argv(tmp_path / 'e', '--eval'), capsys)
    assert code == 1 and '--eval needs weights' in msg
    other = tmp_path / 'other.pth'  # weights of another architecture: nothing would load
    backbones.save_file({'model': backbones.create_model('vit_t', num_classes=2, img_size=16, patch_size=4,
                                                         embed_dim=48, depth=1, num_heads=3).state_dict()}, other)
    code, msg = error_of(argv(tmp_path / 'e', '--eval', '--resume', str(other)), capsys)
    assert code == 1 and str(other) in msg and '\n' not in msg
    record = train(argv(tmp_path / 'e2', '--eval', '--resume', str(ref / 'checkpoint.pth')))
    assert record['val_top1'] == log_of(ref)[-1]['val_top1'] and record['val_bad_images'] == 0


def test_non_finite_loss_keeps_the_last_finite_checkpoint(reference, tmp_path, monkeypatch):
    out = tmp_path / 'nan'
    real_loss = Trainer._loss

    def explode(self, logits, targets, teacher):
        loss = real_loss(self, logits, targets, teacher)
        return loss * float('nan') if (self.epoch, self.step_in_epoch) == (1, 2) else loss
    monkeypatch.setattr(Trainer, '_loss', explode)
    with pytest.raises(SystemExit) as e:
        train(argv(out))
    msg = str(e.value.code)
    assert 'non-finite loss' in msg and 'checkpoint.pth (epoch 1, step 0)' in msg
    ckpt = backbones.load_file(out / 'checkpoint.pth')
    assert ckpt['epoch'] == 1 and all(torch.isfinite(v).all() for v in ckpt['model'].values())
    assert 'non-finite loss' in (out / 'train.log').read_text()


@pytest.mark.e2e
def test_submitit_requeue_finishes_like_an_uninterrupted_run(reference, tmp_path):
    submitit = pytest.importorskip('submitit')
    from pretrain.submit import Training
    ref, _ = reference
    out = tmp_path / 'submitit_run'
    executor = submitit.LocalExecutor(folder=str(tmp_path / 'jobs'))
    executor.update_parameters(timeout_min=60)  # well before its time-out: a preemption
    env = {'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    with pytest.MonkeyPatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        job = executor.submit(Training(argv(out)))
    deadline = time.time() + 120
    while 'epoch 1/2 step 2/' not in (job.paths.stdout.read_text() if job.paths.stdout.exists() else ''):
        assert time.time() < deadline and job.state != 'FINISHED', 'the job did not start training'
        time.sleep(0.2)
    job._process.send_signal(signal.SIGTERM)  # the controller forwards it to the task, as SLURM would
    job.result()
    text = job.paths.stdout.read_text()
    assert 'SIGTERM: stopped at epoch' in text and 'Requeued job' in text and 'resumed from' in text
    assert_same(weights(ref / 'checkpoint.pth'), weights(out / 'checkpoint.pth'))


def test_dry_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / 'dry'
    assert train(['--cfg', 'vit_l', '--output-dir', str(out), '--dry-run']) == {}
    assert 'steps' in capsys.readouterr().out and not out.exists()


def test_unwritable_output_dir_and_full_disk_end_in_one_line(reference, tmp_path, monkeypatch):
    import errno
    import tempfile
    from pretrain.engine import run_dir

    def read_only(*a, **k):
        raise OSError(errno.EROFS, 'Read-only file system', str(tmp_path / 'ro'))
    with monkeypatch.context() as m:
        m.setattr(run_dir.tempfile, 'TemporaryFile', read_only)
        with pytest.raises(SystemExit) as e:
            train(argv(tmp_path / 'ro'))
    assert 'read-only file system' in str(e.value.code) and str(tmp_path / 'ro') in str(e.value.code)
    assert tempfile.TemporaryFile is not read_only

    out = tmp_path / 'full'
    saves = []
    real_save = backbones.save_file

    def disk_full_at_second_save(obj, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, 'No space left on device', str(path))
        return real_save(obj, path)
    with monkeypatch.context() as m:
        m.setattr(backbones, 'save_file', disk_full_at_second_save)
        with pytest.raises(SystemExit) as e:
            train(argv(out))
    msg = str(e.value.code)
    assert 'no space left on the device' in msg and '\n' not in msg and str(saves[1]) in msg
    train(argv(out, '--resume'))  # what was written is consistent: the run finishes as if never stopped
    assert_same(weights(reference[0] / 'checkpoint.pth'), weights(out / 'checkpoint.pth'))

    (tmp_path / 'afile').write_text('')  # an --output-dir under a file, or a file of that name (root ignores chmod)
    for out, why in ((tmp_path / 'afile' / 'out', 'a part of the path is a file'), (tmp_path / 'afile', 'a file of')):
        with pytest.raises(SystemExit) as e:
            train(argv(out))
        assert why in str(e.value.code) and str(out) in str(e.value.code) and '\n' not in str(e.value.code)


def test_truncated_last_log_record_is_dropped(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / 'cut'
    out.mkdir()
    for name in ('checkpoint.pth', 'log.jsonl'):
        (out / name).write_bytes((ref / name).read_bytes())
    with open(out / 'log.jsonl', 'a') as f:
        f.write('{"epoch": 2, "train_lo')  # a kill in the middle of a write
    train(argv(out, '--resume', epochs=2))
    assert [r['epoch'] for r in log_of(out)] == [0, 1]


# -- one error boundary (backbones/errors.py) ----------------------------------------------------------------------
TORCH_FULL_DISK = RuntimeError('[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file '
                               'data/3: file write failed')


@pytest.mark.parametrize('failing_save,failure', [
    (1, TORCH_FULL_DISK),  # the case: the first checkpoint on a full disk, torch's own RuntimeError
    (2, OSError(28, 'No space left on device')),  # the file write's OSError, which names no file
])
def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch, failing_save,
                                                                             failure):
    out = tmp_path / 'full'
    real_save, saved = torch.save, []

    def save(obj, f, *a, **k):  # the failing_save-th checkpoint.pth (the full one: it holds the optimizer) fails
        if 'optimizer' in obj:
            saved.append(obj['epoch'])
            if len(saved) == failing_save:
                raise failure
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, 'save', save)
    with pytest.raises(SystemExit) as e:
        train(argv(out))
    monkeypatch.undo()
    msg = str(e.value.code)
    assert msg.startswith(f'error: cannot write {out / "checkpoint.pth"}: ') and '\n' not in msg, msg
    assert ('MiB free there' if failing_save == 1 else 'no space left on the device') in msg
    assert not list(out.glob('.*.tmp')) and not list(out.glob('*.tmp'))  # no half-written file left
    if failing_save == 1:
        assert not (out / 'checkpoint.pth').exists() and 'intact' not in msg
    else:  # the checkpoint written before the failure is whole: the run resumes from it
        assert 'the previous checkpoint.pth is intact' in msg
        assert backbones.load_file(out / 'checkpoint.pth')['epoch'] == saved[0]


def test_an_os_failure_inside_a_dependency_names_its_file(tmp_path, monkeypatch):
    """OSErrors raised deep in torch / PIL / mmengine reach the boundary with their errno and file name."""
    from backbones.errors import describe
    for number, words in ((13, 'permission denied'), (30, 'read-only file system'), (2, 'no such file or folder'),
                          (20, 'a part of the path is a file'), (21, 'a folder, where a file is expected'),
                          (122, 'disk quota exceeded'), (24, 'too many open files')):
        line, code = describe(OSError(number, os.strerror(number), '/data/x.jpg'))
        assert line.startswith(f'/data/x.jpg: {words}') and code == 1, line
    assert describe(OSError(28, 'No space left on device'))[0].startswith('no space left on the device')
    assert describe(TORCH_FULL_DISK)[0].startswith('a file could not be written (torch: [enforce fail')
    assert describe(KeyError('a bug')) is None and describe(RuntimeError('a bug')) is None  # tracebacks stay
    assert describe(OSError(104, 'Connection reset by peer')) is None

    # the engine's small files (log.jsonl, config.py, ...) name themselves too when the write fails unnamed
    from backbones.errors import WriteError
    from pretrain.engine import run_dir

    def full(fd):
        raise OSError(28, 'No space left on device')
    with monkeypatch.context() as m:
        m.setattr(run_dir.os, 'fsync', full)
        for write in (run_dir.append_line, run_dir.write_atomic):
            with pytest.raises(WriteError, match=f'cannot write {tmp_path / "log.jsonl"}: no space left on the dev'):
                write(tmp_path / 'log.jsonl', '{}')

    # read-only output folder met at the first file the run writes into it (train.log), from the logging module
    def read_only(path, *a, **k):
        raise OSError(30, 'Read-only file system', str(path))
    monkeypatch.setattr('logging.FileHandler._open', lambda self: read_only(self.baseFilename))
    with pytest.raises(SystemExit) as e:
        train(argv(tmp_path / 'ro'))
    assert str(e.value.code) == f'error: {tmp_path / "ro" / "train.log"}: read-only file system; write elsewhere'


@pytest.mark.parametrize('entry', ['train', 'finetune', 'export', 'analysis', 'pretrain.submit', 'transfer.submit',
                                   'summary'])
def test_every_entry_point_routes_through_the_boundary(entry, tmp_path, monkeypatch, capsys):
    """The same OS failure, raised where each entry point does its work, ends every one in the same line; a bug
    (KeyError) keeps its traceback."""
    from backbones import export_backbone
    from pretrain import analysis, submit
    from pretrain.engine import command
    from transfer import finetune, submit as transfer_submit, summary

    out = str(tmp_path / 'out')
    where, argv_, call = {
        'train': ((command, 'Trainer'), ['--cfg', 'demo', '--output-dir', out], train),
        'finetune': ((finetune.data_lib, 'build_splits'), ['--dataset', 'digits', '--output-dir', out], finetune.main),
        'export': ((export_backbone, 'export_backbone'), ['a.pth', str(tmp_path / 'b.pth')], export_backbone.main),
        'analysis': ((analysis, 'load_trained'), ['a.pth', '--output-dir', out, '--device', 'cpu'], analysis.main),
        'pretrain.submit': ((submit, 'build_executor'), ['--partition', 'p', '--cfg', 'demo', '--output-dir', out],
                            submit.main),
        'transfer.submit': ((transfer_submit, 'prepare'), ['--partition', 'p', '--dataset', 'digits'],
                            transfer_submit.main),
        'summary': ((summary, 'find_runs'), [out], summary.main),
    }[entry]
    for failure, expected in ((OSError(28, 'No space left on device', '/full/disk'),
                               'error: /full/disk: no space left on the device; free space there or write elsewhere'),
                              (KeyError('a bug'), None)):
        def fail(*a, **k):
            raise failure
        monkeypatch.setattr(*where, fail)
        if expected is None:
            with pytest.raises(KeyError):
                call(argv_)
        else:
            with pytest.raises(SystemExit) as e:
                call(argv_)
            assert e.value.code == expected
    assert not (tmp_path / 'out').exists()  # nothing left by a refused run
