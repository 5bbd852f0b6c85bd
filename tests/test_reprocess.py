"""Back-catalog reprocessing, the dead-letter retry, and the operators' views, with a real worker."""

import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from pipeline import db
from pipeline.samples import SampleTrack
from pipeline.settings import Settings
from pipeline.storage import get_store
from pipeline.submit import Submitted, submit_file
from tests.conftest import Process
from tests.test_pipeline_e2e import wait_finished


def pipeline_cli(*args: str) -> str:
    return subprocess.run([".venv/bin/pipeline", *args], check=True, capture_output=True, text=True).stdout


def song(settings: Settings, song_id: str) -> dict[str, Any]:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT *, status::text AS status FROM songs WHERE id = %s", (song_id,)).fetchone()
        assert row is not None
        return row


def uploads_of(settings: Settings, song_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT id::text, kind, status, error_code FROM uploads WHERE song_id = %s ORDER BY created_at", (song_id,)
        ).fetchall()


def wait_song_uploads_finished(settings: Settings, song_id: str, timeout: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = uploads_of(settings, song_id)
        if all(r["status"] not in ("pending", "processing") for r in rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"uploads of {song_id} unfinished")


def object_exists(settings: Settings, key: str) -> bool:
    return get_store(settings).size_of(key) is not None


@pytest.fixture(scope="module")
def catalog(settings: Settings, worker: Process, samples: list[SampleTrack]) -> list[Submitted]:
    """Three ready songs, made by the current versions."""
    sent = [submit_file(settings, t.path, title=t.title, artist=t.artist) for t in samples[:3]]
    rows = wait_finished(settings, [s.upload_id for s in sent])
    assert all(r["song_status"] == "ready" for r in rows.values())
    return sent


def test_current_songs_are_skipped_unless_forced(settings: Settings, catalog: list[Submitted]) -> None:
    ids = ",".join(s.song_id for s in catalog)
    out = pipeline_cli("reprocess", "--ids", ids, "--dry-run")
    assert "3 song(s) selected, 0 to reprocess, 3 already current" in out
    out = pipeline_cli("reprocess", "--ids", ids, "--dry-run", "--force")
    assert "3 song(s) selected, 3 to reprocess" in out
    out = pipeline_cli("reprocess", "--ids", ids)
    assert "0 song(s) enqueued" in out
    assert [len(uploads_of(settings, s.song_id)) for s in catalog] == [1, 1, 1]


def test_a_reprocessed_song_stays_playable_and_swaps_its_renditions(
    settings: Settings, catalog: list[Submitted]
) -> None:
    target = catalog[0]
    before = song(settings, target.song_id)
    cache = redis.Redis.from_url(settings.redis_url)
    cache.set(f"song:{target.song_id}", "{}")
    statuses: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # what a player sees while the reprocess runs
        while not stop.is_set():
            row = song(settings, target.song_id)
            statuses.add(row["status"])
            assert all(object_exists(settings, key) for key in row["storage_keys"].values())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        pipeline_cli("reprocess", "--ids", target.song_id, "--force", "--name", "swap-test")
        rows = wait_song_uploads_finished(settings, target.song_id)
    finally:
        stop.set()
        watcher.join()
    assert statuses == {"ready"}
    assert [(r["kind"], r["status"]) for r in rows] == [("upload", "done"), ("reprocess", "done")]
    after = song(settings, target.song_id)
    new_upload = rows[1]["id"]
    assert after["storage_keys"] == {
        name: f"songs/{target.song_id}/{new_upload}/{name}.mp3" for name in ("high", "low", "preview")
    }
    assert cache.exists(f"song:{target.song_id}") == 0
    # The old objects outlive the swap by the grace period, then the periodic task deletes them.
    old_keys = list(before["storage_keys"].values())
    assert all(object_exists(settings, key) for key in old_keys)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        retired = [r[0] for r in conn.execute("SELECT key FROM retired_objects WHERE song_id = %s", (target.song_id,))]
        assert sorted(retired) == sorted(old_keys)
        conn.execute("UPDATE retired_objects SET delete_after = now() WHERE song_id = %s", (target.song_id,))
    from pipeline.tasks import delete_retired_objects

    assert delete_retired_objects.apply().get() >= 3
    assert not any(object_exists(settings, key) for key in old_keys)
    assert all(object_exists(settings, key) for key in after["storage_keys"].values())


def test_analysis_only_keeps_the_renditions(settings: Settings, catalog: list[Submitted]) -> None:
    target = catalog[1]
    before = song(settings, target.song_id)
    pipeline_cli("reprocess", "--ids", target.song_id, "--analysis-only", "--force")
    rows = wait_song_uploads_finished(settings, target.song_id)
    assert (rows[-1]["kind"], rows[-1]["status"]) == ("reanalyze", "done")
    after = song(settings, target.song_id)
    assert after["storage_keys"] == before["storage_keys"]
    assert after["metadata"]["bpm"] == pytest.approx(before["metadata"]["bpm"])
    assert after["analysis_version"] == before["analysis_version"] and after["status"] == "ready"


def test_a_failed_reprocess_leaves_the_song_as_it_was_then_failed_uploads_are_retried(
    settings: Settings, catalog: list[Submitted], samples: list[SampleTrack]
) -> None:
    target = catalog[2]
    before = song(settings, target.song_id)
    store = get_store(settings)
    store.client.delete_object(Bucket=settings.s3_bucket, Key=target.storage_key)
    pipeline_cli("reprocess", "--ids", target.song_id, "--force")
    rows = wait_song_uploads_finished(settings, target.song_id)
    assert (rows[-1]["kind"], rows[-1]["status"], rows[-1]["error_code"]) == ("reprocess", "failed", "source_missing")
    after = song(settings, target.song_id)
    assert (after["status"], after["storage_keys"]) == ("ready", before["storage_keys"])
    assert "source_missing" in pipeline_cli("failures")

    # A new upload whose raw object is missing fails; once the object is back, --failed retries it.
    broken = submit_file(settings, samples[3].path, send_task=False)
    store.client.delete_object(Bucket=settings.s3_bucket, Key=broken.storage_key)
    from pipeline.tasks import process_upload

    process_upload.apply_async(args=[broken.upload_id])
    assert wait_finished(settings, [broken.upload_id])[broken.upload_id]["song_status"] == "failed"
    store.upload(samples[3].path, broken.storage_key, content_type="audio/mp4")
    retried = pipeline_cli("reprocess", "--failed", "--reason", "source_missing")
    assert int(retried.split()[1]) >= 1  # this song, and any other source_missing failure of the session
    rows = wait_song_uploads_finished(settings, broken.song_id)
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert song(settings, broken.song_id)["status"] == "ready"


def test_a_run_that_died_half_way_resumes_without_duplicates(
    settings: Settings, worker: Process, samples: list[SampleTrack]
) -> None:
    from pipeline.dispatch import queue_depths

    worker.stop()  # keep the work queued, so the test sees the enqueue alone
    try:
        queued_before = queue_depths()
        songs = [submit_file(settings, t.path, send_task=False).song_id for t in samples[:3]]
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE songs SET status = 'ready', rendition_version = 0 WHERE id = ANY(%s::uuid[])", (songs,)
            )
            conn.execute("UPDATE uploads SET status = 'done' WHERE song_id = ANY(%s::uuid[])", (songs,))
        selection = db.Selection(song_ids=songs, current_rendition_version=1)
        run = db.start_run(settings, "resume-test", selection)
        # The first chunk commits, then the command dies before sending anything.
        run, first, _ = db.enqueue_chunk(settings, run, selection, kind="reprocess", limit=1)
        assert len(first) == 1 and not run.finished
        out = pipeline_cli(
            "reprocess",
            "--ids",
            ",".join(songs),
            "--name",
            "resume-test",
            "--chunk",
            "1",
            "--force",
            "--max-queue",
            "100",
        )
        assert "3 song(s) enqueued in all, finished=True" in out
        with psycopg.connect(settings.database_url) as conn:
            per_song = conn.execute(
                "SELECT count(*) FROM uploads WHERE kind = 'reprocess' AND song_id = ANY(%s::uuid[]) GROUP BY song_id",
                (songs,),
            ).fetchall()
        assert sorted(r[0] for r in per_song) == [1, 1, 1]
        queued = queue_depths()
        # At least this run's two messages (the dead chunk's upload is re-sent by the dispatcher later);
        # other tests' retries may share the queue.
        assert queued["reprocess"] - queued_before["reprocess"] >= 2
    finally:
        worker.start()


def test_status_command_and_metrics_exporter(settings: Settings, worker: Process, tmp_path: Path) -> None:
    out = pipeline_cli("status")
    assert "songs:" in out and "ready=" in out
    assert "queues:" in out and "uploads=" in out
    assert "workers:  1 online" in out
    assert "failures, last day:" in out and "source_missing=" in out

    from pipeline.local_s3 import free_port

    port = free_port()
    exporter = subprocess.Popen([".venv/bin/pipeline", "exporter", "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
    finally:
        exporter.terminate()
        exporter.wait()
    ready = next(line for line in body.splitlines() if line.startswith('pipeline_songs{status="ready"}'))
    assert float(ready.split()[-1]) >= 3
    assert 'pipeline_queue_depth{queue="uploads"}' in body
    assert 'pipeline_failures_last_hour{reason="source_missing"}' in body
