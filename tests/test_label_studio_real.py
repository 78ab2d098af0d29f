"""The real Label Studio (``label-studio``, in its own virtual environment, not in the product's
requirements) against the served API: a multi-label image project made with the product's
labelling config takes the exported tasks and shows the product's suggestions as predictions; the
product, connected as the project's ML backend, predicts a new task (an image uploaded to Label
Studio, fetched by the product) and is asked to train; annotations made in Label Studio, exported
and imported into the product, arrive with no label lost, and, once the webhook Label Studio made
for the backend carries a token, as they are made.

Slow (the venv is made once, then each run starts Label Studio on an empty data folder): run it
with ``python -m pytest -m slow tests/test_label_studio_real.py``."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import numpy as np
import pytest
from conftest import PASSWORD
from PIL import Image as PILImage
from test_api_schema import serve_api, wait_until_up
from test_procfile import free_port

from mumic_core.store.api_tokens import create_token
from mumic_core.store.auth import add_user
from mumic_core.store.registry import active_version

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LABEL_STUDIO = "label-studio==1.23.2"
LS_USER = "admin@example.com"
LS_TOKEN = "5f3c0e1d9a7b4c2e8f6a1b3d5c7e9f0a2b4c6d8e"  # a legacy API token the server is started with
UPLOADED_NAME = "from-label-studio.png"
# Environment variables Label Studio may read under a bare name (HOST, DEBUG, ...) are not passed on.
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


# --- the Label Studio venv and server -------------------------------------------------------------


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _label_studio_works(python: Path) -> bool:
    try:
        return python.exists() and _run([str(python), "-c", "import label_studio"], 120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="module")
def label_studio_bin() -> Path:
    """The ``label-studio`` command of a virtual environment with the real package, kept apart
    from the product's: ``$MUMIC_LABEL_STUDIO_VENV`` or ``.venv-label-studio``, made once."""
    venv = Path(os.environ.get("MUMIC_LABEL_STUDIO_VENV") or ROOT / ".venv-label-studio")
    python = venv / "bin" / "python"
    if not _label_studio_works(python):
        base = shutil.which("python3.11") or sys.executable
        steps = [[base, "-m", "venv", str(venv)]] if not python.exists() else []
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--timeout", "60"]
        steps.append([*pip, LABEL_STUDIO])
        try:
            for cmd in steps:
                done = _run(cmd, 900)
                if done.returncode != 0:
                    pytest.skip(f"cannot make the Label Studio venv at {venv}: {cmd[-1]} failed: {done.stderr[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot make the Label Studio venv at {venv}: {exc}")
        if not _label_studio_works(python):
            pytest.skip(f"{LABEL_STUDIO} installed at {venv} but `import label_studio` fails")
    return venv / "bin" / "label-studio"


def start_label_studio(command: Path, folder: Path, port: int) -> subprocess.Popen:
    """Label Studio on an empty data folder, logging to ``folder/label-studio.log``: one admin
    with a fixed (legacy) API token, allowed to reach the ML backend and images on 127.0.0.1."""
    (folder / "home").mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ} | {
        "HOME": str(folder / "home"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(folder / "data"),
        "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",  # what it tells the ML backend at setup
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        # Training asks the backend with a START_TRAINING webhook (already the default in 1.23)
        "ff_back_dev_1417_start_training_mlbackend_webhooks_250122_long": "true",
    }
    with open(folder / "label-studio.log", "w") as log:
        return subprocess.Popen(
            [
                str(command),
                "start",
                "--no-browser",
                "--port",
                str(port),
                "--data-dir",
                str(folder / "data"),
                "--username",
                LS_USER,
                "--password",
                PASSWORD,
                "--user-token",
                LS_TOKEN,
                "--enable-legacy-api-token",
            ],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# --- helpers --------------------------------------------------------------------------------------


def png(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def choices(result: list) -> set[str]:
    return {c for item in result or [] if item.get("type") == "choices" for c in item["value"]["choices"]}


def ticked(names) -> list[dict]:
    names = list(names)
    if not names:
        return []
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": names}}]


def ok(response: httpx.Response, *codes: int) -> httpx.Response:
    assert response.status_code in (codes or (200, 201)), f"{response.request.url}: {response.text[:1500]}"
    return response


def ls_tasks(ls: httpx.Client, project: int) -> list[dict]:
    """The project's tasks as Label Studio's data manager lists them (with predictions)."""
    body = ok(ls.get("/api/tasks", params={"project": project, "fields": "all", "page_size": 1000})).json()
    return body["tasks"]


def product_labels(api: httpx.Client) -> dict[int, dict[str, str]]:
    """Every labelled image's labels in the product, by image id: {class: state}."""
    out, offset = {}, 0
    while offset is not None:
        page = ok(api.get("/api/v1/labels", params={"offset": offset, "limit": 500})).json()
        for item in page["items"]:
            out[item["image_id"]] = {label["class"]: label["state"] for label in item["labels"]}
        offset = page["next_offset"]
    return out


def positives(labels: dict[str, str]) -> set[str]:
    return {name for name, state in labels.items() if state == "positive"}


# --- the test -------------------------------------------------------------------------------------


def test_label_studio_takes_predictions_predicts_with_the_product_and_its_labels_import_back(
    demo_studio, tmp_path, label_studio_bin
):
    add_user(demo_studio, "lead", PASSWORD, "admin")
    token = create_token(demo_studio, "lead", "label studio")[1]
    version = active_version(demo_studio).name
    api_port, ls_port = free_port(), free_port()
    product = serve_api(demo_studio.settings.home, api_port)
    studio_proc = start_label_studio(label_studio_bin, tmp_path / "label-studio", ls_port)
    api_url, ls_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ls_port}"
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    ls = httpx.Client(base_url=ls_url, headers={"Authorization": f"Token {LS_TOKEN}"}, timeout=300)
    try:
        wait_until_up(f"{api_url}/api/v1/health", product)
        wait_until_up(f"{ls_url}/health", studio_proc, seconds=180)

        # (1) a multi-label image project with the product's labelling config
        config = ok(api.get("/api/v1/exports/label-studio/config")).text
        classes = [c.get("value") for c in ElementTree.fromstring(config).iter("Choice")]  # the active classes
        assert len(classes) == 20
        project = ok(ls.post("/api/projects", json={"title": "MuMIC round trip", "label_config": config})).json()
        pid = project["id"]
        assert project["parsed_label_config"]["label"]["type"] == "Choices"
        assert set(project["parsed_label_config"]["label"]["labels"]) == set(classes)

        # (2) the exported tasks, with the active version's suggestions as predictions
        exported = ok(api.get("/api/v1/exports/label-studio", params={"base_url": api_url})).json()
        assert len(exported) == 60 and all(t["predictions"] for t in exported)
        imported = ok(ls.post(f"/api/projects/{pid}/import", json=exported)).json()
        assert imported["task_count"] == 60 and imported["prediction_count"] == 60, imported
        assert imported["annotation_count"] == sum(1 for t in exported if t.get("annotations"))
        tasks = {t["data"]["mumic_image_id"]: t for t in ls_tasks(ls, pid)}
        assert len(tasks) == 60
        for task in exported:
            shown = tasks[task["data"]["mumic_image_id"]]
            assert [p["model_version"] for p in shown["predictions"]] == [version]
            assert choices(shown["predictions"][0]["result"]) == choices(task["predictions"][0]["result"])
            assert shown["predictions"][0]["score"] == pytest.approx(task["predictions"][0]["score"])
        summary = ok(ls.get(f"/api/projects/{pid}")).json()
        assert summary["total_predictions_number"] == 60 and summary["model_version"] == version
        # the browser fetches a task's image from its signed URL, with no token
        image = httpx.get(next(iter(tasks.values()))["data"]["image"], timeout=30)
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/")

        # (3) the product as the project's ML backend predicts new tasks
        backend = ok(
            ls.post(
                "/api/ml",
                json={
                    "url": f"{api_url}/label-studio",
                    "project": pid,
                    "title": "MuMIC",
                    "auth_method": "BASIC_AUTH",
                    "basic_auth_user": "mumic",
                    "basic_auth_pass": token,
                },
            )
        ).json()
        backend = ok(ls.get(f"/api/ml/{backend['id']}")).json()
        assert backend["readable_state"] == "Connected", backend
        assert backend["model_version"] == version
        uploaded = png(2024)
        up = ok(ls.post(f"/api/projects/{pid}/import", files={"file": (UPLOADED_NAME, uploaded, "image/png")})).json()
        assert up["task_count"] == 1, up
        again = exported[7]  # an image the product has, as a new task with no prediction
        ok(ls.post(f"/api/projects/{pid}/import", json=[{"data": again["data"]}]))
        new = [t for t in ls_tasks(ls, pid) if not t["predictions"]]
        assert len(new) == 2, [t["data"] for t in new]
        ok(
            ls.post(
                "/api/dm/actions",
                params={"id": "retrieve_tasks_predictions", "project": pid},
                json={"selectedItems": {"all": False, "included": [t["id"] for t in new]}},
            )
        )
        after = {t["id"]: t for t in ls_tasks(ls, pid)}
        for task in new:
            predicted = after[task["id"]]["predictions"]
            assert [p["model_version"] for p in predicted] == [version], (task["data"], predicted)
        upload_task = next(after[t["id"]] for t in new if "mumic_image_id" not in t["data"])
        again_task = next(after[t["id"]] for t in new if "mumic_image_id" in t["data"])
        assert choices(again_task["predictions"][0]["result"]) == choices(again["predictions"][0]["result"])
        found = ok(api.get("/api/v1/images", params={"limit": 500})).json()["items"]
        uploaded_id = next(im["id"] for im in found if im["filename"] == UPLOADED_NAME)  # fetched, imported
        detail = ok(api.get(f"/api/v1/images/{uploaded_id}")).json()
        assert detail["sha256"] == hashlib.sha256(uploaded).hexdigest()
        assert detail["model_version"] == version and detail["suggestions"]  # and scored

        # (4) annotations made in Label Studio, exported, imported into the product: none lost
        before = product_labels(api)
        others = [t for t in exported if t is not again]
        labelled = [t for t in others if t.get("annotations") and choices(t["annotations"][0]["result"])]
        unlabelled = [t for t in others if not t.get("annotations")]
        assert len(labelled) >= 3 and len(unlabelled) >= 3
        accept = next((t for t in unlabelled[1:] if choices(t["predictions"][0]["result"])), unlabelled[1])
        live = next(t for t in unlabelled[1:] if t is not accept)["data"]["mumic_image_id"]
        untick = labelled[0]  # a class the product had as present is unticked, another ticked
        had = sorted(choices(untick["annotations"][0]["result"]))
        unticked = had[0]
        untick_to = [*had[1:], next(c for c in classes if c not in had)]
        plan = {  # task id -> (result, was_cancelled)
            tasks[untick["data"]["mumic_image_id"]]["id"]: (ticked(untick_to), False),
            tasks[labelled[1]["data"]["mumic_image_id"]]["id"]: (ticked([]), False),  # nothing there
            tasks[labelled[2]["data"]["mumic_image_id"]]["id"]: (ticked(classes[:1]), True),  # skipped
            tasks[unlabelled[0]["data"]["mumic_image_id"]]["id"]: (ticked(classes[2:5]), False),
            tasks[accept["data"]["mumic_image_id"]]["id"]: (  # the suggestion accepted
                tasks[accept["data"]["mumic_image_id"]]["predictions"][0]["result"],
                False,
            ),
            upload_task["id"]: (ticked([classes[1], classes[-1]]), False),
        }
        for task_id, (result, cancelled) in plan.items():
            ok(
                ls.post(
                    f"/api/tasks/{task_id}/annotations",
                    json={"result": result, "was_cancelled": cancelled, "ground_truth": False},
                )
            )
        export = ok(ls.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"}))
        exported_back = export.json()
        by_task = {t["id"]: t for t in exported_back}
        assert set(plan) <= set(by_task)
        result = ok(
            api.post("/api/v1/labels/import", files={"file": ("label-studio.json", export.content, "application/json")})
        ).json()
        assert result["errors"] == [], result

        after_labels = product_labels(api)
        expected: dict[int, set[str]] = {}
        for task in exported_back:
            kept = [a for a in task["annotations"] if not a["was_cancelled"]]
            if not kept:
                continue
            newest = max(kept, key=lambda a: (a["updated_at"], a["id"]))
            expected[task["data"].get("mumic_image_id", uploaded_id)] = choices(newest["result"])
        # the labelled images, and three new: two unlabelled ones and the uploaded image
        assert len(expected) == imported["annotation_count"] + 3
        for image_id, present in expected.items():
            labels = after_labels[image_id]
            assert positives(labels) == present, image_id
            assert set(labels) == set(classes), image_id  # every class stated
            assert all(labels[c] == "negative" for c in set(classes) - present), labels
        # the intended changes, and nothing else lost
        assert unticked not in positives(after_labels[untick["data"]["mumic_image_id"]])
        assert positives(after_labels[labelled[1]["data"]["mumic_image_id"]]) == set()
        skipped = labelled[2]["data"]["mumic_image_id"]
        assert positives(after_labels[skipped]) == positives(before[skipped])
        assert positives(after_labels[uploaded_id]) == {classes[1], classes[-1]}
        for image_id, labels in before.items():
            assert image_id in after_labels
            if image_id not in expected:
                assert after_labels[image_id] == labels, image_id

        # Label Studio made the backend's webhook without credentials (the product refused its
        # events: 401); with an Authorization header, annotations reach the product as they are made
        hooks = ok(ls.get("/api/webhooks", params={"project": pid})).json()
        hook = next(h for h in hooks if h["url"] == f"{api_url}/label-studio/webhook")
        auth = {"Authorization": f"Token {token}"}
        ok(ls.patch(f"/api/webhooks/{hook['id']}", json={"headers": auth}))
        assert live not in after_labels
        made = ok(ls.post(f"/api/tasks/{tasks[live]['id']}/annotations", json={"result": ticked(classes[5:8])})).json()
        assert positives(product_labels(api)[live]) == set(classes[5:8])
        ok(ls.patch(f"/api/annotations/{made['id']}", json={"result": ticked(classes[6:8])}))
        live_labels = product_labels(api)[live]
        assert positives(live_labels) == set(classes[6:8]) and live_labels[classes[5]] == "negative"

        # (5) Label Studio asks the backend to train: a START_TRAINING webhook queues a training
        ok(ls.post(f"/api/ml/{backend['id']}/train"))
        jobs = ok(api.get("/api/v1/jobs", params={"kind": "train"})).json()["items"]
        assert len(jobs) == 1 and jobs[0]["status"] in ("queued", "running"), jobs
        assert jobs[0]["params"]["reason"] == "Label Studio asked to train"
        backend = ok(ls.get(f"/api/ml/{backend['id']}")).json()
        assert backend["readable_state"] != "Error" and not backend["error_message"], backend
    finally:
        api.close()
        ls.close()
        stop(studio_proc)
        stop(product)
        server_log = (demo_studio.settings.home / "api.log").read_text()
    assert "Traceback" not in server_log, server_log[-4000:]
