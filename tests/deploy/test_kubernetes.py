"""deploy/kubernetes: every manifest, as kustomize renders each overlay, valid against
the Kubernetes schemas (PyPI kubernetes-validate, strict: an unknown field fails),
and consistent with the service: the queues workers take, the settings and secret
files the pods are given, probes and grace periods that drain, the metrics the
autoscalers read, the task routes the ingress re-sends.

KEDA's ScaledObjects are custom resources, outside the core schemas: checked here
for what they refer to, not against a schema (docs/operations/kubernetes.md)."""

import dataclasses
import glob
import os
import re

import kubernetes_validate
import pytest
import yaml

from core.settings import Settings
from core.work import DEFAULT_QUEUES
from web import work_metrics

from .kustomize import load, render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBE = os.path.join(ROOT, "deploy", "kubernetes")
# The oldest Kubernetes these use fields of (appArmorProfile: 1.30), and the newest the package knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {"keda.sh/v1alpha1"}  # not in the core schemas
KUSTOMIZATIONS = ["base", "overlays/gvisor", "overlays/keda"]
SETTINGS = {field.name for field in dataclasses.fields(Settings)}


def rendered(name: str) -> list[dict]:
    return render(os.path.join(KUBE, name))


def examples() -> list[dict]:
    return [obj for path in sorted(glob.glob(os.path.join(KUBE, "examples", "*.yaml"))) for obj in load(path)]


def of_kind(objects: list[dict], kind: str) -> dict:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def test_every_kustomization_is_listed_here():
    found = sorted(os.path.relpath(os.path.dirname(path), KUBE)
                   for path in glob.glob(os.path.join(KUBE, "**", "kustomization.yaml"), recursive=True))
    assert found == sorted(KUSTOMIZATIONS)


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "examples"])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(name):
    objects = examples() if name == "examples" else rendered(name)
    assert objects
    for obj in objects:
        if obj["apiVersion"] in CUSTOM_RESOURCES:
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)  # raises on any error


def test_the_workers_take_every_queue_once_and_serve_health_on_the_configured_port():
    objects = rendered("base")
    settings = of_kind(objects, "ConfigMap")["infer-settings"]["data"]
    port = int(settings["INFER_WORKER_HEALTH_PORT"])
    taken = []
    for name, deployment in of_kind(objects, "Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        if container["command"][:4] != ["flask", "--app", "wsgi", "worker"]:
            continue
        taken += container["command"][container["command"].index("--queues") + 1].split(",")
        assert container["ports"] == [{"name": "metrics", "containerPort": port}], name
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
        assert "resources" in container and container["resources"]["requests"], name
    assert sorted(taken) == sorted(DEFAULT_QUEUES)


def test_the_web_pods_probe_what_each_probe_means_and_outlast_their_drain():
    objects = rendered("base")
    settings = of_kind(objects, "ConfigMap")["infer-settings"]["data"]
    web = of_kind(objects, "Deployment")["infer-web"]["spec"]["template"]["spec"]
    container = web["containers"][0]

    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"  # no worker answers before its preload
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain, graceful = float(settings["INFER_DRAIN_S"]), float(settings["INFER_GRACEFUL_TIMEOUT_S"])
    assert drain > 0 and web["terminationGracePeriodSeconds"] > drain + graceful
    # The readiness probe notices the drain well within it.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < drain
    assert of_kind(objects, "PodDisruptionBudget")["infer-web"]["spec"]["selector"]["matchLabels"] == \
        of_kind(objects, "Deployment")["infer-web"]["spec"]["selector"]["matchLabels"]


def test_secrets_are_files_and_every_setting_given_is_one_the_service_reads():
    objects = rendered("base")
    settings = of_kind(objects, "ConfigMap")["infer-settings"]["data"]
    secret_keys = set(of_kind(examples(), "Secret")["infer-secrets"]["stringData"])
    for variable, value in settings.items():
        if not variable.startswith("INFER_"):
            continue
        name = variable[len("INFER_"):].lower()
        if name.endswith("_file"):  # a secret setting given as a file (NAME_FILE)
            assert name[: -len("_file")] in SETTINGS, variable
            assert value.startswith("/run/secrets/infer/") and os.path.basename(value) in secret_keys, variable
        else:
            assert name in SETTINGS, variable
    pods = [obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] in ("Deployment", "Job")]
    for pod in pods:
        container = pod["containers"][0]
        assert not any("valueFrom" in entry for entry in container.get("env", [])), "no secret in the environment"
        mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
        assert mounts["secrets"]["mountPath"] == "/run/secrets/infer" and mounts["secrets"]["readOnly"]
        assert {"name": "secrets", "secret": {"secretName": "infer-secrets", "defaultMode": 0o400}} in pod["volumes"] \
            or pod["securityContext"]["fsGroup"]  # the Job runs as a user: group-readable, for its fsGroup
        assert pod["automountServiceAccountToken"] is False


def test_the_sandbox_gets_namespaces_in_base_and_a_gvisor_kernel_in_the_overlay():
    for name, deployment in of_kind(rendered("base"), "Deployment").items():
        security = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert set(security["capabilities"]["add"]) == {"SYS_ADMIN", "NET_ADMIN"}, name
        assert "privileged" not in security, name
    gvisor = rendered("overlays/gvisor")
    assert of_kind(gvisor, "RuntimeClass")["gvisor"]["handler"] == "runsc"
    for name, deployment in of_kind(gvisor, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["runtimeClassName"] == "gvisor", name
        assert pod["containers"][0]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_the_autoscalers_read_metrics_the_service_exports():
    adapter = yaml.safe_load(of_kind(examples(), "ConfigMap")["prometheus-adapter"]["data"]["config.yaml"])
    served = {rule["name"]["as"]: re.match(r"(\w+)\{", rule["seriesQuery"]).group(1) for rule in adapter["rules"]}
    exported = {"infer_request_seconds_count", work_metrics.BATCH_QUEUE._name}
    assert set(served.values()) <= exported
    hpa = of_kind(rendered("base"), "HorizontalPodAutoscaler")["infer-web"]
    pods_metrics = {metric["pods"]["metric"]["name"] for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"}
    assert pods_metrics <= set(served)

    scaled = of_kind(rendered("overlays/keda"), "ScaledObject")
    deployments = of_kind(rendered("overlays/keda"), "Deployment")
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments, name
        container = deployments[obj["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]["containers"][0]
        queues = container["command"][container["command"].index("--queues") + 1].split(",")
        for trigger in obj["spec"]["triggers"]:
            if trigger["type"] == "redis":
                assert trigger["metadata"]["listName"] in {f"rq:queue:{queue}" for queue in queues}, name
            else:
                names = set(re.findall(r"(infer_\w+)\{", trigger["metadata"]["query"]))
                assert names <= {"infer_work_waiting", "infer_work_running"}, name


def test_the_ingress_re_sends_exactly_haproxys_task_routes():
    with open(os.path.join(ROOT, "deploy", "haproxy.cfg")) as file:
        config = file.read()
    exact = {path for line in re.findall(r"acl task_route path (.+)", config) for path in line.split()}
    prefixes = set(re.findall(r"acl task_route path_beg (\S+)", config))
    ingress = of_kind(examples(), "Ingress")
    task = ingress["infer-task-routes"]
    paths = task["spec"]["rules"][0]["http"]["paths"]

    assert {p["path"] for p in paths if p["pathType"] == "Exact"} == exact
    assert {p["path"] for p in paths if p["pathType"] == "Prefix"} == prefixes
    assert "non_idempotent" in task["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    assert "proxy-next-upstream" not in str(ingress["infer"]["metadata"].get("annotations", {}))


def test_the_ingress_keeps_metrics_to_the_cluster():
    metrics = of_kind(examples(), "Ingress")["infer-metrics"]
    assert [p["path"] for p in metrics["spec"]["rules"][0]["http"]["paths"]] == ["/metrics"]
    assert metrics["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"] == "127.0.0.1/32"
