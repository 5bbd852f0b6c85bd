"""What operators look at besides Flower: `pipeline status` and the Prometheus exporter.

Flower (`pipeline flower`, /metrics) already exports per-task counts and runtimes, i.e. throughput
and step durations; this adds what only the database and the broker know.
"""

import time
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline import db
from pipeline.celery_app import app
from pipeline.dispatch import queue_depths
from pipeline.settings import Settings


def collect_status(settings: Settings) -> dict[str, Any]:
    report = db.status_counts(settings)
    report["failures_last_hour"] = _by_reason(db.failures_by_reason(settings, 3600))
    report["failures_last_day"] = _by_reason(db.failures_by_reason(settings, 86400))
    report["queues"] = queue_depths()
    replies = app.control.ping(timeout=1.0)
    report["workers"] = sorted(name for reply in replies for name in reply)
    return report


def _by_reason(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["error_code"]] = counts.get(row["error_code"], 0) + int(row["uploads"])
    return counts


def format_status(report: dict[str, Any]) -> str:
    lines = [
        "songs:    " + _pairs(report["songs"]),
        "uploads:  " + _pairs(report["uploads"]) + "  (unfinished, or last day)",
    ]
    oldest = report["oldest_pending"]
    lines.append(
        f"oldest pending upload: {oldest['upload_id']}, {oldest['age_seconds']:.0f} s old"
        if oldest
        else "no pending uploads"
    )
    lines.append("failures, last hour: " + (_pairs(report["failures_last_hour"]) or "none"))
    lines.append("failures, last day:  " + (_pairs(report["failures_last_day"]) or "none"))
    lines.append("queues:   " + _pairs(report["queues"]))
    lines.append(f"workers:  {len(report['workers'])} online " + " ".join(report["workers"]))
    for run in report["reprocess_runs"]:
        lines.append(
            f"reprocess run {run['name']}: {run['enqueued']} enqueued, {'finished' if run['finished'] else 'open'}"
        )
    return "\n".join(lines)


def _pairs(counts: dict[str, Any]) -> str:
    return "  ".join(f"{key}={value}" for key, value in sorted(counts.items()))


class PipelineCollector(Collector):
    """Reads the numbers at scrape time, so the exporter holds no state and any replica answers alike."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Any:
        started = time.monotonic()
        counts = db.status_counts(self.settings)
        songs = GaugeMetricFamily("pipeline_songs", "Songs by status", labels=["status"])
        for status, count in counts["songs"].items():
            songs.add_metric([status], count)
        uploads = GaugeMetricFamily(
            "pipeline_uploads", "Unfinished uploads, and uploads finished in the last day", labels=["status", "kind"]
        )
        for key, count in counts["uploads"].items():
            uploads.add_metric(key.split(":", 1), count)
        oldest = GaugeMetricFamily("pipeline_oldest_pending_upload_age_seconds", "Age of the oldest pending upload")
        oldest.add_metric([], counts["oldest_pending"]["age_seconds"] if counts["oldest_pending"] else 0.0)
        failures = GaugeMetricFamily(
            "pipeline_failures_last_hour", "Failed or blocked uploads in the last hour", labels=["reason"]
        )
        for reason, count in _by_reason(db.failures_by_reason(self.settings, 3600)).items():
            failures.add_metric([reason], count)
        depth = GaugeMetricFamily("pipeline_queue_depth", "Messages waiting in a queue", labels=["queue"])
        for queue, count in queue_depths().items():
            depth.add_metric([queue], count)
        took = GaugeMetricFamily("pipeline_exporter_scrape_seconds", "How long collecting these metrics took")
        took.add_metric([], time.monotonic() - started)
        yield from (songs, uploads, oldest, failures, depth, took)


def serve_metrics(settings: Settings, port: int) -> None:
    REGISTRY.register(PipelineCollector(settings))
    start_http_server(port)
    while True:
        time.sleep(3600)
