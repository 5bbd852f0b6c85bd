"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine): check them statically."""

import re
import shlex

import yaml

from pipeline.cli import main
from pipeline.settings import REPO_ROOT


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_part_of_the_pipeline() -> None:
    services = compose()["services"]
    expected = {"postgres", "redis", "s3", "s3-bucket", "migrate", "worker", "worker-reprocess", "scheduler", "flower"}
    assert expected | {"exporter"} <= set(services)
    for name in ("worker", "worker-reprocess", "scheduler", "migrate", "flower", "exporter"):
        command = services[name]["command"]
        assert command[0] == "pipeline" and command[1] in main.commands, name
    # Workers start only after the schema and the bucket exist.
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["s3-bucket"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis", "s3", "worker", "worker-reprocess"):
        assert "healthcheck" in services[name], name
    # Uploads and back-catalog work never share workers.
    queues = {
        name: services[name]["command"][services[name]["command"].index("--queues") + 1]
        for name in ("worker", "worker-reprocess")
    }
    assert queues == {"worker": "uploads", "worker-reprocess": "reprocess"}
    for name in ("worker", "worker-reprocess", "scheduler", "exporter"):
        assert services[name]["restart"] == "unless-stopped", name  # workers run under a supervisor


def test_compose_points_the_workers_at_the_compose_services() -> None:
    env = compose()["services"]["worker"]["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["BROKER_URL"].startswith("redis://redis:6379/")
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert env["S3_ENDPOINT_URL"] == "http://s3:9000"


def test_compose_keeps_secrets_out_and_flower_behind_a_password() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    flower = compose()["services"]["flower"]["environment"]
    assert re.fullmatch(r"\$\{FLOWER_USER:\?[^}]*\}:\$\{FLOWER_PASSWORD:\?[^}]*\}", flower["FLOWER_BASIC_AUTH"])
    # Every password or secret is a required variable from .env, never a literal.
    secrets = list(re.finditer(r"^\s*(\w*(?:PASSWORD|SECRET|ACCESS_KEY)\w*):\s*(\S+)", text, re.MULTILINE))
    assert len(secrets) >= 4
    for match in secrets:
        assert match.group(2).startswith("${"), match.group(0)
    example = (REPO_ROOT / "config" / "example.env").read_text()
    for variable in set(re.findall(r"\$\{(\w+):\?", text)):
        assert f"{variable}=" in example, f"{variable} missing from config/example.env"


def test_dockerfile_installs_ffmpeg_warms_numba_and_drops_root() -> None:
    lines = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11")
    assert any("apt-get install" in line and "ffmpeg" in line for line in instructions)
    assert any("NUMBA_CACHE_DIR" in line for line in instructions)
    assert any("LIBROSA_CACHE_DIR" in line for line in instructions)
    assert any("warm_up()" in line for line in instructions)
    user = [line for line in instructions if line.startswith("USER ")]
    assert user and user[-1] != "USER root"
    cmd = next(line for line in reversed(instructions) if line.startswith("CMD"))
    assert shlex.split(cmd.removeprefix("CMD").strip().strip("[]").replace(",", " "))[0].strip('"') == "pipeline"
    copied = {line.split()[1] for line in instructions if line.startswith("COPY")}
    assert {"pipeline", "sql", "config"} <= copied
