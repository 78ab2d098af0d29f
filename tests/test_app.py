"""The Streamlit pages render with real data (AppTest runs the scripts in-process)."""

from __future__ import annotations

from pathlib import Path

from conftest import signed_in_app

ROOT = Path(__file__).resolve().parents[1]


def test_home_page_shows_counts_and_names_the_untrained_model(demo_studio):
    at = signed_in_app(ROOT / "app.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "60"
    assert metrics["Reviewed images"] == "30 / 60"
    assert metrics["Active classes"] == "20"
    assert any("UNTRAINED built-in model" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert len(table) == 20 and "circle" in set(table["class"])


def test_training_and_jobs_pages_render(demo_studio):
    for page in ("app_pages/training.py", "app_pages/jobs.py"):
        at = signed_in_app(ROOT / page).run()
        assert not at.exception, page
    at = signed_in_app(ROOT / "app_pages/training.py").run()
    assert at.dataframe[0].value["version"].tolist() == ["v0001"]
