-- Songs whose cache entry `song:<id>` must be deleted. Written in the same transaction as the status
-- change, deleted once Redis has confirmed the DEL: a Redis outage between the two can delay an
-- invalidation but never lose it (a periodic task retries what is left here).
CREATE TABLE cache_invalidations (
    song_id UUID PRIMARY KEY,
    queued_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp()
);
