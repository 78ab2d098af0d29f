"""Commands on accounts and on the store as a whole: users, backup, restore."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mumic_core.cli.common import system_studio
from mumic_core.config import load_settings
from mumic_core.store.api_tokens import create_token
from mumic_core.store.auth import (
    SYSTEM,
    add_user,
    list_users,
    set_active,
    set_password,
)
from mumic_core.store.backup import backup, restore
from mumic_core.store.studio import open_studio


@click.group()
def users() -> None:
    """Accounts: admins do everything, annotators review."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "annotator"]), default="annotator", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_add(username: str, role: str, password_stdin: bool) -> None:
    """Create an account (the password is asked for, never taken as an argument)."""
    user = add_user(system_studio(), username, _read_password(password_stdin), role)
    click.echo(f"added {user.role} {user.username}")


@users.command("list")
def users_list() -> None:
    for u in list_users(system_studio()):
        click.echo(f"{u.username:20s} {u.role:10s} {'active' if u.active else 'disabled'}")


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable an account and sign out its sessions (its labels stay)."""
    set_active(system_studio(), username, False)
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
def users_enable(username: str) -> None:
    set_active(system_studio(), username, True)
    click.echo(f"enabled {username}")


@users.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_passwd(username: str, password_stdin: bool) -> None:
    """Set a new password (signs out the account's sessions)."""
    set_password(system_studio(), username, _read_password(password_stdin))
    click.echo(f"password of {username} changed")


@users.command("token")
@click.argument("username")
@click.option("--name", required=True, help="What will use it, e.g. 'nightly pipeline'.")
@click.option("--role", type=click.Choice(["admin", "annotator"]), default=None, help="At most this role.")
def users_token(username: str, name: str, role: str | None) -> None:
    """Make a personal API token for USERNAME and print it (shown once; stored hashed)."""
    info, secret = create_token(system_studio(), username, name, role)
    click.echo(secret)
    click.echo(f"token {info.prefix}… '{info.name}' acts as {info.username} ({info.role})", err=True)


@click.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(out: Path) -> None:
    """Write the store (database, images, models) to the tar file OUT, while the app runs."""
    manifest = backup(system_studio(), out)
    click.echo(f"backup {out}: {sum(manifest['rows'].values())} rows, {sum(manifest['files'].values())} files")


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore_cmd(archive: Path) -> None:
    """Unpack a backup into MUMIC_HOME (which must be empty), then bring its schema up to date."""
    settings = load_settings()
    manifest = restore(archive, settings.home)
    open_studio(settings, actor=SYSTEM)
    click.echo(f"restored {archive} into {settings.home} (backup of {manifest['created']})")
