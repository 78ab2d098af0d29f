"""End to end in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Reviews an image with the keyboard only, checks the database, adds a class in the UI and
times its zero-shot suggestions, and screenshots every page (into $MUMIC_SCREENSHOT_DIR when
set, e.g. `make screenshots` writes docs/screenshots/).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import PASSWORD, make_env
from sqlalchemy import select
from test_procfile import free_port

from db.models import Annotation, LabelClass
from mumic_core.store.auth import SYSTEM
from mumic_core.store.registry import active_version
from mumic_core.store.scores import class_column

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
SCREENSHOT_DIR = os.environ.get("MUMIC_SCREENSHOT_DIR")  # read before fixtures clear MUMIC_* variables
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serve(home: Path, **env: str):
    """`streamlit run serve.py` (the app and its cookie route) on a free port for the store at
    ``home`` (``env``: more MUMIC_* settings); yields its URL."""
    port = free_port()
    log = (home / "server.log").open("ab")  # read it when a test fails
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "serve.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=make_env(home, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def server(demo_studio):
    with serve(demo_studio.settings.home) as url:
        yield url


def sign_in(page, url: str, home: Path, user: str = "lead", role: str = "admin") -> None:
    """Create ``user`` if new and sign in through the form; the session cookie keeps the
    browser signed in across page loads."""
    from mumic_core.config import load_settings
    from mumic_core.store.auth import AccountError, add_user
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(make_env(home)), migrate=False, actor=SYSTEM)
    try:
        add_user(studio, user, PASSWORD, role)
    except AccountError:
        pass
    page.goto(url)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(f"text=Signed in as {user}", timeout=60000)
    # The page then has the browser fetch its HttpOnly session cookie from the server: wait for
    # it, so that the next page load (a typed URL) is signed in too.
    deadline = time.monotonic() + 30
    while not any(c["name"] == "mumic_session" for c in page.context.cookies()) and time.monotonic() < deadline:
        page.wait_for_timeout(100)


def settle(page, extra_ms: int = 600) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60000)
    page.wait_for_timeout(extra_ms)


def shot(page, name: str, out: Path) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_keyboard_review_new_class_and_screenshots(server, demo_studio, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    out = Path(SCREENSHOT_DIR or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    studio = demo_studio
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector("text=Sign in")
        settle(page, 800)
        shot(page, "sign_in", out)
        sign_in(page, server, studio.settings.home)
        page.goto(server)  # a fresh page load: the cookie keeps the session
        page.wait_for_selector("h1")
        page.wait_for_selector("[data-testid='stDataFrame']", timeout=90000)
        settle(page, 3000)
        shot(page, "home", out)

        page.goto(f"{server}/review")
        page.wait_for_selector("[data-testid='stImage']")
        settle(page, 1500)
        shot(page, "review", out)
        first = page.locator("button.toggle").first
        label = first.locator(".name").inner_text()
        was_checked = first.get_attribute("aria-pressed") == "true"
        page.locator("[data-testid='stImage']").first.click()  # focus the page, not a widget
        page.keyboard.press("1")  # toggle the first suggestion: at once, in the browser
        assert (page.locator("button.toggle").first.get_attribute("aria-pressed") == "true") != was_checked
        page.keyboard.press("Control+Enter")  # accept: submit as shown
        page.wait_for_selector("text=Image 1 of 29", timeout=20000)  # the next image, at once
        settle(page)

        with studio.read() as s:
            rows = list(s.scalars(select(Annotation).where(Annotation.source == "review")))
            name_of = dict(s.execute(select(LabelClass.id, LabelClass.name)).all())
        assert rows and {r.annotator for r in rows} == {"lead"}
        toggled = [r for r in rows if name_of[r.class_id] == label and not r.assumed]
        assert toggled and toggled[0].positive == (not was_checked)

        page.keyboard.press("ArrowRight")
        page.wait_for_selector("text=Image 2 of 29", timeout=20000)
        settle(page)
        page.keyboard.press("Control+z")  # undo the submission
        page.wait_for_selector("text=of 30", timeout=20000)
        settle(page)
        with studio.read() as s:
            assert not list(
                s.scalars(select(Annotation).where(Annotation.source == "review", Annotation.is_current.is_(True)))
            )

        page.get_by_text("Grid", exact=True).click()
        settle(page, 2000)
        shot(page, "review_grid", out)

        page.goto(f"{server}/classes")
        page.wait_for_selector("h1")
        settle(page, 3000)  # the app loads the model in the background at start
        page.get_by_text("Add a class").click()
        form = page.get_by_test_id("stForm")
        form.get_by_label("Name", exact=True).fill("violet thing")
        form.get_by_label("Prompts, one per line").fill("a violet object\nsomething purple")
        start = time.monotonic()
        page.get_by_role("button", name="Add class").click()
        page.wait_for_selector("text=Zero-shot suggestions", timeout=30000)
        page.wait_for_selector("[data-testid='stImage']")
        elapsed = time.monotonic() - start
        settle(page, 1500)
        shot(page, "classes_new_class", out)
        with studio.read() as s:
            cid = s.scalar(select(LabelClass.id).where(LabelClass.name == "violet thing"))
            n = int((~np.isnan(class_column(s, active_version(studio).id, cid))).sum())
        assert n == 60
        print(f"new class: suggestions over {n} images visible {elapsed:.2f} s after clicking Add")
        (out / "new_class_seconds.txt").write_text(f"{elapsed:.2f}\n")

        for path, name in [
            ("dashboard", "dashboard"),
            ("import_export", "import_export"),
            ("training", "training"),
            ("jobs", "jobs"),
        ]:
            page.goto(f"{server}/{path}")
            page.wait_for_selector("h1")
            settle(page, 2500)
            shot(page, name, out)
        browser.close()
    assert elapsed < 10  # generous here; the must-show figure is measured and reported, not asserted tightly


def test_explore_search_map_and_suspicious_labels_queue(server, demo_studio, tmp_path: Path):
    """Text search, the embedding map coloured by a class, sending results to Review, and the
    suspicious-labels queue (screenshots: explore_search, explore_map, review_suspicious)."""
    from playwright.sync_api import sync_playwright

    out = Path(SCREENSHOT_DIR or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        sign_in(page, server, demo_studio.settings.home)
        page.goto(f"{server}/explore")
        page.wait_for_selector("h1")
        settle(page, 1500)
        box = page.get_by_label("Describe what you are looking for")
        box.fill("a red circle on stripes")
        box.press("Enter")
        page.wait_for_selector("[data-testid='stImage']", timeout=60000)
        settle(page, 1500)
        shot(page, "explore_search", out)
        page.get_by_role("tab", name="Map").click()
        page.wait_for_selector(".js-plotly-plot", timeout=60000)
        page.get_by_label("Colour by the human label of").click()
        page.get_by_role("option", name="circle", exact=True).click()
        page.wait_for_selector(".js-plotly-plot .legendtext", timeout=60000)  # coloured: present/absent/...
        settle(page, 2500)
        shot(page, "explore_map", out)
        page.get_by_role("tab", name="Text search").click()
        page.get_by_role("button", name="Review these").click()
        page.wait_for_selector("text=chosen from the Explore page", timeout=30000)
        settle(page, 1000)

        page.goto(f"{server}/review")
        page.wait_for_selector("[data-testid='stImage']")
        settle(page)
        page.get_by_role("button", name="Find likely wrong labels").click()
        page.wait_for_selector("text=chosen from suspicious labels", timeout=120000)
        page.wait_for_selector("text=Suspicious:", timeout=30000)
        page.mouse.move(700, 5)  # no tooltip over the page
        settle(page, 1500)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=30000,
        )
        shot(page, "review_suspicious", out)
        # the suspected labels come first, with keys 1-9, and say the banner's numbers
        banner = page.locator("[data-testid='stAlert']", has_text="Suspicious:").inner_text()
        said = dict(re.findall("\u2068([^\u2069]+)\u2069 is labelled \\w+, the held-out model gives (\\d+%)", banner))
        toggles = [
            (t.locator(".key").inner_text(), t.locator(".name").inner_text(), t.locator(".prob").inner_text())
            for t in page.locator("button.toggle").all()
        ]
        suspected = [(key, name, prob) for key, name, prob in toggles if "suspected" in prob]
        assert said and len(suspected) == len(said)
        assert {key for key, _, _ in suspected} == set("123456789"[: len(suspected)])
        for _, name, prob in suspected:
            assert f"held-out {said.get(name.strip())}" in prob, (name, prob, said, banner)
        browser.close()


def test_training_page_live_job_cancel_and_version_comparison(studio, tmp_path: Path):
    """The Training page follows a job the worker runs, cancels it from the browser, and compares
    versions once a retraining has been promoted (screenshots: training_running, training_versions)."""
    from playwright.sync_api import sync_playwright
    from test_worker import start_worker, stop, wait_for

    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import seed_demo
    from mumic_core.services.training import request_training
    from mumic_core.store.jobs import active_job, get_job, list_jobs
    from mumic_core.store.registry import active_version
    from mumic_core.store.settings import set_setting
    from mumic_core.store.workers import live_workers

    out = Path(SCREENSHOT_DIR or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    seed_demo(studio, n_images=200, seed=5)  # 100 labelled: a held-out split worth comparing on
    score_collection(studio, ensure_base_version(studio))
    set_setting(studio, "promotion_policy", "always")  # the form's default: this run is promoted
    worker = start_worker(studio.settings.home)
    try:
        with serve(studio.settings.home) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, server, studio.settings.home)
            wait_for(lambda: len(live_workers(studio)) == 1, timeout=60)
            page.goto(server)  # Home lists the live workers and what they compute on
            page.wait_for_selector("text=Background workers: 1 running", timeout=30000)
            page.wait_for_selector("text=No jobs yet", timeout=30000)
            settle(page, 3000)
            shot(page, "home_workers", out)
            page.goto(f"{server}/training")
            page.wait_for_selector("text=Train a new version")
            settle(page)
            page.get_by_role("button", name="Start training").click()  # head mode, default settings
            page.wait_for_selector("text=queued")
            first = list_jobs(studio, kind="train")[0]
            wait_for(lambda: active_job(studio, "train") is None, timeout=180)
            assert get_job(studio, first.id).status == "succeeded"
            # A longer full-mode run to watch and cancel.
            job_id = request_training(studio, {"mode": "full", "epochs": 40, "activate": "always"})
            wait_for(
                lambda: get_job(studio, job_id).phase == "training" and get_job(studio, job_id).progress > 0.1,
                timeout=240,
            )
            page.set_viewport_size({"width": 1400, "height": 1500})
            page.wait_for_selector("text=left in this phase", timeout=30000)
            page.wait_for_timeout(1500)
            shot(page, "training_running", out)
            page.get_by_role("button", name="Cancel").click()
            wait_for(lambda: get_job(studio, job_id).status == "cancelled", timeout=60)
            page.set_viewport_size({"width": 1400, "height": 2900})
            page.goto(f"{server}/training")
            page.wait_for_selector("text=Validation metrics by version", timeout=30000)
            settle(page, 3000)
            shot(page, "training_versions", out)
            assert page.get_by_text("cancelled during training").count() >= 1
            browser.close()
    finally:
        log = stop(worker)
    assert active_version(studio).name == get_job(studio, first.id).result["version"], log


def test_sign_in_roles_and_sign_out_in_a_real_browser(server, demo_studio, tmp_path: Path):
    """Pages need a session; an annotator's navigation has no admin pages and an admin URL typed
    by hand says no; signing out ends the session for every page load after it."""
    from playwright.sync_api import sync_playwright

    out = Path(SCREENSHOT_DIR or tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path in ("", "review", "classes", "training"):
            page.goto(f"{server}/{path}")
            page.wait_for_selector("text=Sign in")
            settle(page)
            assert page.locator("[data-testid='stImage']").count() == 0
            assert page.locator("text=Signed in as").count() == 0
        page.get_by_label("Username").fill("ann")
        page.get_by_label("Password", exact=True).fill("wrong password!")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("text=Wrong username or password")
        sign_in(page, server, demo_studio.settings.home, "ann", "annotator")
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Review" in nav and "Classes" not in nav and "Training" not in nav
        page.goto(f"{server}/review")
        page.wait_for_selector("[data-testid='stImage']", timeout=90000)
        settle(page, 1000)
        shot(page, "review_annotator", out)
        page.goto(f"{server}/classes")  # not in her navigation: Streamlit says the page is not found
        page.wait_for_selector("h1")
        settle(page)
        shot(page, "annotator_admin_url", out)
        assert page.locator("text=Add a class").count() == 0
        page.goto(server)
        page.wait_for_selector("text=Signed in as")
        settle(page)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("text=You are signed out")
        settle(page)
        assert page.get_by_test_id("stSidebarNav").count() == 0  # no menu of pages beside the sign-in form
        page.goto(f"{server}/review")
        page.wait_for_selector("text=Sign in")
        settle(page)
        assert page.locator("text=Signed in as").count() == 0
        browser.close()


def test_the_session_cookie_is_out_of_reach_of_page_scripts(server, demo_studio):
    """Signing in gives the browser an HttpOnly, SameSite=Strict cookie that the server sets: page
    scripts cannot read the token, yet a new page load stays signed in; signing out drops it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, server, demo_studio.settings.home, "ann", "annotator")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(c["name"] == "mumic_session" for c in context.cookies()):
            time.sleep(0.2)
        cookie = next(c for c in context.cookies() if c["name"] == "mumic_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert "mumic_session" not in page.evaluate("document.cookie")
        page.goto(f"{server}/review")  # a new page load: signed in by the cookie alone
        page.wait_for_selector("text=Signed in as ann", timeout=30000)
        settle(page)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("text=You are signed out")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(c["name"] == "mumic_session" for c in context.cookies()):
            time.sleep(0.2)
        assert not any(c["name"] == "mumic_session" for c in context.cookies())
        page.goto(server)
        page.wait_for_selector("text=Sign in")
        browser.close()
