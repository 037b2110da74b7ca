"""Plots a person would rather look at than read: training curves, submodel accuracy vs depth."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; no display on training nodes
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_training_curves(records: List[dict], path: Path) -> None:
    """Train loss and validation accuracy per epoch, from log.jsonl records."""
    if not records:
        return
    epochs = [r['epoch'] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.get('train_loss') for r in records], label='train loss')
    if any(r.get('val_loss') is not None for r in records):
        ax_loss.plot(*_present(epochs, records, 'val_loss'), label='val loss')
    ax_loss.set_xlabel('epoch')
    ax_loss.set_ylabel('loss')
    ax_loss.legend()
    for key, label in (('val_top1', 'val top-1'), ('val_top5', 'val top-5'), ('v2_top1', 'v2 top-1'),
                       ('real_top1', 'ReaL top-1')):
        xs, ys = _present(epochs, records, key)
        if xs:
            ax_acc.plot(xs, ys, marker='.', label=label)
    ax_acc.set_xlabel('epoch')
    ax_acc.set_ylabel('accuracy (%)')
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _present(xs: Sequence, records: List[dict], key: str):
    pairs = [(x, r[key]) for x, r in zip(xs, records) if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_submodels(curves: Dict[str, Dict[int, float]], path: Path, title: str = '') -> None:
    """Accuracy against the number of blocks kept, one line per checkpoint (cosub paper, figure 4)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker='o', label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('blocks kept')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_title(title or 'submodel accuracy vs depth')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_block_ablation(curves: Dict[str, List[float]], full: Dict[str, float], path: Path) -> None:
    """Accuracy when exactly one block is removed (supplement, figure D.2)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, accs in curves.items():
        line, = ax.plot(range(1, len(accs) + 1), accs, marker='o', label=f'{label}: one block removed')
        ax.axhline(full[label], color=line.get_color(), linestyle='--', label=f'{label}: full model')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('removed block')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
