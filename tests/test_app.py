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


def test_a_first_run_offline_trains_a_first_model_on_the_demo_and_home_follows_it(studio, monkeypatch):
    """Offline, the only model is untrained: set-up queues full-mode training on the demo's
    pre-labels; Home shows its progress, then that the suggestions come from the new version."""
    from mumic_core.pipeline.runner import run_job
    from mumic_core.services import setup
    from mumic_core.store.jobs import get_job
    from mumic_core.store.registry import active_version

    real_seed = setup.seed_demo
    monkeypatch.setattr(setup, "seed_demo", lambda s: real_seed(s, n_images=40, seed=3))  # small, same path
    done = setup.set_up(studio)
    assert done.version.kind == "builtin-random" and done.first_model_job is not None
    job = get_job(studio, done.first_model_job)
    assert job.kind == "train" and job.params["mode"] == "full" and job.params["reason"] == setup.FIRST_MODEL
    at = signed_in_app(ROOT / "app.py", "lead", "admin").run()
    assert not at.exception
    assert any("Training a first model on the demo's pre-labels" in p.proto.text for p in at.get("progress"))
    run_job(studio, job.id)  # what the worker does
    assert get_job(studio, job.id).status == "succeeded"
    at.run()
    version = active_version(studio)
    switched = [m.value for m in at.success if "Suggestions now come from" in m.value]
    if version.kind != "builtin-random":  # it became active (better on validation): Home says so
        assert switched and version.name in switched[0]
    else:  # it stayed a candidate: Home claims no switch
        assert not switched
    assert not at.exception
