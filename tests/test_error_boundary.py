"""No traceback or server path reaches the browser: a damaged model version is one line naming the
version and what to do, and every page has one error boundary (app.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import signed_in_app

from mumic_core.errors import REFUSALS, ClassError, MumicError, ServiceUnavailable, one_line
from mumic_core.pipeline.runner import run_job
from mumic_core.store.jobs import create_job, get_job, job_log
from mumic_core.store.registry import active_version, head_path, load_head
from mumic_core.store.reports import job_summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def corrupt_head(demo_studio) -> Path:
    path = head_path(demo_studio, active_version(demo_studio))
    path.write_text('{"temperature": 0.07, "offs')
    return path


def no_trace_in(at, home: Path) -> None:
    """Nothing on the page is a traceback or names a server path."""
    texts = [e.value for e in list(at.error) + list(at.exception)] + [m.value for m in at.markdown]
    for text in texts:
        assert "Traceback" not in text and 'File "' not in text and ".json" not in text, text
        assert str(home) not in text and str(ROOT) not in text, text


def test_a_corrupt_head_is_one_line_on_review_and_classes(demo_studio, corrupt_head):
    at = signed_in_app(ROOT / "app.py").run()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "v0001" in error.value and "retrain" in error.value and "\n" not in error.value
    no_trace_in(at, demo_studio.settings.home)
    at.switch_page("app_pages/classes.py").run()
    next(b for b in at.button if b.label == "Preview these prompts").click().run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "v0001" in error.value and "retrain" in error.value
    no_trace_in(at, demo_studio.settings.home)


def test_load_head_names_the_version_and_what_to_do(demo_studio, corrupt_head):
    with pytest.raises(MumicError) as caught:
        load_head(demo_studio, active_version(demo_studio))
    message = str(caught.value)
    assert "v0001" in message and "activate" in message and str(corrupt_head) not in message
    corrupt_head.write_text('{"temperature": 1}')  # valid JSON, not a head
    with pytest.raises(MumicError, match="v0001"):
        load_head(demo_studio, active_version(demo_studio))


def test_a_head_file_changed_on_disk_is_read_again(demo_studio):
    """Heads are parsed once per process while their file is unchanged: a caller's change to
    its copy does not leak into the next load, and a file rewritten since is read again."""
    version = active_version(demo_studio)
    head = load_head(demo_studio, version)
    head.thresholds["someone's edit"] = 0.9
    assert "someone's edit" not in load_head(demo_studio, version).thresholds
    head_path(demo_studio, version).write_text('{"temperature": 1}')
    with pytest.raises(MumicError, match="v0001"):
        load_head(demo_studio, version)


def test_any_other_error_is_one_generic_line_and_the_traceback_goes_to_the_log(demo_studio, monkeypatch, caplog):
    def broken(studio):
        raise FileNotFoundError(2, "No such file or directory", str(demo_studio.settings.home / "secret.db"))

    monkeypatch.setattr("mumic_core.store.collection.collection_counts", broken)  # the Home page's first query
    at = signed_in_app(ROOT / "app.py").run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "Unexpected error" in error.value and "FileNotFoundError" in error.value and "\n" not in error.value
    no_trace_in(at, demo_studio.settings.home)
    logged = [r for r in caplog.records if r.name == "mumic_core.app"]
    assert logged and logged[0].exc_info and "secret.db" in caplog.text  # the whole story, on the server


def test_error_boundary_message():
    assert one_line(ClassError("class name is empty")) == "class name is empty"
    message = one_line(FileNotFoundError(2, "No such file", "/srv/mumic/images/ab/abc.png"))
    assert message == "Unexpected error (FileNotFoundError); details are in the server log."
    assert one_line(ClassError('first line\n  File "/x.py", line 3')) == "first line"


def test_streamlit_never_shows_tracebacks():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_a_failed_job_shows_one_line_without_server_paths(demo_studio, monkeypatch):
    secret = str(demo_studio.settings.home / "embeddings" / "part-0001.npy")

    def broken(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", secret)

    monkeypatch.setattr("mumic_core.pipeline.runner.rescore", broken)
    job_id = create_job(demo_studio, "score")
    with pytest.raises(FileNotFoundError):
        run_job(demo_studio, job_id)
    job = get_job(demo_studio, job_id)
    shown = [job_summary(job)["error"]] + [line.message for line in job_log(demo_studio, job_id)]
    assert shown[0] == "Unexpected error (FileNotFoundError); details are in the server log."
    assert not any(secret in line for line in shown)
    assert secret in job.error  # below the first line, for the command line and the logs


def test_refusals_show_their_reason_without_server_paths():
    assert one_line(KeyError("no image with id 7"), REFUSALS) == "no image with id 7"
    assert one_line(FileNotFoundError("not a folder: /srv/data/incoming/x"), REFUSALS) == "not a folder: …/x"
    assert (
        one_line(ServiceUnavailable("cannot reach the database sqlite:////srv/m/mumic.db: locked"))
        == "cannot reach the database sqlite:///…/mumic.db: locked"
    )
    assert one_line(ValueError("see http://127.0.0.1:9000/bucket/a"), REFUSALS) == "see http://127.0.0.1:9000/bucket/a"
