"""Back-catalog reprocessing at catalog scale: seeds N songs (default 1,000,000) with their uploads in
a fresh database, then measures `pipeline reprocess` planning (dry run) and a real enqueue of every
song, printing rows per second and the enqueuing process's memory as the run goes (it must stay flat).

The real enqueue sends every Celery message to a private Redis; a drain thread plays the workers
(empties the queue), so flow control never stalls and Redis memory stays small.

    .venv/bin/python bench/reprocess_catalog.py [--rows 1000000]
"""

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args()

    from pipeline.local_s3 import free_port

    port = free_port()
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    name = f"pipeline_bench_catalog_{uuid.uuid4().hex[:6]}"
    os.environ.update(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{name}",
        BROKER_URL=f"redis://127.0.0.1:{port}/1",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    try:
        run_benchmark(args.rows, args.chunk, port)
    finally:
        redis_server.kill()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_benchmark(rows: int, chunk: int, redis_port: int) -> None:
    from pipeline import db, reprocess
    from pipeline.celery_app import REPROCESS_QUEUE
    from pipeline.migrate import migrate
    from pipeline.settings import get_settings

    settings = get_settings()
    migrate(settings.database_url)
    started = time.monotonic()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO songs (title, artist, status, rendition_version, analysis_version, created_at)
               SELECT 'Song ' || n, 'Artist ' || (n %% 5000), 'ready', 1, 1,
                      now() - make_interval(mins => n)
                 FROM generate_series(1, %s) AS n""",
            (rows,),
        )
        conn.execute(
            """INSERT INTO uploads (file_name, original_size, mime_type, song_id, storage_key, status, kind)
               SELECT 'song.flac', 30000000, 'audio/flac', id, 'raw/' || id, 'done', 'upload' FROM songs"""
        )
        conn.execute("ANALYZE songs; ANALYZE uploads")
    print(f"seeded {rows:,} songs and uploads in {time.monotonic() - started:.1f} s")

    plan = reprocess.ReprocessPlan(
        selection=db.Selection(**reprocess.current_versions(settings, analysis_only=False)),
        kind="reprocess",
        chunk=chunk,
        max_queue=5 * chunk,
    )
    started = time.monotonic()
    counts = reprocess.dry_run(settings, plan)
    took = time.monotonic() - started
    print(f"dry run: {counts} in {took:.2f} s ({counts['selected'] / took:,.0f} rows/s), RSS {rss_mb():.0f} MB")

    stop = threading.Event()
    broker = redis.Redis(port=redis_port, db=1)

    def drain() -> None:  # the workers' part: take messages off the queue
        while not stop.is_set():
            broker.delete(REPROCESS_QUEUE)
            time.sleep(0.2)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    samples: list[tuple[int, float]] = []  # (songs enqueued, RSS) after every chunk
    started = time.monotonic()
    run = reprocess.run(settings, plan, progress=False, on_chunk=lambda r: samples.append((r.enqueued, rss_mb())))
    took = time.monotonic() - started
    stop.set()
    print(f"enqueue: {run.enqueued:,} songs in {took:.1f} s ({run.enqueued / took:,.0f} rows/s)")
    for fraction in (0.01, 0.1, 0.25, 0.5, 0.75, 1.0):
        enqueued, rss = next(s for s in samples if s[0] >= fraction * run.enqueued)
        print(f"  RSS after {enqueued:>9,} songs: {rss:6.0f} MB")
    print(f"peak RSS of the enqueuing process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    rerun = reprocess.run(settings, plan, progress=False)
    print(f"second run of the same selection: {rerun.enqueued - run.enqueued} more enqueued (resumes, never repeats)")


if __name__ == "__main__":
    main()
