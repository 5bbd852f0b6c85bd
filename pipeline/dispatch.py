"""Gets pending uploads onto the queue even when nobody sent their task.

The scheduler process runs `run_dispatcher` in a thread: it LISTENs for the insert trigger's
NOTIFY (low latency) and sweeps at a fixed interval regardless (lost messages, missed
notifications, a restarted broker).
"""

import logging
import threading
import time

import psycopg
from amqp.exceptions import ChannelError

from pipeline import db
from pipeline.celery_app import REPROCESS_QUEUE, UPLOADS_QUEUE, app
from pipeline.settings import Settings
from pipeline.tasks import process_upload

log = logging.getLogger(__name__)

CHANNEL = "pipeline_uploads"
_BATCH = 500
QUEUE_FOR_KIND = {"upload": UPLOADS_QUEUE, "reprocess": REPROCESS_QUEUE, "reanalyze": REPROCESS_QUEUE}


def queue_depths() -> dict[str, int]:
    """Messages waiting in each pipeline queue, steps queues included (not counting ones a worker has
    reserved)."""
    depths = {}
    with app.connection_for_read() as conn:
        for queue in (q.name for q in app.conf.task_queues):
            with conn.channel() as channel:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:  # the Redis transport has no list at all for an empty queue
                    depths[queue] = 0
    return depths


def dispatch_pending(settings: Settings) -> int:
    """Sends `pipeline.process_upload` for each due pending upload, to its kind's queue; returns how many.

    An upload is re-sent only when its queue is empty: a message still waiting behind a long backlog
    is not lost, and re-sending it would only grow the backlog.
    """
    depths = queue_depths()
    redispatch = [kind for kind, queue in QUEUE_FOR_KIND.items() if depths[queue] == 0]
    sent = 0
    while True:
        due = db.take_dispatchable(
            settings, limit=_BATCH, redispatch_after=settings.redispatch_after_seconds, redispatch_kinds=redispatch
        )
        for upload_id, kind in due:
            process_upload.apply_async(args=[upload_id], queue=QUEUE_FOR_KIND[kind])
        sent += len(due)
        if len(due) < _BATCH:
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
            log.exception("dispatcher failed; retrying in 2 s")
            time.sleep(2)
