"""One line, not a traceback, for our errors that end a `mim train` / `mim test` run.

MMSeg's tools/train.py and tools/test.py are not ours: an error from our side of a segmentation run (the
backbone's checkpoint is missing, unsafe, or does not fit; a `load_from` / `--checkpoint` file that is missing
or refused by the weights-only loader of compat.py) reaches the top of their process as a traceback through
MMEngine's runner, with our one-line message at its end. `import segmentation` (every config of ours lists it in
`custom_imports`) chains a `sys.excepthook` that prints those errors, and only those, as `error: <message>`; the
process still exits with code 1, as for any uncaught exception. Every other exception keeps Python's traceback
(or that of the hook installed before ours).
"""
from __future__ import annotations

import sys

from backbones import CheckpointError

from .compat import MissingCheckpoint, RefusedCheckpoint

ONE_LINE_ERRORS = (CheckpointError, MissingCheckpoint, RefusedCheckpoint)


def _one_line(previous):
    def hook(kind, value, traceback):
        if isinstance(value, ONE_LINE_ERRORS):
            sys.stderr.write(f'error: {value}\n')
            sys.stderr.flush()
            return
        previous(kind, value, traceback)
    hook.one_line_errors = True
    return hook


def install() -> str:
    """Chain the hook once (idempotent); returns what it did."""
    if not getattr(sys.excepthook, 'one_line_errors', False):
        sys.excepthook = _one_line(sys.excepthook)
    return 'one line for ' + ', '.join(e.__name__ for e in ONE_LINE_ERRORS)
