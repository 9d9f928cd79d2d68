"""deploy/docker-compose.yml gives every service that runs user code the
options scripts/docker_test proved necessary and sufficient, and the worker
its own health check on the file its command writes (the compose file itself
cannot run here: its other images come from a registry)."""

import os

import yaml

from .check_image import HEALTH_FILE, RUN_OPTIONS

COMPOSE = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "docker-compose.yml")


def _services() -> dict:
    with open(COMPOSE) as file:
        return yaml.safe_load(file)["services"]


def _options(service: dict) -> set[str]:
    return {f"--cap-add {cap}" for cap in service.get("cap_add", [])} | {
        f"--security-opt {opt}" for opt in service.get("security_opt", [])}


def test_services_running_user_code_have_the_tested_sandbox_options():
    tested = {f"{RUN_OPTIONS[i]} {RUN_OPTIONS[i + 1]}" for i in range(0, len(RUN_OPTIONS), 2)}
    services = _services()
    for name in ("replica1", "replica2", "worker"):
        # apparmor=unconfined besides: needed on AppArmor hosts, which the test machine is not.
        assert _options(services[name]) == tested | {"--security-opt apparmor=unconfined"}, name


def test_the_worker_checks_its_own_health_file_and_the_web_checks_http():
    services = _services()
    worker = services["worker"]
    command = worker["command"]
    assert command[command.index("--health-file") + 1] == HEALTH_FILE
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "app.worker_health", HEALTH_FILE]
    assert "/healthz" in " ".join(services["replica1"]["healthcheck"]["test"])
    assert services["s3-bucket"]["healthcheck"] == {"disable": True}
