"""The platform's Redis cache: the pipeline only ever invalidates `song:<id>`.

Status changes queue an invalidation in PostgreSQL in their own transaction (db._queue_invalidation);
`flush` carries them out. Callers flush right after their commit; the scheduler flushes whatever a
Redis outage left behind, so an invalidation can be late but is never lost.
"""

import logging
import os
from functools import cache

import redis

from pipeline import db
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def song_key(song_id: str) -> str:
    return f"song:{song_id}"


@cache
def _client_for(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def flush(settings: Settings, song_ids: list[str] | None = None) -> int:
    """Deletes the cache keys of queued invalidations (of `song_ids`, or the oldest queued); returns how many."""
    queued = db.queued_invalidations(settings, song_ids)
    if queued:
        _client_for(settings.redis_url, os.getpid()).delete(*(song_key(song_id) for song_id, _ in queued))
        db.clear_invalidations(settings, queued)
    return len(queued)


def flush_after_commit(settings: Settings, song_id: str) -> None:
    """Best effort right after a commit: on a Redis outage the periodic flush does it later."""
    try:
        flush(settings, [song_id])
    except redis.RedisError as exc:
        log.warning("song=%s cache invalidation deferred: %s", song_id, exc)
