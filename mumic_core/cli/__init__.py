"""``python -m mumic_core``: the command-line interface.

Commands live in the modules of this package by topic, and each module is imported only when one
of its commands runs (click's lazy subcommands), so ``users add`` does not wait for torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from mumic_core.cli.common import one_line
from mumic_core.encoders.allocator import keep_freed_memory_for_batches
from mumic_core.errors import MumicError

# command -> module:attribute that defines it
COMMANDS = {
    "init": "collection:init",
    "demo": "collection:demo",
    "import": "collection:import_",
    "classes": "collection:classes",
    "export": "collection:export",
    "labels": "collection:labels",
    "score": "models:score",
    "train": "models:train",
    "evaluate": "models:evaluate",
    "models": "models:models",
    "pretrain": "starter:pretrain",
    "starter": "starter:starter",
    "users": "accounts:users",
    "backup": "accounts:backup_cmd",
    "restore": "accounts:restore_cmd",
}


class _LazyGroup(click.Group):
    """Imports a command's module when the command is asked for; known failures become one
    clear line and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"mumic_core.cli.{module}"), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MumicError, OSError, KeyError, ValueError) as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(1)


@click.group(cls=_LazyGroup)
def main() -> None:
    """MuMIC Studio: multi-label image labelling with CLIP suggestions."""
    keep_freed_memory_for_batches()  # commands such as score and train run jobs in this process
