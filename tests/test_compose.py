"""docker-compose.yml: every service the deployment needs, healthchecks, Ray's shared memory, a scalable worker,
loopback-only ports and a required database password. Validated by docker-compose itself where it is installed
(`docker-compose config` rejects unknown keys and bad interpolation), and by reading the file everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"postgres", "ray-head", "ray-worker", "service", "dashboard"}


def _check(config: dict) -> None:
    services = config["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert "healthcheck" in service, name
    for name in ("ray-head", "ray-worker", "service", "dashboard"):
        assert str(services[name]["shm_size"]).lower() in ("2gb", str(2 * 1024**3)), name
        assert any(str(v).startswith("service:/app/service") for v in services[name]["volumes"]), name
    worker = services["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker  # so that --scale ray-worker=N works
    assert "--address=ray-head:6379" in worker["command"]
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port  # nothing listens beyond the host's loopback
    assert "pgdata" in config["volumes"]
    assert any(str(v).startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert "--host 0.0.0.0" in services["dashboard"]["command"]
    # Controller-less: searches arrive as Ray jobs, launched from the dashboard or the HTTP API.
    assert "--allow-launch" in services["dashboard"]["command"]
    assert services["service"]["command"].startswith("autopeft serve")
    assert "RAY_JOB_STOP_WAIT_TIME_S" in services["ray-head"]["environment"]


def test_the_file_has_every_service_with_healthchecks():
    _check(yaml.safe_load(COMPOSE.read_text()))


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_validates_the_file(tmp_path):
    environment = {**os.environ, "POSTGRES_PASSWORD": "compose-test-pw", "SERVICE_TOKEN": "compose-test-token"}
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                          env=environment, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    _check(config)
    storage = config["services"]["service"]["environment"]["AUTOPEFT_STORAGE"]
    assert config["services"]["service"]["environment"]["AUTOPEFT_SERVICE_TOKEN"] == "compose-test-token"
    assert storage == "postgresql+psycopg://autopeft:compose-test-pw@postgres:5432/autopeft"

    without_password = {k: v for k, v in environment.items() if k != "POSTGRES_PASSWORD"}
    empty_env_file = tmp_path / "empty.env"  # so that a developer's own .env cannot supply the password
    empty_env_file.write_text("")
    refused = subprocess.run(["docker-compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE), "config"],
                             capture_output=True, text=True, env=without_password, timeout=60, cwd=ROOT)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD" in refused.stderr
