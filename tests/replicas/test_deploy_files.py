"""deploy/docker-compose.yml cannot be run here (no Docker): check what can be
checked without it. It parses; every INFER_* variable it sets is a setting the
service reads; the replicas share what they must and each has its own data
dir; the workers run the documented command on the same queue; HAProxy's
config names every replica at the port the image listens on; and env.example
lists every variable the file requires."""

import os
import re

import yaml

from core.settings import FIELDS, env_name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
SHARED = ("DATABASE_URL", "INFER_QUEUE_URL", "INFER_STORAGE", "INFER_S3_BUCKET", "INFER_S3_ENDPOINT_URL",
          "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "INFER_SECRET_KEY", "INFER_AUTH_CACHE_TTL_S")


def read(name: str) -> str:
    with open(os.path.join(DEPLOY, name)) as text:
        return text.read()


def compose() -> dict:
    return yaml.safe_load(read("docker-compose.yml"))


def image_setting(name: str) -> str:
    """An ENV value of the repository's Dockerfile."""
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    return re.search(rf"{name}=(\S+)", dockerfile).group(1)


def known_settings() -> set[str]:
    """INFER_<NAME> of every field of core/settings.py (gunicorn.conf.py's too)."""
    return {env_name(name) for name in FIELDS}


def test_every_infer_variable_the_compose_file_sets_is_a_setting():
    services = compose()["services"]
    set_anywhere = {name for service in services.values() for name in service.get("environment", {})}
    infer = {name for name in set_anywhere if name.startswith("INFER_")}
    assert infer, "the replicas are configured through INFER_* variables"
    assert infer - known_settings() == set()


def test_replicas_and_workers_share_state_and_keep_their_own_data_dirs():
    services = compose()["services"]
    replicas = sorted(name for name in services if name.startswith("replica"))
    assert len(replicas) >= 2
    data_dir = image_setting("INFER_DATA_DIR")
    volumes = [services[name]["volumes"] for name in replicas]
    assert all(len(mounts) == 1 and mounts[0].endswith(f":{data_dir}") for mounts in volumes)
    assert len({mounts[0] for mounts in volumes}) == len(replicas)  # one volume each

    worker = services["worker"]
    # The worker command, and where it writes the name its health check looks up (app/worker_health.py).
    assert worker["command"][:4] == ["flask", "--app", "wsgi", "worker"]
    assert worker["command"][4:] == ["--health-file", "/tmp/worker.health"]
    assert "command" not in services[replicas[0]]  # the image's: gunicorn -c gunicorn.conf.py wsgi:app
    environments = [services[name]["environment"] for name in replicas] + [worker["environment"]]
    for name in SHARED:
        assert len({str(environment.get(name)) for environment in environments}) == 1, name
        assert environments[0].get(name), name
    assert environments[0]["INFER_STORAGE"] == "s3" and environments[0]["INFER_QUEUE_URL"].startswith("redis://")
    assert {"postgres", "redis", "s3"} <= set(services)


def test_haproxy_config_names_every_replica_at_the_port_the_image_listens_on():
    services = compose()["services"]
    haproxy = services["haproxy"]
    assert "./haproxy.cfg:/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert "8080:8080" in haproxy["ports"] and re.search(r"(?m)^\s*bind :8080$", read("haproxy.cfg"))
    port = image_setting("INFER_BIND").rsplit(":", 1)[1]
    servers = re.findall(r"(?m)^\s*server (\S+) (\S+)$", read("haproxy.cfg"))
    replicas = sorted(name for name in services if name.startswith("replica"))
    assert sorted(servers) == [(name, f"{name}:{port}") for name in replicas]
    assert "ports" not in services[replicas[0]]  # reached only through HAProxy


def test_env_example_lists_every_variable_the_compose_file_requires():
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", read("docker-compose.yml")))
    listed = set(re.findall(r"(?m)^([A-Z0-9_]+)=", read("env.example")))
    assert required and required <= listed
