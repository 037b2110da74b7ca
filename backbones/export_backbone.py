"""Convert a trained classifier checkpoint into a backbone-only one (no head, no training state).

    python -m backbones.export_backbone outputs/vit_b/checkpoint.pth vit_b_backbone.pth
    python -m backbones.export_backbone deit_3_base_224_1k.pth vit_b_backbone.safetensors

Reads every format `backbones.load_checkpoint` reads; writes our format (`.pth`, loads with weights_only=True)
or `.safetensors`, with official DeiT III names mapped to ours.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import (FORMAT, HEAD_KEYS, VERSION, CheckpointError, extract_state_dict, load_file,
                         official_to_timm_name, save_file)

_PREFIXES = ('module.', '_orig_mod.')


def export_backbone(src: str | Path, dst: str | Path, *, keep_head: bool = False, allow_pickle: bool = False) -> dict:
    ckpt = load_file(src, allow_pickle=allow_pickle)
    sd = extract_state_dict(ckpt, str(src))
    out = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        key = official_to_timm_name(key)
        if keep_head or not HEAD_KEYS.match(key):
            out[key] = value.detach().cpu().contiguous()
    meta = {k: ckpt[k] for k in ('model_name', 'img_size') if isinstance(ckpt, dict) and k in ckpt}
    dst = Path(dst)
    if dst.suffix == '.safetensors':
        save_file(out, dst)
    else:
        save_file(dict(format=FORMAT, version=VERSION, backbone_only=True, source=str(src), model=out, **meta), dst)
    return dict(tensors=len(out), dropped=len(sd) - len(out), **meta)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='checkpoint to convert (ours, official DeiT III, timm, .safetensors)')
    p.add_argument('dst', help='output file: .pth (our format) or .safetensors')
    p.add_argument('--keep-head', action='store_true', help='keep the classifier head')
    p.add_argument('--allow-pickle', action='store_true', help='allow a source that needs pickled code (trusted only)')
    args = p.parse_args(argv)
    try:
        info = export_backbone(args.src, args.dst, keep_head=args.keep_head, allow_pickle=args.allow_pickle)
    except CheckpointError as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.dst}: {info["tensors"]} tensors ({info["dropped"]} head tensors dropped)')


if __name__ == '__main__':
    main()
