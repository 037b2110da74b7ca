"""The demo's figures and summary as a person reads them: each plot has a title naming the run, one labelled
quantity per axis and a legend that hides no point (read from the matplotlib Figure, not from pixels); the numbers
the README's Quick start quotes are the lines the demo prints. Nothing heavy runs here."""
import math
import re
from pathlib import Path

import pytest

from pretrain import demo, plots

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def figures(monkeypatch):
    """The Figures the plot functions save (still readable after they are closed)."""
    saved = []
    real_save = plots._save

    def save(fig, path):
        real_save(fig, path)
        saved.append(fig)
    monkeypatch.setattr(plots, '_save', save)
    return saved


def texts(fig) -> dict:
    """What a person reads: the figure's title, each axes' title and axis labels, the legend entries."""
    out = dict(suptitle=fig._suptitle.get_text() if fig._suptitle else '', axes=[])
    for ax in fig.axes:
        legend = ax.get_legend()
        out['axes'].append(dict(title=ax.get_title(), x=ax.get_xlabel(), y=ax.get_ylabel(),
                                legend=[t.get_text() for t in legend.get_texts()] if legend else []))
    return out


def test_training_curves_one_quantity_per_axes_and_the_run_named(tmp_path, figures):
    run = tmp_path / 'pretrain_baseline'
    run.mkdir()
    # BCE starts near ln 2, the validation cross-entropy of 5 classes near ln 5: one axis would make them cross
    records = [dict(epoch=e, train_loss=math.log(2) / (1 + e), val_loss=math.log(5) / (1 + e), val_top1=20.0 + 10 * e)
               for e in range(4)]
    records[1]['val_top1'] = records[1]['val_loss'] = None  # an epoch without evaluation
    plots.plot_training_curves(records, run / 'training_curves.png', method='baseline', loss='bce')
    assert (run / 'training_curves.png').stat().st_size > 0
    shown = texts(figures[-1])
    assert shown['suptitle'] == 'pretrain_baseline: training curves (--method baseline)'
    assert [(a['title'], a['x'], a['y']) for a in shown['axes']] == [
        ('training loss', 'epoch', 'binary cross-entropy (bce)'), ('validation loss', 'epoch', 'cross-entropy'),
        ('validation accuracy', 'epoch', 'accuracy (%)')]
    assert shown['axes'][2]['legend'] == ['val top-1']
    train_ax, val_ax, acc_ax = figures[-1].axes
    assert len(train_ax.lines) == len(val_ax.lines) == 1 and list(val_ax.lines[0].get_xdata()) == [1, 3, 4]

    plots.plot_training_curves(records, run / 'training_curves.png', method='cosub', loss='ce')
    shown = texts(figures[-1])
    assert shown['suptitle'].endswith('(--method cosub)')
    assert shown['axes'][0]['title'] == "training loss (the method's objective)"
    assert shown['axes'][0]['y'] == 'cross-entropy (ce)'


def legend_hides_nothing(fig) -> bool:
    """The legend's box lies outside the plotting area (where the points are)."""
    fig.canvas.draw()
    (ax,) = fig.axes
    return not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())


def test_submodel_plots_titled_labelled_legend_beside(tmp_path, figures):
    curves = {'cosub': {3: 95.4, 4: 97.8, 5: 98.0, 6: 98.3}, 'baseline (no cosub)': {3: 93.6, 4: 96.1, 5: 97.9, 6: 98.9}}
    plots.plot_submodels(curves, tmp_path / 'submodels.png')
    (shown,) = texts(figures[-1])['axes']
    assert 'figure 4' in shown['title'] and shown['x'].startswith('blocks kept')
    assert shown['y'] == 'validation top-1 (%)' and shown['legend'] == list(curves)
    assert legend_hides_nothing(figures[-1])

    removed = {'cosub': [90.0, 97.0, 98.0, 98.3, 98.3, 97.8], 'baseline (no cosub)': [85.0, 96.0, 98.9, 98.3, 97.8, 98.3]}
    plots.plot_block_ablation(removed, {'cosub': 98.3, 'baseline (no cosub)': 98.9}, tmp_path / 'block_ablation.png')
    (shown,) = texts(figures[-1])['axes']
    assert 'D.2' in shown['title'] and shown['x'].startswith('removed block') and shown['y'] == 'validation top-1 (%)'
    assert shown['legend'] == ['cosub: one block removed', 'cosub: full model',
                               'baseline (no cosub): one block removed', 'baseline (no cosub): full model']
    assert legend_hides_nothing(figures[-1])
    assert all((tmp_path / n).stat().st_size > 0 for n in ('submodels.png', 'block_ablation.png'))


# -- the demo's summary and the README -----------------------------------------------------------------------------
def test_summary_lines_format():
    result = dict(depth=6, full=98.34, blocks_kept={6: 98.34, 5: 98.0, 4: 97.79, 3: 95.42})
    summary = {'pretrain val top-1': 98.342, **demo.submodel_summary('cosub', result), 'transfer val top-1': 95.6}
    assert demo.summary_lines(summary, 187.4) == [
        'demo finished in 187 s',
        '  pretrain val top-1                  98.34',
        '  cosub: top-1 with 5 of 6 blocks     98.00',
        '  cosub: top-1 with 4 of 6 blocks     97.79',
        '  cosub: top-1 with 3 of 6 blocks     95.42',
        '  cosub: mean top-1 of its submodels  97.39',
        '  transfer val top-1                  95.60']


def test_a_plot_that_cannot_be_written_names_its_file(tmp_path, monkeypatch):
    """A full disk at a plot ends in the error boundary's one line naming the file (not matplotlib's traceback)."""
    import errno
    from matplotlib.figure import Figure
    from backbones.errors import WriteError, describe

    def full(self, path, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(Figure, 'savefig', full)
    path = tmp_path / 'training_curves.png'
    with pytest.raises(WriteError) as e:
        plots.plot_training_curves([dict(epoch=1, train_loss=0.5)], path, method='cosub', loss='bce')
    message, code = describe(e.value)
    assert message.startswith(f'cannot write {path}: ') and code == 1 and '\n' not in message
