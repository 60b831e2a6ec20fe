"""docs/kubernetes.md: its manifests are valid Kubernetes objects that fit together, its command
lines configure the executor and the replicas as the CLI parses them, and its option table lists
every option.

Without a cluster, "fit together" is what can be checked statically: each Service selects the
pods of a workload on the page and a port they name, each Secret reference names a key that a
Secret on the page holds, the database URL points at the page's PostgreSQL, the network policy
lets in exactly the pods that use the database, and the probes' paths answer on a real server.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from modelyard.executors.k8s_manifest import KubernetesOptions
from modelyard.executors.kubernetes import KubernetesExecutor
from modelyard.settings import Settings
from tests.conftest import IN_CI, ServerProcess

if IN_CI:
    import kubernetes_validate
else:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install 'modelyard[dev]')")
    pytest.importorskip(
        "kubernetes", reason="kubernetes is not installed (pip install 'modelyard[kubernetes]')")

K8S_VERSION = "1.30"
DOC = Path(__file__).parents[2] / "docs" / "kubernetes.md"
WORKLOADS = {"Deployment", "StatefulSet"}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def _docs() -> list[dict[str, Any]]:
    return [d for block in _blocks("yaml") for d in yaml.safe_load_all(block)]


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def _command_settings(args: list[str], command: str) -> Settings:
    """Parse ``modelyard <command> ...`` as the CLI does, into settings."""
    from modelyard.cli.main import cli

    assert args[:2] == ["modelyard", command], args
    params = cli.commands[command].make_context(command, args[2:]).params
    for name in ("host", "port", "log_level"):
        params.pop(name)
    return Settings.load(**params)


def test_doc_manifests_are_valid() -> None:
    docs = _docs()
    assert {d["kind"] for d in docs} == {
        "Namespace", "Secret", "ServiceAccount", "Role", "RoleBinding", "StatefulSet", "Service",
        "NetworkPolicy", "Job", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ml", doc["metadata"]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    verbs = {rule["resources"][0]: set(rule["verbs"]) for rule in role["rules"]}
    # Exactly what the executor calls: create/read/delete Jobs (list at warm-up), list pods.
    assert verbs == {"jobs": {"create", "get", "list", "watch", "delete"},
                     "pods": {"get", "list"}}


def test_services_select_a_workload_and_a_port_it_names() -> None:
    docs = _docs()
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        chosen = [w for w in workloads
                  if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(chosen) == 1, (service["metadata"]["name"], selector)
        ports = {p["name"] for c in _containers(chosen[0]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    # The disruption budget and the autoscaler are the serving replicas'.
    serving = _one("Deployment", "modelyard-serving")
    budget = _one("PodDisruptionBudget", "modelyard-serving")
    assert budget["spec"]["selector"] == serving["spec"]["selector"]
    assert budget["spec"]["minAvailable"] < serving["spec"]["replicas"]
    target = _one("HorizontalPodAutoscaler", "modelyard-serving")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "modelyard-serving")


def test_every_secret_reference_names_a_key_on_the_page() -> None:
    docs = _docs()
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d["kind"] == "Secret"}
    references = 0
    for workload in (d for d in docs if d["kind"] in WORKLOADS | {"Job"}):
        for container in _containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], ref
                    references += 1
            for source in container.get("envFrom", []):
                assert source["secretRef"]["name"] in secrets
                references += 1
    assert references >= 8
    # The servers, the replicas and the workers (through env_secret) all reach the store.
    store = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    assert secrets["modelyard-store"] == store


def test_the_database_url_points_at_the_pages_postgres() -> None:
    db = _one("Secret", "modelyard-db")["stringData"]
    url = make_url(db["url"])
    assert url.drivername == "postgresql+psycopg"
    assert url.password == db["password"]
    (postgres,) = _containers(_one("StatefulSet", "postgres"))
    env = {e["name"]: e.get("value") for e in postgres["env"]}
    assert (url.username, url.database) == (env["POSTGRES_USER"], env["POSTGRES_DB"])
    service = _one("Service", "postgres")
    assert url.host == f"{service['metadata']['name']}.ml.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    # Only the pods that use the database may reach it: servers and replicas, not workers.
    policy = _one("NetworkPolicy", "postgres")
    allowed = [f["podSelector"]["matchLabels"] for f in policy["spec"]["ingress"][0]["from"]]
    users = [d["spec"]["template"]["metadata"]["labels"] for d in _docs()
             if d["kind"] == "Deployment"
             and any(e.get("name") == "MODELYARD_DB" for c in _containers(d)
                     for e in c.get("env", []))]
    assert sorted(map(str, allowed)) == sorted(map(str, users)) and len(users) == 2
    assert policy["spec"]["podSelector"]["matchLabels"] == \
        _one("StatefulSet", "postgres")["spec"]["template"]["metadata"]["labels"]


def test_doc_command_lines_configure_the_executor(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    (bash,) = [b for b in _blocks("bash") if b.startswith("modelyard server")]
    (server,) = _containers(_one("Deployment", "modelyard"))
    for args in (shlex.split(bash.replace("\\\n", " ")), server["command"]):
        settings = _command_settings(args, "server")
        assert settings.executor == "kubernetes"
        executor = KubernetesExecutor(settings)  # options parse, the store is shared; no cluster
        assert executor.options.image == "registry.example.com/ml/modelyard:0.1.0"
        assert executor.options.service_account == "modelyard-worker"
    deployed = _command_settings(server["command"], "server")
    assert KubernetesExecutor(deployed).options.env_secret == "modelyard-store"
    # The replicas read the registry and models the servers write.
    (serve,) = _containers(_one("Deployment", "modelyard-serving"))
    replica = _command_settings(serve["command"], "serve")
    assert replica.artifact_root == deployed.artifact_root
    assert [e["valueFrom"] for e in serve["env"] if e["name"] == "MODELYARD_DB"] == \
        [e["valueFrom"] for e in server["env"] if e["name"] == "MODELYARD_DB"]


def test_a_stopping_replica_drains_within_its_grace_period(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The drain outlasts the readiness probe's failures (the Service drops the replica while it
    still serves) and ends, with the in-flight requests' time, within the grace period."""
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    from modelyard.server import GRACEFUL_S

    deployment = _one("Deployment", "modelyard-serving")
    (serve,) = _containers(deployment)
    drain = _command_settings(serve["command"], "serve").drain_seconds
    probe = serve["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"
    assert drain >= probe["periodSeconds"] * probe.get("failureThreshold", 3) + 5
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain + GRACEFUL_S + 5


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_probe_paths_answer_on_a_real_server(server: ServerProcess) -> None:
    probes = {(c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"])
              for name in ("modelyard", "modelyard-serving")
              for c in _containers(_one("Deployment", name))}
    paths = {path for pair in probes for path in pair}
    assert paths
    for path in paths:
        answer = httpx.get(f"http://127.0.0.1:{server.port}{path}")  # probes carry no token
        assert answer.status_code == 200, (path, answer.text)


def test_doc_lists_every_option() -> None:
    table = DOC.read_text().split("## Executor options", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    known = [f.name for f in dataclasses.fields(KubernetesOptions) if f.name != "job_timeout"]
    assert listed == known
