"""Fault audit (issue 9, "Runs you can trust"): bad input and faults tried as a new user would, judged automatically.

    python tests/fault_audit.py --repo DIR --out FILE.md        (the table: benchmarks/results/fault_audit_after.md)
    python -m pytest -q -m slow tests/test_fault_audit.py       (the same cases as tests: each must be "good")

Each case builds the tiny inputs it needs in a temporary folder (the demo config shrunk to a one-block ViT on two
digit classes, generated image folders, transfer datasets written in their official formats, checkpoints made by
the tree's own runs and tools), runs the command line of the tree under test (cwd=DIR, PYTHONPATH=DIR) and sorts
the outcome into one class:

    good          clear error naming the cause with a non-zero exit, or the correct behaviour
    traceback     a Python traceback was printed
    wrong-exit-0  exit 0 with a wrong or silent result (random weights evaluated, a refused input accepted, ...)
    lost-data     an earlier run's files overwritten/truncated, files that disagree after a kill, or the work since
                  the last checkpoint thrown away on a signal that asks the run to save (SIGTERM/SIGUSR1)
    unclear       non-zero exit and no traceback, but the message does not name the cause (or the feature is absent)
    unsafe        a malicious checkpoint ran its code

Nothing here is imported from the tree under test: the audit must judge two versions of the code the same way.
Cases run in sequence with --num-workers 0 (about 5-10 minutes on 2 shared CPU cores: too long for the default
test run, hence the `slow` mark of tests/test_fault_audit.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

CLASSES = ('good', 'traceback', 'wrong-exit-0', 'lost-data', 'unclear', 'unsafe')
TINY_MODEL = ['model.depth=1', 'model.embed_dim=24', 'model.num_heads=2']
TINY = ['--epochs', '1', '--batch-size', '32', '--num-workers', '0', '--device', 'cpu', '--seed', '0']
TRAIN = [sys.executable, '-m', 'pretrain.train', '--cfg', 'demo']
FINETUNE = [sys.executable, 'transfer/finetune.py']
EXPORT = [sys.executable, '-m', 'backbones.export_backbone']
TB = 'Traceback (most recent call last)'


# -- running and reading ----------------------------------------------------------------------------------------
class Result:
    def __init__(self, rc: int, out: str, seconds: float):
        self.rc, self.out, self.seconds = rc, out, seconds

    @property
    def traceback(self) -> bool:
        return TB in self.out

    def lines(self) -> list:
        text = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', self.out)
        lines = [seg.strip() for line in text.splitlines() for seg in line.split('\r')[-1:]]
        return [ln for ln in lines if ln and not re.match(r'^(epoch \d+|eval \w+):\s+\d+%|warnings\.warn\(', ln)]

    def headline(self) -> str:
        lines = self.lines()
        if not lines:
            return f'(no output, exit {self.rc})'
        if self.traceback:
            return lines[-1]
        for ln in lines:  # the first line that says something went wrong
            if re.search(r'\b(error|warning|refus|expected|did you mean)', ln, re.I):
                return ln
        return lines[-1]


class Audit:
    def __init__(self, repo: Path, work: Path):
        self.repo, self.work = repo, work
        self.env = dict(os.environ, PYTHONPATH=str(repo), COSUB_CACHE=str(work / 'cache'), HF_HUB_OFFLINE='1',
                        PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', MPLBACKEND='Agg')
        self.env.pop('CUDA_VISIBLE_DEVICES', None)
        self.n = 0
        self._base = None

    def tmp(self, name: str) -> Path:
        self.n += 1
        path = self.work / f'{self.n:02d}-{name}'
        path.mkdir(parents=True)
        return path

    def run(self, cmd, timeout: float = 300, cwd: Optional[Path] = None) -> Result:
        t = time.time()
        try:
            p = subprocess.run([str(c) for c in cmd], cwd=cwd or self.repo, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors='replace', timeout=timeout)
            return Result(p.returncode, p.stdout, time.time() - t)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
            return Result(-999, out + f'\n(audit: timed out after {timeout} s)', time.time() - t)

    def start(self, cmd) -> subprocess.Popen:
        log = open(self.work / f'popen-{self.n}.log', 'w+')
        # a shell's background job ignores SIGINT and its children inherit that: give the run a terminal's default
        p = subprocess.Popen([str(c) for c in cmd], cwd=self.repo, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        p.log = log
        return p

    @staticmethod
    def finish(p: subprocess.Popen, timeout: float, t0: float) -> Result:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.log.seek(0)
        return Result(p.returncode, p.log.read(), time.time() - t0)

    def train(self, out: Path, *extra, options=(), timeout: float = 300) -> Result:
        return self.run([*TRAIN, '--output-dir', out, *TINY, *extra,
                         '--cfg-options', *TINY_MODEL, 'data.classes=[0,1]', *options], timeout)

    def base_run(self) -> Path:
        """One finished tiny run (its files are copied by the cases that need an earlier run)."""
        if self._base is None:
            out = self.work / 'base-run'
            r = self.train(out)
            if r.rc != 0 or not (out / 'checkpoint.pth').is_file():
                raise RuntimeError(f'the tiny base run failed (exit {r.rc}): {r.headline()}')
            self._base = out
        return self._base

    def copy_base(self, dst: Path) -> Path:
        shutil.copytree(self.base_run(), dst)
        return dst


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix in ('.pth', '.jsonl')}


def kept(before: dict, folder: Path) -> bool:
    """Every earlier checkpoint/log is still there byte for byte: in place or moved under the output dir."""
    found = {}
    for p in folder.rglob('*'):
        if p.is_file() and p.name in before:
            found.setdefault(p.name, []).append(p.read_bytes())
    return all(any(b == data for b in found.get(name, [])) for name, data in before.items())


def log_records(folder: Path):
    """The records of log.jsonl, or None if a line does not parse."""
    path = folder / 'log.jsonl'
    if not path.is_file():
        return []
    try:
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    except ValueError:
        return None


def refusal(r: Result, *words, wrong='a refused input was accepted') -> tuple:
    """Expected: non-zero exit, no traceback, a message naming one of `words`."""
    if r.traceback:
        return 'traceback', r.headline()
    if r.rc == 0:
        return 'wrong-exit-0', f'exit 0: {wrong} ({r.headline()[:80]})'
    if r.rc == -999:
        return 'unclear', r.headline()
    text = '\n'.join(r.lines()).lower()
    if not words or any(w.lower() in text for w in words):
        return 'good', r.headline()
    return 'unclear', r.headline()


def success(r: Result, check=None) -> tuple:
    """Expected: exit 0 (and `check()` returns None, or the reason the result is wrong)."""
    if r.traceback:
        return 'traceback', r.headline()
    if r.rc != 0:
        return 'unclear', f'exit {r.rc}: {r.headline()}'
    why = check() if check else None
    return ('wrong-exit-0', why) if why else ('good', r.headline())


# -- generated inputs -------------------------------------------------------------------------------------------
def write_png(path: Path, rgb=(200, 30, 30), size=16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (size, size), rgb).save(path)
    return path


def image_folders(root: Path, per_class: int = 6) -> Path:
    """<root>/train/<class>/*.png and <root>/val/<class>/*.png, two classes of plain colours."""
    for split in ('train', 'val'):
        for c, rgb in (('a', (220, 40, 40)), ('b', (40, 40, 220))):
            for i in range(per_class if split == 'train' else 3):
                write_png(root / split / c / f'{c}{i}.png', (rgb[0] + i, rgb[1], rgb[2] - i))
    return root


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A 1-bit PNG of side x side pixels (400M, over PIL's 2x89M refusal limit) that is a few kB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    z = zlib.compressobj(9)
    row = b'\x00' * (1 + (side + 7) // 8)
    body = b''.join(z.compress(row) for _ in range(side)) + z.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 0, 0, 0, 0))
                     + chunk(b'IDAT', body) + chunk(b'IEND', b''))
    return path


def cifar10(root: Path) -> Path:
    rng = np.random.default_rng(0)
    base = root / 'cifar-10-batches-py'
    base.mkdir(parents=True)

    def dump(name, obj):
        with open(base / name, 'wb') as f:
            pickle.dump({k.encode(): v for k, v in obj.items()}, f, protocol=2)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        labels = rng.integers(0, 3, 8).tolist()
        data = ((np.asarray(labels)[:, None] * 70 + rng.normal(0, 20, (8, 3072))) % 256).astype(np.uint8)
        dump(name, dict(batch_label=name, labels=labels, data=data, filenames=[f'{i}.png' for i in range(8)]))
    dump('batches.meta', dict(label_names=['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                                           'ship', 'truck'], num_vis=3072, num_cases_per_batch=8))
    return root


def flowers(root: Path) -> Path:
    import scipy.io
    labels = np.array([1 + i % 3 for i in range(12)], dtype=np.uint8)
    for i in range(1, 13):
        write_png(root / 'jpg' / f'image_{i:05d}.jpg', (60 * int(labels[i - 1]), 90, 30))
    ids = np.arange(1, 13, dtype=np.uint16)
    scipy.io.savemat(root / 'imagelabels.mat', {'labels': labels[None]})
    scipy.io.savemat(root / 'setid.mat', {'trnid': ids[None, :6], 'valid': ids[None, 6:8], 'tstid': ids[None, 8:]})
    return root


def cars(root: Path) -> Path:
    import scipy.io
    base = root / 'stanford_cars'
    (base / 'devkit').mkdir(parents=True)
    names = np.empty((1, 3), dtype=object)
    names[0] = ['Maker A 2001', 'Maker B 2002', 'Maker C 2003']
    scipy.io.savemat(base / 'devkit' / 'cars_meta.mat', {'class_names': names})
    fields = ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname']
    for annos_path, folder, n in ((base / 'devkit' / 'cars_train_annos.mat', 'cars_train', 9),
                                  (base / 'cars_test_annos_withlabels.mat', 'cars_test', 6)):
        annos = np.zeros((1, n), dtype=[(f, 'O') for f in fields])
        for i in range(n):
            label, fname = 1 + i % 3, f'{i + 1:05d}.jpg'
            write_png(base / folder / fname, (70 * label, 50, 50))
            annos[0, i] = (np.uint8(1), np.uint8(2), np.uint8(14), np.uint8(14), np.uint8(label), fname)
        scipy.io.savemat(annos_path, {'annotations': annos})
    return root


def inat(root: Path, year: int = 2018, file_name=None) -> Path:
    """train{year}.json / val{year}.json; `file_name(split, i)` may replace the path of one entry."""
    image_id = 1
    for split, n in (('train', 8), ('val', 4)):
        images, annotations = [], []
        for i in range(n):
            cid = [3, 7][i % 2]
            name = f'train_val{year}/Plantae/{cid}/{split}_{i}.jpg'
            write_png(root / name, (100 + 50 * (cid == 7), 80, 80))
            if file_name and split == 'val' and i == 0:
                name = file_name
            images.append(dict(id=image_id, file_name=name, width=16, height=16))
            annotations.append(dict(id=image_id, image_id=image_id, category_id=cid))
            image_id += 1
        (root / f'{split}{year}.json').write_text(json.dumps(dict(
            images=images, annotations=annotations, categories=[dict(id=3, name='s3'), dict(id=7, name='s7')])))
    return root


class Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    import torch
    torch.save({'model': {'x': torch.zeros(1)}, 'payload': Evil(marker)}, path)
    return path


def foreign_checkpoint(path: Path) -> Path:
    """A real, safely loadable checkpoint of another architecture (a small CNN)."""
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                              torch.nn.Linear(8, 2))
    torch.save({'model': net.state_dict(), 'epoch': 3}, path)
    return path


# -- the cases --------------------------------------------------------------------------------------------------
CASES = []


def case(area: str, expect: str):
    def wrap(fn):
        CASES.append((fn.__name__, area, expect, fn))
        return fn
    return wrap


def finetune_args(data_dataset: str, data: Path, out: Path, ckpt: Path, *extra):
    return [*FINETUNE, '--dataset', data_dataset, '--data-path', data, '--output-dir', out, '--finetune', ckpt,
            '--epochs', '1', '--batch-size', '8', '--num-workers', '0', '--device', 'cpu', '--input-size', '16',
            *extra]


# Nothing is lost
@case('pretrain', 'a finished tiny demo run exits 0 and writes checkpoint.pth and log.jsonl')
def successful_run_exit_code(a: Audit):
    out = a.base_run()
    records = log_records(out)
    return 'good' if records else 'wrong-exit-0', f'exit 0, {len(records or [])} log record(s)'




@case('pretrain', 'main() as a console script calls it: sys.exit(main()) exits 0 after a successful run')
def console_script_exit_code(a: Audit):
    out = a.tmp('console') / 'out'
    argv = ['--cfg', 'demo', '--output-dir', str(out), *TINY, '--eval', '--resume', str(a.base_run() / 'checkpoint.pth'),
            '--cfg-options', *TINY_MODEL, 'data.classes=[0,1]']
    r = a.run([sys.executable, '-c', f'import sys; from pretrain.train import main; sys.exit(main({argv!r}))'])
    return success(r)


@case('pretrain', 're-run into the same --output-dir without --resume: refused (exit 2), earlier files untouched')
def rerun_same_output_dir(a: Audit):
    out = a.copy_base(a.tmp('rerun') / 'out')
    before = snapshot(out)
    r = a.train(out)
    if not kept(before, out):
        return 'lost-data', f'exit {r.rc}: the earlier checkpoint.pth/log.jsonl were overwritten'
    return refusal(r, '--resume', '--overwrite', wrong='trained into the earlier run')


@case('pretrain', 'a re-run that crashes at its first step (--input-size 17) leaves the earlier log.jsonl intact')
def failed_rerun_keeps_log(a: Audit):
    out = a.copy_base(a.tmp('failrerun') / 'out')
    before = snapshot(out)
    r = a.train(out, '--input-size', '17')
    if not kept(before, out):
        return 'lost-data', f'exit {r.rc}: the earlier log/checkpoint were emptied or overwritten ({r.headline()})'
    return refusal(r, '17', '--resume', '--overwrite')


@case('pretrain', '--overwrite: runs, the earlier files are moved aside (nothing deleted)')
def overwrite_moves_aside(a: Audit):
    out = a.copy_base(a.tmp('overwrite') / 'out')
    before = snapshot(out)
    r = a.train(out, '--overwrite')
    if not kept(before, out):
        return 'lost-data', f'exit {r.rc}: earlier files not kept'
    return success(r, lambda: None if (out / 'checkpoint.pth').is_file() else 'no new checkpoint')


@case('pretrain', '--resume on an empty output dir: starts fresh, says so, exit 0')
def resume_without_checkpoint(a: Audit):
    out = a.tmp('resume-empty') / 'out'
    r = a.train(out, '--resume')
    said = re.search(r'no checkpoint|fresh|from scratch|nothing to resume', r.out, re.I)
    return success(r, lambda: None if (out / 'checkpoint.pth').is_file() and said
                   else 'started without saying that there was nothing to resume')


@case('pretrain', '--resume with a changed --epochs: one warning naming what changed')
def resume_changed_epochs(a: Audit):
    out = a.copy_base(a.tmp('resume-epochs') / 'out')
    r = a.train(out, '--resume', '--epochs', '2')
    # a warning line (logging's WARNING, possibly abbreviated to 'W') or one that says the setting changed
    warned = any('epochs' in ln and re.search(r'warn|chang|--resume with|^\S+ (\S+ )?W ', ln, re.I)
                 for ln in r.lines())
    return success(r, lambda: None if warned else 'no warning that --epochs changed the schedule')




@case('pretrain', 'kill -9 after the first epoch record, then --resume: files agree, one record per epoch')
def kill9_then_resume(a: Audit):
    out = a.tmp('kill9') / 'out'
    cmd = [*TRAIN, '--output-dir', out, *TINY[2:], '--epochs', '3', '--cfg-options', *TINY_MODEL,
           'data.classes=[0,1]']
    p = a.start(cmd)
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None and not (log_records(out) or []):
        time.sleep(0.05)
    if p.poll() is not None:
        return 'unclear', f'run ended before the kill (exit {p.returncode})'
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = a.train(out, '--resume', '--epochs', '3')
    records = log_records(out)
    if r.traceback:
        return 'traceback', r.headline()
    if records is None:
        return 'lost-data', 'log.jsonl has a line that does not parse'
    epochs = [rec.get('epoch') for rec in records]
    if r.rc != 0:
        return 'unclear', f'resume exit {r.rc}: {r.headline()}'
    if sorted(epochs) != sorted(set(epochs)) or len(epochs) != 3:
        return 'lost-data', f'log.jsonl epochs after resume: {epochs} (expected one record for each of 3)'
    if list(out.glob('*.tmp')):
        return 'lost-data', 'leftover *.tmp files'
    return 'good', f'resumed; log epochs {epochs}'


@case('pretrain', 'a kill during writes left a half log line and a *.tmp: --resume cleans up, log stays parseable')
def half_written_files(a: Audit):
    out = a.copy_base(a.tmp('halfwrite') / 'out')
    with open(out / 'log.jsonl', 'a') as f:
        f.write('{"epoch": 1, "train_lo')
    (out / 'checkpoint.pth.tmp').write_bytes(b'PK\x03\x04partial')
    r = a.train(out, '--resume', '--epochs', '2')
    if r.traceback:
        return 'traceback', r.headline()
    records = log_records(out)
    if records is None:
        return 'lost-data', f'exit {r.rc}: log.jsonl keeps an unparseable line ({r.headline()})'
    if r.rc != 0:
        return refusal(r, 'log.jsonl')
    if list(out.glob('*.tmp')):
        return 'lost-data', 'the leftover checkpoint.pth.tmp is still there'
    return 'good', f'exit 0, log epochs {[x.get("epoch") for x in records]}'


@case('pretrain', 'killed between the log write and the checkpoint write: the stale record is dropped on resume')
def stale_log_record(a: Audit):
    out = a.copy_base(a.tmp('stale') / 'out')
    records = log_records(out)
    stale = dict(records[-1], epoch=1, train_loss=123.0)
    with open(out / 'log.jsonl', 'a') as f:
        f.write(json.dumps(stale) + '\n')
    r = a.train(out, '--resume', '--epochs', '2')
    if r.traceback:
        return 'traceback', r.headline()
    if r.rc != 0:
        return 'unclear', f'exit {r.rc}: {r.headline()}'
    epochs = [x.get('epoch') for x in log_records(out) or []]
    losses = [x.get('train_loss') for x in log_records(out) or []]
    if epochs.count(1) != 1 or 123.0 in losses:
        return 'lost-data', f'log.jsonl epochs {epochs}: the record newer than the checkpoint was kept'
    return 'good', f'exit 0, log epochs {epochs}'


@case('pretrain', 'non-finite loss (lr=1e30): stops with a non-zero exit, names the last finite checkpoint, saves '
                  'no diverged state')
def non_finite_loss(a: Audit):
    out = a.tmp('nan') / 'out'
    r = a.train(out, '--epochs', '2', options=['optimizer.lr=1e30'])
    losses = [x.get('train_loss') for x in log_records(out) or []]
    if r.traceback:
        return 'traceback', r.headline()
    if any(isinstance(v, float) and not np.isfinite(v) for v in losses):
        return ('wrong-exit-0' if r.rc == 0 else 'lost-data'), f'exit {r.rc} with train_loss {losses} recorded'
    if r.rc == 0:
        return 'unclear', f'exit 0, the loss stayed finite ({losses}): the case did not trigger'
    return refusal(r, 'finite', 'nan', 'inf')


def _signal_case(a: Audit, sig: int, name: str):
    out = a.tmp(name) / 'out'
    # all five digit classes at batch 8: ~90 steps per epoch, so the signal lands inside a training epoch
    p = a.start([*TRAIN, '--output-dir', out, *TINY[2:], '--epochs', '20', '--batch-size', '8',
                 '--cfg-options', *TINY_MODEL])
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None and not (log_records(out) or []):
        time.sleep(0.05)
    if p.poll() is not None:
        return 'unclear', f'run ended before the signal (exit {p.returncode})'
    time.sleep(0.5)  # inside the next epoch
    ckpt = out / 'checkpoint.pth'
    mtime = ckpt.stat().st_mtime if ckpt.is_file() else 0
    sent = time.time()
    os.kill(p.pid, sig)
    r = Audit.finish(p, 60, sent)
    if r.traceback:
        return 'traceback', r.headline()
    if r.rc == 0:
        return 'wrong-exit-0', 'exit 0 after a signal (a scheduler would not requeue)'
    saved = ckpt.is_file() and ckpt.stat().st_mtime > mtime
    if not saved:
        return 'lost-data', f'exit {r.rc} after {r.seconds:.0f} s, nothing saved since the last epoch'
    if r.seconds > 30:
        return 'unclear', f'saved but took {r.seconds:.0f} s (> 30 s)'
    return 'good', f'exit {r.rc} after {r.seconds:.1f} s, checkpoint saved: {r.headline()[:80]}'


@case('pretrain', 'SIGTERM mid-epoch: finish the step, save the position, non-zero documented exit within 30 s')
def sigterm_mid_epoch(a: Audit):
    return _signal_case(a, signal.SIGTERM, 'sigterm')


@case('pretrain', 'SIGINT (Ctrl-C) mid-epoch: same as SIGTERM, no traceback')
def sigint_mid_epoch(a: Audit):
    return _signal_case(a, signal.SIGINT, 'sigint')


@case('pretrain', 'SIGUSR1 (SLURM before a time limit): same as SIGTERM')
def sigusr1_mid_epoch(a: Audit):
    return _signal_case(a, signal.SIGUSR1, 'sigusr1')


# Wrong results never pass silently
@case('pretrain', 'python pretrain/train.py --eval --resume on its own checkpoint: exit 0 with a metric (control)')
def eval_own_checkpoint(a: Audit):
    out = a.tmp('eval-ok') / 'out'
    r = a.run([sys.executable, 'pretrain/train.py', '--cfg', 'demo', '--output-dir', out, *TINY, '--eval',
               '--resume', a.base_run() / 'checkpoint.pth', '--cfg-options', *TINY_MODEL, 'data.classes=[0,1]'])
    return success(r, lambda: None if re.search(r'top1', r.out) else 'no accuracy printed')


@case('pretrain', '--eval with no weights at all: refused')
def eval_without_weights(a: Audit):
    r = a.train(a.tmp('eval-none') / 'out', '--eval')
    return refusal(r, 'weights', '--resume', '--finetune', wrong='evaluated random weights')


@case('pretrain', '--eval --resume with a weights-only (exported backbone) checkpoint: refused, strict load')
def eval_weights_only(a: Audit):
    d = a.tmp('eval-wonly')
    a.run([*EXPORT, a.base_run() / 'checkpoint.pth', d / 'backbone.pth'])
    r = a.train(d / 'out', '--eval', '--resume', d / 'backbone.pth')
    return refusal(r, 'head', 'missing', 'unfilled', 'strict', wrong='evaluated with a random head')


@case('pretrain', '--resume with a weights-only (exported backbone) checkpoint: refused')
def resume_weights_only(a: Audit):
    d = a.tmp('resume-wonly')
    a.run([*EXPORT, a.base_run() / 'checkpoint.pth', d / 'backbone.pth'])
    r = a.train(d / 'out', '--resume', d / 'backbone.pth')
    return refusal(r, 'head', 'missing', 'unfilled', 'strict', 'training state', 'optimizer',
                   wrong='trained from a partly random model')


@case('pretrain', '--eval --resume with a wrong-architecture checkpoint (a small CNN): refused')
def eval_wrong_architecture(a: Audit):
    d = a.tmp('eval-arch')
    r = a.train(d / 'out', '--eval', '--resume', foreign_checkpoint(d / 'cnn.pth'))
    return refusal(r, 'unexpected', 'missing', 'unfilled', 'strict', 'tensor', wrong='evaluated random weights')


@case('pretrain', '--resume with a wrong-architecture checkpoint: refused')
def resume_wrong_architecture(a: Audit):
    d = a.tmp('resume-arch')
    r = a.train(d / 'out', '--resume', foreign_checkpoint(d / 'cnn.pth'))
    return refusal(r, 'unexpected', 'missing', 'unfilled', 'strict', 'tensor', wrong='trained random weights')


@case('pretrain', '--resume with a zero-byte checkpoint: one line naming the file')
def zero_byte_checkpoint(a: Audit):
    d = a.tmp('zero')
    (d / 'empty.pth').write_bytes(b'')
    return refusal(a.train(d / 'out', '--resume', d / 'empty.pth'), 'empty.pth')


@case('pretrain', '--resume with a truncated checkpoint: one line naming the file')
def truncated_checkpoint(a: Audit):
    d = a.tmp('trunc')
    data = (a.base_run() / 'checkpoint.pth').read_bytes()
    (d / 'cut.pth').write_bytes(data[:len(data) // 2])
    return refusal(a.train(d / 'out', '--resume', d / 'cut.pth'), 'cut.pth')


@case('pretrain', '--resume with a malicious pickle: refused, its code never runs')
def malicious_resume(a: Audit):
    d = a.tmp('evil-resume')
    r = a.train(d / 'out', '--resume', evil_checkpoint(d / 'evil.pth', d / 'PWNED'))
    if (d / 'PWNED').exists():
        return 'unsafe', 'the pickle ran its code'
    return refusal(r, 'pickle', 'evil.pth', 'weights_only')




@case('pretrain', 'unknown --cfg-options key (optimizer.lrr): exit 2 with "did you mean optimizer.lr"')
def unknown_cfg_key(a: Audit):
    r = a.train(a.tmp('unknown-key') / 'out', options=['optimizer.lrr=0.01'])
    return refusal(r, 'optimizer.lr', 'lrr', wrong='the unknown key was ignored')




@case('pretrain', '--epochs abc: names the flag and the expected type')
def epochs_not_a_number(a: Audit):
    r = a.run([*TRAIN, '--output-dir', a.tmp('epochs-abc') / 'out', '--epochs', 'abc'])
    return refusal(r, 'epochs')


@case('pretrain', 'optimizer.lr=fast: names the key and the expected type')
def lr_not_a_number(a: Audit):
    r = a.train(a.tmp('lr-fast') / 'out', options=['optimizer.lr=fast'])
    return refusal(r, 'optimizer.lr', wrong='a string learning rate was accepted')


@case('pretrain', 'epochs=ten through --cfg-options: names the key and the expected type')
def cfg_epochs_wrong_type(a: Audit):
    r = a.train(a.tmp('cfg-epochs') / 'out', options=['epochs=ten'])
    return refusal(r, 'epochs')




@case('pretrain', '--device tpu: one line naming the value and the choices')
def device_tpu(a: Audit):
    r = a.run([*TRAIN, '--output-dir', a.tmp('tpu') / 'out', *TINY, '--device', 'tpu',
               '--cfg-options', *TINY_MODEL, 'data.classes=[0,1]'])
    return refusal(r, 'tpu', 'device')


@case('pretrain', '--input-size 17 with 4-pixel patches: one line (not a multiple of the patch)')
def input_size_17(a: Audit):
    r = a.train(a.tmp('size17') / 'out', '--input-size', '17')
    return refusal(r, '17', 'patch', wrong='trained at a size that is not whole patches')




@case('pretrain', '--epochs -1: one line naming the flag (not timm\'s `assert t_initial > 0`)')
def epochs_negative(a: Audit):
    return refusal(a.train(a.tmp('epochs-neg') / 'out', '--epochs', '-1'), '--epochs -1',
                   wrong='a negative schedule was accepted')


@case('pretrain', 'data.classes=[]: refused (an empty selection is not "all classes")')
def empty_class_selection(a: Audit):
    return refusal(a.train(a.tmp('classes-empty') / 'out', options=['data.classes=[]']), 'data.classes',
                   wrong='trained on all the classes')


@case('pretrain', 'cosub.num_submodels=0: names the key (not advice about the ESD batch)')
def zero_submodels(a: Audit):
    r = a.train(a.tmp('submodels-0') / 'out', options=['cosub.num_submodels=0'])
    if r.rc != 0 and not r.traceback and 'per-device batch' in r.out:
        return 'unclear', r.headline()
    return refusal(r, 'num_submodels')


@case('pretrain', 'two runs started together into one --output-dir: the second is refused naming the first')
def concurrent_runs_same_dir(a: Audit):
    out = a.tmp('concurrent') / 'out'
    # long enough to be still running when the second one has started; stopped with SIGTERM once it is refused
    first = a.start([*TRAIN, '--output-dir', out, *TINY[2:], '--epochs', '200', '--cfg-options', *TINY_MODEL,
                     'data.classes=[0,1]'])
    t0 = time.time()
    while time.time() - t0 < 240 and first.poll() is None and not (out / 'train.log').is_file():
        time.sleep(0.05)
    second = a.train(out)
    running = first.poll() is None
    if running:
        first.send_signal(signal.SIGTERM)
    done = a.finish(first, 120, t0)
    if second.rc == 0:
        return 'lost-data', 'both ran into the same folder'
    if not running:
        return 'unclear', f'the first run ended (exit {done.rc}) before the second was refused: nothing was tried'
    if done.rc not in (0, 143) or not (out / 'checkpoint.pth').is_file():
        return 'lost-data', f'the first run ended with exit {done.rc}: {done.headline()}'
    return refusal(second, f'pid {first.pid}')


@case('pretrain', 'the lock file of a killed run (pid of a dead process): taken over, saying so, exit 0')
def stale_lock_taken_over(a: Audit):
    out = a.tmp('stale-lock') / 'out'
    out.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (out / '.lock').write_text(json.dumps({'pid': dead.pid, 'host': 'node1', 'started': '2026-01-01 00:00:00 UTC'}))
    r = a.train(out)
    return success(r, lambda: None if re.search(rf'took over .*pid {dead.pid}\b', r.out)
                   else 'no line saying whose stale lock it took over')


@case('pretrain', 'output dir under a regular file (unwritable): one line naming the path')
def unwritable_output_dir(a: Audit):
    d = a.tmp('unwritable')
    (d / 'afile').write_text('x')
    return refusal(a.train(d / 'afile' / 'out'), 'afile')


@case('pretrain', 'checkpoint.pth over a file size limit (ulimit -f: a full disk as the process meets it): one line '
               'naming it, no half-written file')
def file_size_limit_at_the_first_checkpoint(a: Audit):
    out = a.tmp('file-size-limit') / 'out'
    # 100 kB: the log, the plot and checkpoint_best.pth fit, checkpoint.pth (with the optimizer state) does not
    limited = ('import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '
               'resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000)); sys.argv = sys.argv[1:]; '
               'runpy.run_module("pretrain.train", run_name="__main__")')
    r = a.run([sys.executable, '-c', limited, 'train', '--cfg', 'demo', '--output-dir', out, *TINY,
               '--cfg-options', *TINY_MODEL, 'data.classes=[0,1]'])
    half = list(out.glob('*.tmp')) + list(out.glob('.*.tmp'))
    if half:
        return 'lost-data', f'exit {r.rc}: a half-written file is left: {half[0].name}'
    return refusal(r, f'cannot write {out / "checkpoint.pth"}')


@case('pretrain', 'a run refused before training (no data folder): one line, and no output folder, train.log or .lock '
                  'left behind')
def refused_run_leaves_nothing(a: Audit):
    d = a.tmp('no-data-leaves-nothing')
    r = a.train(d / 'new' / 'out', options=('data.type=imagenet', f'data.path={d / "nowhere"}',
                                            'data.train_split=train', 'data.val_split=val'))
    verdict = refusal(r, str(d / 'nowhere'))
    left = sorted(str(p.relative_to(d)) for p in d.rglob('*'))
    return ('unclear', f'refused, but left {", ".join(left)} behind') if verdict[0] == 'good' and left else verdict


@case('transfer', 'transfer/finetune.py --dataset inat18 and no other flag: names the missing --data-path first, '
                  'leaves nothing')
def finetune_without_flags(a: Audit):
    d = a.tmp('finetune-no-flags')
    r = a.run([sys.executable, str(a.repo / 'transfer' / 'finetune.py'), '--dataset', 'inat18'], cwd=d)
    verdict = refusal(r, '--data-path data/inat2018: no such folder')
    if verdict[0] == 'unclear' and '--data-path' not in r.headline():
        return 'unclear', f'names something else first: {r.headline()}'
    left = sorted(p.name for p in d.iterdir())
    return ('unclear', f'refused, but left {", ".join(left)} behind') if verdict[0] == 'good' and left else verdict


# Loaders: image folders through the pretraining command line
def image_run(a: Audit, name: str, setup, *extra, options=()):
    d = a.tmp(name)
    data = image_folders(d / 'data')
    setup(data)
    out = d / 'out'
    r = a.run([*TRAIN, '--output-dir', out, *TINY, '--batch-size', '4', *extra, '--cfg-options', *TINY_MODEL,
               'data.type=imagenet', f'data.path={data}', f'data.index_cache={d / "cache"}', 'data.repeated_aug=1',
               *options])
    return r, out, data




@case('loaders', 'an unreadable validation image: counted in the eval record (val_bad_images), never a stand-in')
def unreadable_val_image(a: Audit):
    r, out, _ = image_run(a, 'bad-val', lambda data: (data / 'val' / 'a' / 'a0.png').write_bytes(b'\x89PNG broken'))
    if r.rc != 0:
        return refusal(r, 'a0.png')
    rec = (log_records(out) or [{}])[-1]
    counted = {k: v for k, v in rec.items() if 'bad' in k and k.startswith('val') and v}
    return success(r, lambda: None if counted else f'eval record has no count of the unreadable image '
                                                   f'(val_n {rec.get("val_n")})')




@case('loaders', 'a decompression bomb in the training folder: refused (or skipped) naming the file')
def decompression_bomb(a: Audit):
    r, out, _ = image_run(a, 'bomb', lambda data: bomb_png(data / 'train' / 'a' / 'bomb.png'))
    if r.traceback:
        return 'traceback', r.headline()
    if 'bomb.png' not in r.out:
        return ('wrong-exit-0' if r.rc == 0 else 'unclear'), f'exit {r.rc}, the file is not named: {r.headline()}'
    return 'good', next(ln for ln in r.lines() if 'bomb.png' in ln)


@case('loaders', 'an empty class folder: refused naming it (not a silent extra class)')
def empty_class_folder(a: Audit):
    r, _, _ = image_run(a, 'empty-class', lambda data: (data / 'train' / 'zz_empty').mkdir())
    return refusal(r, 'zz_empty', wrong='the empty folder became a class')


@case('loaders', 'a symlink loop inside a class folder: one line naming it')
def symlink_loop(a: Audit):
    def setup(data):
        os.symlink('loop2', data / 'train' / 'a' / 'loop1.png')
        os.symlink('loop1.png', data / 'train' / 'a' / 'loop2')
    r, _, _ = image_run(a, 'symlink', setup)
    return refusal(r, 'loop', 'symlink')


@case('loaders', 'a missing --data-path: one line naming it')
def missing_data_path(a: Audit):
    d = a.tmp('nodata')
    r = a.train(d / 'out', options=['data.type=imagenet', f'data.path={d / "missing"}'])
    return refusal(r, 'missing')




@case('loaders', 'a damaged index cache: rebuilt with one warning, run exits 0')
def corrupt_index_cache(a: Audit):
    d = a.tmp('cache')
    data = image_folders(d / 'data')
    cache = d / 'cache'
    opts = [*TINY_MODEL, 'data.type=imagenet', f'data.path={data}', f'data.index_cache={cache}', 'data.repeated_aug=1']
    first = a.run([*TRAIN, '--output-dir', d / 'out1', *TINY, '--batch-size', '4', '--cfg-options', *opts])
    files = [p for p in cache.rglob('*') if p.is_file()] if cache.is_dir() else []
    if first.rc != 0 or not files:
        return 'unclear', f'no index cache written by a clean run (exit {first.rc})'
    for p in files:
        p.write_bytes(p.read_bytes()[:40])
    r = a.run([*TRAIN, '--output-dir', d / 'out2', *TINY, '--batch-size', '4', '--cfg-options', *opts])
    warned = any('cache' in ln.lower() and re.search(r'warn|rebuil|damaged|corrupt|unreadable|^\S+ (\S+ )?W ', ln, re.I)
                 for ln in r.lines())
    return success(r, lambda: None if warned else 'no warning about the damaged cache')


def convert(a: Audit, path: Path) -> tuple:
    """The tree's image loader on one file, as the training pipeline calls it: (exit, mean RGB or message)."""
    code = ('import sys, numpy as np; from pretrain.data import load_rgb; '
            'img = load_rgb(sys.argv[1]); a = np.asarray(img, dtype=float); '
            'print("MODE", img.mode, "MEAN", *a.reshape(-1, 3).mean(0).round(1), "TL", *a[0, 0])')
    r = a.run([sys.executable, '-c', code, path])
    m = re.search(r'MODE (\S+) MEAN (\S+) (\S+) (\S+) TL (\S+) (\S+) (\S+)', r.out)
    if r.rc != 0 or not m:
        return r, None, None
    return r, np.array([float(x) for x in m.groups()[1:4]]), np.array([float(x) for x in m.groups()[4:7]])


def judge_colours(a: Audit, path: Path, close, expected: str) -> tuple:
    """The tree's loader on `path`: good when `close(mean RGB)`, a refusal naming the file judged as one."""
    r, mean, _ = convert(a, path)
    if mean is None:
        return refusal(r, path.name)
    return ('good', f'mean {mean.tolist()}') if close(mean) else \
        ('wrong-exit-0', f'mean {mean.tolist()} (expected {expected})')


@case('loaders', 'a 16-bit grey PNG at mid grey (32768) becomes mid grey (~128), not white')
def png_16bit(a: Audit):
    path = a.tmp('png16') / 'grey16.png'
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)
    return judge_colours(a, path, lambda mean: abs(mean.mean() - 128) < 3, '~128')


@case('loaders', 'a palette PNG: its colours, as the RGB original')
def png_palette(a: Audit):
    path = a.tmp('palette') / 'p.png'
    Image.new('RGB', (8, 8), (10, 200, 90)).convert('P', palette=Image.ADAPTIVE, colors=4).save(path)
    return judge_colours(a, path, lambda mean: np.abs(mean - [10, 200, 90]).max() < 4, '[10, 200, 90]')


@case('loaders', 'a CMYK JPEG: close to its RGB source')
def jpeg_cmyk(a: Audit):
    path = a.tmp('cmyk') / 'c.jpg'
    Image.new('RGB', (16, 16), (200, 60, 30)).convert('CMYK').save(path, quality=95)
    return judge_colours(a, path, lambda mean: np.abs(mean - [200, 60, 30]).max() < 12, '~[200, 60, 30]')


@case('loaders', 'an RGBA PNG: transparent pixels do not show the hidden colour under them (composited on white)')
def png_alpha(a: Audit):
    path = a.tmp('alpha') / 'rgba.png'
    arr = np.zeros((8, 8, 4), dtype=np.uint8)   # fully transparent black ...
    arr[4:, :] = (0, 0, 255, 255)                # ... above an opaque blue half
    Image.fromarray(arr, 'RGBA').save(path)
    r, _, top_left = convert(a, path)
    if top_left is None:
        return refusal(r, 'rgba.png')
    return ('good', f'transparent pixel -> {top_left.tolist()}') if top_left.min() > 240 else \
        ('wrong-exit-0', f'transparent pixel -> {top_left.tolist()} (the hidden black, not the background)')


# Transfer datasets through transfer/finetune.py
def transfer_case(a: Audit, name: str, make, damage, dataset: str, *extra):
    d = a.tmp(name)
    data = make(d / 'data')
    if damage:
        damage(data)
    r = a.run(finetune_args(dataset, data, d / 'out', a.base_run() / 'checkpoint.pth', *extra))
    return r, d


@case('transfer', 'fine-tune on a generated CIFAR-10 (official pickles): exit 0 (control, exit code)')
def transfer_cifar_ok(a: Audit):
    r, d = transfer_case(a, 'cifar-ok', cifar10, None, 'cifar10')
    return success(r, lambda: None if log_records(d / 'out') else 'no log record')


@case('transfer', 'cosub-finetune as a console script (sys.exit(main())) exits 0 on success')
def transfer_console_exit_code(a: Audit):
    d = a.tmp('ft-console')
    data = cifar10(d / 'data')
    argv = [str(x) for x in finetune_args('cifar10', data, d / 'out', a.base_run() / 'checkpoint.pth')[2:]]
    r = a.run([sys.executable, '-c', f'import sys; from transfer.finetune import main; sys.exit(main({argv!r}))'])
    return success(r)


@case('transfer', 'a re-run of transfer/finetune.py into the same output dir: refused, nothing overwritten')
def transfer_rerun(a: Audit):
    d = a.tmp('ft-rerun')
    data = cifar10(d / 'data')
    args = finetune_args('cifar10', data, d / 'out', a.base_run() / 'checkpoint.pth')
    first = a.run(args)
    if first.rc != 0:
        return 'unclear', f'first fine-tuning failed: {first.headline()}'
    before = snapshot(d / 'out')
    r = a.run(args)
    if not kept(before, d / 'out'):
        return 'lost-data', f'exit {r.rc}: the earlier fine-tuning files were overwritten'
    return refusal(r, '--resume', '--overwrite')


@case('transfer', '--eval with no weights (transfer/finetune.py): refused')
def transfer_eval_no_weights(a: Audit):
    d = a.tmp('ft-eval')
    data = cifar10(d / 'data')
    r = a.run([*FINETUNE, '--dataset', 'cifar10', '--data-path', data, '--output-dir', d / 'out', '--eval',
               '--num-workers', '0', '--device', 'cpu', '--input-size', '16', '--batch-size', '8',
               '--cfg-options', *TINY_MODEL, 'model.patch_size=4'])
    return refusal(r, 'weights', '--resume', '--finetune', wrong='evaluated random weights')


@case('transfer', 'a truncated CIFAR pickle: one line naming the file')
def cifar_truncated(a: Audit):
    def damage(data):
        p = data / 'cifar-10-batches-py' / 'data_batch_3'
        p.write_bytes(p.read_bytes()[:100])
    r, _ = transfer_case(a, 'cifar-trunc', cifar10, damage, 'cifar10')
    return refusal(r, 'data_batch_3')






@case('transfer', 'a damaged Flowers imagelabels.mat: one line naming the file')
def flowers_damaged(a: Audit):
    r, _ = transfer_case(a, 'flowers-bad', flowers, lambda d: (d / 'imagelabels.mat').write_bytes(b'MATLAB 5.0 junk'),
                         'flowers')
    return refusal(r, 'imagelabels.mat')




@case('transfer', 'a missing Stanford Cars cars_meta.mat: one line naming the file')
def cars_missing_meta(a: Audit):
    r, _ = transfer_case(a, 'cars-miss', cars, lambda d: (d / 'stanford_cars' / 'devkit' / 'cars_meta.mat').unlink(),
                         'cars')
    return refusal(r, 'cars_meta.mat')




@case('transfer', 'a truncated iNaturalist JSON: one line naming the file')
def inat_truncated_json(a: Audit):
    def damage(d):
        p = d / 'val2018.json'
        p.write_text(p.read_text()[:50])
    r, _ = transfer_case(a, 'inat-json', inat, damage, 'inat18')
    return refusal(r, 'val2018.json')


@case('transfer', "an iNaturalist file_name with '..' (an existing file outside the root): refused")
def inat_dotdot(a: Audit):
    d = a.tmp('inat-dotdot')
    write_png(d / 'outside.jpg')
    data = inat(d / 'data', file_name='../outside.jpg')
    r = a.run(finetune_args('inat18', data, d / 'out', a.base_run() / 'checkpoint.pth'))
    return refusal(r, '..', 'outside', 'root', wrong='read a file outside the data root')


@case('transfer', 'an iNaturalist file_name that is an absolute path: refused')
def inat_absolute(a: Audit):
    d = a.tmp('inat-abs')
    outside = write_png(d / 'elsewhere.jpg')
    data = inat(d / 'data', file_name=str(outside))
    r = a.run(finetune_args('inat18', data, d / 'out', a.base_run() / 'checkpoint.pth'))
    return refusal(r, 'elsewhere.jpg', 'absolute', wrong='read a file outside the data root')


@case('transfer', '--finetune with a malicious pickle: refused, its code never runs')
def transfer_malicious(a: Audit):
    d = a.tmp('ft-evil')
    data = cifar10(d / 'data')
    r = a.run(finetune_args('cifar10', data, d / 'out', evil_checkpoint(d / 'evil.pth', d / 'PWNED')))
    if (d / 'PWNED').exists():
        return 'unsafe', 'the pickle ran its code'
    return refusal(r, 'pickle', 'evil.pth', 'weights_only')




# The checkpoint tool
@case('export', 'export_backbone on a good checkpoint: exit 0, a loadable file (control, exit code)')
def export_ok(a: Audit):
    d = a.tmp('export-ok')
    r = a.run([*EXPORT, a.base_run() / 'checkpoint.pth', d / 'backbone.pth'])
    return success(r, lambda: None if (d / 'backbone.pth').is_file() else 'no file written')


@case('export', 'cosub-export-backbone as a console script (sys.exit(main())) exits 0 on success')
def export_console_exit_code(a: Audit):
    d = a.tmp('export-console')
    argv = [str(a.base_run() / 'checkpoint.pth'), str(d / 'b.pth')]
    r = a.run([sys.executable, '-c', f'import sys; from backbones.export_backbone import main; sys.exit(main({argv!r}))'])
    return success(r)




@case('export', 'export_backbone on a zero-byte source: one line naming it')
def export_zero_byte(a: Audit):
    d = a.tmp('export-zero')
    (d / 'zero.pth').write_bytes(b'')
    return refusal(a.run([*EXPORT, d / 'zero.pth', d / 'out.pth']), 'zero.pth')




@case('export', 'export_backbone into a folder that does not exist: one line naming it')
def export_missing_dst_folder(a: Audit):
    d = a.tmp('export-dst')
    r = a.run([*EXPORT, a.base_run() / 'checkpoint.pth', d / 'no' / 'dir' / 'out.pth'])
    if r.rc == 0 and (d / 'no' / 'dir' / 'out.pth').is_file():
        return 'good', 'created the folder and wrote the file'
    return refusal(r, 'out.pth', 'no/dir')


@case('export', 'export_backbone with a malicious pickle: refused, never run')
def export_malicious(a: Audit):
    d = a.tmp('export-evil')
    r = a.run([*EXPORT, evil_checkpoint(d / 'evil.pth', d / 'PWNED'), d / 'out.pth'])
    if (d / 'PWNED').exists():
        return 'unsafe', 'the pickle ran its code'
    return refusal(r, 'pickle', 'evil.pth', 'weights_only')




# -- report -----------------------------------------------------------------------------------------------------
def git_sha(repo: Path) -> str:
    try:
        return subprocess.run(['git', '-C', str(repo), 'rev-parse', 'HEAD'], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repo', type=Path, required=True, help='the tree under test')
    p.add_argument('--out', type=Path, required=True, help='markdown report')
    p.add_argument('-k', default=None, help='only the cases whose name contains one of these (comma-separated)')
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix='fault-audit-') as tmp:
        audit = Audit(repo, Path(tmp))
        where = audit.run([sys.executable, '-c', 'import pretrain, backbones; print(pretrain.__file__)']).out.strip()
        print(f'tree under test: {repo} (git {git_sha(repo)[:10]}), imports {where}', flush=True)
        for name, area, expect, fn in CASES:
            if args.k and not any(k in name for k in args.k.split(',')):
                continue
            t = time.time()
            try:
                outcome, message = fn(audit)
            except Exception as e:  # the audit's own failure is reported, not hidden
                outcome, message = 'unclear', f'(audit could not run the case: {type(e).__name__}: {e})'
            message = ' '.join(str(message).split())[:160]
            rows.append((name, area, expect, outcome, message, time.time() - t))
            print(f'{len(rows):2d} {name:32s} {outcome:12s} {time.time() - t:5.1f}s  {message}', flush=True)
    counts = {c: sum(r[3] == c for r in rows) for c in CLASSES}
    summary = ', '.join(f'{c} {n}' for c, n in counts.items() if n or c in CLASSES[:4])
    print(f'\n{len(rows)} cases: {summary} ({time.time() - started:.0f} s)')
    when = dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    lines = [f'# Fault audit: {repo.name}', '',
             f'{when}; tree `{repo}` at git `{git_sha(repo)}`; {len(rows)} cases in {time.time() - started:.0f} s.',
             f'Command: `python tests/fault_audit.py --repo {repo} --out {args.out}`', '',
             f'**Counts: {summary}.**', '',
             'Classes: good = clear one-line error with a non-zero exit, or the correct behaviour; traceback = a '
             'Python traceback was printed; wrong-exit-0 = exit 0 with a wrong or silent result; lost-data = earlier '
             'files overwritten/truncated, files that disagree after a kill, or work thrown away on a signal that '
             'asks to save; unclear = non-zero exit without a traceback whose message does not name the cause (or the '
             'feature is missing); unsafe = a malicious pickle ran.', '',
             '| # | case | area | expectation | outcome | message (first line) |', '|---|---|---|---|---|---|']
    for i, (name, area, expect, outcome, message, _) in enumerate(rows, 1):
        lines.append(f'| {i} | {name} | {area} | {expect} | {outcome} | {message.replace("|", "/")} |')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
