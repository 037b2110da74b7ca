"""Parameters and FLOPs of our UperNet configs, next to the cosub paper's Table 13.

    python -m segmentation.complexity                      # prints a table (about a minute on CPU)
    python -m segmentation.complexity --out benchmarks/results/seg_complexity   # also writes .md and .json

Models are built on the meta device (no memory, no weights) and one inference forward (backbone, neck, UPerHead;
not the auxiliary head, which only trains) is counted with `torch.utils.flop_counter`. The papers' "FLOPs" are
multiply-accumulates, so we report GMACs = counted FLOPs / 2. Only matrix products, convolutions and attention
are counted (norms, activations, pooling and resizing are not), as in fvcore-style counters.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

CONFIGS = ('configs/upernet_vit_s_cosub.py', 'configs/upernet_vit_b_cosub.py', 'configs/upernet_vit_l_cosub.py')
# Table 13 (cosub paper) / Table 6.12 (thesis): #params (M), FLOPs (G, multiply-accumulates).
PAPER = {'vit_s': (41.7, 588), 'vit_b': (127.7, 1283), 'vit_l': (353.6, 2231)}
SIZES = ((512, 512), (512, 2048))


def build_segmentor(config: str, device: str = 'meta') -> Tuple[torch.nn.Module, object]:
    import segmentation  # noqa: F401  (compatibility layer before mmseg.models)
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # architecture only; no checkpoint is read
    cfg.model.pop('pretrained', None)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    with torch.device(device):
        model = MODELS.build(cfg.model)
    return model.eval(), cfg


def count_params(model: torch.nn.Module) -> Dict[str, int]:
    parts = {'backbone': 0, 'neck': 0, 'decode_head': 0, 'auxiliary_head': 0}
    for name, p in model.named_parameters():
        parts[name.split('.')[0]] = parts.get(name.split('.')[0], 0) + p.numel()
    parts['total'] = sum(parts.values())
    parts['inference'] = parts['total'] - parts['auxiliary_head']
    return parts


def count_macs(model: torch.nn.Module, size: Tuple[int, int], device: str = 'meta') -> Tuple[float, float]:
    """Multiply-accumulates of one inference forward (backbone + neck + decode head) at `size` (H, W): all, and
    those of the attention products (q k^T and attn v: batched matmuls / SDPA kernels)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(1, 3, *size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model._forward(x)  # mmseg: extract_feat + decode_head.forward (no auxiliary head, no final resize)
    ops = counter.get_flop_counts().get('Global', {})
    attention = sum(v for op, v in ops.items() if 'bmm' in str(op) or 'scaled_dot_product' in str(op))
    return counter.get_total_flops() / 2, attention / 2


def measure(configs: Sequence[str], sizes: Sequence[Tuple[int, int]] = SIZES) -> List[dict]:
    rows = []
    for config in configs:
        model, cfg = build_segmentor(config)
        arch = cfg.model.backbone.get('arch', cfg.model.backbone.get('model_name'))
        params = count_params(model)
        row = dict(config=config, arch=arch, params_m={k: round(v / 1e6, 2) for k, v in params.items()},
                   gmacs={}, gmacs_without_attention={})
        for h, w in sizes:
            total, attention = count_macs(model, (h, w))
            row['gmacs'][f'{h}x{w}'] = round(total / 1e9, 1)
            row['gmacs_without_attention'][f'{h}x{w}'] = round((total - attention) / 1e9, 1)
        if arch in PAPER:
            row['paper'] = dict(params_m=PAPER[arch][0], gflops_macs=PAPER[arch][1])
        rows.append(row)
    return rows


def versions() -> Dict[str, str]:
    import mmcv
    import mmengine
    import mmseg
    import timm
    return dict(python=platform.python_version(), torch=torch.__version__, mmseg=mmseg.__version__,
                mmengine=mmengine.__version__, mmcv=mmcv.__version__, timm=timm.__version__)


def to_markdown(rows: List[dict], meta: dict) -> str:
    sizes = list(rows[0]['gmacs'])
    head = ['config', 'params (M), all', 'params (M), w/o aux head', 'Table 13 params (M)']
    head += [f'GMACs {s}' for s in sizes] + [f'GMACs {s} w/o attention products' for s in sizes]
    head += ['Table 13 FLOPs (G)']
    lines = ['# UperNet complexity vs. cosub Table 13', '',
             f"Measured {meta['date']} with `{meta['command']}` "
             f"({', '.join(f'{k} {v}' for k, v in meta['versions'].items())}).",
             'Meta-device forward counted by torch.utils.flop_counter; GMACs = FLOPs / 2 (the papers\' "FLOPs" are '
             'multiply-accumulates); backbone + neck + UPerHead, without the auxiliary head; norms, activations, '
             'pooling and resizing not counted. Image size H x W.', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        paper = r.get('paper', {})
        cells = [f"`{r['config']}`", f"{r['params_m']['total']:.1f}", f"{r['params_m']['inference']:.1f}",
                 str(paper.get('params_m', '-'))]
        cells += [f"{r['gmacs'][s]:.0f}" for s in sizes]
        cells += [f"{r['gmacs_without_attention'][s]:.0f}" for s in sizes] + [str(paper.get('gflops_macs', '-'))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', meta.get('note', '')]
    return '\n'.join(lines).rstrip() + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Params and FLOPs of the UperNet configs vs. cosub Table 13')
    parser.add_argument('configs', nargs='*', default=list(CONFIGS), help=f'config files (default {CONFIGS})')
    parser.add_argument('--sizes', nargs='+', default=[f'{h}x{w}' for h, w in SIZES],
                        help='image sizes HxW (default 512x512 512x2048)')
    parser.add_argument('--out', help='write OUT.md and OUT.json (e.g. benchmarks/results/seg_complexity)')
    args = parser.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes]
        if any(len(s) != 2 or min(s) < 32 for s in sizes):
            raise ValueError
    except ValueError:
        parser.error(f'--sizes {" ".join(args.sizes)}: expected sizes like 512x512 (H x W, at least 32)')
    missing = [c for c in args.configs if not Path(c).is_file()]
    if missing:
        parser.error(f'config file not found: {", ".join(missing)} (run from the repository root)')
    rows = measure(args.configs, sizes)
    meta = dict(date=datetime.date.today().isoformat(), versions=versions(),
                command=' '.join(['python -m segmentation.complexity', *(sys.argv[1:] if argv is None else argv)]),
                device='meta (no computation)')
    meta['note'] = ('Table 13 does not state how its FLOPs were counted. Its numbers are reproduced (within 0.1%) '
                    'by the multiply-accumulates at 512x2048 (the usual size for UperNet FLOPs: Swin, XCiT, mmseg '
                    'get_flops) without the attention products q k^T and attn v, which module-level counters '
                    '(mmcv, fvcore without functional ops) do not see. With them, a 512x2048 forward costs more.')
    text = to_markdown(rows, meta)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix('.md').write_text(text)
        out.with_suffix('.json').write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + '\n')
        print(f'wrote {out.with_suffix(".md")} and {out.with_suffix(".json")}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
