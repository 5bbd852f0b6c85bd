"""How a worker process is set up before its first task."""

import json
import subprocess
import sys

import pytest


def test_a_worker_process_runs_numpy_on_one_thread() -> None:
    # Celery imports pipeline.celery_app before the tasks (and numpy): a second BLAS thread would spin
    # and double the CPU of an analysis while the other worker process needs that core.
    script = (
        "import pipeline.celery_app, numpy, threadpoolctl, json;"
        "print(json.dumps([pool['num_threads'] for pool in threadpoolctl.threadpool_info()]))"
    )
    env = {"PATH": "/usr/bin:/bin"}  # nothing inherited that already limits the threads
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    threads = json.loads(out.stdout)
    assert threads and all(n == 1 for n in threads)


@pytest.mark.parametrize(("retries", "least"), [(0, 1.0), (3, 8.0), (10, 60.0)])
def test_a_transient_retry_waits_at_least_half_its_backoff(
    monkeypatch: pytest.MonkeyPatch, retries: int, least: float
) -> None:
    # Full jitter may draw 0 s for every retry; the floor makes five retries span at least 31 s, so a
    # short S3 or database outage does not exhaust them (test_resilience.py saw it happen).
    from celery import Task

    from pipeline.tasks import media

    asked: list[float | None] = []
    monkeypatch.setattr(Task, "retry", lambda self, *args, countdown=None, **kwargs: asked.append(countdown))
    media.push_request(retries=retries)
    try:
        media.retry(exc=OSError("S3 down"), countdown=0.0)
        media.retry(exc=OSError("S3 down"), countdown=500.0)
    finally:
        media.pop_request()
    assert asked == [least, 500.0]
