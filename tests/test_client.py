"""The Python client and its command line, against a served API: push, pull since, train, wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORD, make_env
from test_api import png
from test_api_schema import serve_api, wait_until_up
from test_procfile import free_port

from mumic_client import ApiError, MumicClient
from mumic_core.pipeline.runner import run_job
from mumic_core.store.api_tokens import create_token
from mumic_core.store.auth import add_user

ROOT = Path(__file__).resolve().parents[1]


def test_a_pipeline_pushes_pulls_trains_and_waits(demo_studio, tmp_path):
    add_user(demo_studio, "lead", PASSWORD, "admin")
    add_user(demo_studio, "ann", PASSWORD, "annotator")
    token = create_token(demo_studio, "lead", "pipeline")[1]
    port = free_port()
    proc = serve_api(demo_studio.settings.home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/v1/health", proc)
        client = MumicClient(url, token)
        labelled, as_of = client.pull_labels()
        assert len(labelled) == 30 and all(im.labels for im in labelled)  # the demo's pre-labelled half

        folder = tmp_path / "new"
        folder.mkdir()
        for k in range(3):
            (folder / f"n{k}.png").write_bytes(png(10 + k))
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
        cli = [sys.executable, "-m", "mumic_client", "--url", url, "--token", token]
        env = make_env(demo_studio.settings.home)
        pushed = subprocess.run([*cli, "push", str(folder)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.strip() == "3 added, 0 duplicate, 1 rejected"
        assert "broken.png: rejected" in pushed.stderr

        nothing, _ = client.pull_labels(since=as_of)
        assert nothing == []
        job_id = client.train(mode="head", activate="always")
        try:
            client.train()
        except ApiError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("a second training was queued while one waits")
        run_job(demo_studio, job_id)  # the worker's part
        waited = subprocess.run([*cli, "wait", str(job_id)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert waited.returncode == 0 and f"job {job_id} succeeded" in waited.stdout, waited.stdout + waited.stderr

        pulled = subprocess.run([*cli, "pull"], capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [json.loads(x) for x in pulled.stdout.splitlines()]
        assert len(lines) == 30 and "next: --since" in pulled.stderr
        assert {x["image_id"] for x in lines} == {im.image_id for im in labelled}

        annotator = MumicClient(url, create_token(demo_studio, "ann", "laptop")[1])
        try:
            annotator.train()
        except ApiError as exc:
            assert exc.status == 403 and "annotator" in exc.message
        else:
            raise AssertionError("an annotator's token trained")
        search_id = annotator.find_near_duplicates(min_similarity=0.99)
        run_job(demo_studio, search_id)
        found = annotator.wait(search_id, timeout=30)
        assert found.kind == "near_duplicates" and found.status == "succeeded" and "groups" in found.result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
