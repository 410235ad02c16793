import os
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTBED_ENV = ROOT / ".testbed" / "env"


def _load_testbed_env() -> None:
    """Read .testbed/env so that a plain `pytest` works after `scripts/testbed up`."""
    if not TESTBED_ENV.exists():
        return
    for line in TESTBED_ENV.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            os.environ.setdefault(key, shlex.split(value)[0] if value else "")


_load_testbed_env()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
