"""Shared fixtures: every test gets its own MUMIC_HOME and the offline, untrained built-in model.

With ``MUMIC_TEST_DATABASE_URL`` set to a PostgreSQL server (``make test-postgres``), every test
gets its own database there instead of a SQLite file: a copy of a template migrated once per run.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from mumic_core.config import load_settings
from mumic_core.store.auth import SYSTEM
from mumic_core.store.studio import Studio, open_studio

# Nothing listens on port 9 here: "is the model hub reachable?" is answered "no" at once.
OFFLINE_ENV = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}


SERVER_URL = os.environ.get("MUMIC_TEST_DATABASE_URL", "")
_TEMPLATE = f"mumic_template_{uuid.uuid4().hex[:8]}"
_numbers = itertools.count()


def pytest_collection_modifyitems(config, items) -> None:
    """On PostgreSQL, tests of SQLite's own machinery (its file, pragmas, query plans) are skipped."""
    if not SERVER_URL:
        return
    skip = pytest.mark.skip(reason="tests SQLite itself; this run is on PostgreSQL")
    for item in items:
        if "sqlite_only" in item.keywords:
            item.add_marker(skip)


def make_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that works on ``home`` (and on the test's own database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMIC_")}
    root = str(Path(__file__).resolve().parents[1])
    database = {"MUMIC_DATABASE_URL": os.environ["MUMIC_DATABASE_URL"]} if os.environ.get("MUMIC_DATABASE_URL") else {}
    return env | OFFLINE_ENV | {"MUMIC_HOME": str(home), "PYTHONPATH": root} | database | extra


def _server_sql(statement: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_template():
    """PostgreSQL runs: one database migrated to the newest revision, copied for each test."""
    if not SERVER_URL:
        yield None
        return
    from db.migrate import upgrade
    from db.session import dispose_engines

    _server_sql(f"CREATE DATABASE {_TEMPLATE}")
    upgrade(_database_url(_TEMPLATE))
    dispose_engines()
    yield _TEMPLATE
    dispose_engines()
    _server_sql(f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_template) -> Path:
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        monkeypatch.delenv(key)
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MUMIC_HOME", str(tmp_path / "home"))
    if database_template is None:
        yield tmp_path / "home"
        return
    from db.session import dispose_engines

    name = f"mumic_test_{os.getpid()}_{next(_numbers)}"
    _server_sql(f"CREATE DATABASE {name} TEMPLATE {database_template}")
    monkeypatch.setenv("MUMIC_DATABASE_URL", _database_url(name))
    yield tmp_path / "home"
    dispose_engines()
    _server_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def studio(home: Path) -> Studio:
    return open_studio(load_settings(), actor=SYSTEM)


@pytest.fixture
def demo_studio(studio: Studio) -> Studio:
    """A small demo collection (60 images, 20 classes, half pre-labelled), scored by the base model."""
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import seed_demo

    version = ensure_base_version(studio)
    seed_demo(studio, n_images=60, seed=3)
    score_collection(studio, version)
    return studio


PASSWORD = "correct horse battery"


def signed_in_app(script: Path | str, user: str = "lead", role: str = "admin", timeout: float = 90):
    """An AppTest of ``script`` whose browser tab is signed in as ``user`` (created if new)."""
    from streamlit.testing.v1 import AppTest

    from mumic_core.store.auth import AccountError, add_user, sign_in

    studio = open_studio(load_settings(), migrate=False, actor=SYSTEM)
    try:
        add_user(studio, user, PASSWORD, role)
    except AccountError:
        pass
    at = AppTest.from_file(str(script), default_timeout=timeout)
    at.session_state["auth_token"] = sign_in(studio, user, PASSWORD)
    return at


def diverging_loss(config, n_classes, temperature, offset):
    """A stand-in for ``model.losses.create_loss`` whose loss is NaN at once (a diverging run)."""
    from mumic_core.model.losses import BCELoss

    class Diverging(BCELoss):
        def on_logits(self, logits, targets, mask=None, assumed=None):
            return (logits * float("nan")).sum()

    return Diverging(n_classes, temperature, offset)


def panel_data(at, component: str = "mumic_review_panel") -> dict | None:
    """What the Review page sent its one-image panel (``app_pages/review_panel.py``; or the sweep
    panel, ``mumic_sweep_panel``) in an AppTest run: token, items (id, name, key, prob, on, note),
    ...; None when no panel is shown."""
    import json

    for element in at.get("bidi_component"):
        if element.proto.component_name == component:
            return json.loads(element.proto.json)
    return None


def stored_scores(studio: Studio, class_id: int | None = None) -> dict[tuple[int, int, int], float]:
    """Every stored image-class probability (of one class, when given): (version, image, class) -> p."""
    from sqlalchemy import select

    from db.models import SCORE_BLOCK, ScoreBlock

    query = select(ScoreBlock.model_version_id, ScoreBlock.class_id, ScoreBlock.block, ScoreBlock.scores)
    if class_id is not None:
        query = query.where(ScoreBlock.class_id == class_id)
    out = {}
    with studio.read() as s:
        for version_id, cid, block, data in s.execute(query):
            values = np.frombuffer(data, dtype="<f2").astype(float)
            for k in np.flatnonzero(~np.isnan(values)).tolist():
                out[version_id, block * SCORE_BLOCK + k, cid] = float(values[k])
    return out
