"""How a worker process is set up before its first task."""

import json
import subprocess
import sys


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
