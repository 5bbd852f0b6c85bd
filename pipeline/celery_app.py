"""The Celery application: broker, serialization, delivery guarantees and queues."""

import os
import threading

from celery import Celery
from celery.signals import beat_init, setup_logging
from kombu import Queue

from pipeline.settings import get_settings

UPLOADS_QUEUE = "uploads"
REPROCESS_QUEUE = "reprocess"  # back-catalog work; served by its own workers so uploads never wait


def steps_queue(queue: str) -> str:
    """Where the later steps of a chain started from `queue` go. A worker serves it before `queue`
    (see `with_steps_queues`), so uploads in progress finish before the backlog behind them is started,
    instead of every upload of a batch finishing at the end of the batch."""
    return f"{queue}.steps"


def with_steps_queues(*queues: str) -> list[str]:
    """("uploads", "reprocess") -> uploads.steps, uploads, reprocess.steps, reprocess: a worker's -Q, in
    the order in which it polls them (the "priority" queue order strategy below)."""
    return [name for q in queues for name in (steps_queue(q), q)]


settings = get_settings()

# How the time limits relate (README, "Time limits"): the media step runs ffprobe twice at most (probe,
# cover), the full-length ffmpeg and the preview's; each is killed at its own timeout, then the step's
# soft limit fires, then its hard limit; a lease outlives the longest step, so the reaper never takes an
# upload from a live worker; the broker's visibility timeout outlives the lease, so Redis never
# redelivers a message whose task may still be running.
MEDIA_SOFT_LIMIT = (
    2 * settings.probe_timeout_seconds
    + settings.ffmpeg_timeout_seconds
    + settings.excerpt_timeout_seconds
    + settings.step_grace_seconds
)
MEDIA_HARD_LIMIT = MEDIA_SOFT_LIMIT + settings.step_grace_seconds
LEASE_SECONDS = MEDIA_HARD_LIMIT + settings.step_grace_seconds
VISIBILITY_TIMEOUT = LEASE_SECONDS + settings.step_grace_seconds
# librosa compiles with numba; a writable on-disk cache means a worker compiles once, not per start.
# librosa builds the CQT filter bank on every call, which costs more than the transform: its own
# on-disk cache (joblib, enabled by LIBROSA_CACHE_DIR) keeps them. Both are read when librosa is first
# imported, which is after this module in a worker.
os.environ.setdefault("NUMBA_CACHE_DIR", str(settings.work_dir / "numba-cache"))
os.environ.setdefault("LIBROSA_CACHE_DIR", str(settings.work_dir / "librosa-cache"))
# One BLAS/OpenMP thread per process: the worker's parallelism is its process pool. A second BLAS thread
# gains nothing on arrays this small and its busy-waiting doubled the CPU cost of an analysis (0.35 vs
# 0.18 CPU-s for a 210 s track). Read when numpy is first imported, which is also after this module.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

app = Celery("pipeline", broker=settings.broker_url, include=["pipeline.tasks"])
app.conf.update(
    # JSON only: a message never carries pickled objects, and any language can send one.
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    # A task is acknowledged when it ends, not when it starts: a worker that dies mid-task
    # leaves its message to be delivered again (every step is safe to run twice).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Redis redelivers an unacknowledged message after the visibility timeout: it must exceed
    # the longest hard time limit, or a slow task would run twice at once.
    # Queues are polled in the worker's -Q order every time, not rotated: strict priority.
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT, "queue_order_strategy": "priority"},
    broker_connection_retry_on_startup=True,
    task_default_queue=UPLOADS_QUEUE,
    task_queues=[Queue(name) for name in with_steps_queues(UPLOADS_QUEUE, REPROCESS_QUEUE)],
    # Events for Flower: every task with its name, arguments (ids only) and state.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    timezone="UTC",
    beat_schedule={
        "reap-expired-leases": {"task": "pipeline.reap_expired_leases", "schedule": settings.reap_interval_seconds},
        "flush-cache-invalidations": {"task": "pipeline.flush_cache_invalidations", "schedule": 10.0},
        "delete-retired-objects": {"task": "pipeline.delete_retired_objects", "schedule": 300.0},
    },
)


@beat_init.connect
def _start_dispatcher(**_: object) -> None:
    """The scheduler process also feeds the queue from the database (see pipeline.dispatch)."""
    from pipeline.dispatch import run_dispatcher  # imports the tasks, which import this module

    threading.Thread(target=run_dispatcher, args=(settings, threading.Event()), daemon=True).start()


@setup_logging.connect
def _configure_logging(loglevel: str | int | None = None, **_: object) -> None:
    """Celery's worker and beat log in the pipeline's structured format (pipeline.logs)."""
    from pipeline import logs

    logs.configure(loglevel or "INFO")
