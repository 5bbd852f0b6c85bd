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
    from pipeline import logs

    logs.configure(logging.DEBUG if verbose else logging.INFO)


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
@click.option("--queues", "-Q", default="uploads", show_default=True, help="uploads, reprocess, or both.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, queues: str, loglevel: str) -> None:
    """Start a worker (events on, for Flower). Give back-catalog work workers of its own:
    `--queues reprocess`, so new uploads never wait behind it. A worker also serves the steps queue
    of each queue it is given (`uploads.steps`: the later steps of chains already started)."""
    from pipeline.celery_app import with_steps_queues

    names = [q.strip() for q in queues.split(",") if q.strip()]
    args = ["worker", "-Q", ",".join(with_steps_queues(*names)), "-E", "-c", str(concurrency), "-l", loglevel]
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


@main.command()
@click.option("--status", "statuses", default="ready", show_default=True, help="Song statuses, comma-separated.")
@click.option("--since", help="Songs created at or after this ISO time.")
@click.option("--until", help="Songs created before this ISO time.")
@click.option("--uploader", help="Songs of this users.id.")
@click.option("--ids", help="Explicit song ids, comma-separated.")
@click.option("--analysis-only", is_flag=True, help="Re-analyse only; keep the renditions.")
@click.option("--force", is_flag=True, help="Include songs already made by the current versions.")
@click.option("--failed", is_flag=True, help="Retry failed uploads instead (see `pipeline failures`).")
@click.option("--reason", help="With --failed: only this reason code.")
@click.option("--dry-run", is_flag=True, help="Print what would be done.")
@click.option("--name", help="Run name (default: derived from the selection, so a rerun resumes).")
@click.option("--restart", is_flag=True, help="Walk the selection again from the start.")
@click.option("--chunk", type=int, default=500, show_default=True)
@click.option("--rate", type=float, default=0.0, help="At most this many songs per second.")
@click.option("--max-queue", type=int, default=2000, show_default=True, help="Backlog the queue may hold.")
def reprocess(
    statuses: str,
    since: str | None,
    until: str | None,
    uploader: str | None,
    ids: str | None,
    analysis_only: bool,
    force: bool,
    failed: bool,
    reason: str | None,
    dry_run: bool,
    name: str | None,
    restart: bool,
    chunk: int,
    rate: float,
    max_queue: int,
) -> None:
    """Re-run the pipeline over the back catalog from the stored raw files, on the `reprocess` queue.

    By default only songs whose renditions or analysis come from an older version are taken; the
    song stays playable meanwhile, and its old renditions are deleted after a grace period."""
    from pipeline import db
    from pipeline import reprocess as reprocessing

    settings = get_settings()
    if failed:
        if dry_run:
            for row in db.failures_by_reason(settings, since_seconds=10 * 365 * 86400):
                click.echo(f"{row['uploads']:>8}  {row['status']:<8} {row['error_code']}")
            return
        click.echo(f"retrying {reprocessing.retry_failed(settings, reason=reason)} failed upload(s)")
        return
    selection = db.Selection(
        statuses=statuses.split(","),
        created_from=since,
        created_to=until,
        uploader_id=uploader,
        song_ids=ids.split(",") if ids else None,
    )
    if not force:
        selection = selection.model_copy(update=reprocessing.current_versions(settings, analysis_only))
    plan = reprocessing.ReprocessPlan(
        selection=selection,
        kind="reanalyze" if analysis_only else "reprocess",
        name=name,
        chunk=chunk,
        rate=rate,
        max_queue=max_queue,
    )
    if dry_run:
        counts = reprocessing.dry_run(settings, plan)
        click.echo(
            f"run {reprocessing.run_name(plan)}: {counts['selected']} song(s) selected, "
            f"{counts['to_process']} to {plan.kind}, {counts['already_current']} already current"
            + ("" if force else " (skipped; --force includes them)")
        )
        return
    run = reprocessing.run(settings, plan, restart=restart)
    click.echo(f"run {run.name}: {run.enqueued} song(s) enqueued in all, finished={run.finished}")


@main.command()
@click.option("--hours", type=float, default=24, show_default=True)
def failures(hours: float) -> None:
    """The dead-letter view: failed and blocked uploads by reason code, with the latest message."""
    from pipeline import db

    rows = db.failures_by_reason(get_settings(), since_seconds=hours * 3600)
    if not rows:
        click.echo(f"no failures in the last {hours:g} h")
    for row in rows:
        click.echo(
            f"{row['uploads']:>7}  {row['status']:<8} {row['error_code']:<20} {row['kind']:<9} "
            f"latest {row['latest']:%Y-%m-%d %H:%M}  {row['example'][:80]}"
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Songs and uploads by status, oldest pending upload, recent failures, queues, workers."""
    from pipeline.monitoring import collect_status, format_status

    report = collect_status(get_settings())
    click.echo(json.dumps(report, default=str, indent=2) if as_json else format_status(report))


@main.command()
@click.option("--port", type=int, default=9808, show_default=True)
def exporter(port: int) -> None:
    """Serve Prometheus metrics (queue depths, uploads by status, failures by reason) on /metrics."""
    from pipeline.monitoring import serve_metrics

    serve_metrics(get_settings(), port)


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
