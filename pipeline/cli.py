"""`pipeline` command line: migrations, submitting files, the worker and scheduler processes, the demo."""

import json
import logging
import os
import sys
from pathlib import Path

import click

from pipeline.settings import get_settings

CELERY = [sys.executable, "-m", "celery", "-A", "pipeline.celery_app"]


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """Audio ingest pipeline: turns uploads into playable, analysed songs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
def migrate() -> None:
    """Apply the SQL migrations in sql/ (idempotent; safe to run from several processes)."""
    from pipeline.migrate import migrate as run_migrations

    applied = run_migrations(get_settings().database_url)
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--title", help="Song title (default: the file name).")
@click.option("--artist", help="Song artist (default: 'Unknown artist').")
@click.option("--user", "user_id", help="Uploader's users.id.")
@click.option("--no-send", is_flag=True, help="Only write the rows; let the dispatcher pick them up.")
def submit(files: tuple[Path, ...], title: str | None, artist: str | None, user_id: str | None, no_send: bool) -> None:
    """Upload FILES the way the platform's upload API does, and print their ids."""
    from pipeline.submit import submit_file

    settings = get_settings()
    for path in files:
        done = submit_file(settings, path, title=title, artist=artist, user_id=user_id, send_task=not no_send)
        click.echo(f"{path}\tupload={done.upload_id}\tsong={done.song_id}")


@main.command()
@click.argument("upload_ids", nargs=-1, required=True)
def show(upload_ids: tuple[str, ...]) -> None:
    """Print uploads and their songs as JSON."""
    from pipeline import db

    for row in db.upload_report(get_settings(), list(upload_ids)):
        click.echo(json.dumps(row, default=str, indent=2))


@main.command()
@click.option("--concurrency", "-c", type=int, default=os.cpu_count() or 1, show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, loglevel: str) -> None:
    """Start a worker serving the `uploads` queue (with events on, for Flower)."""
    from pipeline.celery_app import UPLOADS_QUEUE

    args = ["worker", "-Q", UPLOADS_QUEUE, "-E", "-c", str(concurrency), "-l", loglevel]
    os.execv(sys.executable, [*CELERY, *args])


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def scheduler(loglevel: str) -> None:
    """Start the scheduler: periodic tasks, and the dispatcher that queues pending uploads."""
    schedule = get_settings().work_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    os.execv(sys.executable, [*CELERY, "beat", "-l", loglevel, "-s", str(schedule)])


@main.command()
@click.option("--port", type=int, default=5555, show_default=True)
def flower(port: int) -> None:
    """Start Flower, the web monitor (set FLOWER_BASIC_AUTH=user:password outside a laptop)."""
    os.execv(sys.executable, [*CELERY, "flower", f"--port={port}"])


@main.command("s3-server")
@click.option("--port", type=int, default=9000, show_default=True)
def s3_server(port: int) -> None:
    """Run a local S3 server (for single-machine set-ups; point S3_ENDPOINT_URL at it)."""
    import time

    from pipeline.local_s3 import start_local_s3

    _, endpoint = start_local_s3(port)
    click.echo(f"S3 server at {endpoint} (Ctrl-C stops it)")
    while True:
        time.sleep(3600)


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the songs.")
def demo(workdir: Path, timeout: float) -> None:
    """Generate sample tracks, run a worker and the scheduler, process the tracks, print the songs."""
    from pipeline.demo import run_demo

    sys.exit(run_demo(workdir, timeout))


if __name__ == "__main__":
    main()
