"""train.log / stdout logging and the per-epoch records in log.jsonl."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

logger = logging.getLogger('cosub')


def setup_logging(output_dir: Optional[Path], is_main: bool) -> None:
    handlers = [logging.StreamHandler(sys.stdout)]
    if output_dir is not None and is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / 'train.log'))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format='%(asctime)s %(message)s', datefmt='%H:%M:%S')


def read_log(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_record(record: dict) -> str:
    return '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in record.items()
                     if k != 'epoch' and v is not None)
