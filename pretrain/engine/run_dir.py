"""Run-directory safety: never write into an earlier run by accident, move it aside on --overwrite, clean up
what a kill left behind, write small files atomically, and turn an unwritable folder into one line.

Kill-safety: every file is replaced atomically (written to a `.tmp` beside it, then renamed) or appended and
fsync'ed (log.jsonl); at the end of an epoch the log record is written before the checkpoint, so after a kill
at any instant the log never lacks an epoch the checkpoint holds; on resume the records newer than the checkpoint
are dropped (and the TensorBoard events after its step purged), and "best" is recomputed from the log.

One run at a time per folder: a run holds an exclusive flock on `<output_dir>/.lock` for its whole life (rank 0
under torchrun); a second run into the same folder is refused (exit 2). The OS drops a flock when its process
ends, however it ends, so a killed run never leaves the folder locked; the file names its holder, so the next run
says whose lock it took over.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

from backbones.errors import writing

from .errors import TrainingError

logger = logging.getLogger('cosub')

# What makes a folder an earlier run: a checkpoint or a log of epochs.
RUN_FILES = ('checkpoint.pth', 'log.jsonl')
LOCK_FILE = '.lock'  # never moved by --overwrite, never deleted (see RunDirLock.release) but by a refused run
# What a run writes into its folder before it is accepted (prepare_output_dir, setup_logging): a refused run
# removes the ones it created (nothing_left_if_refused)
EARLY_FILES = (LOCK_FILE, 'train.log')


class OutputDirError(TrainingError):
    """The output folder holds an earlier run and neither --resume nor --overwrite was given, or another run is
    using it (exit code 2)."""
    exit_code = 2


def earlier_run(out: Path) -> list:
    return [name for name in RUN_FILES if (out / name).is_file() and (out / name).stat().st_size > 0]


def prepare_output_dir(out: Path, *, resume, overwrite: bool, eval_only: bool,
                       is_main: bool) -> Optional['RunDirLock']:
    """Before anything is written: refuse an earlier run (exit 2), or a folder another run is using (exit 2);
    on rank 0, lock the folder for this run (returned: release it when the run ends), move an earlier run aside
    with --overwrite, remove leftover *.tmp files, check the folder takes files. A refusal writes nothing."""
    found = [] if eval_only else earlier_run(out)
    if found and overwrite and resume:
        raise OutputDirError(f'--resume and --overwrite contradict each other for {out}: pass one of them')
    if found and not (resume or overwrite):
        holder = lock_holder(out)
        if holder is not None:
            raise in_use(out, holder)
        raise OutputDirError(f'{out} holds an earlier run ({", ".join(found)}): pass --resume to continue it, or '
                             f'--overwrite to move its files into {out}/previous-<UTC time>/ and start afresh')
    if not is_main:
        return None
    lock = lock_run_dir(out)
    try:
        _prepare(out, found, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def _prepare(out: Path, found: list, overwrite: bool) -> None:
    """A folder that cannot take our files fails here with the OSError naming it (one line: backbones/errors.py)."""
    out.mkdir(parents=True, exist_ok=True)
    if found and overwrite:
        previous = out / time.strftime('previous-%Y%m%dT%H%M%SZ', time.gmtime())
        previous.mkdir()
        for entry in out.iterdir():
            if entry != previous and not entry.name.startswith('previous-') and entry.name != LOCK_FILE:
                shutil.move(str(entry), str(previous / entry.name))
        logger.info('--overwrite: the earlier run in %s moved to %s', out, previous)
    for tmp in list(out.glob('*.tmp')) + list(out.glob('.*.tmp')):  # a write a kill interrupted
        tmp.unlink()
    with tempfile.TemporaryFile(dir=out):
        pass


class RunDirLock:
    """The flock of one run on its output folder (lock_run_dir); `release()` at the end of the run."""

    def __init__(self, path: Path, file, previous: dict):
        self.path, self.file, self.previous = path, file, previous

    def log_takeover(self) -> None:
        """Once logging is set up: one line when the lock file named a run that stopped without releasing it."""
        if self.previous:
            logger.warning('took over the lock of a stopped run (%s)', describe_holder(self.previous))

    def release(self) -> None:
        """Empty the file (the next run then knows this one ended), then unlock. The file stays: deleting it would
        let a run that opened it just before lock an unlinked file while a third one locks a new one."""
        if self.file.closed:
            return
        try:
            self.file.truncate(0)
            self.file.flush()
        except OSError:
            pass  # the flock goes anyway
        self.file.close()  # closing the descriptor drops the flock


def describe_holder(holder: dict) -> str:
    return (f'pid {holder.get("pid", "?")} on {holder.get("host", "?")}, '
            f'started {holder.get("started", "at an unknown time")}')


def _read_holder(f) -> dict:
    f.seek(0)
    try:
        holder = json.loads(f.read() or '{}')
    except ValueError:
        return {'pid': '?'}  # a file of other content: still somebody's lock
    return holder if isinstance(holder, dict) else {'pid': '?'}


def in_use(out: Path, holder: dict) -> OutputDirError:
    return OutputDirError(f'{out} is in use by another run ({describe_holder(holder)}): wait for it to end or '
                          'stop it, or choose another --output-dir')


def lock_holder(out: Path) -> Optional[dict]:
    """Who holds `<out>/.lock` now (what its file says), or None when nobody does; creates nothing."""
    try:
        f = open(out / LOCK_FILE)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(f)
        return None  # free (closing the file drops our shared lock)


def lock_run_dir(out: Path) -> RunDirLock:
    """Take `<out>/.lock` (creating `out`), without waiting: OutputDirError (exit 2) naming the folder and the
    holder's pid when another live run holds it. Writes this run's pid, host and start time into the file."""
    path = out / LOCK_FILE
    out.mkdir(parents=True, exist_ok=True)
    f = open(path, 'a+')  # not 'w': the holder's record must survive our open
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_holder(f)
        f.close()
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise TrainingError(f'cannot lock {path}: {e.strerror}; choose another --output-dir') from None
        raise in_use(out, holder) from None
    previous = _read_holder(f)
    f.seek(0)
    f.truncate(0)
    f.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                        'started': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}) + '\n')
    f.flush()
    return RunDirLock(path, f, previous)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f'.{path.name}.tmp')
    with writing(path):  # a full disk names the file (backbones/errors.py); the next run removes the .tmp
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def append_line(path: Path, line: str) -> None:
    with writing(path), open(path, 'a') as f:
        f.write(line + '\n')
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def nothing_left_if_refused(out: Optional[Path]) -> Iterator[None]:
    """Around everything a run does before it is accepted (its folder, lock and train.log are made first, then
    its data, model and checkpoint are read): when that raises, remove what this run created there, and the
    folders it made if they are empty then. An earlier run's files (those there before, or moved aside by
    --overwrite) are never touched; a file is this run's when it was absent before or is another file now."""
    if out is None:
        yield
        return
    made = list(itertools.takewhile(lambda p: not p.exists(), [out, *out.parents]))  # innermost first
    before = {name: _inode(out / name) for name in EARLY_FILES}
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # the refusal is what the user must read, not a failed clean-up
            _remove_refused(out, made, before)
        raise


def _remove_refused(out: Path, made: list, before: dict) -> None:
    from .logs import close_file_logs
    close_file_logs(out)
    if any(_inode(out / name) not in (None, before[name]) for name in EARLY_FILES):
        if not _remove_ours(out, before):
            return  # another run holds the folder now: all of it is theirs
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): the folders above hold something too
            return


def _inode(path: Path) -> Optional[int]:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _remove_ours(out: Path, before: dict) -> bool:
    """Delete the files of EARLY_FILES that are not those of `before` {name: inode}, holding the folder's lock
    (so that no run starting now loses its files); False when another run holds it. The lock file goes last,
    still locked: a run that opened it a moment before finds it locked and is refused, as during our run."""
    try:
        f = open(out / LOCK_FILE, 'a+')
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    with f:
        for name in sorted(EARLY_FILES, key=lambda name: name == LOCK_FILE):
            if _inode(out / name) != before[name]:
                (out / name).unlink()
    return True
