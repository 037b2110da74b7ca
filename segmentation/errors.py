"""One line, not a traceback, for a failure a user can act on that ends a `mim train` / `mim test` run.

MMSeg's tools/train.py and tools/test.py are not ours: a failure of a segmentation run (the backbone's checkpoint
is missing, unsafe or does not fit; a `load_from` / `--checkpoint` file that is missing or refused; a `data_root`
or annotation file that does not exist; a full or read-only work_dir) reaches the top of their process as a
traceback through MMEngine's runner, far above the end of a long output. `import segmentation` (every config of
ours lists it in `custom_imports`) chains a `sys.excepthook` that asks the boundary of every entry point,
`backbones.errors.describe`, and prints what it describes as `error: <message>`; the process still exits with
code 1, as for any uncaught exception. Every other exception (a bug) keeps Python's traceback (or that of the
hook installed before ours).
"""
from __future__ import annotations

import sys

from backbones.errors import describe


def _one_line(previous):
    def hook(kind, value, traceback):
        described = describe(value)
        if described is None:
            previous(kind, value, traceback)
            return
        sys.stderr.write(f'error: {described[0]}\n')
        sys.stderr.flush()
    hook.one_line_errors = True
    return hook


def install() -> str:
    """Chain the hook once (idempotent); returns what it did."""
    if not getattr(sys.excepthook, 'one_line_errors', False):
        sys.excepthook = _one_line(sys.excepthook)
    return 'one line for what backbones.errors.describe knows'
