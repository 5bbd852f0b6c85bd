"""The upload chain: process_upload (claims) -> media -> publish.

`media` does the heavy work in one scratch directory, so the raw file is downloaded once and the
analysis PCM never leaves the machine: probe (ffprobe, mutagen, policy, cover), transcode (one ffmpeg
decode for every full-length rendition, the PCM and the loudness, then the preview) and analyze (BPM,
key). Its parts are logged as steps of their own. Steps pass a small `Job` (ids, object keys, metadata) through
the broker, never file contents. Every step first checks that its job still owns the upload, so a
stale or duplicated chain stops instead of writing.
"""

import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.exceptions
import kombu.exceptions
import psycopg
import psycopg_pool
import redis
from celery import Task, chain
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init, worker_ready
from pydantic import BaseModel

from pipeline import analysis, cache, db, logs
from pipeline.celery_app import (
    LEASE_SECONDS,
    MEDIA_HARD_LIMIT,
    MEDIA_SOFT_LIMIT,
    UPLOADS_QUEUE,
    app,
    settings,
    steps_queue,
)
from pipeline.errors import ContentError, Outcome, Reason
from pipeline.media import probe as media_probe
from pipeline.media.profiles import load_profiles
from pipeline.media.transcode import PCM_SAMPLE_RATE, PcmFile, TranscodeResult
from pipeline.media.transcode import transcode as media_transcode
from pipeline.storage import get_store

log = logging.getLogger(__name__)

# Outages of the services around us: worth retrying with backoff, never the upload's fault.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    kombu.exceptions.OperationalError,  # the broker, when a step sends the next one
    ConnectionError,
)


class RenditionRef(BaseModel):
    key: str
    size_bytes: int
    bit_rate: int | None
    sample_rate: int
    channels: int
    duration_seconds: float
    start_seconds: float
    copied: bool


class Job(BaseModel):
    upload_id: str
    song_id: str
    job_id: str
    raw_key: str
    kind: str = "upload"  # "reanalyze": decode for analysis only and keep the song's renditions
    probe: media_probe.ProbeResult | None = None
    cover_key: str | None = None
    album: str | None = None
    genre: str | None = None
    renditions: dict[str, RenditionRef] = {}
    profile_version: int | None = None
    decoded_seconds: float | None = None
    analysis: dict[str, Any] | None = None


class PipelineTask(Task):
    """Retry policy and failure recording shared by every step."""

    autoretry_for = TRANSIENT_ERRORS
    max_retries = settings.transient_max_retries
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True
    throws = (ContentError,)  # expected outcomes: logged without a traceback

    def retry(self, *args: Any, countdown: float | None = None, **kwargs: Any) -> Any:
        # Celery's jitter draws the wait anywhere in [0, backoff], so five retries could all come within
        # a few seconds and give up during a short S3 or database outage. At least half the backoff
        # (1, 2, 4, 8, 16 s: 31 s in all) keeps the spread that stops workers retrying in step.
        if countdown is not None:
            base = min(self.retry_backoff * 2**self.request.retries, self.retry_backoff_max)
            countdown = max(countdown, base / 2)
        return super().retry(*args, countdown=countdown, **kwargs)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not args or not isinstance(args[0], dict):
            return  # the claim step: the upload is still pending and the sweep will send it again
        job = Job.model_validate(args[0])
        outcome, reason, message = _classify(exc)
        with logs.bind(upload=job.upload_id, song=job.song_id, step=self.name.removeprefix("pipeline.")):
            log.warning("%s (%s): %s", outcome, reason, message)
            self._record_failure(job, outcome, reason, message)

    def _record_failure(self, job: "Job", outcome: Outcome, reason: Reason, message: str) -> None:
        try:
            if db.finish_with_error(
                settings,
                upload_id=job.upload_id,
                job_id=job.job_id,
                outcome=outcome,
                reason=reason,
                message=message,
            ):
                cache.flush_after_commit(settings, job.song_id)
        except Exception:
            log.exception("could not record the failure; the reaper retries once the lease expires")


def _classify(exc: BaseException) -> tuple[Outcome, Reason, str]:
    if isinstance(exc, ContentError):
        return exc.outcome, exc.reason, exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        return Outcome.FAILED, Reason.TIMEOUT, "the step ran over its time limit"
    if isinstance(exc, TRANSIENT_ERRORS):
        return (
            Outcome.FAILED,
            Reason.TRANSIENT_EXHAUSTED,
            f"gave up after retries: {type(exc).__name__}: {exc}",
        )
    return Outcome.FAILED, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"


@contextmanager
def _step(job: Job, step: str) -> Iterator[Path]:
    """Checks ownership, gives the step a scratch directory, and logs how long it took; every line
    logged inside carries the upload, song and step."""
    with logs.bind(upload=job.upload_id, song=job.song_id, step=step):
        if not db.renew_lease(settings, job.upload_id, job.job_id, LEASE_SECONDS):
            log.info("skipped: job %s no longer owns the upload", job.job_id)
            raise Ignore()
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        # The pid in the name lets a later process clean up after one that was killed (see below).
        with (
            _timed(step),
            tempfile.TemporaryDirectory(dir=settings.work_dir, prefix=f"{step}-{os.getpid()}-") as scratch,
        ):
            yield Path(scratch)


@contextmanager
def _timed(step: str) -> Iterator[None]:
    """Logs `done in` with wall and CPU time (ffmpeg's included) for a step or a part of one."""
    with logs.bind(step=step):
        started, cpu_started = time.monotonic(), _cpu_seconds()
        yield
        log.info(
            "done in %.2f s (cpu %.2f s with ffmpeg)",
            time.monotonic() - started,
            _cpu_seconds() - cpu_started,
        )


def _cpu_seconds() -> float:
    """CPU of this process plus its finished children (ffmpeg, ffprobe)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@app.task(name="pipeline.process_upload", bind=True, base=PipelineTask, soft_time_limit=30, time_limit=60)
def process_upload(self: Task, upload_id: str) -> None:
    """The entry point the upload API may send by name with the upload id. Claims the upload
    (compare-and-set pending -> processing; this task's id becomes the job id, so a redelivered
    message gets the same claim again and a duplicate gets none), then becomes media -> publish on
    the steps queue of the queue this message came from (a reprocess stays on the low-priority side)."""
    job_id = self.request.id
    with logs.bind(upload=upload_id, step="claim"):
        claimed = db.claim_upload(settings, upload_id, job_id, LEASE_SECONDS)
        if claimed is None:
            log.info("skipped: not pending, or claimed by another job")
            raise Ignore()
        cache.flush_after_commit(settings, claimed.song_id)
        log.info("claimed: song=%s kind=%s attempt=%d", claimed.song_id, claimed.kind, claimed.attempts)
    job = Job(
        upload_id=upload_id, song_id=claimed.song_id, job_id=job_id, raw_key=claimed.storage_key, kind=claimed.kind
    )
    queue = steps_queue((self.request.delivery_info or {}).get("routing_key") or UPLOADS_QUEUE)
    raise self.replace(chain(media.si(job.model_dump(mode="json")).set(queue=queue), publish.s().set(queue=queue)))


@app.task(
    name="pipeline.media", bind=True, base=PipelineTask, soft_time_limit=MEDIA_SOFT_LIMIT, time_limit=MEDIA_HARD_LIMIT
)
def media(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    job = Job.model_validate(payload)
    with _step(job, "media") as scratch:
        source = scratch / "source"
        get_store(settings).download(job.raw_key, source, max_bytes=settings.max_upload_bytes)
        with _timed("probe"):
            _probe(job, source, scratch)
        with _timed("transcode"):
            transcoded = _transcode(job, source, scratch)
        with _timed("analyze"):
            # Analysis reads bounded excerpts of the file, so memory does not grow with its length.
            result = analysis.analyze_pcm(PcmFile(transcoded.pcm_path), PCM_SAMPLE_RATE)
            job.analysis = result.to_metadata() | transcoded.loudness.to_metadata()
    return job.model_dump(mode="json")


def _probe(job: Job, source: Path, scratch: Path) -> None:
    info = media_probe.probe(source, timeout=settings.probe_timeout_seconds, cpu_seconds=60)
    _enforce_policy(info)
    song = db.song_fields(settings, job.song_id)
    job.probe = info
    job.album = None if song.album else info.tags.get("album", "")[:255] or None
    job.genre = None if song.genre else info.tags.get("genre", "")[:50] or None
    if song.cover_image_key is None:
        job.cover_key = _store_cover(job, source, info, scratch)


def _enforce_policy(info: media_probe.ProbeResult) -> None:
    if info.stream_count > settings.max_streams:
        raise ContentError(Reason.TOO_MANY_STREAMS, f"{info.stream_count} streams; at most {settings.max_streams}")
    if info.duration_seconds > settings.max_duration_seconds:
        raise ContentError(
            Reason.TOO_LONG,
            f"{info.duration_seconds:.0f} s long; at most {settings.max_duration_seconds:.0f} s",
        )
    if info.duration_seconds < settings.min_duration_seconds:
        raise ContentError(
            Reason.TOO_SHORT,
            f"{info.duration_seconds:.2f} s long; at least {settings.min_duration_seconds:.1f} s",
        )


def _store_cover(job: Job, source: Path, info: media_probe.ProbeResult, scratch: Path) -> str | None:
    cover = media_probe.extract_cover(
        source, info, scratch, timeout=settings.probe_timeout_seconds, max_bytes=settings.max_cover_bytes
    )
    if cover is None:
        return None
    path, content_type = cover
    key = f"covers/{job.song_id}/{job.upload_id}{path.suffix}"
    get_store(settings).upload(path, key, content_type=content_type)
    return key


def _transcode(job: Job, source: Path, scratch: Path) -> TranscodeResult:
    """Writes and uploads the renditions; returns them with the analysis PCM's path and the loudness."""
    assert job.probe is not None
    profiles = load_profiles(settings.renditions_file)
    if job.kind == "reanalyze":  # the same single decode, writing the analysis PCM only
        profiles = profiles.model_copy(update={"profiles": ()})
    result = media_transcode(
        source,
        job.probe,
        profiles,
        scratch,
        timeout=settings.ffmpeg_timeout_seconds,
        excerpt_timeout=settings.excerpt_timeout_seconds,
        cpu_seconds=settings.ffmpeg_cpu_seconds,
    )
    store = get_store(settings)
    for rendition in result.renditions:
        # Keyed by song and upload: a retry overwrites its own objects, a reprocess gets new ones.
        key = f"songs/{job.song_id}/{job.upload_id}/{rendition.profile}.{rendition.path.suffix.lstrip('.')}"
        store.upload(rendition.path, key, content_type=rendition.content_type)
        job.renditions[rendition.profile] = RenditionRef(
            key=key,
            size_bytes=rendition.size_bytes,
            bit_rate=rendition.bit_rate,
            sample_rate=rendition.sample_rate,
            channels=rendition.channels,
            duration_seconds=round(rendition.duration_seconds, 3),
            start_seconds=rendition.start_seconds,
            copied=rendition.copied,
        )
    job.profile_version = profiles.version
    job.decoded_seconds = result.decoded_seconds
    return result


@app.task(name="pipeline.publish", bind=True, base=PipelineTask, soft_time_limit=60, time_limit=120)
def publish(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    job = Job.model_validate(payload)
    assert job.probe is not None and job.analysis is not None and job.decoded_seconds is not None
    with _step(job, "publish"):
        full = job.kind != "reanalyze"
        metadata = {**job.analysis, "source": job.probe.source_metadata(decoded_seconds=job.decoded_seconds)}
        if full:
            metadata |= {
                "tags": job.probe.tags,
                "renditions": {name: ref.model_dump(exclude={"key"}) for name, ref in job.renditions.items()},
                "profile_version": job.profile_version,
            }
        song = db.Publication(
            song_id=job.song_id,
            storage_keys={name: ref.key for name, ref in job.renditions.items()} if full else None,
            metadata=metadata,
            duration_seconds=round(job.decoded_seconds),
            album=job.album,
            genre=job.genre,
            cover_image_key=job.cover_key,
            rendition_version=job.profile_version if full else None,
            analysis_version=job.analysis["analysis_version"],
        )
        published = db.publish(
            settings,
            upload_id=job.upload_id,
            job_id=job.job_id,
            song=song,
            retire_after_seconds=settings.retired_object_grace_seconds,
        )
        if not published:
            raise Ignore()
        cache.flush_after_commit(settings, job.song_id)
    return {"upload_id": job.upload_id, "song_id": job.song_id, "status": "ready"}


@app.task(name="pipeline.reap_expired_leases", soft_time_limit=60, time_limit=90)
def reap_expired_leases() -> dict[str, int]:
    """Uploads whose worker died go back to the queue; after too many attempts they fail for good."""
    reaped = db.reap_expired_leases(settings, max_attempts=settings.max_attempts)
    for upload in reaped:
        with logs.bind(upload=upload.upload_id, song=upload.song_id, step="reap"):
            log.warning("lease expired: upload back to %s", upload.status)
        if upload.status == "failed":
            cache.flush_after_commit(settings, upload.song_id)
    return {"requeued": sum(u.status == "pending" for u in reaped), "failed": sum(u.status == "failed" for u in reaped)}


@app.task(name="pipeline.delete_retired_objects", soft_time_limit=120, time_limit=180)
def delete_retired_objects() -> int:
    """Deletes renditions replaced by a reprocess once their grace period is over."""
    keys = db.due_retired_objects(settings)
    if keys:
        store = get_store(settings)
        store.client.delete_objects(
            Bucket=store.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
        )
        db.forget_retired_objects(settings, keys)
        log.info("deleted %d retired rendition object(s)", len(keys))
    return len(keys)


@app.task(name="pipeline.flush_cache_invalidations", soft_time_limit=30, time_limit=60)
def flush_cache_invalidations() -> int:
    """Carries out the invalidations a Redis outage left queued."""
    flushed = 0
    for _ in range(100):  # bounded: a steady stream of new invalidations must not pin the task
        batch = cache.flush(settings)
        flushed += batch
        if not batch:
            break
    return flushed


@worker_process_init.connect
def _prepare_process(**_: object) -> None:
    """Opens this process's S3 client and database pool before its first task (so that task does not
    pay for them), and removes what a killed predecessor left behind: a worker process killed mid-step
    (kill -9, OOM) leaves its scratch directory."""
    for path in settings.work_dir.glob("*-*-*"):
        pid = path.name.split("-")[1]
        if path.is_dir() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed scratch directory %s of dead process %s", path.name, pid)
    get_store(settings)
    db.pool(settings)


_warm_up_seconds: float | None = None


@worker_init.connect
def _warm_up(**_: object) -> None:
    """Pays librosa's JIT compilation once in the parent, before the pool forks its children."""
    global _warm_up_seconds
    started = time.monotonic()
    analysis.warm_up()
    _warm_up_seconds = time.monotonic() - started


@worker_ready.connect
def _report_warm_up(**_: object) -> None:
    # Celery configures logging after worker_init, so the warm-up is reported once the worker is up.
    if _warm_up_seconds is not None:
        log.info("analysis warmed up in %.2f s before the pool started", _warm_up_seconds)
