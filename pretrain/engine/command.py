"""Running the engine from a command line: every way a run can end maps to one line and an exit code.

    0    success
    1    a run that cannot go on (bad data, checkpoint or settings, non-finite loss, unwritable output dir)
    2    bad command line, or the output dir holds an earlier run and neither --resume nor --overwrite was given
    130  a second Ctrl-C (the first one stops like SIGTERM)
    143  stopped on SIGTERM / SIGUSR1 / SIGINT after saving checkpoint.pth: rerun the same command with --resume
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Optional

from backbones import CheckpointError

from ..data import DataError
from .errors import TrainingError
from .logs import log_error_to_file
from .preemption import Preempted
from .run_dir import UNWRITABLE, OutputDirError, unwritable_message
from .trainer import run

logger = logging.getLogger('cosub')


def fail(message: str, code: int = 1):
    """End the process with one line on stderr (and in train.log when it is open)."""
    log_error_to_file(message)
    if code == 1:
        sys.exit(f'error: {message}')
    print(f'error: {message}', file=sys.stderr)
    sys.exit(code)


def run_command(cfg, prepare: Optional[Callable] = None) -> dict:
    """prepare(cfg) then run(cfg); returns the last record, or ends the process with an exit code (above)."""
    try:
        if prepare is not None:
            prepare(cfg)
        return run(cfg)
    except Preempted as e:  # already logged and flushed
        sys.exit(e.exit_code)
    except OutputDirError as e:
        fail(str(e), e.exit_code)
    except (TrainingError, DataError, CheckpointError, ValueError) as e:
        fail(str(e), getattr(e, 'exit_code', 1))  # 2 for settings refused before anything ran (methods.MethodError)
    except OSError as e:
        if e.errno in UNWRITABLE:
            fail(unwritable_message(e))
        raise
    except KeyboardInterrupt:
        fail('interrupted twice: stopped without saving; the last checkpoint.pth is intact', 130)
