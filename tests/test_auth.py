"""Accounts, sessions and role checks: in the service layer, the CLI, and the pages."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PASSWORD, panel_data, signed_in_app
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import AuditEvent, User, UserSession
from mumic_core.store import auth
from mumic_core.store.auth import (
    SYSTEM,
    AccountError,
    Actor,
    PermissionDenied,
    actor_for_token,
    add_user,
    ensure_first_admin,
    set_active,
    set_password,
    sign_in,
    sign_out,
)

ROOT = Path(__file__).resolve().parents[1]


def test_passwords_are_argon2_hashed_and_sessions_store_only_a_hash(studio):
    add_user(studio, "Ann", PASSWORD)
    token = sign_in(studio, "ann", PASSWORD)
    with studio.read() as s:
        user = s.scalar(select(User))
        stored = s.scalar(select(UserSession.token_hash))
    assert user.username == "ann" and user.role == "annotator"
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert token not in stored and len(stored) == 64
    assert actor_for_token(studio, token) == Actor("ann", "annotator")


def test_wrong_credentials_get_one_vague_error(studio):
    add_user(studio, "ann", PASSWORD)
    for name, password in [("ann", "wrong password!"), ("nobody", PASSWORD), ("", ""), ("../etc", PASSWORD)]:
        with pytest.raises(PermissionDenied, match="wrong username or password"):
            sign_in(studio, name, password)


def test_repeated_wrong_passwords_lock_the_name_for_a_while(studio, monkeypatch):
    add_user(studio, "ann", PASSWORD)
    add_user(studio, "bob", PASSWORD)
    for _ in range(auth.MAX_FAILURES):
        with pytest.raises(PermissionDenied, match="wrong username or password"):
            sign_in(studio, "ann", "guessing again")
    with pytest.raises(PermissionDenied, match="too many failed sign-ins"):
        sign_in(studio, "ann", PASSWORD)  # even the right password, for now
    assert actor_for_token(studio, sign_in(studio, "bob", PASSWORD)).username == "bob"  # others unaffected
    later = auth._now() + auth.LOCKOUT + timedelta(seconds=1)
    monkeypatch.setattr(auth, "_now", lambda: later)
    assert actor_for_token(studio, sign_in(studio, "ann", PASSWORD)).username == "ann"


@pytest.mark.parametrize(
    "name,password,message",
    [
        ("a", PASSWORD, "2-40 characters"),
        ("x" * 41, PASSWORD, "2-40"),
        ("ann smith", PASSWORD, "2-40"),
        ("<script>", PASSWORD, "2-40"),
        ("ann", "short", "at least 10"),
        ("ann", "p" * 1025, "at most 1024"),
    ],
)
def test_bad_accounts_are_refused(studio, name, password, message):
    with pytest.raises(AccountError, match=message):
        add_user(studio, name, password)


def test_duplicate_usernames_and_unknown_roles_are_refused(studio):
    add_user(studio, "ann", PASSWORD)
    with pytest.raises(AccountError, match="already exists"):
        add_user(studio, " ANN ", PASSWORD)
    with pytest.raises(AccountError, match="unknown role"):
        add_user(studio, "bob", PASSWORD, role="root")


def test_sessions_expire_when_idle_and_after_a_day(studio, monkeypatch):
    add_user(studio, "ann", PASSWORD)
    token = sign_in(studio, "ann", PASSWORD)
    start = auth._now()
    monkeypatch.setattr(auth, "_now", lambda: start + timedelta(hours=7))
    assert actor_for_token(studio, token) is not None  # used within the idle limit: slides on
    monkeypatch.setattr(auth, "_now", lambda: start + timedelta(hours=14))
    assert actor_for_token(studio, token) is not None
    monkeypatch.setattr(auth, "_now", lambda: start + timedelta(hours=25))
    assert actor_for_token(studio, token) is None  # past the absolute limit, however active
    fresh = sign_in(studio, "ann", PASSWORD)
    monkeypatch.setattr(auth, "_now", lambda: start + timedelta(hours=25 + 9))
    assert actor_for_token(studio, fresh) is None  # idle for more than 8 hours


def test_sign_out_disable_and_new_password_end_sessions(studio):
    add_user(studio, "ann", PASSWORD)
    add_user(studio, "bob", PASSWORD)
    a, b1, b2 = sign_in(studio, "ann", PASSWORD), sign_in(studio, "bob", PASSWORD), sign_in(studio, "bob", PASSWORD)
    sign_out(studio, a)
    assert actor_for_token(studio, a) is None
    set_active(studio, "bob", False)
    assert actor_for_token(studio, b1) is None and actor_for_token(studio, b2) is None
    with pytest.raises(PermissionDenied):
        sign_in(studio, "bob", PASSWORD)
    set_active(studio, "bob", True)
    b3 = sign_in(studio, "bob", PASSWORD)
    set_password(studio, "bob", "another long password")
    assert actor_for_token(studio, b3) is None
    assert actor_for_token(studio, sign_in(studio, "bob", "another long password")).username == "bob"


def test_the_last_active_admin_cannot_be_disabled(studio):
    add_user(studio, "lead", PASSWORD, "admin")
    with pytest.raises(AccountError, match="last active admin"):
        set_active(studio, "lead", False)
    add_user(studio, "boss", PASSWORD, "admin")
    set_active(studio, "lead", False)


def test_first_start_creates_one_admin_with_a_random_password(studio):
    password = ensure_first_admin(studio)
    assert password and len(password) >= 12
    assert ensure_first_admin(studio) is None
    assert actor_for_token(studio, sign_in(studio, "admin", password)) == Actor("admin", "admin")
    other = open_studio_again(studio)
    assert ensure_first_admin(other) is None


def open_studio_again(studio):
    from mumic_core.store.studio import open_studio

    return open_studio(studio.settings, migrate=False)


def test_role_checks_live_in_the_service_layer(demo_studio):
    """An annotator's studio (as any page would build it) is refused every admin action,
    whatever the UI shows; an anonymous studio may change nothing at all."""
    from mumic_core.store.classes import add_class, list_classes, rename_class
    from mumic_core.store.collection import annotate, import_files, undo_last_submission
    from mumic_core.store.jobs import create_job
    from mumic_core.store.label_io import export_labels
    from mumic_core.store.registry import activate, active_version
    from mumic_core.store.settings import set_setting

    add_user(demo_studio, "ann", PASSWORD)
    ann = demo_studio.as_actor(actor_for_token(demo_studio, sign_in(demo_studio, "ann", PASSWORD)))
    anonymous = demo_studio.as_actor(None)
    cls = list_classes(demo_studio)[0]
    version = active_version(demo_studio)
    admin_actions = {
        "add a class": lambda st: add_class(st, "kite"),
        "rename a class": lambda st: rename_class(st, cls.id, "renamed"),
        "import images": lambda st: import_files(st, []),
        "export labels": lambda st: export_labels(st, "csv"),
        "queue training": lambda st: create_job(st, "train"),
        "activate a model": lambda st: activate(st, version.id),
        "change settings": lambda st: set_setting(st, "auto_retrain_labels", 5),
        "add a user": lambda st: add_user(st, "eve", PASSWORD, "admin"),
    }
    for action in admin_actions.values():
        with pytest.raises(PermissionDenied, match="annotator and may not"):
            action(ann)
        with pytest.raises(PermissionDenied, match="sign in first"):
            action(anonymous)
    image_id = 1
    annotate(ann, image_id, {cls.id: False}, "ann")
    assert annotate(ann, image_id, {cls.id: True}, "ann") == 1  # review is theirs
    with pytest.raises(PermissionDenied, match="cannot act as 'bob'"):
        annotate(ann, image_id, {cls.id: False}, "bob")
    with pytest.raises(PermissionDenied, match="cannot act as 'bob'"):
        undo_last_submission(ann, "bob")
    assert undo_last_submission(ann, "ann") is not None
    with pytest.raises(PermissionDenied):
        annotate(anonymous, image_id, {cls.id: True}, "ann")
    with demo_studio.read() as s:
        assert "kite" not in {c.name for c in list_classes(demo_studio)}
        assert s.scalar(select(User.id).where(User.username == "eve")) is None


def test_admin_changes_are_audited_with_who_and_when(studio):
    from mumic_core.store.classes import add_class

    add_user(studio, "lead", PASSWORD, "admin")
    lead = studio.as_actor(Actor("lead", "admin"))
    add_class(lead, "kite", ["a kite"])
    with studio.read() as s:
        events = [(e.actor, e.action, e.details) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert events[0] == ("system", "add_user", {"username": "lead", "role": "admin"})
    assert events[-1][:2] == ("lead", "add_class") and events[-1][2]["name"] == "kite"


def test_users_cli_adds_lists_disables(home):
    from mumic_core.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["users", "add", "Ann", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert (
        runner.invoke(
            main, ["users", "add", "bob", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
        ).exit_code
        == 0
    )
    bad = runner.invoke(main, ["users", "add", "carl", "--password-stdin"], input="short\n")
    assert bad.exit_code == 1 and "at least 10" in bad.output
    listing = runner.invoke(main, ["users", "list"]).output
    assert "ann" in listing and "annotator" in listing and "bob" in listing and "carl" not in listing
    assert runner.invoke(main, ["users", "disable", "ann"]).exit_code == 0
    assert "disabled" in runner.invoke(main, ["users", "list"]).output


def test_pages_show_only_a_sign_in_form_without_a_session(demo_studio):
    for script in ["app.py"] + [
        f"app_pages/{p}.py" for p in ("review", "classes", "dashboard", "import_export", "explore", "training", "jobs")
    ]:
        at = AppTest.from_file(str(ROOT / script), default_timeout=60).run()
        assert not at.exception, script
        assert [b.label for b in at.button] == ["Sign in"], script
        assert not at.metric and not at.dataframe and not at.image, script
        at.session_state["auth_token"] = "forged-token"
        assert [b.label for b in at.run().button] == ["Sign in"], script


def test_signing_in_through_the_form(demo_studio):
    add_user(demo_studio, "ann", PASSWORD)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.text_input(key="sign_in_user").set_value("ann")
    at.text_input(key="sign_in_password").set_value("not the password")
    at.button[0].click().run()
    assert any("wrong username or password" in e.value.lower() for e in at.error)
    at.text_input(key="sign_in_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert any("Signed in as **ann**" in c.value for c in at.sidebar.caption)
    assert {m.label for m in at.metric} >= {"Images", "Human labels"}
    at.button(key="sign_out").click().run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_annotators_are_kept_out_of_admin_pages(demo_studio):
    for name in ("classes", "import_export", "training", "jobs", "accounts"):
        at = signed_in_app(ROOT / "app_pages" / f"{name}.py", "ann", "annotator").run()
        assert not at.exception
        assert any("needs the" in e.value and "permission" in e.value for e in at.error), name
        assert not at.button and not at.dataframe, name
    review = signed_in_app(ROOT / "app_pages/review.py", "ann", "annotator").run()
    assert not review.exception and not review.error and panel_data(review)["items"]


def test_a_disabled_account_is_signed_out_on_its_next_click(demo_studio):
    at = signed_in_app(ROOT / "app_pages/review.py", "ann", "annotator").run()
    assert panel_data(at)["items"]
    set_active(demo_studio.as_actor(SYSTEM), "ann", False)
    assert [b.label for b in at.run().button] == ["Sign in"]


def test_init_prints_the_first_admin_password_once(home):
    from mumic_core.cli import main

    runner = CliRunner()
    first = runner.invoke(main, ["init", "--no-demo"])
    assert first.exit_code == 0, first.output
    assert "username: admin" in first.output
    password = first.output.split("password: ", 1)[1].split()[0]
    from mumic_core.config import load_settings
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(), migrate=False)
    assert actor_for_token(studio, sign_in(studio, "admin", password)).role == "admin"
    again = runner.invoke(main, ["init", "--no-demo"])
    assert again.exit_code == 0 and "password:" not in again.output


class CountingHasher:
    """A cheap Argon2id hasher that counts verifications and takes a while for each, as the
    real one does (64 MiB each: 30 real ones at once would need 2 GB)."""

    def __init__(self) -> None:
        from argon2 import PasswordHasher

        self.inner = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0
        self.lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        with self.lock:
            self.verified += 1
        time.sleep(0.05)
        return self.inner.verify(hashed, password)

    def check_needs_rehash(self, hashed: str) -> bool:
        return self.inner.check_needs_rehash(hashed)


def guess_at_once(studio, name: str, n: int, **where) -> list[Exception | str]:
    """``n`` threads sign in as ``name`` with wrong passwords at the same moment."""
    start = threading.Barrier(n)

    def guess(k: int) -> Exception | str:
        start.wait()
        try:
            return sign_in(studio, name, f"guess number {k}", **where)
        except Exception as exc:  # noqa: BLE001 - the test looks at every outcome
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(guess, range(n)))


def test_parallel_guesses_cannot_outrun_the_lockout(studio, monkeypatch):
    """Failures are counted and the attempt recorded in one transaction before Argon2 runs, so
    30 guesses at once check at most MAX_FAILURES passwords."""
    hasher = CountingHasher()
    monkeypatch.setattr(auth, "_hasher", hasher)
    add_user(studio, "admin2", PASSWORD, "admin")
    outcomes = guess_at_once(studio, "admin2", 30)
    assert all(isinstance(o, PermissionDenied) for o in outcomes), outcomes
    assert hasher.verified <= auth.MAX_FAILURES
    assert sum("too many" in str(o) for o in outcomes) >= 30 - auth.MAX_FAILURES


def test_a_stranger_cannot_lock_the_admin_out_of_their_own_address(studio, monkeypatch):
    """Throttled per name and address: a stranger's failures lock out only the stranger's
    address, while a higher ceiling per name across all addresses stops distributed guessing."""
    hasher = CountingHasher()
    monkeypatch.setattr(auth, "_hasher", hasher)
    add_user(studio, "boss", PASSWORD, "admin")
    outcomes = guess_at_once(studio, "boss", 30, address="203.0.113.7")
    assert all(isinstance(o, PermissionDenied) for o in outcomes)
    with pytest.raises(PermissionDenied, match="too many failed sign-ins"):
        sign_in(studio, "boss", PASSWORD, address="203.0.113.7")  # the stranger's address stays locked
    assert actor_for_token(studio, sign_in(studio, "boss", PASSWORD, address="198.51.100.2")).username == "boss"
    hasher.verified = 0
    addresses = [f"192.0.2.{k}" for k in range(auth.MAX_FAILURES_PER_NAME)]  # a botnet, under each address's limit
    for k in range(auth.MAX_FAILURES_PER_NAME):
        with pytest.raises(PermissionDenied):
            sign_in(studio, "boss", "still guessing", address=addresses[k % len(addresses)])
    assert hasher.verified <= auth.MAX_FAILURES_PER_NAME - auth.MAX_FAILURES  # the first 30 counted too
    with pytest.raises(PermissionDenied, match="too many failed sign-ins"):
        sign_in(studio, "boss", PASSWORD, address="198.51.100.2")  # now every address waits
    later = auth._now() + auth.LOCKOUT + timedelta(seconds=1)
    monkeypatch.setattr(auth, "_now", lambda: later)
    assert actor_for_token(studio, sign_in(studio, "boss", PASSWORD, address="203.0.113.7")).username == "boss"


def test_admins_manage_accounts_on_the_accounts_page(demo_studio):
    from mumic_core.store.auth import list_users, sign_in

    at = signed_in_app(ROOT / "app_pages/accounts.py", "lead", "admin").run()
    assert not at.exception
    at.text_input[0].set_value("Nora")
    at.radio[0].set_value("annotator")
    at.button[0].click().run()  # the form's Add
    assert not at.exception
    [message] = [m.value for m in at.success if "New password for" in m.value]
    password = message.split("`")[1]
    sign_in(demo_studio, "nora", password)  # the shown password works
    at.selectbox(key="account").set_value("nora").run()
    at.selectbox(key="role_nora").set_value("admin").run()
    at.button(key="change_role").click().run()
    assert {u.username: u.role for u in list_users(demo_studio)}["nora"] == "admin"
    at.button(key="toggle_active").click().run()  # disable
    assert not {u.username: u.active for u in list_users(demo_studio)}["nora"]
    at.button(key="reset_password").click().run()
    new = next(m.value for m in at.success if "New password for" in m.value).split("`")[1]
    assert new != password
    at.selectbox(key="account").set_value("lead").run()
    assert at.button(key="toggle_active").disabled  # not yourself
    at.selectbox(key="role_lead").set_value("annotator").run()
    at.button(key="change_role").click().run()  # the last active admin keeps the role
    assert any("last active admin" in e.value for e in at.error)
