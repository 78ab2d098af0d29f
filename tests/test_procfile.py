"""`honcho start` with the Procfile serves the app and runs the worker (what `make run` starts)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import make_env

from mumic_core.config import load_settings
from mumic_core.store.auth import SYSTEM
from mumic_core.store.studio import Studio
from mumic_core.store.workers import live_workers

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_procfile_starts_web_worker_and_api(demo_studio):
    port, api_port = free_port(), free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = make_env(demo_studio.settings.home, MUMIC_PORT=str(port), MUMIC_API_PORT=str(api_port))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    honcho = shutil.which("honcho", path=env["PATH"])
    proc = subprocess.Popen(
        [honcho, "start"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    studio = Studio(load_settings(env), SYSTEM)
    try:
        deadline = time.monotonic() + 90
        healthy = worker = api = None
        while time.monotonic() < deadline and not (healthy and worker and api):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    healthy = r.status == 200
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/health", timeout=2) as r:
                    api = r.status == 200
            except OSError:
                pass
            worker = live_workers(studio)
            time.sleep(0.5)
        assert healthy, "the web app did not answer"
        assert worker, "the worker did not start"
        assert api, "the API did not answer"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out
