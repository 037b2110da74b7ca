"""Running the engine from a command line: every way a run can end maps to one line and an exit code.

    0    success
    1    a run that cannot go on (bad data, checkpoint or settings, non-finite loss, an output folder that cannot
         take the files: no space, no permission, read-only ...): one line, decided by backbones/errors.py
    2    bad command line, or the output dir holds an earlier run and neither --resume nor --overwrite was given
    130  a second Ctrl-C (the first one stops like SIGTERM)
    143  stopped on SIGTERM / SIGUSR1 / SIGINT after saving checkpoint.pth: rerun the same command with --resume

A run refused before it is accepted (no data, bad settings, a checkpoint that does not fit) leaves nothing behind
in its output folder (run_dir.nothing_left_if_refused).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional


from backbones.errors import end_process, one_line_errors

from .preemption import Preempted
from .run_dir import nothing_left_if_refused
from .trainer import Trainer, fit


def run_command(cfg, prepare: Optional[Callable] = None, on_preempted: Optional[Callable] = None) -> dict:
    """prepare(cfg) (it may return the data splits it read), then build the run and train it; returns the last
    record, or ends the process with an exit code (above). on_preempted(Preempted) runs before exit 143 (the
    SLURM job requeues itself there)."""
    with one_line_errors():
        try:
            splits = prepare(cfg) if prepare is not None else None
            with nothing_left_if_refused(Path(cfg.output_dir) if cfg.output_dir else None):
                trainer = Trainer(cfg, splits)  # every refusal is raised here, before the first step
            return fit(trainer)
        except Preempted as e:  # already logged and flushed
            if on_preempted is not None:
                on_preempted(e)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            end_process('interrupted twice: stopped without saving; the last checkpoint.pth is intact', 130)
