"""The whole pipeline through the upload contract, with a real worker, scheduler, PostgreSQL, Redis and S3."""

import json
import os
import subprocess
import time
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
from tests.media_tools import ffmpeg, ffprobe_json, joined_stream


def wait_finished(settings: Settings, upload_ids: list[str], timeout: float = 240) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while db.unfinished_count(settings, upload_ids) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert db.unfinished_count(settings, upload_ids) == 0, "uploads still unfinished"
    return {row["upload_id"]: row for row in db.upload_report(settings, upload_ids)}


def submit_with_cached_song(settings: Settings, path: Path, **kwargs: Any) -> Submitted:
    """Submits without sending, primes song:<id> in the cache as a reader would, then sends the task."""
    from pipeline.tasks import process_upload

    done = submit_file(settings, path, send_task=False, **kwargs)
    cache = redis.Redis.from_url(settings.redis_url)
    cache.set(f"song:{done.song_id}", json.dumps({"id": done.song_id, "status": "uploaded"}), ex=86400)
    process_upload.apply_async(args=[done.upload_id])
    return done


def ffprobe_object(settings: Settings, key: str, tmp_path: Path) -> dict[str, Any]:
    target = tmp_path / key.replace("/", "_")
    get_store(settings).client.download_file(settings.s3_bucket, key, str(target))
    return ffprobe_json(target)


def test_uploads_of_every_format_become_ready_songs(
    settings: Settings, worker, samples: list[SampleTrack], tmp_path: Path
) -> None:
    submitted = [(t, submit_with_cached_song(settings, t.path, title=t.title, artist=t.artist)) for t in samples]
    rows = wait_finished(settings, [s.upload_id for _, s in submitted])
    cache = redis.Redis.from_url(settings.redis_url)
    store = get_store(settings)
    for track, sent in submitted:
        row = rows[sent.upload_id]
        assert (row["upload_status"], row["song_status"]) == ("done", "ready"), (track.format, row["error_message"])
        assert row["error_code"] is None and row["job_id"] and row["attempts"] == 1
        assert row["duration_seconds"] == 40
        assert cache.exists(f"song:{sent.song_id}") == 0

        meta = row["metadata"]
        assert meta["source"]["duration_seconds"] == pytest.approx(40, abs=0.1)
        assert meta["source"]["codec"] in ("mp3", "flac", "pcm_s16le", "aac", "vorbis")
        assert meta["tags"]["album"] == "Demo Album"
        assert row["album"] == "Demo Album" and row["genre"] == "Electronic"
        assert meta["bpm"] == pytest.approx(track.bpm, rel=0.04), track.format
        assert meta["analysis_version"] >= 1 and meta["profile_version"] >= 1
        for field in ("key", "camelot", "tonic", "mode", "bpm_confidence", "key_confidence"):
            assert field in meta
        # The sample tracks are mastered to about -1 dBFS: loud pop, a few LU of range.
        assert -20 < meta["loudness_lufs"] < -8 and 0 <= meta["loudness_range_lu"] < 15, meta
        assert meta["loudness_lufs"] < meta["true_peak_dbtp"] <= 0.5 and "loudness_null_reason" not in meta

        keys = row["storage_keys"]
        assert set(keys) == {"high", "low", "preview"}
        # A 192 kbps MP3 upload is copied into `high` rather than re-encoded at a higher bit rate.
        high_rate = 192_000 if track.format == "mp3" else 320_000
        assert meta["renditions"]["high"]["copied"] == (track.format == "mp3")
        expected = {"high": (high_rate, 40.0), "low": (64_000, 40.0), "preview": (128_000, 30.0)}
        for name, (bit_rate, seconds) in expected.items():
            assert keys[name] == f"songs/{sent.song_id}/{sent.upload_id}/{name}.mp3"
            head = store.client.head_object(Bucket=settings.s3_bucket, Key=keys[name])
            assert head["ContentType"] == "audio/mpeg"
            probed = ffprobe_object(settings, keys[name], tmp_path)
            assert probed["streams"][0]["codec_name"] == "mp3"
            assert int(probed["streams"][0]["bit_rate"]) == bit_rate
            assert float(probed["format"]["duration"]) == pytest.approx(seconds, abs=0.15)
            assert meta["renditions"][name]["size_bytes"] == head["ContentLength"]

    # The worker keeps librosa's CQT filter banks on disk instead of building them for every upload.
    cached = Path(os.environ["LIBROSA_CACHE_DIR"]).rglob("output.pkl")
    assert any("vqt_filter_fft" in str(path) for path in cached)

    # Nothing but raw files, renditions and covers is ever written: the analysis PCM stays on the worker.
    listed = store.client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    prefixes = {obj["Key"].split("/")[0] for page in listed for obj in page.get("Contents", [])}
    assert prefixes <= {"raw", "songs", "covers"}

    mp3 = next(rows[s.upload_id] for t, s in submitted if t.format == "mp3")
    assert mp3["cover_image_key"] == f"covers/{mp3['song_id']}/{mp3['upload_id']}.png"
    cover = store.client.head_object(Bucket=settings.s3_bucket, Key=mp3["cover_image_key"])
    assert cover["ContentType"] == "image/png"


def test_uploads_that_change_sample_rate_mid_stream_become_ready_songs(
    settings: Settings, worker, tmp_path: Path
) -> None:
    # Two files of different sample rates joined byte-wise: MP3 (within `high`'s bit rate, so an ordinary one
    # would be copied) and ADTS AAC. 20 s + 25 s each.
    mp3 = ("-c:a", "libmp3lame", "-b:a", "128k")
    joined = [
        joined_stream(tmp_path / "joined.mp3", [(44100, 20.0, 440.0, 0.5), (32000, 25.0, 660.0, 0.5)], mp3),
        joined_stream(
            tmp_path / "joined.aac", [(44100, 20.0, 440.0, 0.5), (48000, 25.0, 660.0, 0.5)], ("-b:a", "128k")
        ),
    ]
    sent = [submit_file(settings, path) for path in joined]
    rows = wait_finished(settings, [s.upload_id for s in sent])
    for path, one in zip(joined, sent, strict=True):
        row = rows[one.upload_id]
        assert (row["upload_status"], row["song_status"]) == ("done", "ready"), (path.name, row["error_message"])
        meta = row["metadata"]
        assert row["duration_seconds"] == 45 and meta["source"]["duration_seconds"] == pytest.approx(45, abs=0.1)
        # Each part was measured on its own: no honest figure for the whole.
        assert meta["loudness_lufs"] is None and meta["loudness_null_reason"] == "stream_changed"
        assert not meta["renditions"]["high"]["copied"], path.name
        expected = {"high": (320_000, 45.0), "low": (64_000, 45.0), "preview": (128_000, 30.0)}
        for name, (bit_rate, seconds) in expected.items():
            probed = ffprobe_object(settings, row["storage_keys"][name], tmp_path)
            assert int(probed["streams"][0]["bit_rate"]) == bit_rate, (path.name, name)
            assert float(probed["format"]["duration"]) == pytest.approx(seconds, abs=0.15), (path.name, name)


def test_uploads_of_a_batch_finish_one_after_another(settings: Settings, worker, samples: list[SampleTrack]) -> None:
    """A chain's later steps are served before new uploads are started, so the first upload of a batch
    is ready long before the batch is done (not every upload at the end of the batch, in lockstep)."""
    sent = [submit_file(settings, t.path, title=t.title, artist=t.artist) for t in [*samples, *samples]]
    wait_finished(settings, [s.upload_id for s in sent])
    with psycopg.connect(settings.database_url) as conn:
        claimed, finished = conn.execute(
            "SELECT array_agg(claimed_at ORDER BY claimed_at), array_agg(finished_at ORDER BY finished_at)"
            " FROM uploads WHERE id = ANY(%s::uuid[])",
            ([s.upload_id for s in sent],),
        ).fetchone()
    # Two worker processes: the first two uploads finish before the last four have been claimed.
    print([c.strftime("%S.%f") for c in claimed], [f.strftime("%S.%f") for f in finished])
    assert finished[1] < claimed[-4], (claimed, finished)


def test_bad_uploads_are_refused_with_a_reason_and_the_worker_goes_on(
    settings: Settings, worker, samples: list[SampleTrack], tmp_path: Path
) -> None:
    text = tmp_path / "letter.mp3"
    text.write_text("Dear label, please find my demo attached.\n" * 40)
    playlist = tmp_path / "playlist.mp3"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    blip = tmp_path / "blip.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.3", str(blip))
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(next(t for t in samples if t.format == "flac").path.read_bytes()[:3000])

    bad = {
        "letter": (submit_with_cached_song(settings, text), "blocked", "not_audio"),
        "playlist": (submit_with_cached_song(settings, playlist), "blocked", "unsupported_format"),
        "blip": (submit_with_cached_song(settings, blip), "blocked", "too_short"),
    }
    truncated_sent = submit_with_cached_song(settings, truncated)
    good = submit_with_cached_song(settings, samples[0].path)
    rows = wait_finished(
        settings, [s.upload_id for s, _, _ in bad.values()] + [truncated_sent.upload_id, good.upload_id]
    )

    cache = redis.Redis.from_url(settings.redis_url)
    for name, (sent, outcome, reason) in bad.items():
        row = rows[sent.upload_id]
        assert (row["upload_status"], row["song_status"], row["error_code"]) == (outcome, outcome, reason), name
        assert row["error_message"], name
        assert row["storage_keys"] is None
        assert cache.exists(f"song:{sent.song_id}") == 0, name
    # A few KB of FLAC is either too short or cannot be decoded: never `ready`, always with a reason.
    truncated_row = rows[truncated_sent.upload_id]
    assert truncated_row["song_status"] in ("failed", "blocked") and truncated_row["error_code"]
    assert rows[good.upload_id]["song_status"] == "ready"


def test_a_missing_raw_object_fails_with_source_missing(settings: Settings, worker, samples: list[SampleTrack]) -> None:
    sent = submit_file(settings, samples[0].path, send_task=False)
    get_store(settings).client.delete_object(Bucket=settings.s3_bucket, Key=sent.storage_key)
    from pipeline.tasks import process_upload

    process_upload.apply_async(args=[sent.upload_id])
    row = wait_finished(settings, [sent.upload_id])[sent.upload_id]
    assert (row["song_status"], row["error_code"]) == ("failed", "source_missing")


def test_the_same_upload_sent_twice_is_processed_once(settings: Settings, worker, samples: list[SampleTrack]) -> None:
    from pipeline.tasks import process_upload

    sent = submit_file(settings, samples[2].path, send_task=False)
    for _ in range(3):
        process_upload.apply_async(args=[sent.upload_id])
    row = wait_finished(settings, [sent.upload_id])[sent.upload_id]
    assert row["song_status"] == "ready" and row["attempts"] == 1
    time.sleep(2)  # let the duplicates reach the worker and be dropped
    listed = get_store(settings).client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"songs/{sent.song_id}/")
    assert sorted(obj["Key"].rsplit("/", 1)[1] for obj in listed["Contents"]) == ["high.mp3", "low.mp3", "preview.mp3"]
    assert db.upload_report(settings, [sent.upload_id])[0]["attempts"] == 1
    assert "skipped: not pending, or claimed by another job" in worker.log()


def test_rows_written_without_a_task_are_picked_up_within_seconds(
    settings: Settings, worker, scheduler, samples: list[SampleTrack]
) -> None:
    sent = submit_file(settings, samples[1].path, send_task=False)
    row = wait_finished(settings, [sent.upload_id])[sent.upload_id]
    assert row["song_status"] == "ready"
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        timing = conn.execute(
            "SELECT extract(epoch FROM claimed_at - created_at) AS pickup FROM uploads WHERE id = %s",
            (sent.upload_id,),
        ).fetchone()
    assert timing is not None and timing["pickup"] < 5.0


def test_submit_command_follows_the_contract(settings: Settings, samples: list[SampleTrack]) -> None:
    out = subprocess.run(
        [".venv/bin/pipeline", "submit", str(samples[3].path), "--title", "CLI song", "--artist", "Shell", "--no-send"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    upload_id = out.split("upload=")[1].split()[0]
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute(
            """SELECT u.storage_key, u.original_size, u.file_name, u.mime_type, s.title, s.artist
                 FROM uploads u JOIN songs s ON s.id = u.song_id WHERE u.id = %s""",
            (upload_id,),
        ).fetchone()
    assert row is not None
    # A running scheduler may already have picked the row up; the contract is what was written.
    assert (row["title"], row["artist"], row["mime_type"]) == ("CLI song", "Shell", "audio/mp4")
    assert row["storage_key"] == f"raw/{upload_id}" and row["file_name"] == samples[3].path.name
    assert row["original_size"] == samples[3].path.stat().st_size
    assert get_store(settings).size_of(row["storage_key"]) == row["original_size"]


def insert_stuck_upload(settings: Settings, path: Path, *, attempts: int) -> Submitted:
    """An upload whose worker died mid-job: `processing`, lease expired, no live message."""
    sent = submit_file(settings, path, send_task=False)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        # Rows inserted as pending may already be claimed by a running scheduler; the dead job
        # takes them over regardless, as a worker that claimed and then died would have.
        conn.execute(
            """UPDATE uploads SET status = 'processing', job_id = 'dead-worker', attempts = %s,
                      lease_expires_at = now() - interval '1 second' WHERE id = %s""",
            (attempts, sent.upload_id),
        )
    return sent


def test_the_reaper_requeues_abandoned_uploads_and_fails_poison_ones(
    settings: Settings, worker, scheduler, samples: list[SampleTrack]
) -> None:
    from pipeline.tasks import reap_expired_leases

    retry = insert_stuck_upload(settings, samples[4].path, attempts=1)
    poison = insert_stuck_upload(settings, samples[4].path, attempts=settings.max_attempts)
    result = reap_expired_leases.apply().get()
    assert result["requeued"] >= 1 and result["failed"] >= 1
    rows = wait_finished(settings, [retry.upload_id, poison.upload_id])
    assert rows[retry.upload_id]["song_status"] == "ready"
    assert rows[retry.upload_id]["attempts"] == 2
    assert (rows[poison.upload_id]["song_status"], rows[poison.upload_id]["error_code"]) == (
        "failed",
        "too_many_attempts",
    )
