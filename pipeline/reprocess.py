"""`pipeline reprocess`: re-runs the pipeline over the back catalog from the stored raw files.

Songs are walked in id order in chunks; each chunk's upload rows and the run's cursor are written in
one transaction, so a run that dies continues where it stopped and never enqueues a song twice.
Messages go to the low-priority `reprocess` queue, with flow control (the queue never holds more than
`max_queue` messages, so Redis memory stays flat however large the catalog) and a rate limit.
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from pipeline import db
from pipeline.celery_app import REPROCESS_QUEUE
from pipeline.dispatch import queue_depths
from pipeline.settings import Settings


@dataclass(frozen=True)
class ReprocessPlan:
    selection: db.Selection
    kind: str  # "reprocess" (renditions and analysis) or "reanalyze"
    name: str | None = None
    chunk: int = 500
    rate: float = 0.0  # songs per second; 0 = as fast as the queue takes them
    max_queue: int = 2000


def current_versions(settings: Settings, analysis_only: bool) -> dict[str, int | None]:
    """Selection fields that leave out songs already made by the current profile/analysis versions."""
    from pipeline.analysis import ANALYSIS_VERSION
    from pipeline.media.profiles import load_profiles

    rendition = None if analysis_only else load_profiles(settings.renditions_file).version
    return {"current_rendition_version": rendition, "current_analysis_version": ANALYSIS_VERSION}


def run_name(plan: ReprocessPlan) -> str:
    """Stable for a selection, so running the same command again resumes it."""
    digest = hashlib.sha256(json.dumps([plan.kind, plan.selection.model_dump()], sort_keys=True).encode())
    return plan.name or f"{plan.kind}-{digest.hexdigest()[:12]}"


def dry_run(settings: Settings, plan: ReprocessPlan) -> dict[str, int]:
    everything = plan.selection.model_copy(update={"current_rendition_version": None, "current_analysis_version": None})
    selected = db.count_selection(settings, everything)
    due = db.count_selection(settings, plan.selection)
    return {"selected": selected, "to_process": due, "already_current": selected - due}


def run(
    settings: Settings,
    plan: ReprocessPlan,
    *,
    restart: bool = False,
    progress: bool = True,
    on_chunk: Callable[[db.ReprocessRun], None] | None = None,
) -> db.ReprocessRun:
    run_ = db.start_run(settings, run_name(plan), plan.selection, restart=restart)
    remaining = db.count_selection(settings, plan.selection, after=run_.cursor_song_id)
    bar = tqdm(total=remaining, unit="song", desc=run_.name, disable=not progress, smoothing=0.05)
    started = time.monotonic()
    sent = 0
    try:
        while not run_.finished:
            while queue_depths()[REPROCESS_QUEUE] >= plan.max_queue:
                time.sleep(1.0)  # flow control: the workers set the pace, not this command
            run_, upload_ids, examined = db.enqueue_chunk(
                settings, run_, plan.selection, kind=plan.kind, limit=plan.chunk
            )
            _send(upload_ids)
            sent += len(upload_ids)
            bar.update(examined)
            bar.set_postfix(enqueued=run_.enqueued)
            if on_chunk:
                on_chunk(run_)
            if plan.rate > 0:
                time.sleep(max(0.0, sent / plan.rate - (time.monotonic() - started)))
    finally:
        bar.close()
    return run_


def retry_failed(settings: Settings, *, reason: str | None, chunk: int = 500) -> int:
    """Bulk retry of failed uploads (optionally one reason code), on the low-priority queue."""
    total = 0
    while upload_ids := db.retry_failed_uploads(settings, reason=reason, limit=chunk):
        _send(upload_ids)
        total += len(upload_ids)
    return total


def _send(upload_ids: list[str]) -> None:
    """One broker connection for a whole chunk: per-message connection handling would dominate."""
    from pipeline.celery_app import app
    from pipeline.tasks import process_upload

    with app.producer_or_acquire() as producer:
        for upload_id in upload_ids:
            process_upload.apply_async(args=[upload_id], queue=REPROCESS_QUEUE, producer=producer)
