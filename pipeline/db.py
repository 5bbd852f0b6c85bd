"""Every SQL statement the pipeline runs. Each function is one transaction that is safe to repeat."""

import os
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from pipeline.errors import Outcome, Reason
from pipeline.settings import Settings


def _queue_invalidation(conn: psycopg.Connection[Any], song_ids: list[str]) -> None:
    """Records, inside the caller's transaction, that song:<id> must leave the cache (see cache.py)."""
    conn.execute(
        """INSERT INTO cache_invalidations (song_id) SELECT unnest(%s::uuid[])
           ON CONFLICT (song_id) DO UPDATE SET queued_at = clock_timestamp()""",
        (song_ids,),
    )


class ClaimedUpload(BaseModel):
    upload_id: str
    song_id: str
    storage_key: str
    file_name: str
    attempts: int


class SongFields(BaseModel):
    album: str | None
    genre: str | None
    cover_image_key: str | None


@cache
def _pool_for(url: str, pid: int) -> ConnectionPool:
    # check= revalidates a pooled connection before use, so a restarted PostgreSQL costs a
    # reconnect instead of a failed task.
    return ConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=True,
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": 5},
    )


def pool(settings: Settings) -> ConnectionPool:
    # Pools hold sockets, which must not be shared across a fork: one per process.
    return _pool_for(settings.database_url, os.getpid())


def claim_upload(settings: Settings, upload_id: str, job_id: str, lease_seconds: float) -> ClaimedUpload | None:
    """pending -> processing, at most once per upload. A redelivered claim of the same job gets the
    same answer again; any other job gets None."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """UPDATE uploads
                  SET status = 'processing', job_id = %(job)s, attempts = attempts + 1,
                      claimed_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s),
                      error_code = NULL, error_message = NULL, finished_at = NULL
                WHERE id = %(id)s AND status = 'pending'
            RETURNING id::text AS upload_id, song_id::text, storage_key, file_name, attempts""",
            {"id": upload_id, "job": job_id, "lease": lease_seconds},
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                """SELECT id::text AS upload_id, song_id::text, storage_key, file_name, attempts
                     FROM uploads WHERE id = %s AND status = 'processing' AND job_id = %s""",
                (upload_id, job_id),
            )
            row = cur.fetchone()
            return None if row is None else ClaimedUpload(**row)
        if row["song_id"] is None or row["storage_key"] is None:
            cur.execute(
                """UPDATE uploads SET status = 'failed', error_code = %s, error_message = %s,
                          finished_at = now(), lease_expires_at = NULL WHERE id = %s""",
                (Reason.INVALID_UPLOAD, "the upload row has no song_id or storage_key", upload_id),
            )
            return None
        cur.execute(
            "UPDATE songs SET status = 'processing' WHERE id = %s AND status IN ('uploaded', 'failed')",
            (row["song_id"],),
        )
        if cur.rowcount == 1:
            _queue_invalidation(conn, [row["song_id"]])
        return ClaimedUpload(**row)


def renew_lease(settings: Settings, upload_id: str, job_id: str, lease_seconds: float) -> bool:
    """True while this job still owns the upload (it was not finished or handed to another job)."""
    with pool(settings).connection() as conn:
        cur = conn.execute(
            """UPDATE uploads SET lease_expires_at = now() + make_interval(secs => %s)
                WHERE id = %s AND status = 'processing' AND job_id = %s""",
            (lease_seconds, upload_id, job_id),
        )
        return cur.rowcount == 1


def song_fields(settings: Settings, song_id: str) -> SongFields:
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT album, genre, cover_image_key FROM songs WHERE id = %s", (song_id,))
        row = cur.fetchone()
        return SongFields(**(row or {"album": None, "genre": None, "cover_image_key": None}))


def publish(
    settings: Settings,
    *,
    upload_id: str,
    job_id: str,
    song_id: str,
    storage_keys: dict[str, str],
    metadata: dict[str, Any],
    duration_seconds: int,
    album: str | None,
    genre: str | None,
    cover_image_key: str | None,
) -> bool:
    """Makes the song playable in one transaction. True when this job has published the song (now, or
    in an earlier run of this step); False when the upload belongs to another job."""
    with pool(settings).connection() as conn, conn.transaction():
        row = conn.execute(
            "SELECT status FROM uploads WHERE id = %s AND job_id = %s FOR UPDATE", (upload_id, job_id)
        ).fetchone()
        if row is None or row[0] not in ("processing", "done"):
            return False
        if row[0] == "done":
            return True
        conn.execute(
            "UPDATE uploads SET status = 'done', finished_at = now(), lease_expires_at = NULL WHERE id = %s",
            (upload_id,),
        )
        conn.execute(
            """UPDATE songs
                  SET storage_keys = %(keys)s,
                      metadata = metadata || %(metadata)s,
                      duration_seconds = %(duration)s,
                      album = COALESCE(album, %(album)s),
                      genre = COALESCE(genre, %(genre)s),
                      cover_image_key = COALESCE(cover_image_key, %(cover)s),
                      status = 'ready'
                WHERE id = %(song)s""",
            {
                "keys": Jsonb(storage_keys),
                "metadata": Jsonb(metadata),
                "duration": duration_seconds,
                "album": album,
                "genre": genre,
                "cover": cover_image_key,
                "song": song_id,
            },
        )
        _queue_invalidation(conn, [song_id])
        return True


def finish_with_error(
    settings: Settings, *, upload_id: str, job_id: str, outcome: Outcome, reason: Reason, message: str
) -> str | None:
    """Records why the job ended without a song; returns the song id, or None when this job had
    already lost the upload."""
    with pool(settings).connection() as conn, conn.transaction():
        row = conn.execute(
            """UPDATE uploads SET status = %s, error_code = %s, error_message = %s,
                      finished_at = now(), lease_expires_at = NULL
                WHERE id = %s AND status = 'processing' AND job_id = %s
            RETURNING song_id::text""",
            (outcome.value, reason.value, message[:2000], upload_id, job_id),
        ).fetchone()
        if row is None:
            return None
        # A song that is already playable (a reprocess that failed) keeps its status.
        changed = conn.execute(
            "UPDATE songs SET status = %s WHERE id = %s AND status IN ('uploaded', 'processing')",
            (outcome.value, row[0]),
        ).rowcount
        if changed:
            _queue_invalidation(conn, [str(row[0])])
        return str(row[0])


def take_dispatchable(settings: Settings, *, limit: int, redispatch_after: float) -> list[str]:
    """Pending uploads that were never sent, or were sent so long ago that the message may be lost.

    SKIP LOCKED lets several schedulers sweep at once without sending an upload twice.
    """
    with pool(settings).connection() as conn:
        rows = conn.execute(
            """UPDATE uploads u SET dispatched_at = now()
                 FROM (SELECT id FROM uploads
                        WHERE status = 'pending'
                          AND (dispatched_at IS NULL
                               OR dispatched_at < now() - make_interval(secs => %s))
                        ORDER BY created_at
                        LIMIT %s
                        FOR UPDATE SKIP LOCKED) due
                WHERE u.id = due.id
            RETURNING u.id::text""",
            (redispatch_after, limit),
        ).fetchall()
        return [r[0] for r in rows]


class ReapedUpload(BaseModel):
    upload_id: str
    song_id: str
    status: str  # "pending" (requeued) or "failed"


def reap_expired_leases(settings: Settings, *, max_attempts: int) -> list[ReapedUpload]:
    """Uploads stuck in `processing` past their lease: back to `pending` (the insert/update trigger
    wakes the dispatcher), or `failed` once they have used up their attempts."""
    with pool(settings).connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """UPDATE uploads
                  SET status = CASE WHEN attempts < %(max)s THEN 'pending' ELSE 'failed' END,
                      error_code = CASE WHEN attempts < %(max)s THEN NULL ELSE %(code)s END,
                      error_message = CASE WHEN attempts < %(max)s THEN NULL
                                           ELSE 'the worker stopped responding on every attempt' END,
                      finished_at = CASE WHEN attempts < %(max)s THEN NULL ELSE now() END,
                      job_id = NULL, lease_expires_at = NULL, dispatched_at = NULL
                WHERE status = 'processing' AND lease_expires_at < now()
            RETURNING id::text AS upload_id, song_id::text, status""",
            {"max": max_attempts, "code": Reason.TOO_MANY_ATTEMPTS.value},
        )
        reaped = [ReapedUpload(**row) for row in cur.fetchall()]
        failed = [r.song_id for r in reaped if r.status == "failed"]
        if failed:
            cur.execute(
                """UPDATE songs SET status = 'failed'
                    WHERE id = ANY(%s::uuid[]) AND status IN ('uploaded', 'processing')""",
                (failed,),
            )
            _queue_invalidation(conn, failed)
        return reaped


def upload_report(settings: Settings, upload_ids: list[str]) -> list[dict[str, Any]]:
    """Uploads with their songs, for people: the demo's table and `pipeline show`."""
    with pool(settings).connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT u.id::text AS upload_id, u.file_name, u.status AS upload_status, u.error_code,
                      u.error_message, u.job_id, u.attempts, s.id::text AS song_id, s.title,
                      s.status::text AS song_status,
                      s.duration_seconds, s.album, s.genre, s.cover_image_key, s.metadata, s.storage_keys
                 FROM uploads u LEFT JOIN songs s ON s.id = u.song_id
                WHERE u.id = ANY(%s::uuid[]) ORDER BY u.created_at""",
            (upload_ids,),
        )
        return cur.fetchall()


def unfinished_count(settings: Settings, upload_ids: list[str]) -> int:
    with pool(settings).connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM uploads WHERE id = ANY(%s::uuid[]) AND status IN ('pending', 'processing')",
            (upload_ids,),
        ).fetchone()
        return int(row[0]) if row else 0


def queued_invalidations(settings: Settings, song_ids: list[str] | None, limit: int = 1000) -> list[tuple[str, Any]]:
    """(song id, queued_at) of pending cache invalidations: the given songs, or the oldest ones."""
    with pool(settings).connection() as conn:
        if song_ids is None:
            rows = conn.execute(
                "SELECT song_id::text, queued_at FROM cache_invalidations ORDER BY queued_at LIMIT %s", (limit,)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT song_id::text, queued_at FROM cache_invalidations WHERE song_id = ANY(%s::uuid[])",
                (song_ids,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]


def clear_invalidations(settings: Settings, done: list[tuple[str, Any]]) -> None:
    """Forgets invalidations that were carried out, unless the song changed again meanwhile."""
    with pool(settings).connection() as conn, conn.transaction():
        for song_id, queued_at in done:
            conn.execute("DELETE FROM cache_invalidations WHERE song_id = %s AND queued_at <= %s", (song_id, queued_at))
