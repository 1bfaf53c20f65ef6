"""The Helm chart: lint, render realistic value sets offline, validate every manifest.

Rendering uses helm-python-sdk (Helm v4's Go SDK through ctypes: no helm binary, no cluster,
no network). Every rendered object is checked against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields fail), for the newest version it has.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes_validate.utils import latest_version  # noqa: E402

from tests.support.metric_names import series_names  # noqa: E402

CHART = Path(__file__).resolve().parent.parent / "helm" / "relay"
RELEASE = "relay"
NAMESPACE = "relay-system"
K8S_VERSION = latest_version()

# Distinctive values: none of them may show up outside a Secret.
API_KEYS = "acme:SENTINEL-apikey-acme-0123456789,globex:SENTINEL-apikey-globex-987654321"
CITEDY_KEY = "SENTINEL-citedy-vendor-key-5e1f"
AUTOPOSTING_KEY = "SENTINEL-autoposting-vendor-key-77aa"
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"SENTINEL-fernet-key-32-bytes-xx!").decode()
REDIS_PASSWORD = "SENTINELredisPassw0rd"
ADMIN_KEY = "SENTINEL-admin-key-0123456789abcdef"
SECRET_VALUES = [
    ADMIN_KEY,
    "SENTINEL-apikey-acme-0123456789",
    "SENTINEL-apikey-globex-987654321",
    CITEDY_KEY,
    AUTOPOSTING_KEY,
    ENCRYPTION_KEY,
    REDIS_PASSWORD,
]
ALL_SECRETS = {
    "apiKeys": API_KEYS,
    "citedyApiKey": CITEDY_KEY,
    "autopostingApiKey": AUTOPOSTING_KEY,
    "encryptionKey": ENCRYPTION_KEY,
    "adminKey": ADMIN_KEY,
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Production-like: the team manages Secrets itself, Redis is managed, autoscaling on.
    "existing-secret-external-redis-hpa": {
        "existingSecret": "relay-credentials",
        "externalRedis": {"existingSecret": "relay-redis", "existingSecretKey": "url"},
        "api": {
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
            "pdb": {"enabled": True, "minAvailable": 1},
        },
        "worker": {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 30,
                "targetMemoryUtilizationPercentage": 80,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
            "pdb": {"enabled": True, "maxUnavailable": "25%"},
        },
    },
    # Trying it out: the chart's own single-node Redis with AOF on a PVC.
    "embedded-redis": {
        "secrets": ALL_SECRETS,
        "redis": {
            "enabled": True,
            "auth": {"password": REDIS_PASSWORD},
            "persistence": {"size": "5Gi", "storageClass": "standard"},
        },
        "config": {"RELAY_ALLOW_PRIVATE_URLS": True, "RELAY_POLL_MIN_INTERVAL": 3},
    },
    # Public ingress with TLS, Prometheus Operator scraping, locked-down network.
    "ingress-tls-monitoring-netpol": {
        "secrets": ALL_SECRETS,
        "externalRedis": {"url": f"rediss://:{REDIS_PASSWORD}@redis.example.internal:6380/1"},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            "hosts": [{"host": "relay.example.com"}],
            "tls": [{"secretName": "relay-tls", "hosts": ["relay.example.com"]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prom"}}},
        "networkPolicy": {
            "enabled": True,
            "api": {
                "ingressFrom": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                        }
                    }
                ]
            },
            "metrics": {
                "ingressFrom": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                        }
                    }
                ]
            },
            "egress": {
                "redis": {"ports": [6380], "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
                "internet": {"cidrs": ["0.0.0.0/0", "::/0"], "except": ["10.0.0.0/8", "fc00::/7"]},
            },
        },
    },
    # Alerts and the dashboard for the Prometheus Operator and Grafana's sidecar; worker metrics
    # turned off (RELAY_WORKER_METRICS_PORT=0).
    "observability-worker-metrics-off": {
        "secrets": ALL_SECRETS,
        "externalRedis": {"url": "redis://redis.example.internal/0"},
        "worker": {"metricsPort": 0},
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prom"},
            "ruleLabels": {"team": "integrations"},
            "thresholds": {"queueAgeSeconds": 120},
            "disabledAlerts": ["RelayWatchListingTruncated"],
            "additionalRules": [{"alert": "MyOwn", "expr": "vector(1)", "for": "5m"}],
        },
        "networkPolicy": {
            "enabled": True,
            "egress": {"internet": {"extraPorts": [8443, {"port": 9000, "endPort": 9100}]}},
        },
        "ingress": {"enabled": True, "console": True, "hosts": [{"host": "relay.example.com"}]},
    },
    # Redis Sentinel, password from the chart's Secret.
    "sentinel": {
        "secrets": ALL_SECRETS,
        "externalRedis": {
            "sentinel": {
                "enabled": True,
                "masterName": "relay-master",
                "hosts": ["sentinel-0.sentinel:26379", "sentinel-1.sentinel:26379"],
                "db": 2,
                "password": REDIS_PASSWORD,
                "query": {"socket_timeout": 5},
            }
        },
    },
    # Traces to an in-cluster collector, sampled, behind a NetworkPolicy.
    "tracing-to-a-collector": {
        "externalRedis": {"url": "redis://redis.data.svc:6379/0"},
        "tracing": {
            "endpoint": "http://otel-collector.observability.svc:4318",
            "serviceName": "relay-prod",
            "sampler": "parentbased_traceidratio",
            "samplerArg": "0.25",
            "maxQueueSize": 4096,
        },
        "networkPolicy": {
            "enabled": True,
            "egress": {
                "otlp": {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                            }
                        }
                    ]
                }
            },
        },
    },
    # Many replicas spread over zones, pinned image, scheduling knobs.
    "scaled-out": {
        "secrets": ALL_SECRETS,
        "image": {
            "repository": "registry.example.com/run-relay",
            "digest": "sha256:" + "ab" * 32,
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "api": {"replicas": 4, "priorityClassName": "relay-high"},
        "worker": {
            "replicas": 12,
            "terminationGracePeriodSeconds": 60,
            "extraEnv": [{"name": "RELAY_DELIVERY_CONCURRENCY", "value": "128"}],
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "relay"}],
        "podLabels": {"team": "integrations"},
        "podAnnotations": {"example.com/owner": "integrations"},
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "relay"}],
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, dict[str, str]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield f"Pod/{d['metadata']['name']}", d["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# ------------------------------------------------------------------------------------ lint


def test_lint_clean_with_defaults() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == []
    worse_than_info = [m for m in report["messages"] if m["severity"] >= 2]
    assert worse_than_info == []


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if n != "defaults"])
def test_lint_clean_with_value_set(name: str) -> None:
    report = helm.lint(CHART, copy.deepcopy(VALUE_SETS[name]), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# ------------------------------------------------------------------ kubernetes validation


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_manifest_validates_against_kubernetes(
    rendered: dict[str, dict[str, str]], name: str
) -> None:
    docs = documents(rendered[name])
    assert docs
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # A CRD: kubernetes-validate has no schema for it; check its shape by hand.
            assert doc["kind"] in ("ServiceMonitor", "PrometheusRule"), label
            if doc["kind"] == "ServiceMonitor":
                assert doc["spec"]["selector"]["matchLabels"], label
                assert all(e["port"] and e["path"] == "/metrics" for e in doc["spec"]["endpoints"])
            else:
                for group in doc["spec"]["groups"]:
                    assert group["name"] and group["rules"], label
                    for rule in group["rules"]:
                        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
                        assert rule["alert"] and rule["expr"], label
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {label} is invalid for Kubernetes {K8S_VERSION}: {exc.message}")
        assert doc["metadata"].get("namespace") in (NAMESPACE, None), label
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, label
        assert labels["app.kubernetes.io/managed-by"] == "Helm", label


def test_kubernetes_version_is_current() -> None:
    major, minor = (int(p) for p in K8S_VERSION.split(".")[:2])
    assert (major, minor) >= (1, 33)


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_container_is_restricted(rendered: dict[str, dict[str, str]], name: str) -> None:
    docs = documents(rendered[name])
    for label, spec in pod_specs(docs):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, label
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, label
        assert "fsGroup" in pod_sc, label
        assert spec["automountServiceAccountToken"] is False, label
        if "redis" not in label:
            assert pod_sc["runAsUser"] == 10001, label
            assert pod_sc["runAsGroup"] == 10001, label
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, label
            assert sc["readOnlyRootFilesystem"] is True, label
            assert sc["capabilities"]["drop"] == ["ALL"], label
            assert not sc["capabilities"].get("add"), label
            assert sc.get("privileged", False) is False, label
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), label
            assert c["resources"].get("limits", {}).get("memory"), label


def test_service_account_does_not_mount_a_token(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["defaults"])
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_no_secret_value_outside_secrets(rendered: dict[str, dict[str, str]], name: str) -> None:
    encoded = [base64.b64encode(s.encode()).decode() for s in SECRET_VALUES]
    for path, text in rendered[name].items():
        for doc in yaml.safe_load_all(text) if not path.endswith("NOTES.txt") else [None]:
            if doc and doc["kind"] == "Secret":
                continue
            blob = text if doc is None else json.dumps(doc)
            for value in SECRET_VALUES + encoded:
                assert value not in blob, f"{name}: a secret value leaks into {path}"


def test_secret_holds_the_secret_values(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["embedded-redis"])
    (secret,) = by_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "api-keys": API_KEYS,
        "citedy-api-key": CITEDY_KEY,
        "autoposting-api-key": AUTOPOSTING_KEY,
        "encryption-key": ENCRYPTION_KEY,
        "admin-key": ADMIN_KEY,
        "redis-password": REDIS_PASSWORD,
    }


def test_config_map_holds_plain_settings(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["embedded-redis"])
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["data"]["RELAY_ALLOW_PRIVATE_URLS"] == "true"
    assert cm["data"]["RELAY_POLL_MIN_INTERVAL"] == "3"
    assert cm["data"]["RELAY_LOG_FORMAT"] == "json"
    for d in by_kind(docs, "Deployment"):
        (c,) = d["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": cm["metadata"]["name"]}} in c["envFrom"]


def test_existing_secret_creates_no_secret(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["existing-secret-external-redis-hpa"])
    assert by_kind(docs, "Secret") == []
    for d in by_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        env = env_of(c)
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "relay-redis",
            "key": "url",
        }
        assert env["CITEDY_API_KEY_FILE"]["value"] == "/etc/relay/secrets/citedy-api-key"
        assert env["RELAY_ENCRYPTION_KEY_FILE"]["value"] == "/etc/relay/secrets/encryption-key"
        (files,) = [v for v in spec["volumes"] if v["name"] == "secret-files"]
        assert files["secret"]["secretName"] == "relay-credentials"
        assert files["secret"]["optional"] is True  # a key the user's Secret lacks is no secret
        assert {"key": "citedy-api-key", "path": "citedy-api-key"} in files["secret"]["items"]
        (keys,) = [v for v in spec["volumes"] if v["name"] == "api-keys"]
        assert keys["secret"]["secretName"] == "relay-credentials"
        assert "checksum/secret" not in d["spec"]["template"]["metadata"]["annotations"]


def test_existing_secret_supplies_redis_url_when_nothing_else_does(chart: Any) -> None:
    docs = documents(render(chart, {"existingSecret": "mine"}))
    assert by_kind(docs, "Secret") == []
    api = one(docs, "Deployment", f"{RELEASE}-api")
    env = env_of(api["spec"]["template"]["spec"]["containers"][0])
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "redis-url"}


def test_api_keys_are_a_mounted_file_never_an_env_var(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["sentinel"])
    secret_name = by_kind(docs, "Secret")[0]["metadata"]["name"]
    for d in by_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        env = env_of(c)
        assert "RELAY_API_KEYS" not in env
        assert env["RELAY_API_KEYS_FILE"]["value"] == "/etc/relay/api-keys/api-keys"
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "api-keys"]
        assert mount == {"name": "api-keys", "mountPath": "/etc/relay/api-keys", "readOnly": True}
        (vol,) = [v for v in spec["volumes"] if v["name"] == "api-keys"]
        assert vol["secret"]["secretName"] == secret_name
        assert vol["secret"]["items"] == [{"key": "api-keys", "path": "api-keys"}]


def test_without_api_keys_no_file_is_configured(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["defaults"])
    for d in by_kind(docs, "Deployment"):
        env = env_of(d["spec"]["template"]["spec"]["containers"][0])
        assert "RELAY_API_KEYS_FILE" not in env
    assert "no relay API keys are configured" in rendered["defaults"]["relay/templates/NOTES.txt"]


# ------------------------------------------------------------------ probes and shutdown


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_probes_and_graceful_shutdown(rendered: dict[str, dict[str, str]], name: str) -> None:
    docs = documents(rendered[name])
    api = one(docs, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]
    (c,) = api["containers"]
    assert c["command"] == ["relay"]
    assert c["args"][:5] == ["api", "--host", "0.0.0.0", "--port", "8000"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert api["terminationGracePeriodSeconds"] == 15

    worker = one(docs, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["spec"]
    (w,) = worker["containers"]
    assert w["args"] == ["worker"]
    assert w["livenessProbe"]["exec"]["command"] == ["relay", "check"]
    assert "readinessProbe" not in w
    if name == "observability-worker-metrics-off":
        assert env_of(w)["RELAY_WORKER_METRICS_PORT"]["value"] == "0"
        assert "ports" not in w
    else:
        assert env_of(w)["RELAY_WORKER_METRICS_PORT"]["value"] == "9108"
        assert w["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    expected_grace = 60 if name == "scaled-out" else 45
    assert worker["terminationGracePeriodSeconds"] == expected_grace


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_redis_url_is_always_set(rendered: dict[str, dict[str, str]], name: str) -> None:
    docs = documents(rendered[name])
    for d in by_kind(docs, "Deployment"):
        env = env_of(d["spec"]["template"]["spec"]["containers"][0])
        assert "REDIS_URL" in env, d["metadata"]["name"]


def test_sentinel_url(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["sentinel"])
    api = one(docs, "Deployment", f"{RELEASE}-api")
    c = api["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in c["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(VAR) needs order
    env = env_of(c)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": RELEASE,
        "key": "redis-password",
    }
    assert env["REDIS_URL"]["value"] == (
        "redis+sentinel://:$(REDIS_PASSWORD)@sentinel-0.sentinel:26379,"
        "sentinel-1.sentinel:26379/relay-master/2?socket_timeout=5"
    )


def test_embedded_redis_statefulset(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["embedded-redis"])
    sts = one(docs, "StatefulSet", f"{RELEASE}-redis")
    spec = sts["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert "--appendonly yes" in c["args"][0]
    # Never evicting: the relay refuses new work near maxmemory instead
    # (relay/store/memory_guard.py).
    assert "--maxmemory 400mb --maxmemory-policy noeviction" in c["args"][0]
    assert REDIS_PASSWORD not in json.dumps(c)
    assert env_of(c)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "standard"
    assert any(m["mountPath"] == "/data" for m in c["volumeMounts"])
    one(docs, "Service", f"{RELEASE}-redis")
    api = one(docs, "Deployment", f"{RELEASE}-api")
    env = env_of(api["spec"]["template"]["spec"]["containers"][0])
    assert env["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{RELEASE}-redis:6379/0"


def test_no_redis_statefulset_by_default(rendered: dict[str, dict[str, str]]) -> None:
    assert by_kind(documents(rendered["defaults"]), "StatefulSet") == []


# ----------------------------------------------------------------- scaling and extras


def test_hpa_and_pdb(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["existing-secret-external-redis-hpa"])
    hpas = {d["metadata"]["name"]: d for d in by_kind(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {f"{RELEASE}-api", f"{RELEASE}-worker"}
    for role, hpa in (("api", hpas[f"{RELEASE}-api"]), ("worker", hpas[f"{RELEASE}-worker"])):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-{role}"
        deployment = one(docs, "Deployment", f"{RELEASE}-{role}")
        assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert hpas[f"{RELEASE}-worker"]["spec"]["maxReplicas"] == 30
    assert len(hpas[f"{RELEASE}-worker"]["spec"]["metrics"]) == 2
    pdbs = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "PodDisruptionBudget")}
    assert pdbs[f"{RELEASE}-api"]["minAvailable"] == 1
    assert pdbs[f"{RELEASE}-worker"]["maxUnavailable"] == "25%"
    assert by_kind(documents(rendered["defaults"]), "HorizontalPodAutoscaler") == []


def test_replicas_and_scheduling(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["scaled-out"])
    api = one(docs, "Deployment", f"{RELEASE}-api")
    worker = one(docs, "Deployment", f"{RELEASE}-worker")
    assert api["spec"]["replicas"] == 4
    assert worker["spec"]["replicas"] == 12
    for d, role in ((api, "api"), (worker, "worker")):
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert c["image"] == "registry.example.com/run-relay@sha256:" + "ab" * 32
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert spec["tolerations"][0]["key"] == "dedicated"
        (tsc,) = spec["topologySpreadConstraints"]
        assert tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == role
        meta = d["spec"]["template"]["metadata"]
        assert meta["labels"]["team"] == "integrations"
        assert meta["annotations"]["example.com/owner"] == "integrations"
        assert env_of(c)["OTEL_SERVICE_NAME"]["value"] == "relay"
    assert api["spec"]["template"]["spec"]["priorityClassName"] == "relay-high"
    assert "priorityClassName" not in worker["spec"]["template"]["spec"]
    worker_env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
    assert worker_env["RELAY_DELIVERY_CONCURRENCY"]["value"] == "128"


def test_ingress_servicemonitor_networkpolicy(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["ingress-tls-monitoring-netpol"])
    (ing,) = by_kind(docs, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["relay.example.com"], "secretName": "relay-tls"}]
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    # the API only, by default: no "/", so no /metrics, /readyz or /console
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/v1", "Prefix"),
        ("/openapi.json", "Exact"),
        ("/healthz", "Exact"),
    ]
    for path in paths:
        assert path["backend"]["service"] == {"name": f"{RELEASE}-api", "port": {"number": 80}}

    monitors = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceMonitor")}
    assert set(monitors) == {f"{RELEASE}-api", f"{RELEASE}-worker"}
    assert monitors[f"{RELEASE}-api"]["spec"]["endpoints"][0]["port"] == "http"
    assert monitors[f"{RELEASE}-worker"]["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitors[f"{RELEASE}-api"]["metadata"]["labels"]["release"] == "kube-prom"
    metrics_svc = one(docs, "Service", f"{RELEASE}-worker-metrics")
    selector = monitors[f"{RELEASE}-worker"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics_svc["metadata"]["labels"].items()

    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    api_np = policies[f"{RELEASE}-api"]
    assert api_np["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    sources = api_np["ingress"][0]["from"]
    assert sources[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert sources[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    assert sources[2]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    for np in (api_np, policies[f"{RELEASE}-worker"]):
        egress = np["egress"]
        dns_ports = {(p["port"], p["protocol"]) for p in egress[0]["ports"]}
        assert dns_ports == {(53, "UDP"), (53, "TCP")}
        assert egress[1] == {
            "ports": [{"port": 6380, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        }
        internet = egress[2]
        assert {p["port"] for p in internet["ports"]} == {443, 80}
        assert internet["to"] == [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}},
            {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7"]}},
        ]


def test_helm_test_hook_pod(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["defaults"])
    (pod,) = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    api = one(docs, "Deployment", f"{RELEASE}-api")
    assert c["image"] == api["spec"]["template"]["spec"]["containers"][0]["image"]
    assert c["command"][:2] == ["python", "-c"]
    assert f"http://{RELEASE}-api.{NAMESPACE}.svc:80/readyz" in c["command"][2]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_config_change_rolls_the_pods(chart: Any) -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        docs = documents(render(chart, values))
        api = one(docs, "Deployment", f"{RELEASE}-api")
        return api["spec"]["template"]["metadata"]["annotations"]

    base = checksums({})
    changed_config = checksums({"config": {"RELAY_LOG_LEVEL": "debug"}})
    changed_secret = checksums({"secrets": {"citedyApiKey": CITEDY_KEY}})
    assert base["checksum/config"] != changed_config["checksum/config"]
    assert base["checksum/secret"] == changed_config["checksum/secret"]
    assert base["checksum/secret"] != changed_secret["checksum/secret"]


# ------------------------------------------------------------------- values are checked


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"replicaCount": 3}, id="unknown-top-level-key"),
        pytest.param({"api": {"replicas": "two"}}, id="wrong-type"),
        pytest.param({"worker": {"replica": 3}}, id="typo-in-role"),
        pytest.param({"existingSecret": 42}, id="existing-secret-not-a-string"),
        pytest.param({"config": {"RELAY_API_KEYS": "a:b"}}, id="secret-in-configmap"),
        pytest.param({"config": {"REDIS_URL": "redis://x:6379"}}, id="redis-url-in-configmap"),
        pytest.param({"externalRedis": {"url": "http://nope"}}, id="bad-redis-scheme"),
        pytest.param({"tracing": {"sampler": "sometimes"}}, id="unknown-sampler"),
        pytest.param({"tracing": {"endpoint": "otel:4318"}}, id="endpoint-without-scheme"),
        pytest.param({"tracing": {"samplerArg": "half"}}, id="sampler-arg-not-a-ratio"),
        pytest.param({"tracing": {"endpoints": "http://x:4318"}}, id="typo-in-tracing"),
    ],
)
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(copy.deepcopy(values))
    with pytest.raises(helm.HelmError):
        render(chart, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"existingSecret": "mine", "secrets": {"citedyApiKey": CITEDY_KEY}},
            "creates no Secret",
            id="existing-secret-and-inline-secrets",
        ),
        pytest.param({"redis": {"enabled": True}}, "redis.auth.password", id="redis-no-password"),
        pytest.param(
            {"externalRedis": {"sentinel": {"enabled": True}}}, "hosts", id="sentinel-no-hosts"
        ),
        pytest.param({"externalRedis": {"url": ""}}, "REDIS_URL has no source", id="no-redis"),
    ],
)
def test_contradictory_values_fail_with_a_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        render(chart, values)
    assert message in str(info.value)
    assert CITEDY_KEY not in str(info.value)


# -------------------------------------------------------------------- ingress exposure


def _paths(docs: list[dict[str, Any]]) -> list[str]:
    (ing,) = by_kind(docs, "Ingress")
    return [p["path"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]


def test_ingress_console_only_when_asked(rendered: dict[str, dict[str, str]]) -> None:
    with_console = _paths(documents(rendered["observability-worker-metrics-off"]))
    assert with_console == ["/v1", "/openapi.json", "/healthz", "/console"]
    without = _paths(documents(rendered["ingress-tls-monitoring-netpol"]))
    assert "/console" not in without


def test_ingress_keeps_own_paths_under_the_api(chart: Any) -> None:
    docs = documents(
        render(
            chart,
            {
                "ingress": {
                    "enabled": True,
                    "hosts": [{"host": "a.example", "paths": [{"path": "/v1/runs"}]}],
                }
            },
        )
    )
    assert _paths(docs) == ["/v1/runs"]


@pytest.mark.parametrize(
    ("path", "console"),
    [
        ("/", False),
        ("/metrics", False),
        ("/metrics", True),
        ("/readyz", False),
        ("/console", False),
        ("/v1x", False),
    ],
)
def test_ingress_never_publishes_more_than_the_api(chart: Any, path: str, console: bool) -> None:
    values = {
        "ingress": {
            "enabled": True,
            "console": console,
            "hosts": [{"host": "a.example", "paths": [{"path": path, "pathType": "Prefix"}]}],
        }
    }
    with pytest.raises(helm.HelmRenderError) as info:
        render(chart, values)
    assert "would publish more than the API" in str(info.value)


# ----------------------------------------------------------------- network policy ports


def _egress_ports(docs: list[dict[str, Any]], index: int) -> list[Any]:
    np = one(docs, "NetworkPolicy", f"{RELEASE}-worker")["spec"]
    return [(p["port"], p.get("endPort")) for p in np["egress"][index]["ports"]]


@pytest.mark.parametrize(
    ("redis_values", "ports"),
    [
        ({"externalRedis": {"url": "rediss://:pw@redis.example.internal:6380/1"}}, [6380]),
        ({"externalRedis": {"url": "redis://redis.example.internal/0"}}, [6379]),
        (
            {"externalRedis": {"sentinel": {"enabled": True, "hosts": ["s-0:26380", "s-1:26380"]}}},
            [26380, 6379],
        ),
        ({"externalRedis": {"existingSecret": "r"}}, [6379, 26379]),
        (
            {
                "externalRedis": {"url": "rediss://redis.example.internal:6380/1"},
                "networkPolicy": {"egress": {"redis": {"ports": [7000]}}},
            },
            [7000],
        ),
    ],
)
def test_redis_egress_ports_follow_the_redis_url(
    chart: Any, redis_values: dict[str, Any], ports: list[int]
) -> None:
    values = copy.deepcopy(redis_values)
    values.setdefault("networkPolicy", {})["enabled"] = True
    docs = documents(render(chart, values))
    assert _egress_ports(docs, 1) == [(p, None) for p in ports]


def test_subscriber_egress_ports_are_configurable(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["observability-worker-metrics-off"])
    assert _egress_ports(docs, 2) == [(443, None), (80, None), (8443, None), (9000, 9100)]


# ---------------------------------------------------------------------------- admin key


def test_admin_key_reaches_both_roles(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["sentinel"])
    for d in by_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        assert env["RELAY_ADMIN_KEY_FILE"]["value"] == "/etc/relay/secrets/admin-key"
        (files,) = [v for v in spec["volumes"] if v["name"] == "secret-files"]
        assert files["secret"]["secretName"] == RELEASE
        assert {"key": "admin-key", "path": "admin-key"} in files["secret"]["items"]
    docs = documents(rendered["existing-secret-external-redis-hpa"])
    for d in by_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert env_of(spec["containers"][0])["RELAY_ADMIN_KEY_FILE"]["value"].endswith("admin-key")
        (files,) = [v for v in spec["volumes"] if v["name"] == "secret-files"]
        assert {"key": "admin-key", "path": "admin-key"} in files["secret"]["items"]
    docs = documents(rendered["defaults"])  # no admin key: the admin API stays off
    for d in by_kind(docs, "Deployment"):
        env = env_of(d["spec"]["template"]["spec"]["containers"][0])
        assert "RELAY_ADMIN_KEY" not in env and "RELAY_ADMIN_KEY_FILE" not in env


def test_secrets_are_mounted_files_never_env_values(rendered: dict[str, dict[str, str]]) -> None:
    """Vendor keys, the encryption key and the admin key reach the pods as files of a mounted
    Secret named by `<NAME>_FILE` (checkov CKV_K8S_35), read by relay/config.py."""
    for name, text in rendered.items():
        for d in by_kind(documents(text), "Deployment"):
            (c,) = d["spec"]["template"]["spec"]["containers"]
            env = env_of(c)
            for secret in ("CITEDY_API_KEY", "AUTOPOSTING_API_KEY", "RELAY_ENCRYPTION_KEY",
                           "RELAY_ADMIN_KEY"):  # fmt: skip
                assert secret not in env, (name, secret)
                if secret + "_FILE" in env:
                    path = env[secret + "_FILE"]["value"]
                    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "secret-files"]
                    assert path.startswith(mount["mountPath"] + "/") and mount["readOnly"]


def test_existing_secret_refuses_an_inline_admin_key(chart: Any) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        render(chart, {"existingSecret": "mine", "secrets": {"adminKey": ADMIN_KEY}})
    assert "creates no Secret" in str(info.value)
    assert ADMIN_KEY not in str(info.value)


def test_schema_refuses_a_short_admin_key(chart: Any) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"secrets": {"adminKey": "short"}})


# ------------------------------------------------------------------ worker metrics off


def test_worker_metrics_port_zero_turns_them_off(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["observability-worker-metrics-off"])
    assert [d for d in by_kind(docs, "Service") if d["metadata"]["name"].endswith("-metrics")] == []
    monitors = [d["metadata"]["name"] for d in by_kind(docs, "ServiceMonitor")]
    assert monitors == [f"{RELEASE}-api"]
    worker_np = one(docs, "NetworkPolicy", f"{RELEASE}-worker")["spec"]
    assert "Ingress" in worker_np["policyTypes"]
    assert not worker_np.get("ingress")  # no rule: nothing may reach a worker


# ------------------------------------------------------------- alerts and the dashboard


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = by_kind(docs, "PrometheusRule")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_no_prometheus_rule_or_dashboard_by_default(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["defaults"])
    assert by_kind(docs, "PrometheusRule") == []
    assert [d for d in by_kind(docs, "ConfigMap") if "dashboard" in d["metadata"]["name"]] == []


def test_prometheus_rule_alerts(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["observability-worker-metrics-off"])
    (obj,) = by_kind(docs, "PrometheusRule")
    assert obj["metadata"]["labels"]["release"] == "kube-prom"
    rules = _rules(docs)
    alerts = {r["alert"]: r for r in rules}
    assert "RelayWatchListingTruncated" not in alerts  # disabledAlerts
    assert alerts["MyOwn"] == {"alert": "MyOwn", "expr": "vector(1)", "for": "5m"}
    assert "> 120" in alerts["RelayQueueBacklog"]["expr"]  # thresholds
    known = series_names()
    documented = (CHART.parents[1] / "docs" / "operations.md").read_text()
    for name, rule in alerts.items():
        if name == "MyOwn":
            continue
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["labels"]["team"] == "integrations", name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        used = set(re.findall(r"\brelay_[a-z_]+\b", rule["expr"]))
        assert used and used <= known, (
            f"{name} uses series the code does not export: {used - known}"
        )
        assert f"`{name}`" in documented, f"{name} is not in docs/operations.md"
    assert len(alerts) >= 12


def test_every_recommended_alert_is_in_the_chart(chart: Any) -> None:
    """docs/operations.md's alert table lists exactly the chart's alerts."""
    docs = documents(render(chart, {"prometheusRule": {"enabled": True}}))
    chart_alerts = {r["alert"] for r in _rules(docs)}
    documented = (CHART.parents[1] / "docs" / "operations.md").read_text()
    table = set(re.findall(r"^\| `(Relay[A-Za-z]+)` \|", documented, re.M))
    assert table == chart_alerts


def test_grafana_dashboard_is_shipped(rendered: dict[str, dict[str, str]]) -> None:
    docs = documents(rendered["observability-worker-metrics-off"])
    cm = one(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["relay.json"])
    assert shipped == json.loads((CHART / "dashboards" / "relay.json").read_text())
    exprs = [t["expr"] for p in shipped["panels"] for t in p.get("targets", []) if "expr" in t]
    used = {m for e in exprs for m in re.findall(r"\brelay_[a-z_]+\b", e)}
    assert used and used <= series_names(), used - series_names()


# ------------------------------------------------------------- values.yaml vs the code


def _settings_in_code() -> set[str]:
    names: set[str] = set()
    for root in ("relay", "workers"):
        for path in (CHART.parents[1] / root).rglob("*.py"):
            names |= set(re.findall(r'alias="([A-Z][A-Z0-9_]+)"', path.read_text()))
    return names


def test_values_config_lists_every_setting_once() -> None:
    """values.yaml's `config` lists each non-secret setting of the code once (set or commented),
    and nothing the code does not read."""
    text = (CHART / "values.yaml").read_text()
    block = text[text.index("\nconfig:\n") : text.index("\nsecrets:\n")]
    listed = re.findall(r"^\s+#?\s?([A-Z][A-Z0-9_]+):", block, re.M)
    code = _settings_in_code()
    assert len(code) > 30
    secret_or_elsewhere = {
        "REDIS_URL",  # externalRedis / existingSecret
        "RELAY_API_KEYS",
        "RELAY_API_KEYS_FILE",
        "RELAY_ENCRYPTION_KEY",
        "RELAY_ADMIN_KEY",
        "CITEDY_API_KEY",
        "AUTOPOSTING_API_KEY",
        "RELAY_WORKER_METRICS_PORT",  # worker.metricsPort
        "RELAY_DATA_DIR",  # relay dev only
    }
    duplicates = sorted({n for n in listed if listed.count(n) > 1})
    assert duplicates == []
    assert set(listed) - code == set()
    assert code - secret_or_elsewhere - set(listed) == set()


# ------------------------------------------------------------------------------ traces


def _otel_env(docs: list[dict[str, Any]], role: str) -> dict[str, Any]:
    deployment = one(docs, "Deployment", f"{RELEASE}-{role}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {k: v.get("value") for k, v in env_of(container).items() if k.startswith("OTEL_")}


def test_tracing_env_reaches_both_roles_only_with_an_endpoint(
    rendered: dict[str, dict[str, str]],
) -> None:
    for role in ("api", "worker"):
        assert _otel_env(documents(rendered["defaults"]), role) == {}  # off by default
        assert _otel_env(documents(rendered["tracing-to-a-collector"]), role) == {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "relay-prod",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
        }


def test_tracing_without_a_sampler_arg_sets_none(chart: Any) -> None:
    docs = documents(render(chart, {"tracing": {"endpoint": "https://otlp.example.com"}}))
    env = _otel_env(docs, "worker")
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert env["OTEL_SERVICE_NAME"] == "run-relay"
    assert "OTEL_TRACES_SAMPLER_ARG" not in env


def _otlp_rules(docs: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    spec = one(docs, "NetworkPolicy", f"{RELEASE}-{role}")["spec"]
    return [r for r in spec["egress"] if r.get("ports") and r["ports"][0]["port"] in (4318, 443)]


def test_network_policy_lets_both_roles_reach_the_collector(
    rendered: dict[str, dict[str, str]], chart: Any
) -> None:
    docs = documents(rendered["tracing-to-a-collector"])
    for role in ("api", "worker"):
        (rule,) = [r for r in _otlp_rules(docs, role) if r["ports"][0]["port"] == 4318]
        assert rule["ports"] == [{"port": 4318, "protocol": "TCP"}]
        assert rule["to"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
        ]
    # No endpoint, no rule.
    netpol = documents(rendered["ingress-tls-monitoring-netpol"])
    assert all(r["ports"][0]["port"] != 4318 for r in _otlp_rules(netpol, "worker"))
    # The port comes from the URL: its own, 443 for https, 4318 otherwise.
    for endpoint, port in [
        ("http://collector:4319", 4319),
        ("https://otlp.example.com", 443),
        ("http://collector", 4318),
        ("http://[fd00::1]:9999", 9999),
    ]:
        values = {"networkPolicy": {"enabled": True}, "tracing": {"endpoint": endpoint}}
        spec = one(documents(render(chart, values)), "NetworkPolicy", f"{RELEASE}-api")["spec"]
        assert {"port": port, "protocol": "TCP"} in [p for r in spec["egress"] for p in r["ports"]]
        last = spec["egress"][-1]
        assert last["ports"] == [{"port": port, "protocol": "TCP"}] and "to" not in last
