"""Schemathesis against the served OpenAPI schema: generated requests to every operation (valid and
invalid ones) get no server error (5xx), no undocumented status, and answers that match the schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import PASSWORD, make_env
from test_procfile import free_port

from mumic_core.store.api_tokens import create_token
from mumic_core.store.auth import add_user

ROOT = Path(__file__).resolve().parents[1]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def serve_api(home: Path, port: int) -> subprocess.Popen:
    """The API as the Procfile serves it, on a free port, logging to ``home/api.log`` (a pipe
    nobody reads would block the server once full)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "api.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "mumic_core.api.app:create_app", "--factory", "--port", str(port)],
            cwd=ROOT,
            env=make_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
        assert proc.poll() is None, "the API server stopped"
    raise AssertionError(f"{url} did not answer")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(demo_studio, tmp_path):
    add_user(demo_studio, "lead", PASSWORD, "admin")
    token = create_token(demo_studio, "lead", "schemathesis")[1]
    port = free_port()
    proc = serve_api(demo_studio.settings.home, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/v1/health", proc)
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                CHECKS,
                "--header",
                f"Authorization: Bearer {token}",
                "--exclude-method",
                "DELETE",  # it would revoke the token the run uses (tests/test_api.py covers revoking)
                "--max-examples",
                os.environ.get("MUMIC_SCHEMATHESIS_EXAMPLES", "15"),
                "--seed",
                "1",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=400,
            env=make_env(demo_studio.settings.home),
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        server_log = (demo_studio.settings.home / "api.log").read_text()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Authentication failed" not in run.stdout, run.stdout[-4000:]
    assert "Traceback" not in server_log, server_log[-4000:]
