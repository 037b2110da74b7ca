"""The fault audit (tests/fault_audit.py) as tests: every case must come out "good" on this checkout.

About 6-10 minutes on 2 CPU cores (each case runs the command line in a new process), so it is marked `slow` and
left out of the default run (pyproject.toml): `python -m pytest -q -m slow tests/test_fault_audit.py`, or
`python tests/fault_audit.py --repo . --out FILE.md` for the table (benchmarks/results/fault_audit_after.md)."""
import pytest

import fault_audit
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def audit(tmp_path_factory):
    return fault_audit.Audit(ROOT, tmp_path_factory.mktemp('fault-audit'))  # shares one base run among the cases


@pytest.mark.parametrize('name,expect,case', [(n, e, fn) for n, _, e, fn in fault_audit.CASES],
                         ids=[n for n, *_ in fault_audit.CASES])
def test_fault_case(audit, name, expect, case):
    outcome, message = case(audit)
    assert outcome == 'good', f'{name} ({expect}): {outcome}: {message}'
