"""The HTTP API: the whole loop over HTTP, tokens and roles, the stale-view check, errors as one
JSON message, and Label Studio's shapes (export, import, the ML-backend protocol)."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import ApiToken
from mumic_core.api.app import MAX_BODY, create_app
from mumic_core.pipeline.runner import run_job
from mumic_core.store.api_tokens import create_token
from mumic_core.store.auth import add_user, set_active
from mumic_core.store.collection import image_ids_by_name, import_files
from mumic_core.store.registry import active_version

PASSWORD = "correct horse battery"


def png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def api(demo_studio):
    """A client of the API over the demo store, and tokens of an admin and an annotator."""
    add_user(demo_studio, "lead", PASSWORD, "admin")
    add_user(demo_studio, "ann", PASSWORD, "annotator")
    client = TestClient(create_app(demo_studio.settings))
    tokens = {
        "lead": create_token(demo_studio, "lead", "pipeline")[1],
        "ann": create_token(demo_studio, "ann", "laptop")[1],
    }
    client.studio, client.tokens = demo_studio, tokens
    return client


def auth(client, who: str) -> dict:
    return {"Authorization": f"Bearer {client.tokens[who]}"}


def test_the_whole_loop_over_http(api):
    """upload -> suggestions -> labels -> train -> new version -> labels export, all over HTTP."""
    lead = auth(api, "lead")
    started = api.get("/api/v1/labels", headers=lead).json()["as_of"]
    up = api.post(
        "/api/v1/images",
        headers=lead,
        files=[
            ("files", ("new-1.png", png(1), "image/png")),
            ("files", ("new-2.png", png(2), "image/png")),
            ("files", ("notes.txt", b"not an image", "text/plain")),
        ],
    )
    assert up.status_code == 201, up.text
    body = up.json()
    assert (body["added"], body["rejected"]) == (2, 1)
    assert [f["outcome"] for f in body["files"]] == ["added", "added", "rejected"]
    new_id = body["files"][0]["image_id"]
    assert body["scoring_job"] is not None
    run_job(api.studio, body["scoring_job"])  # what the worker does
    assert api.get(f"/api/v1/jobs/{body['scoring_job']}", headers=lead).json()["status"] == "succeeded"

    image = api.get(f"/api/v1/images/{new_id}", headers=lead).json()
    assert image["filename"] == "new-1.png" and len(image["suggestions"]) == 9 and image["labels"] == []
    classes = [c["name"] for c in api.get("/api/v1/classes", headers=lead).json()["items"]]
    present = [s["class"] for s in image["suggestions"][:2]]
    absent = next(c for c in classes if c not in present)
    wrote = api.put(
        f"/api/v1/images/{new_id}/labels", headers=lead, json={"present": present, "absent": [absent], "seen": {}}
    )
    assert wrote.status_code == 200, wrote.text
    states = {x["class"]: x["state"] for x in wrote.json()["image"]["labels"]}
    assert {c for c, s in states.items() if s == "positive"} == set(present)
    assert states[absent] == "negative"
    assert {x["annotator"] for x in wrote.json()["image"]["labels"]} == {"lead"}  # who said it, as on the Review page
    assert sum(s == "assumed_negative" for s in states.values()) == len(classes) - len(present) - 1

    versions_before = {v["name"] for v in api.get("/api/v1/versions", headers=lead).json()["items"]}
    train = api.post("/api/v1/jobs/train", headers=lead, json={"mode": "head", "activate": "always"})
    assert train.status_code == 202, train.text
    job_id = train.json()["job_id"]
    assert api.post("/api/v1/jobs/train", headers=lead, json={"mode": "head"}).status_code == 409  # one at a time
    run_job(api.studio, job_id)
    job = api.get(f"/api/v1/jobs/{job_id}", headers=lead).json()
    assert job["status"] == "succeeded", job
    versions = api.get("/api/v1/versions", headers=lead).json()["items"]
    new = [v for v in versions if v["name"] not in versions_before]
    assert len(new) == 1 and new[0]["kind"] == "head" and new[0]["status"] == "active"
    assert api.get("/api/v1/versions/active", headers=lead).json()["name"] == new[0]["name"]
    preds = api.get(f"/api/v1/versions/{new[0]['name']}/predictions", headers=lead, params={"image_id": new_id})
    assert preds.json()["total"] == len(classes)

    export = api.get("/api/v1/exports/labels", headers=lead, params={"format": "csv"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = [r for r in csv.DictReader(io.StringIO(export.text)) if r["filename"] == "new-1.png"]
    assert {r["class"] for r in rows if r["state"] == "positive"} == set(present)

    changed = api.get("/api/v1/labels", headers=lead, params={"changed_since": started}).json()
    assert [i["image_id"] for i in changed["items"]] == [new_id]


def test_an_annotators_token_reviews_but_cannot_train_activate_export_or_import(api):
    ann = auth(api, "ann")
    version = active_version(api.studio).name
    assert api.get("/api/v1/me", headers=ann).json()["role"] == "annotator"
    refused = {
        "train": api.post("/api/v1/jobs/train", headers=ann, json={}),
        "activate": api.post(f"/api/v1/versions/{version}/activate", headers=ann),
        "download": api.get(f"/api/v1/versions/{version}/download", headers=ann),
        "export": api.get("/api/v1/exports/labels", headers=ann),
        "export label studio": api.get("/api/v1/exports/label-studio", headers=ann),
        "upload": api.post("/api/v1/images", headers=ann, files=[("files", ("a.png", png(5), "image/png"))]),
        "class": api.post("/api/v1/classes", headers=ann, json={"name": "kite"}),
        "others' tokens": api.get("/api/v1/tokens", headers=ann, params={"everyone": True}),
    }
    for what, response in refused.items():
        assert response.status_code == 403, what
        assert "annotator" in response.json()["error"], what
    image_id = api.get("/api/v1/images", headers=ann, params={"limit": 1}).json()["items"][0]["id"]
    ok = api.put(f"/api/v1/images/{image_id}/labels", headers=ann, json={"present": [], "absent": []})
    assert ok.status_code == 200


def test_tokens_are_hashed_revocable_capped_and_stop_with_the_account(api):
    lead = auth(api, "lead")
    made = api.post("/api/v1/tokens", headers=lead, json={"name": "review bot", "role": "annotator"})
    assert made.status_code == 201
    secret, token_id = made.json()["token"], made.json()["id"]
    with api.studio.read() as s:
        stored = s.scalars(select(ApiToken.token_hash)).all()
    assert secret not in stored and all(secret not in h for h in stored)
    capped = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/me", headers=capped).json()["role"] == "annotator"  # an admin's token, capped
    assert api.post("/api/v1/jobs/train", headers=capped, json={}).status_code == 403
    basic = base64.b64encode(f"x:{secret}".encode()).decode()
    assert api.get("/api/v1/me", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert [t["name"] for t in api.get("/api/v1/tokens", headers=lead).json()["items"]][0] == "review bot"
    assert api.delete(f"/api/v1/tokens/{token_id}", headers=lead).status_code == 204
    gone = api.get("/api/v1/me", headers=capped)
    assert gone.status_code == 401 and gone.json() == {"error": gone.json()["error"]}
    set_active(api.studio, "ann", False)
    assert api.get("/api/v1/me", headers=auth(api, "ann")).status_code == 401
    assert api.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_a_write_over_a_stale_view_is_refused_and_records_nothing(api):
    lead, ann = auth(api, "lead"), auth(api, "ann")
    image_id = api.get("/api/v1/images", headers=ann, params={"status": "unreviewed", "limit": 1}).json()["items"][0][
        "id"
    ]
    seen = {
        x["class"]: x["state"] == "positive"
        for x in api.get(f"/api/v1/images/{image_id}", headers=ann).json()["labels"]
    }
    name = api.get("/api/v1/classes", headers=lead).json()["items"][0]["name"]
    assert api.put(f"/api/v1/images/{image_id}/labels", headers=lead, json={"present": [name]}).status_code == 200
    late = api.put(f"/api/v1/images/{image_id}/labels", headers=ann, json={"absent": [name], "seen": seen})
    assert late.status_code == 409, late.text
    labels = api.get(f"/api/v1/images/{image_id}", headers=ann).json()["labels"]
    assert {"class": name, "state": "positive"}.items() <= next(x for x in labels if x["class"] == name).items()


def test_errors_are_one_json_message(api):
    lead = auth(api, "lead")
    cases = {
        404: api.get("/api/v1/images/999999", headers=lead),
        422: api.get("/api/v1/images", headers=lead, params={"limit": 100000}),
        400: api.put("/api/v1/images/1/labels", headers=lead, json={"present": ["no such class"]}),
        413: api.post("/api/v1/images", headers=lead | {"Content-Length": str(MAX_BODY + 1)}, content=b"x"),
    }
    for status, response in cases.items():
        assert response.status_code == status, (status, response.text)
        assert list(response.json()) == ["error"] and response.json()["error"], status
        assert "/" not in response.json()["error"] or "MiB" in response.json()["error"]
    assert "999999" in cases[404].json()["error"]
    assert "no such class" in cases[400].json()["error"]
    paged = api.get("/api/v1/images", headers=lead, params={"limit": 25, "offset": 50}).json()
    assert (paged["total"], len(paged["items"]), paged["next_offset"]) == (60, 10, None)
    assert api.get("/openapi.json").status_code == 200
    docs = api.get("/docs")  # the reference page, its scripts served here (it works offline)
    assert docs.status_code == 200 and "cdn." not in docs.text and "swagger-ui-bundle.js" in docs.text


def test_control_characters_are_refused_before_the_database(api):
    """PostgreSQL cannot store a NUL at all: every text a caller sends is checked first (422), and
    a file's name with one is imported under a visible replacement."""
    lead = auth(api, "lead")
    refused = [
        api.post("/api/v1/tokens", headers=lead, json={"name": "ox\u0000"}),
        api.post("/api/v1/classes", headers=lead, json={"name": "cat\u0000"}),
        api.post("/api/v1/classes", headers=lead, json={"name": "cat", "description": "a\u0000b"}),
        api.post("/api/v1/jobs/train", headers=lead, json={"reason": "x\u0007"}),
        api.get("/api/v1/images", headers=lead, params={"class": "a\x00b"}),
        api.put("/api/v1/images/1/labels", headers=lead, json={"present": ["cat\u0000"]}),
    ]
    for response in refused:
        assert response.status_code == 422, (response.request.url, response.text)
        assert list(response.json()) == ["error"]
    report = import_files(api.studio, [("a\x00b.png", png(5))])
    assert len(report.added) == 1 and "a\ufffdb.png" in image_ids_by_name(api.studio)


def test_label_studio_tasks_carry_predictions_and_their_annotations_import_back(api):
    lead = auth(api, "lead")
    tasks = api.get("/api/v1/exports/label-studio", headers=lead, params={"base_url": "http://mumic:8000"}).json()
    assert len(tasks) == 60
    version = active_version(api.studio).name
    first = tasks[0]
    assert first["predictions"][0]["model_version"] == version
    assert 0 <= first["predictions"][0]["score"] <= 1
    url = first["data"]["image"]
    assert url.startswith("http://mumic:8000/api/v1/images/") and "sig=" in url
    assert api.get(url.removeprefix("http://mumic:8000")).status_code == 200  # signed: no token needed
    assert api.get(url.removeprefix("http://mumic:8000").replace("sig=", "sig=0")).status_code == 401
    config = api.get("/api/v1/exports/label-studio/config", headers=lead).text
    assert 'choice="multiple"' in config

    # As Label Studio exports a project: annotations of some tasks, one of them skipped.
    names = [c["name"] for c in api.get("/api/v1/classes", headers=lead).json()["items"]]
    exported = []
    for k, t in enumerate(tasks[:4]):
        ann = {
            "id": k,
            "result": [
                {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": names[k : k + 2]}}
            ],
            "was_cancelled": k == 3,
        }
        exported.append(
            {"id": 100 + k, "data": t["data"], "annotations": [ann], "predictions": t.get("predictions", [])}
        )
    got = api.post("/api/v1/labels/import", headers=lead, files={"file": ("ls.json", json.dumps(exported))})
    assert got.status_code == 200, got.text
    assert got.json()["images"] == 3 and got.json()["errors"] == []
    for k, t in enumerate(tasks[:3]):
        labels = api.get(f"/api/v1/images/{t['data']['mumic_image_id']}", headers=lead).json()["labels"]
        assert {x["class"] for x in labels if x["state"] == "positive"} == set(names[k : k + 2])


def test_the_label_studio_ml_backend_predicts_and_learns_from_annotations(api):
    lead = auth(api, "lead")
    assert api.get("/label-studio/health").json()["status"] == "UP"
    version = active_version(api.studio).name
    setup = api.post("/label-studio/setup", headers=lead, json={"project": "3.1700000000", "schema": "<View/>"})
    assert setup.json() == {"model_version": version}
    tasks = api.get("/api/v1/exports/label-studio", headers=lead).json()[:3]
    ls_tasks = [{"id": 7 + k, "data": t["data"]} for k, t in enumerate(tasks)]
    ls_tasks.append({"id": 99, "data": {"image": "http://nowhere.invalid/x.png"}})  # cannot be fetched
    out = api.post("/label-studio/predict", headers=lead, json={"tasks": ls_tasks, "project": "3.1700000000"}).json()
    assert len(out["results"]) == 4 and out["model_version"] == version
    for task, result in zip(tasks, out["results"][:3]):
        assert result["result"] == task["predictions"][0]["result"]
    assert out["results"][3]["result"] == []

    name = api.get("/api/v1/classes", headers=lead).json()["items"][0]["name"]
    event = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 3},
        "task": {"id": 7, "data": tasks[0]["data"]},
        "annotation": {
            "id": 1,
            "result": [{"type": "choices", "from_name": "label", "to_name": "image", "value": {"choices": [name]}}],
        },
    }
    hook = api.post("/label-studio/webhook", headers=lead, json=event)
    assert hook.status_code == 200, hook.text
    labels = api.get(f"/api/v1/images/{tasks[0]['data']['mumic_image_id']}", headers=lead).json()["labels"]
    assert [x["class"] for x in labels if x["state"] == "positive"] == [name]
    train = api.post("/label-studio/webhook", headers=lead, json={"action": "START_TRAINING", "project": {"id": 3}})
    assert train.json()["action"] == "START_TRAINING" and train.json()["job_id"]
    assert api.post("/label-studio/predict", json={"tasks": []}).status_code == 401


def test_each_person_makes_and_revokes_their_own_tokens_on_the_api_tokens_page(studio):
    from pathlib import Path

    from conftest import signed_in_app

    from mumic_core.store.api_tokens import actor_for_api_token, list_tokens

    page = Path(__file__).resolve().parents[1] / "app_pages/api_tokens.py"
    at = signed_in_app(page, "ann", "annotator").run()
    assert not at.exception and "You have no tokens yet." in [i.value for i in at.info]
    assert at.radio[0].options == ["annotator"]  # no more than one's own role
    at.text_input[0].input("label studio backend")
    at.button[0].click().run()
    secret = at.code[0].value
    assert secret.startswith("mumic_") and actor_for_api_token(studio, secret).username == "ann"
    [token] = list_tokens(studio, "ann")
    assert token.name == "label studio backend" and secret[6:14] == token.prefix
    at.run()
    assert not at.code  # shown once
    at.button(key=f"revoke_{token.id}").click().run()
    assert actor_for_api_token(studio, secret) is None and list_tokens(studio, "ann")[0].revoked


def test_near_duplicates_are_a_job_an_annotator_may_queue(api):
    from mumic_core.pipeline.runner import run_job

    ann = auth(api, "ann")
    assert api.post("/api/v1/jobs/near-duplicates", headers=ann, json={"min_similarity": 1.5}).status_code == 422
    queued = api.post("/api/v1/jobs/near-duplicates", headers=ann, json={"min_similarity": 0.99})
    assert queued.status_code == 202
    job_id = queued.json()["job_id"]
    again = api.post("/api/v1/jobs/near-duplicates", headers=ann, json={})
    assert again.status_code == 409 and f"job {job_id}" in again.json()["error"]  # one search at a time
    run_job(api.studio, job_id)  # what the worker does
    job = api.get(f"/api/v1/jobs/{job_id}", headers=ann).json()
    assert job["status"] == "succeeded" and job["params"]["min_similarity"] == 0.99
    assert set(job["result"]) == {"version_id", "groups", "group_count", "images_in_groups"}
    assert job["result"]["version_id"] == active_version(api.studio).id
