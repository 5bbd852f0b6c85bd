"""Runs ffmpeg/ffprobe on untrusted input with hard wall-clock and CPU limits.

A Celery time limit only stops the Python task; the child would go on. Here the tool runs in
its own process group, gets an RLIMIT_CPU, and the whole group is killed on timeout or when
the calling task is interrupted for any reason.
"""

import contextlib
import logging
import os
import resource
import signal
import subprocess
import time

log = logging.getLogger(__name__)

_STDERR_TAIL = 2000


class ToolError(Exception):
    """The tool exited non-zero; `stderr` holds the end of what it said."""

    def __init__(self, argv0: str, returncode: int, stderr: str) -> None:
        super().__init__(f"{argv0} exited with {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


class ToolTimeout(Exception):
    """The tool ran past its wall-clock or CPU limit and was killed."""


# Address-space cap per tool: ffmpeg decoding audio needs far less; a hostile file that makes it
# allocate more fails instead of pushing the worker's machine into swap or the OOM killer.
MEMORY_LIMIT_BYTES = 2 * 1024**3


def run_tool(argv: list[str], *, timeout: float, cpu_seconds: int) -> subprocess.CompletedProcess[bytes]:
    """Runs argv (never through a shell); returns what it wrote to stdout and stderr."""
    started = time.monotonic()
    proc = subprocess.Popen(
        # setpriv execs the tool with a parent-death signal: if the worker process is killed
        # (kill -9, OOM), its ffmpeg dies with it instead of running on as an orphan.
        ["setpriv", "--pdeathsig", "KILL", "--", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # Set from outside so no preexec_fn runs between fork and exec in a threaded worker.
        resource.prlimit(proc.pid, resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolTimeout(f"{argv[0]} ran over {timeout:.0f} s and was killed") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise ToolTimeout(f"{argv[0]} ran over its CPU limit of {cpu_seconds} s and was killed")
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        raise ToolError(argv[0], proc.returncode, tail)
    log.debug("%s finished in %.2f s", argv[0], time.monotonic() - started)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
