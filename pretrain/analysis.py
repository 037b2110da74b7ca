"""Submodel analysis of trained ViTs: accuracy against the number of blocks kept (cosub paper, figure 4) and
the accuracy when exactly one block is removed (supplement, figure D.2). Writes a table and plots.

    python -m pretrain.analysis runs/vit_b_cosub/checkpoint.pth runs/vit_b_baseline/checkpoint.pth \\
        --data-path /datasets/imagenet --output-dir runs/analysis --max-images 10000

Each checkpoint carries the config it was trained with; --data-path and --cfg-options override it.
"""
from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from torch import nn
from torch.utils.data import DataLoader, Subset

import backbones
from backbones.errors import one_line_errors
from pretrain import data as data_lib
from pretrain.config import DEVICE, OneLineErrorParser, add_common_args, check_flag_minimums
from pretrain.plots import plot_block_ablation, plot_submodels


@contextlib.contextmanager
def kept_blocks(model: nn.Module, keep: Sequence[int]):
    """Run `model` with only the blocks `keep` (in order), the others removed."""
    if not isinstance(getattr(model, 'blocks', None), nn.ModuleList):
        raise ValueError(f'{type(model).__name__}: submodel analysis needs a model with a `blocks` list (our ViTs)')
    full = model.blocks
    model.blocks = nn.ModuleList(full[i] for i in keep)
    try:
        yield model
    finally:
        model.blocks = full


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    correct = total = 0
    for images, labels, _, _ in loader:
        logits = model(images.to(device))
        correct += (logits.argmax(dim=1).cpu() == labels).sum().item()
        total += len(labels)
    return 100.0 * correct / max(total, 1)


def load_trained(path: str, overrides: dict, allow_pickle: bool = False):
    ckpt = backbones.load_file(path, allow_pickle=allow_pickle)
    if 'config' not in ckpt:
        raise backbones.CheckpointError(f'{path}: no training config inside; expected a checkpoint written by '
                                        'pretrain/train.py or transfer/finetune.py')
    cfg = Config(ckpt['config'])
    cfg.merge_from_dict(overrides)
    args = dict(cfg.model)
    args.pop('num_classes', None)
    model = backbones.create_model(args.pop('name'), num_classes=ckpt['num_classes'], img_size=ckpt['img_size'],
                                   **args)
    model.load_state_dict(ckpt['model'])
    return model.eval(), cfg


def val_loader(cfg, max_images: Optional[int], batch_size: int, workers: int) -> DataLoader:
    splits = data_lib.build_splits(cfg.data)
    if splits.val is None:
        raise data_lib.DataError('submodel analysis needs a validation split (data.val_split)')
    dataset = data_lib.TransformedDataset(splits.val, data_lib.build_eval_transform(cfg.input_size,
                                                                                   cfg.data.eval_crop_ratio))
    if max_images and max_images < len(dataset):
        dataset = Subset(dataset, sorted(random.Random(0).sample(range(len(dataset)), max_images)))
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      collate_fn=data_lib.NormalisedBatches(cfg.data.mean, cfg.data.std))


def analyse(model: nn.Module, loader: DataLoader, device: torch.device, min_blocks: int, draws: int,
            single_block: bool, seed: int = 0) -> dict:
    from tqdm import tqdm
    depth = len(model.blocks)
    rng = random.Random(seed)
    plan = [(n, sorted(rng.sample(range(depth), n))) for n in range(depth - 1, min_blocks - 1, -1) for _ in range(draws)]
    full = accuracy(model, loader, device)
    by_count: Dict[int, List[float]] = {depth: [full]}
    for n, keep in tqdm(plan, desc='submodels'):
        with kept_blocks(model, keep):
            by_count.setdefault(n, []).append(accuracy(model, loader, device))
    result = dict(depth=depth, full=full, blocks_kept={n: sum(a) / len(a) for n, a in sorted(by_count.items())})
    if single_block:
        result['one_removed'] = []
        for i in tqdm(range(depth), desc='one block removed'):
            with kept_blocks(model, [j for j in range(depth) if j != i]):
                result['one_removed'].append(accuracy(model, loader, device))
    return result


def write_report(results: Dict[str, dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / 'submodels.json').write_text(json.dumps(results, indent=1))
    names = list(results)
    counts = sorted({n for r in results.values() for n in r['blocks_kept']}, reverse=True)
    lines = ['| blocks kept | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for n in counts:
        lines.append(f'| {n} | ' + ' | '.join(f"{results[k]['blocks_kept'].get(n, float('nan')):.2f}" for k in names) + ' |')
    if all('one_removed' in r for r in results.values()):
        lines += ['', '| block removed | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
        for i in range(max(r['depth'] for r in results.values())):
            lines.append(f'| {i + 1} | ' + ' | '.join(f"{results[k]['one_removed'][i]:.2f}" for k in names) + ' |')
        plot_block_ablation({k: r['one_removed'] for k, r in results.items()}, {k: r['full'] for k, r in results.items()},
                            out / 'block_ablation.png')
    table = '\n'.join(lines) + '\n'
    (out / 'submodels.md').write_text('Top-1 accuracy (%) of submodels\n\n' + table)
    plot_submodels({k: r['blocks_kept'] for k, r in results.items()}, out / 'submodels.png')
    return table


def main(argv=None) -> Dict[str, dict]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoints', nargs='+', help='checkpoints from pretrain/train.py (one curve each)')
    p.add_argument('--labels', nargs='+', help='names for the checkpoints (default: their folder names)')
    p.add_argument('--output-dir', default='outputs/analysis')
    p.add_argument('--min-blocks', type=int, default=None, help='fewest blocks kept (default: half the depth)')
    p.add_argument('--draws', type=int, default=3, help='random block subsets per count')
    p.add_argument('--max-images', type=int, default=None, help='evaluate on a fixed random subset of val')
    p.add_argument('--no-single-block', action='store_true', help='skip the one-block-removed ablation')
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--num-workers', type=int, default=4)
    p.add_argument('--device', default='auto', help='auto (a GPU when there is one), cpu, cuda or cuda:N')
    add_common_args(p, only=('--data-path', '--allow-pickle', '--cfg-options'))  # as pretrain/train.py's
    args = p.parse_args(argv)
    check_flag_minimums(p, args, min_blocks=1, draws=1, max_images=1, batch_size=1, num_workers=0)
    if not DEVICE.fullmatch(args.device):
        p.error(f'--device {args.device}: expected auto, cpu, cuda or cuda:N (a GPU index)')
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error(f'--device {args.device}: no CUDA GPU is available (use --device cpu)')
    overrides = dict(args.cfg_options)
    if args.data_path:
        overrides['data.path'] = args.data_path
    labels = args.labels or [Path(c).parent.name or Path(c).stem for c in args.checkpoints]
    if len(labels) != len(args.checkpoints):
        p.error('--labels needs one name per checkpoint')
    device = torch.device(args.device)
    results = {}
    with one_line_errors():  # a refused checkpoint or data, an unwritable --output-dir: one line (errors.py)
        for label, path in zip(labels, args.checkpoints):
            model, cfg = load_trained(path, overrides, args.allow_pickle)
            loader = val_loader(cfg, args.max_images, args.batch_size, args.num_workers)
            depth = len(model.blocks)
            results[label] = analyse(model.to(device), loader, device, args.min_blocks or (depth + 1) // 2,
                                     args.draws, not args.no_single_block)
        print(write_report(results, Path(args.output_dir)))
    print(f'wrote {args.output_dir}/submodels.{{md,json,png}}')
    return results


if __name__ == '__main__':
    main()
