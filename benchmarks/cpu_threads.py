"""The demo's pretraining beside one busy process, with the engine's CPU thread budget on and off (issue 21).

    python -m benchmarks.cpu_threads [--epochs 10] [--rounds 1] [--out benchmarks/results/cpu_threads_cpu]

Each run is `python pretrain/train.py --cfg demo --epochs N` (the demo's config, fewer epochs) in a process of its
own, timed from start to exit: quiet, and beside one busy process (a pure-Python loop: one core taken, as a second
user's job would). The budget (pretrain/engine/threads.py) is on as the engine applies it, off with
COSUB_CPU_THREADS=off (torch's own threads: one per core); an OMP_NUM_THREADS / OMP_WAIT_POLICY of the calling
shell is removed so that each run gets what the engine decides. The four runs are interleaved round by round; the
ratio busy / quiet of each setting is the median's. Goal (issue 21): busy / quiet <= 1.8 with the budget on.

Results: <out>.json and <out>.md (device, versions, date, the machine's load before and after, each run's threads
as the engine logged them). Timings are only worth committing from an otherwise quiet machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import torch

from benchmarks.common import device_name, load_note
from pretrain.config import REPO_ROOT as ROOT

BUSY = 'while True:\n    pass\n'  # one core, all the time
SETTINGS = {'on': {}, 'off': {'COSUB_CPU_THREADS': 'off'}}


def pretrain_seconds(out: Path, epochs: int, setting: str, busy: bool) -> dict:
    """Wall time of the demo's pretraining in a new process, and the thread line the engine logged."""
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'COSUB_CPU_THREADS')}
    env.update(SETTINGS[setting], PYTHONPATH=str(ROOT))
    hog = subprocess.Popen([sys.executable, '-c', BUSY]) if busy else None
    try:
        if hog is not None:
            time.sleep(1.0)  # running before the training starts
        started = time.perf_counter()
        subprocess.run([sys.executable, 'pretrain/train.py', '--cfg', 'demo', '--epochs', str(epochs),
                        '--output-dir', str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    log = (out / 'train.log').read_text()
    threads = next((line.split('CPU threads: ', 1)[1] for line in log.splitlines() if 'CPU threads: ' in line), '?')
    records = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    return dict(setting=setting, busy=busy, seconds=round(seconds, 1), threads=threads,
                train_seconds=round(sum(r['epoch_time'] for r in records), 1), val_top1=records[-1]['val_top1'])


def summarise(runs: List[dict]) -> dict:
    """Per setting: the medians quiet and busy, of the whole run (start to exit) and of its training epochs."""
    out = {}
    for setting in SETTINGS:
        median = {(key, busy): statistics.median(r[key] for r in runs if r['setting'] == setting and r['busy'] == busy)
                  for key in ('seconds', 'train_seconds') for busy in (False, True)}
        out[setting] = dict(quiet_s=median['seconds', False], busy_s=median['seconds', True],
                            ratio=round(median['seconds', True] / median['seconds', False], 2),
                            train_ratio=round(median['train_seconds', True] / median['train_seconds', False], 2))
    return out


def markdown(meta: dict, summary: dict, runs: List[dict]) -> str:
    lines = [f'# CPU threads: the demo\'s pretraining beside one busy process ({meta["device"]}, {meta["cores"]} cores)',
             '', f'{meta["date"]}; torch {meta["torch"]}, python {meta["python"]}; `--cfg demo --epochs '
             f'{meta["epochs"]}`, {meta["rounds"]} round(s); command `{meta["command"]}`; wall time '
             f'{meta["wall_s"]} s.', '']
    lines += [f'Note: {n}' for n in meta['notes']] + ['']
    lines += ['| thread budget | quiet s | beside 1 busy process s | busy / quiet (goal <= 1.8) | the same, training '
              'epochs only |', '|---|---|---|---|---|']
    lines += [f'| {s} | {v["quiet_s"]} | {v["busy_s"]} | {v["ratio"]}x | {v["train_ratio"]}x |'
              for s, v in summary.items()]
    lines += ['', '| round | budget | busy | wall s | training s | threads (as logged) | val top-1 |',
              '|---|---|---|---|---|---|---|']
    lines += [f'| {r["round"]} | {r["setting"]} | {"yes" if r["busy"] else "no"} | {r["seconds"]} | '
              f'{r["train_seconds"]} | {r["threads"]} | {r["val_top1"]} |' for r in runs]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=10, help="the demo's epochs per run (default 10: ~20 s quiet on 2 "
                   'cores; the demo itself trains 30)')
    p.add_argument('--rounds', type=int, default=1, help='interleaved rounds of the four runs (default 1)')
    p.add_argument('--out', help='output path without suffix (default benchmarks/results/cpu_threads_cpu)')
    p.add_argument('--note', action='append', default=[], help='a note for the results (repeatable)')
    args = p.parse_args(argv)
    for key in ('epochs', 'rounds'):
        if getattr(args, key) < 1:
            p.error(f'--{key} {getattr(args, key)}: expected at least 1')
    started, load_at_start = time.perf_counter(), load_note()
    runs = []
    with tempfile.TemporaryDirectory(prefix='cosub_cpu_threads_') as tmp:
        for round_ in range(args.rounds):
            for setting in SETTINGS:
                for busy in (False, True):
                    run = pretrain_seconds(Path(tmp) / f'{round_}_{setting}_{busy}', args.epochs, setting, busy)
                    runs.append(dict(round=round_, **run))
                    print(json.dumps(runs[-1]), flush=True)
    summary = summarise(runs)
    meta = dict(device=device_name(torch.device('cpu')), cores=len(os.sched_getaffinity(0)), torch=torch.__version__,
                python=platform.python_version(), epochs=args.epochs, rounds=args.rounds,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                command=' '.join(['python', '-m', 'benchmarks.cpu_threads'] + (sys.argv[1:] if argv is None else argv)),
                wall_s=round(time.perf_counter() - started, 1),
                notes=args.note + [f'machine load: at the start {load_at_start}; at the end {load_note()}'])
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / 'cpu_threads_cpu')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(dict(meta=meta, summary=summary, runs=runs), indent=1) + '\n')
    out.with_suffix('.md').write_text(markdown(meta, summary, runs))
    for setting, v in summary.items():
        print(f'thread budget {setting}: quiet {v["quiet_s"]} s, beside a busy process {v["busy_s"]} s: '
              f'{v["ratio"]}x (training epochs only: {v["train_ratio"]}x)')
    return summary


if __name__ == '__main__':
    main()
