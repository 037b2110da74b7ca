"""Export a trained checkpoint: a backbone-only file, or a Hugging Face Hub folder that timm loads by itself.

    python -m backbones.export_backbone outputs/vit_b/checkpoint.pth vit_b_backbone.pth
    python -m backbones.export_backbone deit_3_base_224_1k.pth vit_b_backbone.safetensors
    cosub-export-backbone outputs/vit_b/checkpoint.pth --hub-dir hub/cosub_vit_b

A file export (DST) strips the head and training state; it reads every format `backbones.load_checkpoint` reads
and writes our format (`.pth`, loads with weights_only=True, naming the architecture) or `.safetensors`, official
DeiT III names mapped. `--weights peer_model` / `model_ema` exports co-training's second model / the mean teacher's
EMA instead of the run's model (any extra weights the checkpoint describes under its 'saved_weights' key). The architecture is the one the checkpoint names, else a ViT read from the tensor
shapes (an official DeiT III file), else --model; what is written is checked to load strictly into it.

A Hub export (--hub-dir) writes `model.safetensors`, `config.json` in timm's format and a model card `README.md`
(training config, the evaluation numbers of the run's `log.jsonl`, citation). The architecture it names is timm's
own `deit3_*` (our ViTs have timm's parameter names and computation; shapes that differ from the named size go
into `model_args`), checked by comparing the two models' outputs, so that in any Python with timm:
    timm.create_model('local-dir:hub/cosub_vit_b', pretrained=True)      # or 'hf-hub:<you>/<repo>' once uploaded
The same folder loads in Hugging Face transformers (its TimmWrapper): `AutoModelForImageClassification`,
`AutoModel` (no head) and `AutoImageProcessor` (timm's evaluation transform) `.from_pretrained('hub/cosub_vit_b')`.
Upload with `huggingface_hub.upload_folder(repo_id=..., folder_path='hub/cosub_vit_b')`. The head is kept
(`timm.create_model(..., num_classes=0)` drops it).

Nothing is overwritten without --overwrite. Exit status: 0 written; 2 refused before anything was written (the
output exists, a checkpoint that cannot be read or holds no such weights or no model), one line naming it; 1 the
output could not be written.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import timm

from .checkpoint import (FORMAT, HEAD_KEYS, VERSION, CheckpointError, architecture_of, check_fits, load_file,
                         official_to_timm_name, save_file, select_weights, trained_weights)
from .errors import one_line_errors

_PREFIXES = ('module.', '_orig_mod.')


def _check_output_file(dst: Path, overwrite: bool) -> None:
    if dst.is_dir():
        raise CheckpointError(f'{dst}: is a folder; DST is the file to write (.pth or .safetensors), a Hub folder '
                              'is --hub-dir DIR')
    if dst.exists() and not overwrite:
        raise CheckpointError(f'{dst}: exists; nothing is overwritten: give a new file name, or --overwrite to '
                              'replace it')


def export_backbone(src: str | Path, dst: str | Path, *, keep_head: bool = False, weights: str = 'model',
                    model_name: str | None = None, overwrite: bool = False, allow_pickle: bool = False) -> dict:
    """Write the backbone of `weights` in `src` to `dst`; returns what was written (tensors, dropped, model_name,
    model_args). Refuses an existing `dst` unless `overwrite`, and weights that do not load into an architecture."""
    dst = Path(dst)
    _check_output_file(dst, overwrite)
    ckpt = load_file(src, allow_pickle=allow_pickle)
    sd = select_weights(ckpt, weights, str(src))
    renamed = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        renamed[official_to_timm_name(key)] = value.detach().cpu().contiguous()
    name, args = architecture_of(ckpt, renamed, str(src), model_name)
    out = {k: v for k, v in renamed.items() if keep_head or not HEAD_KEYS.match(k)}
    if len(out) < len(renamed):
        args['num_classes'] = 0  # the head is gone: what loads these weights is the model without one
    check_fits(out, name, args, f'{src} ({weights})' if weights != 'model' else str(src))
    shape = {k: v for k, v in args.items() if k not in ('num_classes', 'img_size')}
    config = ckpt.get('config') if isinstance(ckpt, dict) and ckpt.get('model_name') == name else None
    # the training config when there is one (read by --finetune and --hub-dir), else the shape
    meta = dict(model_name=name, weights=weights, config=config or dict(model=dict(name=name, **shape)))
    if 'img_size' in args:
        meta['img_size'] = args['img_size']
    if dst.suffix == '.safetensors':
        save_file(out, dst)
    else:
        save_file(dict(format=FORMAT, version=VERSION, backbone_only=True, source=str(src), model=out, **meta), dst)
    return dict(tensors=len(out), dropped=len(renamed) - len(out), model_name=name, model_args=shape,
                img_size=args.get('img_size'), weights=weights)


# -- Hugging Face Hub folder ------------------------------------------------------------------------------------
# our ViT -> the size name of timm's nearest deit3_* (ViT-g has none: timm's DeiT III ViT-H in the same block, with
# ViT-g's shape in model_args); REFERENCE_ARCH: the shape timm's deit3_<size> has
TIMM_SIZES = {'vit_s': 'small', 'vit_m': 'medium', 'vit_b': 'base', 'vit_l': 'large', 'vit_h': 'huge', 'vit_g': 'huge'}
REFERENCE_ARCH = {'small': 'vit_s', 'medium': 'vit_m', 'base': 'vit_b', 'large': 'vit_l', 'huge': 'vit_h'}
CITATION = """@inproceedings{touvron2023cosub,
  title     = {Co-training $2^L$ Submodels for Visual Recognition},
  author    = {Touvron, Hugo and Cord, Matthieu and Oquab, Maxime and Bojanowski, Piotr and Verbeek, Jakob and
               J{\\'e}gou, Herv{\\'e}},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}"""


def timm_architecture(model_name: str, model_args: dict, img_size: int) -> tuple:
    """(timm architecture, its model_args) with the same weights as our `model_name` built with `model_args`.

    Our ViTs -> timm's `deit3_<size>_patch<p>_<res>` (the nearest one: other shapes and resolutions are passed as
    model_args); a timm architecture trained here keeps its own name.
    """
    from .vit import VIT_ARCHS, vit_shape
    if model_name not in VIT_ARCHS:
        return model_name, dict(model_args, img_size=img_size) if img_size else dict(model_args)
    shape = dict(vit_shape(model_name), **model_args)
    size = TIMM_SIZES.get(model_name, 'small')  # vit_t: DeiT III has no tiny; small with our shape in model_args
    name = f'deit3_{size}_patch{shape["patch_size"]}_{img_size}'
    if not timm.is_model(name):
        name = next(n for n in (f'deit3_{size}_patch{shape["patch_size"]}_224', f'deit3_{size}_patch16_224')
                    if timm.is_model(n))
    defaults = dict(vit_shape(REFERENCE_ARCH[size]), mlp_ratio=4.0, qkv_bias=True, global_pool='token', in_chans=3)
    args = {k: v for k, v in shape.items() if k not in defaults or v != defaults[k]}
    if 'init_values' in args:  # a LayerScale's initial value is replaced by the weights; None: no LayerScale, which
        # timm's ViT reads from 0 as well (timm.create_model drops arguments that are None)
        if args['init_values'] is None:
            args['init_values'] = 0
        else:
            del args['init_values']
    if args.get('global_pool') == 'avg':
        args['fc_norm'] = False  # ours pools after the final norm; timm's default for 'avg' is a norm after pooling
    if int(name.rsplit('_', 1)[1]) != img_size:
        args['img_size'] = img_size
    return name, args


def _eval_numbers(src: Path, suffix: str = '') -> tuple:
    """(last record, best val_top1 record) of the log.jsonl next to the checkpoint, or (None, None); with `suffix`
    ('_peer', '_ema') the records of that model, its metrics under the plain names."""
    log = src.parent / 'log.jsonl'
    if not log.is_file():
        return None, None
    records = []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CheckpointError(f'{log}:{n}: not a JSON line; expected one record per epoch') from None
            if suffix:
                record = {k.removesuffix(suffix): v for k, v in record.items() if k.endswith(suffix) or k == 'epoch'}
            records.append(record)
    with_top1 = [r for r in records if isinstance(r.get('val_top1'), (int, float))]
    return (records[-1] if records else None), (max(with_top1, key=lambda r: r['val_top1']) if with_top1 else None)


def _model_card(src: Path, architecture: str, model_args: dict, model_name: str, num_classes: int, config: dict,
                img_size: int, weights: str, about: dict) -> str:
    """README.md of `weights` in `src`; `about`: their description in the checkpoint (checkpoint.trained_weights),
    whose title names them and whose suffix picks their metrics in log.jsonl."""
    title, suffix = about['title'], about['suffix']
    last, best = _eval_numbers(src, suffix)
    metric_keys = ('epoch', 'val_top1', 'val_top5', 'val_loss', 'v2_top1', 'v2_top5', 'real_top1', 'real_top5')
    lines = ['---', 'library_name: timm', 'license: apache-2.0', 'tags:', '- image-classification', '- timm',
             '- cosub', '---', '', f'# {model_name} trained with cosub', '',
             f'A DeiT III Vision Transformer (`{model_name}`, {img_size}x{img_size}, {num_classes} classes) trained '
             'with submodel co-training (cosub) and efficient stochastic depth, exported from '
             f'`{src.name}`' + (f' (`{weights}`: {title})' if title else '') + ' by `cosub-export-backbone`. '
             f'Architecture in timm: `{architecture}`'
             + (f' with `{json.dumps(model_args)}`.' if model_args else '.'), '',
             '## Use', '', '```python', 'import timm',
             "model = timm.create_model('hf-hub:<owner>/<repo>', pretrained=True)  # or 'local-dir:<this folder>'",
             'model.eval()', 'config = timm.data.resolve_data_config({}, model=model)',
             'transform = timm.data.create_transform(**config)', '```', '', '## Evaluation', '']
    if last is None:
        lines.append(f'No `log.jsonl` next to `{src.name}`: no evaluation numbers recorded.')
    else:
        lines += ['| record | ' + ' | '.join(k for k in metric_keys if k in last) + ' |',
                  '|---|' + '---|' * sum(k in last for k in metric_keys)]
        for row, record in (('last epoch', last), ('best val_top1', best)):
            if record is not None:
                lines.append(f'| {row} | ' + ' | '.join(f'{record[k]:.4g}' if isinstance(record.get(k), float)
                                                       else str(record.get(k, '')) for k in metric_keys
                                                       if k in last) + ' |')
        lines += ['', f'From `{src.parent.name}/log.jsonl` of the run' + (f' (the `*{suffix}` metrics, {title})'
                                                                         if suffix else '')
                  + ': top-1/top-5 in % on the validation data of the configuration below.']
    lines += ['', '## Training configuration', '', '```json', json.dumps(config, indent=1, sort_keys=True,
                                                                          default=str), '```',
              '', '## Citation', '', '```bibtex', CITATION, '```', '']
    return '\n'.join(lines)


def _check_hub_dir(hub_dir: Path, overwrite: bool) -> None:
    if hub_dir.exists() and not hub_dir.is_dir():
        raise CheckpointError(f'--hub-dir {hub_dir}: is a file; give a folder')
    if hub_dir.exists() and any(hub_dir.iterdir()) and not overwrite:
        raise CheckpointError(f'--hub-dir {hub_dir}: exists and is not an empty folder; nothing is overwritten, '
                              'give a new folder, or --overwrite to replace its config.json, model.safetensors and '
                              'README.md')


def _with_weights(build, sd: dict):
    """build() holding the weights `sd` (exactly its keys and shapes, in the model's dtypes), in eval mode. Built on
    the meta device and given the tensors: a random initialisation of a large ViT takes longer on a CPU than the
    whole export."""
    import torch
    with torch.device('meta'):
        model = build()
    own = model.state_dict()
    sd = {k: v.to(own[k].dtype) if k in own else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)  # RuntimeError naming the keys that differ
    if any(t.is_meta for t in model.buffers()):  # a buffer that is not in state dicts: built for real after all
        model = build()
        model.load_state_dict(sd, strict=True)
    return model.eval()


def export_hub_folder(src: str | Path, hub_dir: str | Path, *, model_name: str | None = None,
                      weights: str = 'model', overwrite: bool = False, allow_pickle: bool = False) -> dict:
    """Write `hub_dir` (which must not exist, or be empty, unless `overwrite`) with model.safetensors, config.json
    and README.md of `weights` in `src`. With `overwrite` those three files are replaced and others are kept."""
    import torch
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.models._hub import save_config_for_hf

    from .checkpoint import fit_report, fit_summary
    from .factory import create_model

    src, hub_dir = Path(src), Path(hub_dir)
    _check_hub_dir(hub_dir, overwrite)
    ckpt = load_file(src, allow_pickle=allow_pickle, mmap=True)
    source = f'{src} ({weights})' if weights != 'model' else str(src)
    sd = select_weights(ckpt, weights, str(src))
    config = (ckpt.get('config') if isinstance(ckpt, dict) else None) or {}
    model_name, args = architecture_of(ckpt, sd, str(src), model_name)
    num_classes = args.pop('num_classes')
    img_size = args.pop('img_size', None)
    if img_size is None:
        raise CheckpointError(f'{src} states no input size (not one of our training checkpoints, and no ViT '
                              'position embeddings to read it from)')

    def build_ours():
        return create_model(model_name, num_classes=num_classes, img_size=img_size, **args)

    with torch.device('meta'):
        report, converted = fit_report(build_ours(), sd, source)  # official names, pos_embed of timm's layout
    if not report.ok or report.replaced:
        raise CheckpointError(f'{source}: does not fit model {model_name} strictly: {fit_summary(report)}')
    ours = _with_weights(build_ours, converted)
    architecture, timm_args = timm_architecture(model_name, args, img_size)
    try:
        theirs = _with_weights(lambda: timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                                                         **timm_args), ours.state_dict())
    except RuntimeError as e:
        raise CheckpointError(f'{src}: the weights do not fit timm\'s {architecture} {timm_args}: '
                              f'{str(e).splitlines()[0]}') from None
    x = torch.randn(1, args.get('in_chans', 3), img_size, img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
        raise CheckpointError(f'{src}: timm\'s {architecture} {timm_args} computes something else from these weights '
                              f'(largest output difference {(a - b).abs().max().item():.3g})')

    data = config.get('data') or {}
    if 'mean' in data:
        mean, std = tuple(data['mean']), tuple(data['std'])
    else:  # the training pipeline's default normalisation (pretrain/data/: ImageNet's, as timm's)
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    data_config = dict(input_size=(args.get('in_chans', 3), img_size, img_size), interpolation='bicubic',
                       mean=mean, std=std, crop_mode='center',
                       # a checkpoint without our config: DeiT III's evaluation crop (ratio 1.0) as our base config
                       crop_pct=float(data['eval_crop_ratio']) if 'eval_crop_ratio' in data else 1.0)

    hub_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{hub_dir.name}.', dir=hub_dir.parent))
    try:  # written in a temporary folder, then renamed: an interrupted export leaves no half folder
        save_file({k: v.detach().contiguous() for k, v in theirs.state_dict().items()}, tmp / 'model.safetensors')
        # tag: the name timm gives these weights ('fb_in1k' would be inherited from the DeiT III config)
        save_config_for_hf(theirs, tmp / 'config.json', data_config=data_config,
                           model_config=dict(pretrained_cfg=dict(tag='cosub')))
        # timm records num_classes in model_args as well as at the root; transformers' TimmWrapper passes its own
        # num_classes (0 for AutoModel) beside model_args, so the copy there makes it fail ('multiple values').
        # timm reads the root one (into pretrained_cfg, the default of create_model), so the copy is dropped.
        hub_config = json.loads((tmp / 'config.json').read_text())
        hub_config.get('model_args', {}).pop('num_classes', None)
        (tmp / 'config.json').write_text(json.dumps(hub_config, indent=2))
        (tmp / 'README.md').write_text(_model_card(src, architecture, timm_args, model_name, num_classes, config,
                                                   img_size, weights, trained_weights(ckpt)[weights]))
        for path in [tmp] + list(tmp.iterdir()):  # temporary files are private; the folder is for sharing
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if hub_dir.is_dir() and any(hub_dir.iterdir()):  # --overwrite: each file replaced atomically, others kept
            for path in tmp.iterdir():
                os.replace(path, hub_dir / path.name)
            tmp.rmdir()
        else:
            if hub_dir.is_dir():
                hub_dir.rmdir()  # an empty folder (os.replace onto it is not portable)
            os.replace(tmp, hub_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(architecture=architecture, model_args=timm_args, num_classes=num_classes, tensors=len(sd),
                weights=weights)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='checkpoint to convert (ours, official DeiT III, timm, .safetensors)')
    p.add_argument('dst', nargs='?', help='output file: .pth (our format) or .safetensors')
    p.add_argument('--hub-dir', help='write a Hugging Face Hub folder here instead (config.json, model.safetensors, '
                   'README.md), which timm loads as local-dir:DIR')
    p.add_argument('--weights', default='model',
                   help="which model of a training checkpoint: 'model' (the run's, the default) or a method's extra "
                        "weights that the checkpoint holds, such as peer_model (cotrain) or model_ema (mean_teacher)")
    p.add_argument('--model', help='architecture of a checkpoint that does not name it (for one of our ViTs: its '
                   'number of heads; the other sizes are read from the weights)')
    p.add_argument('--keep-head', action='store_true', help='keep the classifier head (a Hub folder always keeps it)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing DST (or the files of --hub-dir)')
    p.add_argument('--allow-pickle', action='store_true', help='allow a source that needs pickled code (trusted only)')
    args = p.parse_intermixed_args(argv)  # DST may come after the options: SRC --weights peer_model DST
    if (args.dst is None) == (args.hub_dir is None):
        p.error('give either DST (a file) or --hub-dir DIR')
    common = dict(model_name=args.model, weights=args.weights, overwrite=args.overwrite,
                  allow_pickle=args.allow_pickle)
    # a refused source exits 2 (nothing was written); a file system failure (full, read-only) exits 1: the atomic
    # writes leave no partial output (backbones/errors.py decides the line)
    with one_line_errors(exit_codes={CheckpointError: 2}):
        if args.hub_dir:
            info = export_hub_folder(args.src, args.hub_dir, **common)
            print(f'wrote {args.hub_dir}: config.json ({info["architecture"]}, {info["num_classes"]} classes'
                  + (f', model_args {info["model_args"]}' if info['model_args'] else '')
                  + f'), model.safetensors ({args.weights}), README.md')
            return
        info = export_backbone(args.src, args.dst, keep_head=args.keep_head, **common)
    shape = ', '.join(f'{k}={v!r}' for k, v in info['model_args'].items())
    print(f'wrote {args.dst}: {info["tensors"]} tensors of {info["model_name"]}({shape}), {args.weights} '
          f'({info["dropped"]} head tensors dropped)')


if __name__ == '__main__':
    main()
