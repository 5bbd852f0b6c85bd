"""`pipeline demo`: real uploads through the real pipeline on this machine, then a table of what came out."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import db
from pipeline.local_s3 import start_local_s3
from pipeline.migrate import migrate
from pipeline.samples import SampleTrack, make_samples
from pipeline.settings import get_settings
from pipeline.storage import get_store
from pipeline.submit import Submitted, submit_file


def run_demo(workdir: Path, timeout: float) -> int:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server = None
    if not get_settings().s3_endpoint_url:
        server, endpoint = start_local_s3()
        os.environ["S3_ENDPOINT_URL"] = endpoint  # inherited by the worker and scheduler below
        get_settings.cache_clear()
        print(f"no S3_ENDPOINT_URL set: started a local S3 server at {endpoint}")
    settings = get_settings()
    migrate(settings.database_url)
    get_store(settings).ensure_bucket()

    print("generating sample tracks ...")
    tracks = make_samples(workdir / "samples")
    processes = [
        _start(["worker", "--concurrency", "2"], workdir / "worker.log"),
        _start(["scheduler"], workdir / "scheduler.log"),
    ]
    try:
        submitted: list[tuple[SampleTrack, Submitted]] = []
        for index, track in enumerate(tracks):
            # The last one is not sent to Celery: the scheduler's dispatcher finds it in the database.
            send = index < len(tracks) - 1
            done = submit_file(settings, track.path, title=track.title, artist=track.artist, send_task=send)
            submitted.append((track, done))
            print(f"submitted {track.path.name:<14} upload={done.upload_id} ({'task sent' if send else 'row only'})")
        ids = [done.upload_id for _, done in submitted]
        started = time.monotonic()
        while (left := db.unfinished_count(settings, ids)) and time.monotonic() - started < timeout:
            print(
                f"  {left} upload(s) in progress after {time.monotonic() - started:.0f} s",
                end="\r",
                flush=True,
            )
            time.sleep(0.5)
        print(f"\nfinished in {time.monotonic() - started:.1f} s (worker log: {workdir / 'worker.log'})\n")
        rows = {row["upload_id"]: row for row in db.upload_report(settings, ids)}
        _print_table([(track, rows[done.upload_id]) for track, done in submitted])
        return 0 if all(row["song_status"] == "ready" for row in rows.values()) else 1
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()


def _start(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=log, stderr=subprocess.STDOUT)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_table(results: list[tuple[SampleTrack, dict[str, Any]]]) -> None:
    header = (
        f"{'file':<14} {'status':<8} {'secs':>5} {'bpm':>6} {'want':>5} {'key':<9} {'want':<9} {'cam':<4} "
        f"{'LUFS':>6} {'LRA':>5} {'dBTP':>5}"
    )
    print(header + "  renditions")
    print("-" * (len(header) + 40))
    for track, row in results:
        meta = row["metadata"] or {}
        sizes = meta.get("renditions", {})
        renditions = ", ".join(f"{name} {sizes.get(name, {}).get('size_bytes', 0) / 1e6:.2f} MB" for name in sizes)
        print(
            f"{track.path.name:<14} {row['song_status']:<8} {row['duration_seconds'] or '-':>5} "
            f"{meta.get('bpm') or '-':>6} {track.bpm:>5.0f} {meta.get('key') or '-':<9} {track.key:<9} "
            f"{meta.get('camelot') or '-':<4} {_number(meta.get('loudness_lufs')):>6} "
            f"{_number(meta.get('loudness_range_lu')):>5} {_number(meta.get('true_peak_dbtp')):>5}  {renditions}"
        )
        if row["error_code"]:
            print(f"{'':<14} {row['error_code']}: {row['error_message']}")
    print()
    for track, row in results:
        for name, key in (row["storage_keys"] or {}).items():
            print(f"{track.path.name:<14} {name:<8} s3://{get_settings().s3_bucket}/{key}")
