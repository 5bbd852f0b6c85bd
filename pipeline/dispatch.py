"""Gets pending uploads onto the queue even when nobody sent their task.

The scheduler process runs `run_dispatcher` in a thread: it LISTENs for the insert trigger's
NOTIFY (low latency) and sweeps at a fixed interval regardless (lost messages, missed
notifications, a restarted broker).
"""

import logging
import threading
import time

import psycopg

from pipeline import db
from pipeline.settings import Settings
from pipeline.tasks import process_upload

log = logging.getLogger(__name__)

CHANNEL = "pipeline_uploads"
_BATCH = 500


def dispatch_pending(settings: Settings) -> int:
    """Sends `pipeline.process_upload` for each due pending upload; returns how many."""
    sent = 0
    while True:
        ids = db.take_dispatchable(settings, limit=_BATCH, redispatch_after=settings.redispatch_after_seconds)
        for upload_id in ids:
            process_upload.apply_async(args=[upload_id])
        sent += len(ids)
        if len(ids) < _BATCH:
            return sent


def run_dispatcher(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                while not stop.is_set():
                    sent = dispatch_pending(settings)
                    if sent:
                        log.info("dispatched %d pending upload(s)", sent)
                    # Returns at the first notification, or when the sweep interval is up.
                    for _ in conn.notifies(timeout=settings.sweep_interval_seconds, stop_after=1):
                        pass
        except Exception:
            log.exception("dispatcher lost its connection; retrying in 2 s")
            time.sleep(2)
