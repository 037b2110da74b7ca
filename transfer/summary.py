"""One table over the transfer runs, like cosub Table 14: best / last val_top1 per dataset, with the paper's
numbers beside it.

    python -m transfer.summary outputs/                                   # every run found below outputs/
    python -m transfer.summary outputs/transfer_cifar10 outputs/transfer_flowers --markdown table.md

A run is a folder with the engine's `log.jsonl` (and `config.py`, which names the dataset, model and whether
cosub was on); below a parent folder only transfer runs count (pretraining runs are skipped). Rows are (model,
pretrained checkpoint, cosub on/off during fine-tuning); a run that has not reached its last epoch is marked `*`.
Prints a text table and writes the same as markdown (default: transfer_summary.md in the folder given, or in
the current folder when several are given).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from backbones.errors import one_line_errors
from pretrain.config import OneLineErrorParser

DATASETS = ('cifar10', 'cifar100', 'flowers', 'cars', 'inat18', 'inat19')
TITLES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100', 'flowers': 'Flowers', 'cars': 'Cars',
          'inat18': 'iNat-18', 'inat19': 'iNat-19'}
# cosub paper Table 14 (top-1, %): ImageNet-1k pretraining, 224x224, crop ratio 1.0. The DeiT-III rows are
# also the DeiT III thesis Table 6.11.
PAPER: Dict[str, Tuple[float, ...]] = {
    'ViT-S DeiT-III': (98.9, 90.6, 96.4, 89.9, 67.1, 72.7),
    'ViT-B DeiT-III': (99.3, 92.5, 98.6, 93.4, 73.6, 78.0),
    'ViT-L DeiT-III': (99.3, 93.4, 98.9, 94.5, 75.6, 79.3),
    'ViT-S cosub': (99.1, 91.7, 97.4, 93.0, 70.1, 75.6),
    'ViT-B cosub': (99.1, 92.6, 98.4, 93.5, 74.1, 78.1),
    'ViT-L cosub': (99.4, 93.5, 98.8, 94.5, 76.2, 80.1),
}


class SummaryError(ValueError):
    pass


@dataclass
class Run:
    path: Path
    dataset: str
    model: str
    cosub: Optional[bool]
    epochs_done: int
    epochs_total: Optional[int]
    best: Optional[float]
    best_epoch: Optional[int]
    last: Optional[float]
    crop_ratio: Optional[float]
    config_file: str = ''
    init: str = ''  # what it was fine-tuned from: the checkpoint's folder name, or 'scratch'

    @property
    def is_transfer(self) -> bool:
        return self.dataset in DATASETS or 'transfer' in Path(self.config_file).parts

    @property
    def finished(self) -> bool:
        return self.epochs_total is None or self.epochs_done >= self.epochs_total

    @property
    def row(self) -> str:
        return (self.model + (f' from {self.init}' if self.init else '')
                + ('' if self.cosub is None else ', cosub' if self.cosub else ', no cosub'))

    def cell(self) -> str:
        if self.best is None:
            return 'no eval' + ('' if self.finished else '*')
        return f'{self.best:.1f} / {self.last:.1f}' + ('' if self.finished else '*')


def find_runs(paths: Sequence[str | Path]) -> List[Run]:
    """Runs named directly are all kept; below a parent folder only transfer runs (not e.g. pretraining)."""
    runs: Dict[Path, Run] = {}
    for p in map(Path, paths):
        if (p / 'log.jsonl').is_file():
            runs[p] = read_run(p)
        elif p.is_dir():
            found = [read_run(f.parent) for f in sorted(p.rglob('log.jsonl'))]
            found = [r for r in found if r.is_transfer]
            if not found:
                raise SummaryError(f'{p}: no transfer run (log.jsonl of a configs/transfer run) in this folder or '
                                   'below')
            runs.update((r.path, r) for r in found)
        else:
            raise SummaryError(f'{p}: no such folder; expected a run folder (with log.jsonl) or a folder of runs')
    return list(runs.values())


def _read_log(path: Path) -> List[dict]:
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise SummaryError(f'{path}:{n}: not a JSON record ({e})') from None
        if not isinstance(record, dict) or 'epoch' not in record:
            raise SummaryError(f'{path}:{n}: expected a record with an "epoch" key')
        records.append(record)
    return records


def _read_config(run: Path) -> dict:
    """The config the engine stored (config.py); empty when absent."""
    path = run / 'config.py'
    if not path.is_file():
        return {}
    from mmengine.config import Config
    try:
        return Config.fromfile(str(path)).to_dict()
    except Exception as e:  # mmengine raises several types for a damaged file
        raise SummaryError(f'{path}: not a readable config ({e})') from None


def _init_name(cfg: dict) -> str:
    if not cfg:
        return ''
    ckpt = cfg.get('finetune')
    if not ckpt:
        return 'scratch'
    path = Path(ckpt)
    return path.parent.name if path.stem.startswith('checkpoint') and path.parent.name else path.stem


def read_run(run: Path) -> Run:
    records = _read_log(run / 'log.jsonl')
    cfg = _read_config(run)
    dataset = (cfg.get('data') or {}).get('type')
    if not dataset:  # no config: finetune's default folder name is transfer_<dataset>
        dataset = run.name.removeprefix('transfer_')
    evals = [(r['epoch'], r['val_top1']) for r in records if r.get('val_top1') is not None]
    best = max(evals, key=lambda e: e[1]) if evals else None
    return Run(path=run, dataset=dataset, model=(cfg.get('model') or {}).get('name') or '?',
               cosub=(cfg.get('cosub') or {}).get('enabled'), epochs_done=len(records),
               epochs_total=cfg.get('epochs'), best=best[1] if best else None, best_epoch=best[0] if best else None,
               last=evals[-1][1] if evals else None, crop_ratio=(cfg.get('data') or {}).get('eval_crop_ratio'),
               config_file=str(cfg.get('config_file') or ''), init=_init_name(cfg))


def build_table(runs: List[Run]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows: one row per (model, checkpoint, cosub), another when a dataset appears twice in a row."""
    columns = list(DATASETS) + sorted({r.dataset for r in runs} - set(DATASETS))
    rows: List[Tuple[str, Dict[str, str]]] = []
    for run in runs:
        for label, cells in rows:
            if label.split(' #')[0] == run.row and run.dataset not in cells:
                cells[run.dataset] = run.cell()
                break
        else:
            same = sum(label.split(' #')[0] == run.row for label, _ in rows)
            rows.append((run.row + (f' #{same + 1}' if same else ''), {run.dataset: run.cell()}))
    header = ['model'] + [TITLES.get(c, c) for c in columns]
    body = [[label] + [cells.get(c, '-') for c in columns] for label, cells in rows]
    paper = [[f'paper: {name}'] + [f'{v:.1f}' for v in values] + ['-'] * (len(columns) - len(DATASETS))
             for name, values in PAPER.items()]
    return header, body + paper


def to_text(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(row: List[str]) -> str:  # model names left-aligned, numbers right-aligned
        return '  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return '\n'.join([line(header), '  '.join('-' * w for w in widths)] + [line(r) for r in rows])


def to_markdown(header: List[str], rows: List[List[str]], runs: List[Run]) -> str:
    out = ['# Transfer learning (cosub Table 14)', '',
           'Top-1 (%) on each dataset\'s evaluation split: best / last epoch. `*`: run not finished. '
           '"paper" rows: cosub Table 14 (ImageNet-1k pretraining, 224x224, crop ratio 1.0).', '',
           '| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
    out += ['| ' + ' | '.join(r) + ' |' for r in rows]
    out += ['', '## Runs', '', '| run | dataset | model | from | cosub | epochs | best (epoch) | last | eval crop |',
            '|---|---|---|---|---|---:|---:|---:|---:|']
    for r in runs:
        best = f'{r.best:.2f} ({r.best_epoch + 1})' if r.best is not None else '-'
        last = f'{r.last:.2f}' if r.last is not None else '-'
        total = f'{r.epochs_done}/{r.epochs_total}' if r.epochs_total else str(r.epochs_done)
        cosub = '?' if r.cosub is None else 'on' if r.cosub else 'off'
        crop = r.crop_ratio if r.crop_ratio is not None else '-'
        out.append(f'| {r.path} | {r.dataset} | {r.model} | {r.init or "?"} | {cosub} | {total} | {best} | {last} '
                   f'| {crop} |')
    return '\n'.join(out) + '\n'


def main(argv=None) -> List[Run]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', help='run folders (with log.jsonl) or folders holding them')
    p.add_argument('--markdown', help='where to write the markdown table (default: see above)')
    args = p.parse_args(argv)
    with one_line_errors():  # an unreadable run, an unwritable --markdown: one line (backbones/errors.py)
        runs = find_runs(args.runs)
        header, rows = build_table(runs)
        print(to_text(header, rows))
        single = Path(args.runs[0])
        default = (single if len(args.runs) == 1 and not (single / 'log.jsonl').is_file() else Path('.'))
        md = Path(args.markdown) if args.markdown else default / 'transfer_summary.md'
        md.write_text(to_markdown(header, rows, runs))
    print(f'\nmarkdown written to {md}')
    return runs


if __name__ == '__main__':
    main()
