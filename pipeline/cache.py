"""The platform's Redis cache: the pipeline only ever invalidates `song:<id>`."""

import os
from functools import cache

import redis

from pipeline.settings import Settings


def song_key(song_id: str) -> str:
    return f"song:{song_id}"


@cache
def _client_for(url: str, pid: int) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def invalidate_song(settings: Settings, song_id: str) -> None:
    """Called after every committed status change of a song, so readers never see a stale entry."""
    _client_for(settings.redis_url, os.getpid()).delete(song_key(song_id))
