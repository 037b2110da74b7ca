"""One error boundary for every entry point: a failure the user can act on ends the process in one line
(`error: <message>`) with its exit code; anything else (a bug of ours or of a dependency) keeps its traceback.

`describe(exc)` is the one place that decides, for an exception from anywhere (our code, torch, mmseg, mmengine,
PIL), whether it is such a failure and what the line says:
  - our refusals: `ValueError` and its subclasses (CheckpointError, DataError, the config errors: the project
    raises a ValueError for a value it refuses) and `Refusal` subclasses (TrainingError, ...): their message, exit
    code `exc.exit_code` (1 unless the class says otherwise);
  - an OSError with an errno a user can act on (no space, no permission, a read-only file system, a missing file
    or folder, a file where a folder is expected, ...), from whatever library raised it: the file or folder it
    names (`exc.filename`) and the cause in plain words; exit 1;
  - torch's RuntimeError for a write that failed inside its zip writer (no errno, no file name: a full disk
    most often); `save_file` (backbones/checkpoint.py) turns it into a WriteError naming the file first;
  - Ctrl-C: exit 130.
Users of the boundary: `with one_line_errors():` around a main() (pretrain/train.py and transfer/finetune.py
through pretrain/engine/command.py, pretrain.analysis, the SLURM launchers and their jobs, transfer.summary,
cosub-export-backbone), and the sys.excepthook of the processes whose main() is not ours (`mim train` /
`mim test`, installed by `import segmentation`: segmentation/errors.py).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple


class Refusal(Exception):
    """Base of our errors that are not ValueErrors (a run that cannot go on, a file that cannot be written, ...):
    the message is the whole story, the process ends with `exit_code`."""
    exit_code = 1


class WriteError(Refusal, OSError):
    """A file we write could not be written: the message names it, the cause and what is left of it."""


# errno -> the cause in plain words, and what the user can do; an OSError with another errno keeps its traceback
OS_FAILURES: Dict[int, Tuple[str, str]] = {
    errno.ENOSPC: ('no space left on the device', 'free space there or write elsewhere'),
    errno.EDQUOT: ('disk quota exceeded', 'free space there or write elsewhere'),
    errno.EFBIG: ('file too large for its file system', 'write elsewhere'),
    errno.EROFS: ('read-only file system', 'write elsewhere'),
    errno.EACCES: ('permission denied', 'change its permissions or use another path'),
    errno.EPERM: ('operation not permitted', 'change its permissions or use another path'),
    errno.ENOENT: ('no such file or folder', 'check the path'),
    errno.ENOTDIR: ('a part of the path is a file, not a folder', 'check the path'),
    errno.EISDIR: ('a folder, where a file is expected', 'check the path'),
    errno.EEXIST: ('a file of that name is in the way, not a folder', 'move it or use another path'),
    errno.ENAMETOOLONG: ('file name too long', 'use a shorter path'),
    errno.ELOOP: ('too many levels of symbolic links', 'check the links in the path'),
    errno.EMFILE: ('too many open files', 'raise the limit (ulimit -n) or lower data.num_workers'),
    errno.ENFILE: ('too many open files in the system', 'raise the limit or lower data.num_workers'),
    errno.EIO: ('input/output error (a failing disk or network file system)', 'check the device'),
}
# torch's zip writer reports a failed write with a RuntimeError that carries neither errno nor file name
TORCH_WRITE_FAILURES = ('PytorchStreamWriter failed', 'unexpected pos', 'file write failed')


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def os_failure(e: OSError) -> Optional[str]:
    """The line for an OSError a user can act on (naming its file or folder), or None."""
    if e.errno is None:  # raised with a sentence only (PIL's unidentified image, a library's "x not found")
        return first_line(e) if str(e).strip() else None
    if e.errno not in OS_FAILURES:
        return None
    cause, advice = OS_FAILURES[e.errno]
    where = ' -> '.join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f'{where}: {cause}; {advice}' if where else f'{cause} (the library did not name the file); {advice}'


def describe(exc: BaseException) -> Optional[Tuple[str, int]]:
    """(the one line, the exit code) for a failure the user can act on; None for anything else (a bug)."""
    if isinstance(exc, KeyboardInterrupt):
        return 'interrupted', 130
    if isinstance(exc, (Refusal, ValueError)):
        return str(exc), getattr(exc, 'exit_code', 1)
    if isinstance(exc, OSError):
        line = os_failure(exc)
        return (line, 1) if line is not None else None
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in TORCH_WRITE_FAILURES):
        return f'a file could not be written (torch: {first_line(exc)}); a full disk? free space or write ' \
               'elsewhere', 1
    return None


def write_failure(e: BaseException, path: Path) -> Optional[WriteError]:
    """What a failed write of `path` becomes (at its call site, where the file is known): a WriteError naming it,
    the cause (the errno's words, or torch's message and the free space left), and that an earlier file is
    intact; None for an exception that is not a failed write."""
    if isinstance(e, OSError) and e.errno in OS_FAILURES:
        cause, advice = OS_FAILURES[e.errno]
    elif isinstance(e, RuntimeError) and any(s in str(e) for s in TORCH_WRITE_FAILURES):
        try:
            free = f'{shutil.disk_usage(path.parent).free / 2 ** 20:.0f} MiB free there'
        except OSError:
            free = 'free space unknown'
        cause, advice = f'the write failed (torch: {first_line(e)}; {free})', 'free space there or write elsewhere'
    else:
        return None
    kept = f'; the previous {path.name} is intact' if path.exists() else ''
    return WriteError(f'cannot write {path}: {cause}{kept}; {advice}')


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Around the write of `path` (its call site, the one place the file is known): a failed write becomes a
    WriteError naming it (write_failure); anything else propagates as it is."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        failure = write_failure(e, Path(path))
        if failure is None:
            raise
        raise failure from None


def end_process(message: str, code: int) -> None:
    """Write the line to the open log files (train.log), then end with `error: <message>` on stderr."""
    record = logging.getLogger('cosub').makeRecord('cosub', logging.ERROR, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers:  # the terminal gets the line once, from sys.exit below
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()
    if code == 1:
        sys.exit(f'error: {message}')  # the message is SystemExit's code: callers in-process can read it
    print(f'error: {message}', file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def one_line_errors(exit_codes: Optional[dict] = None) -> Iterator[None]:
    """Around a main(): a failure `describe` knows ends the process in one line; anything else propagates.
    `exit_codes` {exception type: code} overrides the code for an entry point whose refusals exit otherwise."""
    try:
        yield
    except Exception as e:
        described = describe(e)
        if described is None:
            raise
        message, code = described
        code = next((c for kind, c in (exit_codes or {}).items() if isinstance(e, kind)), code)
        end_process(message, code)
    except KeyboardInterrupt as e:
        end_process(*describe(e))
