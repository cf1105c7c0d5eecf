"""The Helm chart in helm/: rendered with Helm's own engine (helm-python-sdk, Helm's Go SDK as a library) and
every manifest validated against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail).

Helm runs in one child process for the whole module (its Go runtime stays out of pytest's process): every
values set the tests need is listed in CASES and rendered in one go.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.config.loader import ConfigError, load_text

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm"
FULL_VALUES_FILE = CHART / "ci" / "full-values.yaml"
DASHBOARD_FILE = CHART / "dashboards" / "gateway.json"
RELEASE, NAMESPACE = "llm-gateway", "ai"
CONFIG_PATH = "/etc/gateway/config.yaml"  # the image's entry point: gateway serve --config /etc/gateway/config.yaml
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")  # the gateway's ${VAR} / ${VAR:-default}

Values = dict[str, Any]
Doc = dict[str, Any]

FULL_VALUES: Values = yaml.safe_load(FULL_VALUES_FILE.read_text())
WORKERS_WITHOUT_REDIS: Values = {"config": {"server": {"workers": 2}}, "externalRedis": {"url": ""}}
CASES: dict[str, Values | None] = {
    "default": None,
    "full": FULL_VALUES,
    "grace-custom": {
        "config": {"server": {"readiness_grace_s": 2, "drain_timeout_s": 120}},
        "drain": {"preStopSleepSeconds": 5, "eventFlushSeconds": 15},
    },
    "grace-zeros": {"config": {"server": {"readiness_grace_s": 0, "drain_timeout_s": 0}}},
    "grace-fractions": {"config": {"server": {"readiness_grace_s": 0.25, "drain_timeout_s": 0.5}}},
    "port-9000": {"config": {"server": {"port": 9000}}},
    "no-hpa": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "other-config": {"config": {"defaults": {"max_tokens_per_request": 1000}}},
    "embedded-state": {"externalRedis": {"url": ""}, "externalPostgres": {"dsn": ""}},
    "workers-with-config-redis": {
        "config": {"server": {"workers": 4}, "state": {"redis_url": "redis://redis:6379/0"}},
        "externalRedis": {"url": ""},
    },
    "workers-without-redis": WORKERS_WITHOUT_REDIS,
    "loopback-host": {"config": {"server": {"host": "127.0.0.1"}}},
    "relative-spool": {"config": {"events": {"spool_dir": "spool"}}},
    "relative-sqlite": {"externalPostgres": {"dsn": ""}, "config": {"events": {"sqlite_path": "usage.db"}}},
    "http-redis": {"externalRedis": {"url": "http://redis:6379"}},
    "mysql-dsn": {"externalPostgres": {"dsn": "mysql://db/gateway"}},
}

RENDERER = """
import json, sys
import helm_python as helm

request = json.load(sys.stdin)
out = {"versions": {"helm_sdk": helm.helm_sdk_version(), "helm_c": helm.helm_c_version()}, "cases": {}}
lint_values = request["lint"]
with helm.Chart.load(request["chart"]) as chart:
    for name, values in request["cases"].items():
        try:
            manifests = chart.render(values, name=request["release"], namespace=request["namespace"], is_install=True)
            out["cases"][name] = {"manifests": manifests}
        except helm.HelmError as exc:
            out["cases"][name] = {"error": str(exc)}
out["lint"] = {name: helm.lint(request["chart"], values, strict=True) for name, values in lint_values.items()}
json.dump(out, sys.stdout)
"""


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def helm_run() -> dict[str, Any]:
    request = {
        "chart": str(CHART),
        "release": RELEASE,
        "namespace": NAMESPACE,
        "cases": CASES,
        "lint": {"default": None, "full": FULL_VALUES},
    }
    result = subprocess.run(
        [sys.executable, "-c", RENDERER], input=json.dumps(request), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def rendered(helm_run: dict[str, Any], case: str) -> dict[str, str]:
    """Template path ─► rendered text, for a case that must render."""
    outcome = helm_run["cases"][case]
    assert "error" not in outcome, outcome.get("error")
    manifests: dict[str, str] = outcome["manifests"]
    return manifests


def documents(helm_run: dict[str, Any], case: str) -> list[Doc]:
    docs: list[Doc] = []
    for path, text in sorted(rendered(helm_run, case).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one(docs: list[Doc], kind: str, name: str = RELEASE) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def container(docs: list[Doc]) -> Doc:
    containers: list[Doc] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return containers[0]


def config_text(docs: list[Doc]) -> str:
    text: str = one(docs, "ConfigMap")["data"]["config.yaml"]
    return text


def secret_env_names(docs: list[Doc]) -> dict[str, str]:
    """Env var ─► value every variable the Deployment sets, as the kubelet would from its Secrets (fixtures)."""
    return {e["name"]: e.get("value", f"fixture-{e['name'].lower()}") for e in container(docs)["env"]}


# ---------------------------------------------------------------- Kubernetes schemas

DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) the chart uses; the
# metadata is checked with Kubernetes' own ObjectMeta schema. kubernetes-validate has no CRD schemas.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": STRING_MAP},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", duration))


def check_service_monitor(monitor: Doc, service: Doc) -> None:
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor["metadata"]}, version, strict=True
        )
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def test_chart_lints_clean_with_default_and_full_values(helm_run: dict[str, Any]) -> None:
    for name, report in helm_run["lint"].items():
        assert report["errors"] == [], name
        # severity 1 is informational ("icon is recommended"); warnings (2) and errors (3) are not accepted
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], name


@pytest.mark.parametrize(
    ("case", "kinds"),
    [
        ("default", ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]),
        (
            "full",
            [
                "ConfigMap",
                "ConfigMap",
                "Deployment",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "Secret",
                "Service",
                "ServiceMonitor",
            ],
        ),
    ],
)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    helm_run: dict[str, Any], case: str, kinds: list[str]
) -> None:
    docs = documents(helm_run, case)
    assert sorted(d["kind"] for d in docs) == sorted([*kinds, "ServiceAccount"])
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc, one(docs, "Service"))
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises with the offending path
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_schema_check_is_not_vacuous(helm_run: dict[str, Any]) -> None:
    deployment = one(documents(helm_run, "default"), "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
    monitor = one(documents(helm_run, "full"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


# ---------------------------------------------------------------- the pod


@pytest.mark.parametrize("case", ["default", "full", "port-9000"])
def test_probes_and_the_port_follow_the_config(helm_run: dict[str, Any], case: str) -> None:
    docs = documents(helm_run, case)
    port = yaml.safe_load(config_text(docs))["server"]["port"]
    gateway = container(docs)
    # no --host/--port flags (the image's default CMD has them): the config's port is the one listened on
    assert gateway["command"] == ["gateway", "serve", "--config", CONFIG_PATH]
    assert "args" not in gateway
    assert gateway["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    [service_port] = one(docs, "Service")["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    assert port == (9000 if case == "port-9000" else 8080)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("default", 45),  # 0 + 5 + 30 + 10
        ("full", 67),  # 3 + 7.5 + ceil(45.2) + 10 = 66.5
        ("grace-custom", 142),  # 5 + 2 + 120 + 15
        ("grace-zeros", 10),  # 0 is a value, not "unset": only the event flush is left
        ("grace-fractions", 12),  # 0 + 0.25 + ceil(0.5) + 10 = 11.25
    ],
)
def test_termination_grace_period_covers_the_whole_drain(helm_run: dict[str, Any], case: str, expected: int) -> None:
    docs = documents(helm_run, case)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == expected
    # the same arithmetic from what the pod really gets: the ConfigMap's config and the preStop hook
    server = yaml.safe_load(config_text(docs))["server"]
    pre_stop = container(docs).get("lifecycle", {}).get("preStop")
    sleep = int(pre_stop["exec"]["command"][1]) if pre_stop else 0
    values = CASES[case] or {}
    flush = values.get("drain", {}).get("eventFlushSeconds", 10)
    total = sleep + server["readiness_grace_s"] + math.ceil(server["drain_timeout_s"]) + flush
    assert pod["terminationGracePeriodSeconds"] == math.ceil(total)


def test_pre_stop_sleep_only_when_asked_for(helm_run: dict[str, Any]) -> None:
    assert "lifecycle" not in container(documents(helm_run, "default"))
    assert container(documents(helm_run, "full"))["lifecycle"] == {
        "preStop": {"exec": {"command": ["/bin/sleep", "3"]}}
    }


@pytest.mark.parametrize("case", ["default", "full", "embedded-state"])
def test_runs_as_non_root_on_a_read_only_root_with_writable_data_and_tmp(helm_run: dict[str, Any], case: str) -> None:
    docs = documents(helm_run, case)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    gateway = container(docs)
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    data_dir = next(path for path, name in mounts.items() if name == "data")
    assert "emptyDir" in volumes["data"]
    events = yaml.safe_load(config_text(docs))["events"]
    writable = [events["spool_dir"]] + ([] if events.get("postgres_dsn") else [events["sqlite_path"]])
    assert all(path.startswith(data_dir + "/") for path in writable), (writable, data_dir)
    # the config file lands where the image's entry point reads it
    config_mount = next(m for m in gateway["volumeMounts"] if m["name"] == "config")
    assert volumes["config"]["configMap"] == {"name": RELEASE, "items": [{"key": "config.yaml", "path": "config.yaml"}]}
    assert f"{config_mount['mountPath']}/config.yaml" == CONFIG_PATH
    assert config_mount["readOnly"] is True


def test_a_config_change_rolls_the_pods(helm_run: dict[str, Any]) -> None:
    checksums = {}
    for case in ("default", "other-config"):
        docs = documents(helm_run, case)
        annotation = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert annotation == hashlib.sha256(config_text(docs).rstrip("\n").encode()).hexdigest()
        checksums[case] = annotation
    assert checksums["default"] != checksums["other-config"]


def test_replicas_belong_to_the_hpa_when_it_is_on(helm_run: dict[str, Any]) -> None:
    docs = documents(helm_run, "default")
    assert "replicas" not in one(docs, "Deployment")["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert hpa["minReplicas"] <= hpa["maxReplicas"]
    docs = documents(helm_run, "no-hpa")
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("case", ["default", "full"])
def test_selectors_pick_the_gateway_pods(helm_run: dict[str, Any], case: str) -> None:
    docs = documents(helm_run, case)
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        one(docs, "Service")["spec"]["selector"],
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    service_account = one(docs, "ServiceAccount")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == service_account["metadata"]["name"]


# ---------------------------------------------------------------- the gateway's config


@pytest.mark.parametrize("case", ["default", "full", "embedded-state", "workers-with-config-redis"])
def test_the_config_map_passes_the_gateways_own_validation(helm_run: dict[str, Any], case: str) -> None:
    docs = documents(helm_run, case)
    text = config_text(docs)
    environ = secret_env_names(docs)
    # every ${VAR} without a default is set in the pod (so no provider is disabled, nothing is unset)
    needed = {m.group(1) for m in VAR.finditer(text) if m.group(2) is None}
    assert needed <= environ.keys(), needed - environ.keys()
    loaded = load_text(text, environ)
    assert dict(loaded.disabled_providers) == {}
    config = loaded.config
    assert config.server.host == "0.0.0.0"
    if case in ("default", "full"):
        assert config.state.redis_url is not None and config.state.redis_url.startswith(("redis://", "rediss://"))
        assert config.events.postgres_dsn is not None and config.events.postgres_dsn.startswith("postgresql://")
        # passwords arrive through ${VAR}, resolved by the gateway: never written into the ConfigMap
        assert environ["REDIS_PASSWORD"] in config.state.redis_url
        assert environ["POSTGRES_PASSWORD"] in config.events.postgres_dsn
    if case == "embedded-state":
        assert (config.state.redis_url, config.events.postgres_dsn) == (None, None)
    if case == "full":
        assert config.server.workers == 2
        assert set(config.providers) == {"openai", "anthropic", "azure", "demo"}
        assert list(config.tenants) == ["acme"]


def test_the_drain_settings_reach_the_gateway(helm_run: dict[str, Any]) -> None:
    docs = documents(helm_run, "full")
    server = load_text(config_text(docs), secret_env_names(docs)).config.server
    assert (server.readiness_grace_s, server.drain_timeout_s) == (7.5, 45.2)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("workers-without-redis", "more than 1 worker needs state.redis_url"),
        ("loopback-host", "config.server.host is 127.0.0.1"),
        ("relative-spool", "config.events.spool_dir is spool: it must be under dataDir"),
        ("relative-sqlite", "config.events.sqlite_path is usage.db: it must be under dataDir"),
        ("http-redis", "must start with redis:// or rediss://"),
        ("mysql-dsn", "must start with postgresql://"),
    ],
)
def test_the_chart_refuses_what_the_gateway_could_not_run(helm_run: dict[str, Any], case: str, message: str) -> None:
    outcome = helm_run["cases"][case]
    assert "manifests" not in outcome
    assert message in outcome["error"]


def test_workers_without_redis_is_refused_by_the_gateway_too(helm_run: dict[str, Any]) -> None:
    """The chart's refusal mirrors the gateway's: the same config would not load."""
    docs = documents(helm_run, "embedded-state")
    raw = yaml.safe_load(config_text(docs))
    raw["server"]["workers"] = WORKERS_WITHOUT_REDIS["config"]["server"]["workers"]
    with pytest.raises(ConfigError) as info:
        load_text(yaml.safe_dump(raw), secret_env_names(docs))
    assert any(p.startswith("server.workers: more than 1 worker needs state.redis_url") for p in info.value.problems)


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("case", ["default", "full"])
def test_secrets_reach_the_pod_only_by_secret_key_ref(helm_run: dict[str, Any], case: str) -> None:
    docs = documents(helm_run, case)
    values = CASES[case] or {}
    secret_env: dict[str, dict[str, Any]] = yaml.safe_load((CHART / "values.yaml").read_text())["secrets"]["env"]
    for name, override in values.get("secrets", {}).get("env", {}).items():  # Helm merges maps key by key
        secret_env[name] = {**secret_env.get(name, {}), **override}
    secret_name = values.get("secrets", {}).get("name") or RELEASE
    plain = {e["name"] for e in values.get("extraEnv", [])}
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env.keys() == secret_env.keys() | plain
    assert {"GATEWAY_MASTER_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= env.keys()
    for name, ref in secret_env.items():
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": ref.get("secret", secret_name),
            "key": ref.get("key", name),
            **({"optional": True} if ref.get("optional") else {}),
        }
    # provider keys appear in the config as placeholders only
    providers = yaml.safe_load(config_text(docs))["providers"]
    assert all(VAR.fullmatch(p["api_key"]) for p in providers.values() if "api_key" in p)
    created = [d for d in docs if d["kind"] == "Secret"]
    assert len(created) == (1 if case == "full" else 0)  # the chart makes a Secret only when asked to


def test_secret_values_appear_nowhere_but_in_the_secret(helm_run: dict[str, Any]) -> None:
    literals: dict[str, str] = FULL_VALUES["secrets"]["values"]
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in literals.items()}
    for path, text in rendered(helm_run, "full").items():
        if path.endswith("templates/secret.yaml"):
            continue
        for key, value in literals.items():
            assert value not in text, f"{key} in {path}"
            assert encoded[key] not in text, f"{key} (base64) in {path}"
    secret = one(documents(helm_run, "full"), "Secret", "llm-gateway-keys")
    assert "stringData" not in secret
    assert secret["data"] == encoded
    assert one(documents(helm_run, "full"), "Deployment")["spec"]["template"]["metadata"]["annotations"][
        "checksum/secret"
    ]


# ---------------------------------------------------------------- monitoring


def test_dashboard_config_map_carries_the_dashboard(helm_run: dict[str, Any]) -> None:
    assert not [d for d in documents(helm_run, "default") if d["metadata"]["name"].endswith("-dashboard")]
    dashboard = one(documents(helm_run, "full"), "ConfigMap", f"{RELEASE}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    [(key, text)] = dashboard["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD_FILE.read_text())
    assert text == DASHBOARD_FILE.read_text().rstrip("\n")


def test_service_monitor_only_when_enabled(helm_run: dict[str, Any]) -> None:
    assert not [d for d in documents(helm_run, "default") if d["kind"] == "ServiceMonitor"]
    monitor = one(documents(helm_run, "full"), "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_notes_name_the_secret_and_warn_about_missing_state(helm_run: dict[str, Any]) -> None:
    notes = next(t for p, t in rendered(helm_run, "default").items() if p.endswith("NOTES.txt"))
    assert f"kubectl -n {NAMESPACE} create secret generic {RELEASE}" in notes
    assert "No tenant is configured yet" in notes
    assert "WARNING" not in notes
    notes = next(t for p, t in rendered(helm_run, "embedded-state").items() if p.endswith("NOTES.txt"))
    assert "without externalRedis.url" in notes
    assert "no externalPostgres.dsn" in notes
