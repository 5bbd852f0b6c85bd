"""`pipeline migrate` on a fresh database: the platform schema, its fixes, and concurrency safety."""

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pipeline.migrate import migrate, migration_files

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def fresh_url() -> Iterator[str]:
    name = f"pipeline_migrate_{uuid.uuid4().hex[:8]}"
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_concurrent_migrate_commands_apply_each_file_once(fresh_url: str) -> None:
    env = {"DATABASE_URL": fresh_url, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([".venv/bin/pipeline", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert sum("applied:" in out for out in outputs) == 1
    with psycopg.connect(fresh_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [p.name for p in migration_files()]
    assert migrate(fresh_url) == []


def test_schema_keeps_the_platform_contract_and_fixes_its_defects(fresh_url: str) -> None:
    migrate(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        labels = [r[0] for r in conn.execute("SELECT unnest(enum_range(NULL::song_status))::text")]
        assert labels == ["uploaded", "processing", "ready", "failed", "blocked"]
        columns = {
            r[0]
            for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'uploads'")
        }
        assert {"job_id", "song_id", "storage_key", "error_code", "error_message", "attempts"} <= columns
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'songs'")}
        assert "idx_songs_title_artist" in indexes  # needs pg_trgm, which the design forgot

        user = conn.execute(
            "INSERT INTO users (email, password_hash, display_name) VALUES ('a@b.c', 'x', 'A') RETURNING id"
        ).fetchone()[0]
        song_ids = [
            conn.execute("INSERT INTO songs (title, artist) VALUES (%s, 'B') RETURNING id", (t,)).fetchone()[0]
            for t in ("one", "two")
        ]
        playlist = conn.execute(
            "INSERT INTO playlists (user_id, name) VALUES (%s, 'p') RETURNING id", (user,)
        ).fetchone()[0]
        for position, song in enumerate(song_ids):
            conn.execute("INSERT INTO playlist_songs VALUES (%s, %s, %s)", (playlist, song, position))
        # Swapping two positions in one transaction: impossible with the design's unique index.
        with conn.transaction():
            conn.execute("UPDATE playlist_songs SET position = 1 - position WHERE playlist_id = %s", (playlist,))

        before = conn.execute("SELECT updated_at FROM songs WHERE id = %s", (song_ids[0],)).fetchone()[0]
        conn.execute("UPDATE songs SET genre = 'Jazz' WHERE id = %s", (song_ids[0],))
        after = conn.execute("SELECT updated_at FROM songs WHERE id = %s", (song_ids[0],)).fetchone()[0]
        assert after > before

        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO uploads (file_name, original_size, status) VALUES ('f', 1, 'bogus')")


def test_the_worker_role_can_run_the_pipeline_and_nothing_more(fresh_url: str) -> None:
    from pipeline import db
    from pipeline.errors import Outcome, Reason
    from pipeline.settings import Settings

    migrate(fresh_url)
    login = f"worker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_url, autocommit=True) as owner:
        owner.execute(f"CREATE ROLE {login} LOGIN IN ROLE pipeline_worker")
        song = owner.execute("INSERT INTO songs (title, artist) VALUES ('t', 'a') RETURNING id::text").fetchone()[0]
        uploads = [
            owner.execute(
                """INSERT INTO uploads (file_name, original_size, song_id, storage_key)
                   VALUES ('f.mp3', 1, %s, 'raw/x') RETURNING id::text""",
                (song,),
            ).fetchone()[0]
            for _ in range(2)
        ]
    worker = Settings(database_url=fresh_url.replace("postgres@", f"{login}@"))
    try:
        # Every statement the worker and the scheduler run, as the restricted role.
        assert db.take_dispatchable(worker, limit=10, redispatch_after=60, redispatch_kinds=["upload"]) == [
            (u, "upload") for u in uploads
        ]
        assert db.claim_upload(worker, uploads[0], "job-1", 60) is not None
        assert db.renew_lease(worker, uploads[0], "job-1", 60)
        assert db.song_fields(worker, song).album is None
        published = db.Publication(
            song_id=song, storage_keys={"high": "k"}, metadata={"bpm": 120}, duration_seconds=3, album="A",
            rendition_version=1, analysis_version=2,
        )  # fmt: skip
        assert db.publish(worker, upload_id=uploads[0], job_id="job-1", song=published, retire_after_seconds=60)
        assert db.claim_upload(worker, uploads[1], "job-2", 60) is not None
        assert db.finish_with_error(
            worker, upload_id=uploads[1], job_id="job-2", outcome=Outcome.FAILED, reason=Reason.TIMEOUT, message="m"
        )
        assert db.reap_expired_leases(worker, max_attempts=3) == []
        assert db.due_retired_objects(worker) == []
        db.forget_retired_objects(worker, ["nothing"])
        assert db.status_counts(worker)["songs"] == {"ready": 1}
        assert db.failures_by_reason(worker, 3600)[0]["error_code"] == "timeout"
        queued = db.queued_invalidations(worker, None)
        assert [song_id for song_id, _ in queued] == [song]
        db.clear_invalidations(worker, queued)
        assert db.upload_report(worker, uploads)[0]["song_status"] == "ready"

        with psycopg.connect(worker.database_url, autocommit=True) as conn:
            for statement in (
                "SELECT * FROM users",
                "DELETE FROM songs",
                "UPDATE songs SET title = 'x'",
                "INSERT INTO songs (title, artist) VALUES ('x', 'y')",
                "DROP TABLE uploads",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        db.pool(worker).close()
        with psycopg.connect(fresh_url, autocommit=True) as owner:
            owner.execute(f"DROP OWNED BY {login}")
            owner.execute(f"DROP ROLE {login}")
