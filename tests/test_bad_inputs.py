"""Every case of benchmarks/bad_inputs.py is refused (or handled) as its table says, and the
store keeps everything it had."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bad_inputs import CASES, counts, demo_store, run_case


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import os

    saved = {k: v for k, v in os.environ.items() if k.startswith("MUMIC_")}
    tmp = tmp_path_factory.mktemp("bad")
    studio, ann = demo_store(tmp / "home")
    yield studio, ann, tmp
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ.update(saved)


def test_there_are_at_least_25_distinct_bad_inputs():
    assert len(CASES) >= 25 and len({c.what for c in CASES}) == len(CASES)


def test_every_area_the_issue_asks_for_is_covered():
    areas = {c.area for c in CASES}
    assert {"format", "label file", "names", "concurrency", "disk full", "interrupted"} <= areas


# Slow cases start and kill real worker processes (about 45 s): `make test-all` runs them; the
# resume they prove is also covered fast by test_lifecycle's dead-worker test.
SLOW = pytest.mark.slow(reason="starts and kills real worker processes")


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=SLOW) if c.slow else c for c in CASES], ids=[c.what for c in CASES]
)
def test_bad_input(store, case):
    studio, ann, tmp = store
    before = counts(studio)
    outcome, ok = run_case(case, studio, ann, Path(tmp))
    assert ok, outcome
    after = counts(studio)
    assert after["images"] >= before["images"] and after["annotations"] >= before["annotations"]
    assert after["classes"] >= before["classes"] and after["users"] == before["users"]
    if case.area in ("classes", "roles", "accounts"):
        assert after["classes"] == before["classes"]  # nothing half-made
