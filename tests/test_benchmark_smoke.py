"""Every benchmark has a smoke size that CI runs, so none can go stale unnoticed (issue 17, item 23).

The smoke runs themselves are ``make bench-smoke`` (minutes, in ``.ci/run`` after the suites);
these tests only check that no script under ``benchmarks/`` is left out of them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "benchmarks" / "_run_smoke.py"


def benchmark_scripts() -> list[str]:
    """benchmarks/*.py less the helpers, whose names start with ``_``."""
    return sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_the_smoke_runner_runs_every_benchmark_and_ci_runs_it():
    listed = subprocess.run(
        [sys.executable, str(RUNNER), "--list"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert listed == benchmark_scripts()
    assert "python benchmarks/_run_smoke.py" in (ROOT / "Makefile").read_text().split("bench-smoke: install", 1)[1]
    assert "make bench-smoke" in (ROOT / ".ci" / "run").read_text()


def test_every_benchmark_offers_a_smoke_size():
    env = {"PATH": "/usr/bin:/bin", **OFFLINE_ENV}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / name), "--help"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in benchmark_scripts()
    }
    helps = {name: p.communicate(timeout=120)[0] for name, p in procs.items()}
    without = [name for name, text in helps.items() if procs[name].returncode != 0 or "--smoke" not in text]
    assert not without, {name: helps[name][-500:] for name in without}
