"""What a person follows: train.log (and stdout) with a header (command line, git SHA, versions, world size,
config file), a plain line every `train.log_interval` steps, warnings and errors; the per-epoch records in
log.jsonl; the tqdm bar only on a terminal (a SLURM log is not filled with carriage returns)."""
from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger('cosub')
REPO_ROOT = Path(__file__).resolve().parents[2]


def setup_logging(output_dir: Optional[Path], is_main: bool) -> None:
    handlers = [logging.StreamHandler(sys.stdout)]
    if output_dir is not None and is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / 'train.log'))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format='%(asctime)s %(levelname).1s %(message)s', datefmt='%Y-%m-%d %H:%M:%S')
    logging.captureWarnings(True)  # Python warnings go to train.log too


def close_file_logs(folder: Path) -> None:
    """Close and detach the log files written into `folder` (train.log of a refused run, about to be removed)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder.resolve():
            root.removeHandler(handler)
            handler.close()


def flush_logs() -> None:
    for h in logging.getLogger().handlers:
        h.flush()


def git_sha() -> Optional[str]:
    if not (REPO_ROOT / '.git').exists():
        return None
    try:
        out = subprocess.run(['git', '-C', str(REPO_ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # not installed (mmseg is optional for pretraining)
        return 'not installed'


def log_run_header(cfg, world_size: int) -> None:
    logger.info('command: %s', shlex.join([sys.executable] + sys.argv))
    logger.info('git %s, torch %s, timm %s, mmseg %s, world size %d, config %s', git_sha() or '(not a checkout)',
                torch.__version__, _version('timm'), _version('mmseg'), world_size,
                Path(cfg.config_file).resolve() if cfg.get('config_file') else '(built in code)')


def show_bar() -> bool:
    return sys.stderr.isatty()


def progress_line(epoch: int, epochs: int, step: int, steps: int, loss: float, lr: float, img_per_s: float,
                  eta_s: float, device: torch.device) -> str:
    mem = (f'{torch.cuda.max_memory_allocated(device) / 2 ** 30:.1f} GiB'
           if device.type == 'cuda' else 'n/a (cpu)')
    eta = f'{int(eta_s // 3600)}:{int(eta_s % 3600 // 60):02d}:{int(eta_s % 60):02d}'
    return (f'epoch {epoch + 1}/{epochs} step {step}/{steps}  loss {loss:.4f}  lr {lr:.3e}  '
            f'{img_per_s:.1f} img/s  eta {eta}  peak memory {mem}')


def read_log(path: Path) -> list:
    """The records of log.jsonl; a last line cut short by a kill is left out (its epoch is redone on resume)."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f'{path}, line {i + 1}: not a JSON record (the file was edited?)') from None
            logger.warning('%s: the last record was cut short (a kill while writing it); left out', path)
    return records


def format_record(record: dict) -> str:
    return '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in record.items()
                     if k != 'epoch' and v is not None)
