"""``python -m mumic_client``: push images, pull labels, train, wait, from a shell or a cron job.
The server and token come from --url/--token or MUMIC_URL/MUMIC_TOKEN."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mumic_client.client import ApiError, MumicClient

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@click.group()
@click.option("--url", envvar="MUMIC_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--token", envvar="MUMIC_TOKEN", required=True, help="A personal API token (or MUMIC_TOKEN).")
@click.pass_context
def main(ctx: click.Context, url: str, token: str) -> None:
    """A MuMIC Studio server's API from the command line."""
    ctx.obj = MumicClient(url, token)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def push(client: MumicClient, paths: tuple[Path, ...]) -> None:
    """Upload image files, or every image in the folders given."""
    files = [
        f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    outcomes = client.push_images(files)
    for o in outcomes:
        if o.outcome == "rejected":
            click.echo(f"{o.filename}: rejected: {o.reason}", err=True)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in ("added", "duplicate", "rejected")}
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))


@main.command()
@click.option("--since", help="Only images whose labels changed after this time (what the last pull printed).")
@click.option("--out", type=click.File("w"), default="-", help="JSON lines, one image each (default: stdout).")
@click.pass_obj
def pull(client: MumicClient, since: str | None, out) -> None:
    """Current labels of the images changed since a time; prints the next --since on stderr."""
    images, as_of = client.pull_labels(since)
    for im in images:
        out.write(
            json.dumps(
                {
                    "image_id": im.image_id,
                    "sha256": im.sha256,
                    "filename": im.filename,
                    "present": im.present,
                    "labels": {x.class_name: x.state for x in im.labels},
                }
            )
            + "\n"
        )
    click.echo(f"{len(images)} images; next: --since {as_of}", err=True)


@main.command()
@click.option("--mode", type=click.Choice(["head", "full"]), default="head", show_default=True)
@click.option("--activate", type=click.Choice(["if-better", "always", "never"]), default=None)
@click.option("--wait/--no-wait", "wait_", default=False, help="Wait for the job to end.")
@click.pass_obj
def train(client: MumicClient, mode: str, activate: str | None, wait_: bool) -> None:
    """Queue a retraining; prints the job id (and, with --wait, how it ended)."""
    job_id = client.train(mode, activate)
    click.echo(job_id)
    if wait_:
        _report(client.wait(job_id))


@main.command()
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="Seconds to wait at most.")
@click.pass_obj
def wait(client: MumicClient, job_id: int, timeout: float | None) -> None:
    """Wait for a job to end; exit status 1 unless it succeeded."""
    _report(client.wait(job_id, timeout))


def _report(job) -> None:
    click.echo(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    if job.status != "succeeded":
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except ApiError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
