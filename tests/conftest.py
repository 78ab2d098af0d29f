"""Shared fixtures: every test gets its own MUMIC_HOME and the offline, untrained built-in model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mumic_core.auth import SYSTEM
from mumic_core.config import load_settings
from mumic_core.studio import Studio, open_studio

# Nothing listens on port 9 here: "is the model hub reachable?" is answered "no" at once.
OFFLINE_ENV = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}


def make_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMIC_")}
    root = str(Path(__file__).resolve().parents[1])
    return env | OFFLINE_ENV | {"MUMIC_HOME": str(home), "PYTHONPATH": root} | extra


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        monkeypatch.delenv(key)
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MUMIC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def studio(home: Path) -> Studio:
    return open_studio(load_settings(), actor=SYSTEM)


@pytest.fixture
def demo_studio(studio: Studio) -> Studio:
    """A small demo collection (60 images, 20 classes, half pre-labelled), scored by the base model."""
    from mumic_core.demo import seed_demo
    from mumic_core.registry import ensure_base_version
    from mumic_core.scoring import score_collection

    version = ensure_base_version(studio)
    seed_demo(studio, n_images=60, seed=3)
    score_collection(studio, version)
    return studio


PASSWORD = "correct horse battery"


def signed_in_app(script: Path | str, user: str = "lead", role: str = "admin", timeout: float = 90):
    """An AppTest of ``script`` whose browser tab is signed in as ``user`` (created if new)."""
    from streamlit.testing.v1 import AppTest

    from mumic_core.auth import AccountError, add_user, sign_in

    studio = open_studio(load_settings(), migrate=False, actor=SYSTEM)
    try:
        add_user(studio, user, PASSWORD, role)
    except AccountError:
        pass
    at = AppTest.from_file(str(script), default_timeout=timeout)
    at.session_state["auth_token"] = sign_in(studio, user, PASSWORD)
    return at
