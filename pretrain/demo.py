"""The whole project in a few minutes on a CPU, with data that ships inside its dependencies or is generated:

1. cosub + ESD pretraining of a small ViT on scikit-learn's digits 0-4 (configs/demo.py), and the same
   training without cosub (the DeiT III baseline, same epochs and stochastic depth: --no-cosub); their training
   curves and the submodel analysis of both (accuracy vs number of blocks kept: figure 4 of the paper in
   miniature);
2. transfer: fine-tuning that backbone on the new classes, digits 5-9 (configs/transfer/digits.py), with
   `python -m transfer.finetune` in a process of its own (transfer/ is built on pretrain/, which does not import it),
   and the same recipe from random weights (what the pretraining is worth);
3. segmentation: a UperNet trained with `mim train mmseg` on a generated ADE20k-layout dataset
   (configs/upernet_demo.py), then tested single-scale and with multi-scale + flip TTA.

    python -m pretrain.demo [--output-dir outputs/demo] [--skip-segmentation] [--quick]
    python -m pretrain.demo --methods [--quick]     # Table 4 in miniature: every --method on the digits

--quick runs every step for a few epochs / iterations only (a smoke test of the whole path; the tests use it).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from pretrain.config import REPO_ROOT


def banner(text: str) -> None:
    print(f'\n{"=" * 100}\n{text}\n{"=" * 100}', flush=True)


def mim(*args: str) -> str:
    """Run `mim` as a user would (a new process running mmseg's tools), echoing and returning its output."""
    cmd = [sys.executable, '-m', 'mim', *args]
    print('$ mim ' + ' '.join(args), flush=True)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [line for line in proc.stdout.splitlines() if 'Iter(' in line]  # progress and metrics, not tables
    print('\n'.join(lines[-25:]), flush=True)
    if proc.returncode:
        print(proc.stdout[-4000:])
        raise SystemExit(f'error: mim {args[0]} failed (exit {proc.returncode})')
    return proc.stdout


def run_module(module: str, *args: str) -> None:
    """`python -m <module> <args>` in a new process, as a user runs it: how the demo runs the parts of the project
    built on pretrain/ (transfer/), which pretrain does not import. Its output is ours; its failure ends the demo
    with its exit code (it has printed its one-line error). It stops as an in-process run does (checkpoint saved,
    exit 143): the terminal's Ctrl-C reaches it directly (one process group; the demo waits for it), and a SIGTERM
    or SIGUSR1 sent to the demo is passed on."""
    print(f'$ python -m {module} ' + ' '.join(args), flush=True)
    proc = subprocess.Popen([sys.executable, '-m', module, *args])
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}  # after the start: not inherited
    for s in (signal.SIGTERM, signal.SIGUSR1):
        previous[s] = signal.signal(s, lambda signum, frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        raise SystemExit(code)


def last_miou(output: str) -> float:
    values = [float(line.split('mIoU:')[1].split()[0]) for line in output.splitlines() if 'mIoU:' in line]
    return values[-1] if values else float('nan')


def submodel_summary(label: str, result: dict) -> dict:
    """One run's submodel analysis as summary lines: top-1 with each number of blocks kept below the full depth
    (each the mean over the drawn subsets), and the mean over every number kept, the full model included (the area
    under a figure-4 curve)."""
    curve, depth = result['blocks_kept'], result['depth']
    lines = {f'{label}: top-1 with {n} of {depth} blocks': top1 for n, top1 in sorted(curve.items(), reverse=True)
             if int(n) < depth}
    lines[f'{label}: mean top-1 of its submodels'] = sum(curve.values()) / max(len(curve), 1)
    return lines


def summary_lines(summary: dict, seconds: float) -> list:
    """The demo's closing lines: its wall time, then one number per line (accuracies and mIoU in %), as the
    README's Quick start quotes them."""
    width = max(map(len, summary), default=0)
    return [f'demo finished in {seconds:.0f} s'] + [f'  {k:{width}s} {v:6.2f}' for k, v in summary.items()]


# cosub Table 4 (ImageNet-1k at 224, top-1): method -> (ViT-L, ViT-H)
TABLE_4 = {'baseline': (84.5, 84.9), 'kd': (85.3, 85.3), 'mean_teacher': (84.4, 83.4), 'cotrain': (82.6, 83.1),
           'cosub': (84.9, 85.5), 'kd_cosub': (85.3, 85.7)}


def table_4(out: Path, short: list) -> dict:
    """Every --method on the digits, side by side with the paper's Table 4. The teacher of KD is a wider ViT
    (192 wide, 3x the student's parameters) trained first by the baseline recipe: a pre-trained teacher, as KD
    assumes."""
    from pretrain import train
    from pretrain.methods import METHODS
    teacher_dir = out / 'teacher'
    banner('Table 4 in miniature: first the teacher of KD, a wider ViT trained by the baseline recipe')
    train.train(['--cfg', 'demo', '--method', 'baseline', '--output-dir', str(teacher_dir), *short,
                 '--cfg-options', 'model.embed_dim=192'])
    results = {}
    for method in TABLE_4:
        assert method in METHODS
        teacher = ['--teacher', str(teacher_dir / 'checkpoint.pth')] if method in ('kd', 'kd_cosub') else []
        banner(f'Table 4: --method {method}  (python pretrain/train.py --cfg demo --method {method} '
               f'{" ".join(teacher)})')
        record = train.train(['--cfg', 'demo', '--method', method, *teacher, '--output-dir', str(out / method),
                              *short])
        results[method] = record
    banner('Table 4 in miniature (digits 0-4, 181 validation images: one image is 0.55 points)')
    print(f'  {"method":14s} {"val top-1":>10s} {"other model":>22s}   {"paper ViT-L":>11s} {"ViT-H":>6s}')
    for method, record in results.items():
        other = (f'EMA {record["val_top1_ema"]:.2f}' if 'val_top1_ema' in record else
                 f'2nd model {record["val_top1_peer"]:.2f}' if 'val_top1_peer' in record else '')
        vit_l, vit_h = TABLE_4[method]
        print(f'  {method:14s} {record["val_top1"]:10.2f} {other:>22s}   {vit_l:11.1f} {vit_h:6.1f}')
    return {f'{m} val top-1': r['val_top1'] for m, r in results.items()}


def main(argv=None) -> dict:
    from backbones.errors import one_line_errors
    with one_line_errors():  # the same boundary as every entry point: a full disk, a refusal end in one line
        return _demo(argv)


def _demo(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--output-dir', default='outputs/demo')
    p.add_argument('--skip-segmentation', action='store_true')
    p.add_argument('--quick', action='store_true', help='a few epochs / iterations per step: checks the path only')
    p.add_argument('--methods', action='store_true',
                   help="only cosub Table 4 in miniature: every --method trained on the digits, beside the paper's")
    args = p.parse_args(argv)
    short = dict(pretrain=['--epochs', '3'], transfer=['--epochs', '2'], seg=[]) if args.quick else \
        dict(pretrain=[], transfer=[], seg=[])
    if args.quick:
        short['seg'] = ['train_cfg.max_iters=4', 'train_cfg.val_interval=4', 'param_scheduler.0.end=2',
                        'param_scheduler.1.begin=2', 'param_scheduler.1.end=4', 'default_hooks.checkpoint.interval=4']
    out = Path(args.output_dir).resolve()
    started, summary = time.time(), {}
    if args.methods:
        summary = table_4(out / 'methods', short['pretrain'])
        banner(f'Table 4 demo finished in {time.time() - started:.0f} s; runs under {out / "methods"}')
        (out / 'methods' / 'summary.json').write_text(json.dumps(summary, indent=1))
        return summary

    from pretrain import analysis, train
    from pretrain.engine.logs import read_log

    banner('1/3  cosub + ESD pretraining on scikit-learn digits 0-4  (python pretrain/train.py --cfg demo)')
    record = train.train(['--cfg', 'demo', '--output-dir', str(out / 'pretrain'), *short['pretrain']])
    ckpt = out / 'pretrain' / 'checkpoint.pth'
    summary['pretrain val top-1'] = record['val_top1']
    banner('     the baseline: the same training without cosub  (python pretrain/train.py --cfg demo --no-cosub)')
    record = train.train(['--cfg', 'demo', '--no-cosub', '--output-dir', str(out / 'pretrain_baseline'),
                         *short['pretrain']])
    summary['baseline val top-1'] = record['val_top1']
    curves = analysis.main([str(ckpt), str(out / 'pretrain_baseline' / 'checkpoint.pth'),
                            '--labels', 'cosub', 'baseline (no cosub)',
                            '--output-dir', str(out / 'pretrain' / 'analysis'), '--num-workers', '0', '--device', 'cpu'])
    for label, result in curves.items():  # the paper's claim: cosub's submodels are better at every depth
        summary.update(submodel_summary(label, result))

    banner('2/3  transfer: fine-tune the pretrained backbone on the new classes, digits 5-9')
    run_module('transfer.finetune', '--dataset', 'digits', '--finetune', str(ckpt),
               '--output-dir', str(out / 'transfer'), *short['transfer'])
    summary['transfer val top-1'] = read_log(out / 'transfer' / 'log.jsonl')[-1]['val_top1']  # its last epoch
    banner('     the same fine-tuning from random weights: what the pretraining is worth  '
           '(python -m transfer.finetune --dataset digits)')
    run_module('transfer.finetune', '--dataset', 'digits', '--output-dir', str(out / 'transfer_scratch'),
               *short['transfer'])
    summary['transfer from scratch val top-1'] = read_log(out / 'transfer_scratch' / 'log.jsonl')[-1]['val_top1']

    if not args.skip_segmentation:
        banner('3/3  segmentation: UperNet on a generated ADE20k-layout dataset with mim train / mim test')
        from segmentation import demo_data
        data = out / 'ade_demo'
        demo_data.main([str(data)])
        roots = [f'{loader}.dataset.data_root={data / "ADEChallengeData2016"}'
                 for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
        work = out / 'segmentation'
        mim('train', 'mmseg', 'configs/upernet_demo.py', '--work-dir', str(work), '--cfg-options', *roots, *short['seg'])
        seg_ckpt = max(work.glob('iter_*.pth'), key=lambda p: int(p.stem.split('_')[1]))
        single = mim('test', 'mmseg', 'configs/upernet_demo.py', '--checkpoint', str(seg_ckpt),
                     '--work-dir', str(work / 'test'), '--cfg-options', *roots)
        tta = mim('test', 'mmseg', 'configs/upernet_demo.py', '--checkpoint', str(seg_ckpt), '--tta',
                  '--work-dir', str(work / 'test_tta'), '--cfg-options', *roots)
        summary['segmentation mIoU (single scale)'] = last_miou(single)
        summary['segmentation mIoU (multi-scale + flip)'] = last_miou(tta)

    title, *lines = summary_lines(summary, time.time() - started)
    banner(title)
    print('\n'.join(lines))
    print(f'\n  outputs under {out}: training curves */training_curves.png (pretrain: cosub, pretrain_baseline, '
          'transfer, transfer_scratch), submodels of both pretrain/analysis/{submodels,block_ablation}.png, logs '
          '*/log.jsonl, TensorBoard */tensorboard')
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    main()
