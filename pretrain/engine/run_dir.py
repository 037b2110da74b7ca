"""Run-directory safety: never write into an earlier run by accident, move it aside on --overwrite, clean up
what a kill left behind, write small files atomically, and turn an unwritable folder into one line.

Kill-safety: every file is replaced atomically (written to a `.tmp` beside it, then renamed) or appended and
fsync'ed (log.jsonl); at the end of an epoch the log record is written before the checkpoint, so after a kill
at any instant the log never lacks an epoch the checkpoint holds; on resume the records newer than the checkpoint
are dropped (and the TensorBoard events after its step purged), and "best" is recomputed from the log.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import TrainingError

logger = logging.getLogger('cosub')

# What makes a folder an earlier run: a checkpoint or a log of epochs.
RUN_FILES = ('checkpoint.pth', 'log.jsonl')
# errno values that mean "this folder cannot take our files", answered with one line instead of a traceback
UNWRITABLE = {errno.EACCES: 'permission denied', errno.EROFS: 'read-only file system',
              errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
              errno.ENOTDIR: 'a part of the path is a file, not a folder',
              errno.EEXIST: 'a file of that name is in the way, not a folder'}


class OutputDirError(TrainingError):
    """The output folder holds an earlier run and neither --resume nor --overwrite was given (exit code 2)."""
    exit_code = 2


def earlier_run(out: Path) -> list:
    return [name for name in RUN_FILES if (out / name).is_file() and (out / name).stat().st_size > 0]


def unwritable_message(e: OSError, what: str = '') -> str:
    where = e.filename or what
    advice = 'free space or choose' if e.errno in (errno.ENOSPC, errno.EDQUOT) else 'choose'
    return f'cannot write {where}: {UNWRITABLE.get(e.errno, e.strerror)}; {advice} another --output-dir'


def prepare_output_dir(out: Path, *, resume, overwrite: bool, eval_only: bool, is_main: bool) -> None:
    """Before anything is written: refuse an earlier run (exit 2), or move it aside with --overwrite; remove
    leftover *.tmp files; check the folder takes files."""
    found = [] if eval_only else earlier_run(out)
    if found and overwrite and resume:
        raise OutputDirError(f'--resume and --overwrite contradict each other for {out}: pass one of them')
    if found and not (resume or overwrite):
        raise OutputDirError(f'{out} holds an earlier run ({", ".join(found)}): pass --resume to continue it, or '
                             f'--overwrite to move its files into {out}/previous-<UTC time>/ and start afresh')
    if not is_main:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        if found and overwrite:
            previous = out / time.strftime('previous-%Y%m%dT%H%M%SZ', time.gmtime())
            previous.mkdir()
            for entry in out.iterdir():
                if entry != previous and not entry.name.startswith('previous-'):
                    shutil.move(str(entry), str(previous / entry.name))
            logger.info('--overwrite: the earlier run in %s moved to %s', out, previous)
        for tmp in list(out.glob('*.tmp')) + list(out.glob('.*.tmp')):  # a write a kill interrupted
            tmp.unlink()
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        if e.errno in UNWRITABLE:
            raise TrainingError(unwritable_message(e, str(out))) from None
        raise


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f'.{path.name}.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_line(path: Path, line: str) -> None:
    with open(path, 'a') as f:
        f.write(line + '\n')
        f.flush()
        os.fsync(f.fileno())
