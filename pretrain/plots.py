"""Plots a person would rather look at than read: training curves, submodel accuracy vs depth.

Each figure says what it shows and of which run (title), and each axis holds one quantity, labelled with its unit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; no display on training nodes
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from backbones.errors import writing  # noqa: E402

# loss.type (pretrain/cosub.py LOSSES) as a person reads it
LOSS_NAMES = {'bce': 'binary cross-entropy', 'ce': 'cross-entropy'}
# log.jsonl accuracies (pretrain/engine/evaluation.py), in the order they are drawn
ACCURACIES = (('val_top1', 'val top-1'), ('val_top5', 'val top-5'), ('val_top1_ema', 'val top-1 of the EMA'),
              ('val_top1_peer', 'val top-1 of the 2nd model'), ('v2_top1', 'ImageNet-V2 top-1'),
              ('real_top1', 'ReaL top-1'))


def plot_training_curves(records: List[dict], path: Path, *, method: Optional[str] = None,
                         loss: Optional[str] = None) -> None:
    """Per epoch, from log.jsonl records: the training loss (the objective of `method`, on the `loss.type` `loss`),
    the validation loss (always cross-entropy: pretrain/engine/evaluation.py) and the validation accuracy, each on
    its own axes; the two losses are different functions of the logits (BCE starts near ln 2, cross-entropy near
    ln(classes)), so one axis would show a crossing that means nothing. Titled with the run's name, its output
    folder."""
    if not records:
        return
    epochs = [r['epoch'] + 1 for r in records]
    fig, (ax_train, ax_val, ax_acc) = plt.subplots(1, 3, figsize=(13, 4))
    fig.suptitle(f'{Path(path).parent.name}: training curves' + (f' (--method {method})' if method else ''))
    ax_train.plot(*_present(epochs, records, 'train_loss'), marker='.', color='C0')
    ax_train.set_title('training loss (the method\'s objective)' if method not in (None, 'baseline')
                       else 'training loss')
    ax_train.set_ylabel(LOSS_NAMES.get(loss, 'loss') + (f' ({loss})' if loss in LOSS_NAMES else ''))
    ax_val.plot(*_present(epochs, records, 'val_loss'), marker='.', color='C1')
    ax_val.set_title('validation loss')
    ax_val.set_ylabel('cross-entropy')
    for key, label in ACCURACIES:
        xs, ys = _present(epochs, records, key)
        if xs:
            ax_acc.plot(xs, ys, marker='.', label=label)
    ax_acc.set_title('validation accuracy')
    ax_acc.set_ylabel('accuracy (%)')
    if ax_acc.lines:
        ax_acc.legend(loc='lower right')
    for ax in (ax_train, ax_val, ax_acc):
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not ax.lines:  # e.g. no validation data: say so rather than leave an empty box
            ax.text(0.5, 0.5, 'not logged', ha='center', va='center', transform=ax.transAxes, color='grey')
    _save(fig, path)


def _present(xs: Sequence, records: List[dict], key: str):
    pairs = [(x, r[key]) for x, r in zip(xs, records) if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    try:
        with writing(path):  # a full disk or a read-only folder names the plot (backbones/errors.py)
            fig.savefig(path, dpi=100, bbox_inches='tight')  # the legends beside the axes included
    finally:
        plt.close(fig)


def _legend_outside(ax) -> None:
    """The legend beside the axes, where it can hide no point."""
    ax.legend(loc='upper left', bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def plot_submodels(curves: Dict[str, Dict[int, float]], path: Path, title: str = '') -> None:
    """Accuracy against the number of blocks kept, one line per checkpoint (cosub paper, figure 4)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker='o', label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('blocks kept (the others removed; the rightmost point is the full model)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title(title or 'Submodels: accuracy against depth (cosub paper, figure 4)')
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    _save(fig, path)


def plot_block_ablation(curves: Dict[str, List[float]], full: Dict[str, float], path: Path,
                        title: str = '') -> None:
    """Accuracy when exactly one block is removed (supplement, figure D.2)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, accs in curves.items():
        line, = ax.plot(range(1, len(accs) + 1), accs, marker='o', label=f'{label}: one block removed')
        ax.axhline(full[label], color=line.get_color(), linestyle='--', label=f'{label}: full model')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('removed block (1 = the first)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title(title or 'One block removed: accuracy (cosub supplement, figure D.2)')
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    _save(fig, path)
