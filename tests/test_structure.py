"""The dependency directions between the packages, read from the source files (nothing is imported):
backbones/ at the bottom, pretrain/ (the engine) on it, transfer/ on pretrain/. An import the other way would make
a cycle: the lower package could not be used, tested or shipped without the one above it."""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path: Path) -> set:
    """Every module a file imports, anywhere in it (function bodies too), as absolute names: `from X import y`
    gives X and X.y (y may be a submodule); relative imports are resolved; importlib.import_module('X') and
    __import__('X') with a constant name count too."""
    package = module_name(path).split('.')
    if path.name != '__init__.py':
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = '.'.join(package[:len(package) - node.level + 1] if node.level else [])
            module = '.'.join(p for p in (base, node.module or '') if p)
            found.add(module)
            found.update(f'{module}.{alias.name}' for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, 'attr', getattr(node.func, 'id', None)) in ('import_module', '__import__')):
            found.add(node.args[0].value)
    return found


def imports_of(package: str, *forbidden: str) -> dict:
    """{file: the modules it imports from the `forbidden` packages} over every .py file of `package`."""
    files = sorted((ROOT / package).rglob('*.py'))
    assert files, f'no source files under {package}/'
    hits = {}
    for path in files:
        bad = sorted(m for m in imported_modules(path) if m.split('.')[0] in forbidden)
        if bad:
            hits[str(path.relative_to(ROOT))] = bad
    return hits


def test_the_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The checks below can fail: each way of writing an import is found (a check that finds nothing passes)."""
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', tmp_path)
    pkg = tmp_path / 'pkg' / 'sub'
    pkg.mkdir(parents=True)
    (pkg / 'mod.py').write_text('import a.b\nfrom c import d\nfrom .. import e\nfrom .f import g\n'
                                'def late():\n    import h\n    importlib.import_module("i.j")\n')
    found = imported_modules(pkg / 'mod.py')
    assert {'a.b', 'c', 'c.d', 'pkg', 'pkg.e', 'pkg.sub.f', 'pkg.sub.f.g', 'h', 'i.j'} <= found
    assert module_name(pkg / 'mod.py') == 'pkg.sub.mod'
    assert imports_of('pkg', 'h') == {'pkg/sub/mod.py': ['h']}


def test_transfer_is_built_on_pretrain():
    """The direction that is meant: transfer/ imports the engine (so the reader finds real imports here)."""
    assert 'pretrain.engine.command' in imported_modules(ROOT / 'transfer' / 'finetune.py')
    assert 'pretrain.data' in imported_modules(ROOT / 'transfer' / 'data.py')


def test_pretrain_does_not_import_transfer():
    assert imports_of('pretrain', 'transfer') == {}


def test_backbones_import_neither_pretrain_nor_transfer():
    assert imports_of('backbones', 'pretrain', 'transfer') == {}


def test_checkpoint_and_hub_do_not_import_each_other_both_ways():
    checkpoint = imported_modules(ROOT / 'backbones' / 'checkpoint.py')
    hub = imported_modules(ROOT / 'backbones' / 'hub.py')
    assert not ('backbones.hub' in checkpoint and 'backbones.checkpoint' in hub)


def test_transfer_submit_is_the_launcher_with_transfer_configs(capsys):
    """Fine-tuning's SLURM launcher lives in transfer/ (pretrain/submit.py would otherwise import transfer)."""
    from transfer import submit
    submit.main(['--dataset', 'digits', '--partition', 'p', '--dry-run'])  # nothing submitted
    assert str(Path('configs') / 'transfer' / 'digits.py') in capsys.readouterr().out


def test_pretrain_submit_points_a_transfer_task_to_its_launcher(capsys):
    from pretrain import submit
    with pytest.raises(SystemExit) as e:
        submit.main(['--task', 'transfer', '--dataset', 'inat18', '--partition', 'p'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        'error: --task transfer: use python -m transfer.submit (the same flags, without --task) (see --help)')
