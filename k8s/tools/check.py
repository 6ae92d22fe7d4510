#!/usr/bin/env python3
"""Offline checks of k8s/ (run through k8s/check).

1. Renders every overlay with `kubectl kustomize` (kustomize v5 inside
   kubectl) and checks that every component is used by some overlay.
2. Validates every rendered resource against the Kubernetes OpenAPI schemas
   (kubernetes-validate, strict: unknown fields fail) for the oldest
   supported and the newest Kubernetes, and the Prometheus operator's
   resources (ServiceMonitor, PodMonitor, PrometheusRule) against the
   operator's CRD models (cloudcoil-models-prometheus-operator, generated
   from the CRDs; unknown fields are caught by a round trip).
3. Checks what the schemas cannot: the restricted pod security settings,
   probes and scrape annotations on the admin port, the drain grace, the
   NetworkPolicy, runtime-config.toml, the Grafana ConfigMaps, and that the
   PrometheusRule and the plain rules file hold the same rules.
4. `promtool check rules` on the rules and `promtool check config` on the
   annotation-based scrape config.
5. Runs the Fluentd, Fluent Bit, sidecar and Grafana Alloy pipelines, as
   their configs declare them, over real hero-host log lines wrapped in the
   CRI and docker json-file formats (see logging_model.py: a model of the
   tools, since none of their binaries can be installed here), and checks
   the labels, lines and event times that would reach Loki (inside Loki's
   acceptance window, as written).

Exit status 1 when anything fails.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart  # noqa: E402
import logging_model  # noqa: E402
import tracing  # noqa: E402
import wiring  # noqa: E402

K8S = Path(__file__).resolve().parent.parent
MONITORING = K8S / "components/monitoring"
RULES_FILE = MONITORING / "rules/hero-registry.rules.yml"
PROMRULE_FILE = MONITORING / "prometheusrule.yaml"
SCRAPE_CONFIG = MONITORING / "prometheus/prometheus.yml"
DASHBOARD = MONITORING / "dashboards/hero-registry.json"

# Kubernetes versions to validate against: the oldest this layout supports
# (native sidecars and the preStop sleep action are on by default from 1.30)
# and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", "latest"]

# The metric families hero-host exports (as Prometheus names them), and the
# series Prometheus adds itself. Every metric a dashboard or rule queries must
# be one of these; host/tests/all/k8s.rs checks against a real scrape.
HOST_METRICS = {
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "http_server_request_body_size_bytes",
    "http_server_response_body_size_bytes",
    "wasm_instantiation_duration_seconds",
    "wasm_invocations_total",
    "wasm_guest_traps_total",
    "wasm_guest_cpu_time_seconds_total",
    "wasm_memory_usage_bytes",
    "key_value_operation_duration_seconds",
    "hero_host_log_dropped_lines_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "target_info",
    "up",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL {message}")


def ok(message: str) -> None:
    print(f"ok   {message}")


def report(name: str, results: list[tuple[bool, str]]) -> None:
    for passed, message in results:
        (ok if passed else fail)(f"{name}: {message}")


def section(title: str) -> None:
    print(f"\n--- {title}")


# ---------------------------------------------------------------- rendering


def kustomization_dirs() -> dict[Path, str]:
    """Every directory with a kustomization.yaml, and its kind."""
    dirs = {}
    for path in sorted(K8S.rglob("kustomization.yaml")):
        kind = yaml.safe_load(path.read_text()).get("kind", "Kustomization")
        dirs[path.parent] = kind
    return dirs


def referenced_components(overlay: Path, seen: set[Path] | None = None) -> set[Path]:
    """Components an overlay (and the kustomizations it builds on) uses."""
    seen = seen if seen is not None else set()
    if overlay in seen:
        return set()
    seen.add(overlay)
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    found = set()
    for entry in spec.get("components", []):
        found.add((overlay / entry).resolve())
    for entry in spec.get("resources", []):
        target = (overlay / entry).resolve()
        if (target / "kustomization.yaml").is_file():
            found |= referenced_components(target, seen)
    return found


def render(directory: Path) -> list[dict] | None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True
    )
    if result.returncode != 0:
        fail(f"kubectl kustomize {directory.relative_to(K8S)}: {result.stderr.strip()}")
        return None
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_chart(renders: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The chart with each overlay's values file, compared with the overlay."""
    section("Helm chart: lint, render with each overlay's values, compare with the overlay")
    chart_dir = K8S / "chart"
    files = chart.values_files(chart_dir)
    overlays = {name.split("/", 1)[1] for name in renders if name.startswith("overlays/")}
    for missing in sorted(overlays - set(files)):
        fail(f"overlay {missing} has no chart values file chart/ci/{missing}.yaml")
    charts = {}
    for name, values in files.items():
        problem = chart.lint(chart_dir, values)
        if problem:
            fail(f"helm lint --strict -f chart/ci/{values.name}: {problem}")
        docs, error = chart.render(chart_dir, values)
        if docs is None:
            fail(f"helm template -f chart/ci/{values.name}: {error}")
            continue
        charts[f"chart/{name}"] = docs
        if f"overlays/{name}" not in renders:
            fail(f"chart/ci/{values.name} names no overlay")
            continue
        problems = chart.compare(name, renders[f"overlays/{name}"], docs)
        for problem in problems:
            fail(f"chart/{name} differs from overlays/{name}: {problem}")
        if not problems:
            ok(f"chart/{name}: {len(docs)} objects, the same as overlays/{name}")
    return charts


def render_all() -> dict[str, list[dict]]:
    section("render every kustomization (kubectl kustomize)")
    dirs = kustomization_dirs()
    renders = {}
    used = set()
    for directory, kind in dirs.items():
        if kind == "Component":
            continue
        docs = render(directory)
        if docs is None:
            continue
        name = str(directory.relative_to(K8S))
        renders[name] = docs
        ok(f"{name}: {len(docs)} resources")
        used |= referenced_components(directory)
    for directory, kind in dirs.items():
        if kind == "Component" and directory.resolve() not in used:
            fail(f"component {directory.relative_to(K8S)} is used by no overlay, so it is never rendered")
    return renders


# --------------------------------------------------------------- validation


CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


def crd_model(doc: dict):
    """The model generated from the CRD of a Prometheus operator or KEDA
    resource, or None."""
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1

    return {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): v1.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): v1.PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): v1.PrometheusRule,
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    }.get((doc.get("apiVersion"), doc["kind"]))


def validate_crd_resource(doc: dict) -> str | None:
    """Validates a Prometheus operator or KEDA resource against the models
    generated from their CRDs. Returns an error, or None."""
    model = crd_model(doc)
    if model is None:
        return f"no model for {doc.get('apiVersion')} {doc['kind']}"
    try:
        parsed = model.model_validate(doc)
    except Exception as error:  # pydantic.ValidationError
        return str(error)
    # The models ignore unknown fields: a field that does not survive the
    # round trip is one the CRD does not have (a typo).
    back = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    missing = dropped_paths(doc, back)
    if missing:
        return "fields the CRD does not define: " + ", ".join(missing)
    return None


def dropped_paths(original, back, path="") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [path or "."]
        found = []
        for key, value in original.items():
            if key not in back:
                found.append(f"{path}.{key}")
            else:
                found += dropped_paths(value, back[key], f"{path}.{key}")
        return found
    if isinstance(original, list) and isinstance(back, list):
        found = []
        for index, (a, b) in enumerate(zip(original, back)):
            found += dropped_paths(a, b, f"{path}[{index}]")
        return found
    return []


def validate_schemas(renders: dict[str, list[dict]]) -> None:
    section("validate every resource (kubernetes-validate --strict; operator CRD models)")
    import kubernetes_validate

    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    for name, docs in renders.items():
        errors = 0
        for doc in docs:
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if doc.get("apiVersion", "").startswith(CRD_GROUPS):
                error = validate_crd_resource(doc)
                if error:
                    errors += 1
                    fail(f"{what}: {error}")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    errors += 1
                    fail(f"{what}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")
                except kubernetes_validate.ValidationError as error:
                    errors += 1
                    fail(f"{what} (Kubernetes {version}): {str(error).splitlines()[0]}")
        if not errors:
            ok(f"{name}: {len(docs)} resources valid for Kubernetes {', '.join(versions)}")


# ------------------------------------------------------------ policy checks


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not match:
        raise ValueError(f"unknown duration {text!r}")
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def check_registry_pod(name: str, docs: list[dict]) -> None:
    deployments = find(docs, "Deployment", "hero-registry")
    if len(deployments) != 1:
        fail(f"{name}: expected one Deployment hero-registry, found {len(deployments)}")
        return
    dep = deployments[0]
    template = dep["spec"]["template"]
    pod = template["spec"]
    labels = template["metadata"].get("labels", {})
    problems = []
    if labels.get("app") != "hero-registry":
        problems.append("pod label app=hero-registry missing (Loki and Prometheus select on it)")
    annotations = template["metadata"].get("annotations", {})
    host = next((c for c in pod["containers"] if c["name"] == "hero-host"), None)
    if host is None:
        fail(f"{name}: no hero-host container")
        return
    ports = {p["name"]: p["containerPort"] for p in host.get("ports", [])}
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append("prometheus.io/scrape annotation is not \"true\"")
    if annotations.get("prometheus.io/port") != str(ports.get("admin")):
        problems.append("prometheus.io/port is not the admin container port")
    if annotations.get("prometheus.io/path") != "/metrics":
        problems.append("prometheus.io/path is not /metrics")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = host.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", ports.get("admin")):
            problems.append(f"{probe} is not GET {path} on the admin port")
    env = {e["name"]: e for e in host.get("env", [])}
    instance = env.get("HERO_HOST_SERVICE_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
    if instance.get("fieldPath") != "metadata.name":
        problems.append("HERO_HOST_SERVICE_INSTANCE_ID is not the pod name (downward API)")
    grace = env.get("HERO_HOST_SHUTDOWN_GRACE", {}).get("value")
    if grace is None:
        problems.append("HERO_HOST_SHUTDOWN_GRACE is not set explicitly")
    else:
        pre_stop = host.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        needed = duration_seconds(grace) + pre_stop
        if pod.get("terminationGracePeriodSeconds", 30) <= needed:
            problems.append(
                f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} "
                f"is not longer than the drain ({grace}) plus preStop ({pre_stop}s)"
            )
    # Restricted Pod Security Standard, and a read-only root.
    pod_sc = pod.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container.get("securityContext", {})
        cname = container["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cname}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            problems.append(f"{cname}: capabilities are not drop [ALL] with nothing added")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cname}: readOnlyRootFilesystem is not true")
        if sc.get("runAsUser") == 0 or sc.get("privileged"):
            problems.append(f"{cname}: runs as root or privileged")
        resources = container.get("resources", {})
        if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
            problems.append(f"{cname}: no requests or memory limit")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for volume in volumes.values():
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']} is a hostPath (not allowed by restricted)")
    mounts = {m["mountPath"]: m["name"] for m in host.get("volumeMounts", [])}
    state_dir = env.get("HERO_HOST_STATE_DIR", {}).get("value")
    if state_dir not in mounts:
        problems.append(f"the state dir {state_dir} is not a mounted volume")
    # runtime-config.toml: the file the host reads.
    config_path = env.get("HERO_HOST_RUNTIME_CONFIG_FILE", {}).get("value")
    config = None
    for mount_path, volume_name in mounts.items():
        if config_path and config_path.startswith(mount_path + "/"):
            cm_name = volumes[volume_name].get("configMap", {}).get("name")
            cms = find(docs, "ConfigMap", cm_name)
            key = config_path[len(mount_path) + 1:]
            if cms and key in cms[0].get("data", {}):
                config = cms[0]["data"][key]
    if config is None:
        problems.append(f"runtime config {config_path} is not in a mounted ConfigMap")
    else:
        problems += check_runtime_config(config, docs, wiring.max_replicas(docs, dep), state_dir)
    if problems:
        for problem in problems:
            fail(f"{name}: Deployment hero-registry: {problem}")
    else:
        ok(f"{name}: hero-registry pod: restricted security, probes and scrape on the admin port, "
           f"grace {pod['terminationGracePeriodSeconds']}s > drain, runtime config valid")


def check_runtime_config(text: str, docs: list[dict], replicas: int, state_dir: str | None) -> list[str]:
    """The keys hero-host accepts (host/src/runtime_config.rs refuses others)."""
    problems = []
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return [f"runtime-config.toml is not TOML: {error}"]
    unknown = set(config) - {"state_dir", "key_value_store"}
    if unknown:
        problems.append(f"runtime-config.toml has keys hero-host refuses: {sorted(unknown)}")
    stores = config.get("key_value_store", {})
    default = stores.get("default", {"type": "spin"})
    for label, store in stores.items():
        kind = store.get("type")
        allowed = {"spin": {"type", "path"}, "redis": {"type", "url"}}.get(kind)
        if allowed is None:
            problems.append(f"store {label}: type {kind!r} is not spin or redis")
        elif set(store) - allowed:
            problems.append(f"store {label}: keys {sorted(set(store) - allowed)} are refused")
        if kind == "spin" and state_dir and not str(store.get("path", state_dir)).startswith(state_dir):
            problems.append(f"store {label}: SQLite file outside the state volume {state_dir}")
        if kind == "redis":
            host = re.match(r"rediss?://([^:/]+)", store.get("url", ""))
            if not host:
                problems.append(f"store {label}: url {store.get('url')!r} is not redis://host:port")
            elif "." not in host[1] and not find(docs, "Service", host[1]):
                problems.append(f"store {label}: no Service {host[1]!r} in this overlay")
    if replicas > 1 and default.get("type") != "redis":
        problems.append(f"{replicas} replicas share no store: the default store must be Redis")
    return problems


def check_network_policy(name: str, docs: list[dict]) -> None:
    policies = find(docs, "NetworkPolicy", "hero-registry")
    if len(policies) != 1:
        fail(f"{name}: expected one NetworkPolicy hero-registry")
        return
    spec = policies[0]["spec"]
    problems = []
    if spec.get("podSelector", {}).get("matchLabels", {}).get("app") != "hero-registry":
        problems.append("podSelector does not select app=hero-registry")
    admin_from = [
        rule.get("from") for rule in spec.get("ingress", [])
        if any(p.get("port") in ("admin", 9464) for p in rule.get("ports", []))
    ]
    expected = [[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]]
    if admin_from != expected:
        problems.append(f"the admin port is admitted from {admin_from}, not only the monitoring namespace")
    for rule in spec.get("ingress", []):
        if not rule.get("ports"):
            problems.append("an ingress rule admits every port")
    if problems:
        for problem in problems:
            fail(f"{name}: NetworkPolicy: {problem}")
    else:
        ok(f"{name}: NetworkPolicy admits the admin port only from the monitoring namespace")


def check_monitoring(name: str, docs: list[dict]) -> None:
    before = len(failures)
    _check_monitoring(name, docs)
    if len(failures) == before:
        ok(f"{name}: one monitor on the admin port, rules, dashboard and datasources in place")


def _check_monitoring(name: str, docs: list[dict]) -> None:
    dashboards = [d for d in find(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    datasources = [d for d in find(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_datasource") == "1"]
    if not dashboards or not datasources:
        fail(f"{name}: Grafana dashboard or datasource ConfigMap (sidecar labels) missing")
        return
    for cm in dashboards:
        for key, text in cm["data"].items():
            if json.loads(text) != json.loads(DASHBOARD.read_text()):
                fail(f"{name}: ConfigMap {cm['metadata']['name']}/{key} is not the dashboard file")
    uids = set()
    for cm in datasources:
        for text in cm["data"].values():
            uids |= {d["uid"] for d in yaml.safe_load(text)["datasources"]}
    if not {"hero-prometheus", "hero-loki"} <= uids:
        fail(f"{name}: datasources hero-prometheus and hero-loki not provisioned (found {sorted(uids)})")
    monitors = find(docs, "ServiceMonitor") + find(docs, "PodMonitor")
    if len(monitors) != 1:
        fail(f"{name}: {len(monitors)} ServiceMonitor/PodMonitor: exactly one, or every pod is scraped twice")
    for monitor in monitors:
        spec = monitor["spec"]
        endpoints = spec.get("endpoints") or spec.get("podMetricsEndpoints") or []
        if [e.get("port") for e in endpoints] != ["admin"] or spec.get("podTargetLabels") != ["app"]:
            fail(f"{name}: {monitor['kind']} must scrape port admin with podTargetLabels [app]")
        if spec.get("selector", {}).get("matchLabels", {}).get("app") != "hero-registry":
            fail(f"{name}: {monitor['kind']} does not select app=hero-registry")
        if monitor["kind"] == "ServiceMonitor":
            services = find(docs, "Service", "hero-registry")
            if not services or "admin" not in [p["name"] for p in services[0]["spec"]["ports"]]:
                fail(f"{name}: the Service has no admin port for the ServiceMonitor")
    rules = find(docs, "PrometheusRule")
    if len(rules) != 1 or rules[0]["spec"] != yaml.safe_load(RULES_FILE.read_text()):
        fail(f"{name}: the PrometheusRule is not the rules file {RULES_FILE.relative_to(K8S)}")


def check_logging(name: str, docs: list[dict]) -> None:
    for ds in find(docs, "DaemonSet"):
        sa = ds["spec"]["template"]["spec"].get("serviceAccountName")
        namespace = ds["metadata"].get("namespace")
        bindings = [
            b for b in find(docs, "ClusterRoleBinding")
            if any(s.get("name") == sa and s.get("namespace") == namespace for s in b.get("subjects", []))
        ]
        if not find(docs, "ServiceAccount", sa) or not bindings:
            fail(f"{name}: DaemonSet {ds['metadata']['name']} has no ServiceAccount/ClusterRoleBinding")
            continue
        role = find(docs, "ClusterRole", bindings[0]["roleRef"]["name"])
        rules = role[0]["rules"] if role else []
        if not any("pods" in r.get("resources", []) and {"get", "list", "watch"} <= set(r.get("verbs", []))
                   for r in rules):
            fail(f"{name}: ClusterRole of {ds['metadata']['name']} cannot get, list and watch pods")
        mounts = {
            m["mountPath"] for c in ds["spec"]["template"]["spec"]["containers"] for m in c.get("volumeMounts", [])
        }
        if "/var/log" not in mounts:
            fail(f"{name}: DaemonSet {ds['metadata']['name']} does not mount /var/log")
        if namespace == "hero-registry":
            fail(f"{name}: the log agent is in the restricted registry namespace")
        else:
            ok(f"{name}: DaemonSet {namespace}/{ds['metadata']['name']} with RBAC and /var/log")


def check_policies(renders: dict[str, list[dict]]) -> None:
    section("policy checks (what schemas do not check)")
    for name, docs in renders.items():
        if not find(docs, "Deployment", "hero-registry"):
            continue
        check_registry_pod(name, docs)
        check_network_policy(name, docs)
        report(name, wiring.check_wiring(docs, known_metric))
        if name != "base":
            report(name, wiring.check_namespaces(docs))
        report(name, tracing.check_env(docs))
        if name.startswith(("overlays/", "chart/")):
            check_monitoring(name, docs)
            check_logging(name, docs)
            report(name, tracing.check_links(docs, json.loads(DASHBOARD.read_text())))
    # Labels on Redis must not be app=hero-registry (the Service would
    # route API traffic to it, and Loki would mix its lines in).
    for name, docs in renders.items():
        for doc in docs:
            labels = doc.get("metadata", {}).get("labels", {})
            if doc["metadata"]["name"].endswith(("redis", "fluentd", "fluent-bit", "alloy")) and labels.get("app") == "hero-registry":
                fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} is labelled app=hero-registry")


# ---------------------------------------------------------- PromQL and rules


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in an expression (identifiers followed by { or [ or
    standing alone, not functions, keywords or label names)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", stripped)
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", stripped):
        if match[2]:
            continue  # a function call
        word = match[1]
        if word in {"and", "or", "unless", "bool", "offset", "le", "inf", "nan"} or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def known_metric(name: str) -> bool:
    if name in HOST_METRICS:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in HOST_METRICS:
            return True
    return False


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(panel title, datasource type, expression) for every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["datasource"]["type"], target["expr"]))
    return found


def check_promql_and_rules(have_promtool: bool) -> None:
    section("alert rules, dashboard and scrape config")
    rules = yaml.safe_load(RULES_FILE.read_text())
    promrule = yaml.safe_load(PROMRULE_FILE.read_text())
    if promrule["spec"] != rules:
        fail(f"{PROMRULE_FILE.relative_to(K8S)} spec differs from {RULES_FILE.relative_to(K8S)}")
    else:
        ok("PrometheusRule spec == plain rules file")
    exprs = [(r.get("alert") or r.get("record"), r["expr"]) for g in rules["groups"] for r in g["rules"]]
    alerts = {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    wanted = {"HeroRegistryHighErrorRatio", "HeroRegistryHighLatencyP99", "HeroRegistryGuestTraps",
              "HeroRegistryGuestTimeouts", "HeroRegistryTargetDown", "HeroRegistryLogLinesDropped"}
    if not wanted <= alerts:
        fail(f"alerts missing: {sorted(wanted - alerts)}")
    for passed, message in wiring.check_runbooks(rules, K8S / "README.md"):
        (ok if passed else fail)(message)
    # Dashboard structure.
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        fail("dashboard panel ids are not unique")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for title, kind, expr in dashboard_exprs():
        if kind == "prometheus":
            exprs.append((f"panel {title!r}", expr))
        elif kind != "loki":
            fail(f"panel {title!r}: datasource type {kind}")
        for var in re.findall(r"\$(\w+)", expr):
            if not var.startswith("__") and var not in variables:
                fail(f"panel {title!r}: unknown variable ${var}")
        if kind == "loki" and '{app="hero-registry"' not in expr:
            fail(f"panel {title!r}: Loki query does not select app=hero-registry")
    sections = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    for row in ["Requests per route (RED)", "Wasm runtime", "Key-value store", "Process", "Logs (Loki)"]:
        if row not in sections:
            fail(f"dashboard row {row!r} missing")
    unknown = 0
    for what, expr in exprs:
        for metric in promql_metric_names(expr):
            if not known_metric(metric):
                unknown += 1
                fail(f"{what}: {metric} is not a metric hero-host exports")
        if 'app="hero-registry"' not in expr:
            fail(f"{what}: does not select app=\"hero-registry\" (other apps export the same OTel names)")
    if not unknown:
        ok(f"{len(exprs)} PromQL expressions use only hero-host's metric names")
    if not have_promtool:
        return
    run_tool(["promtool", "check", "rules", str(RULES_FILE)], "promtool check rules (plain file)")
    with tempfile.TemporaryDirectory() as tmp:
        extracted = Path(tmp) / "prometheusrule.rules.yml"
        extracted.write_text(yaml.safe_dump(promrule["spec"]))
        run_tool(["promtool", "check", "rules", str(extracted)], "promtool check rules (PrometheusRule spec)")
    check_scrape_config()


def run_tool(command: list[str], what: str, cwd: Path | None = None) -> bool:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        fail(f"{what}: {(result.stdout + result.stderr).strip()}")
        return False
    ok(what)
    return True


def check_scrape_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", SCRAPE_CONFIG.name],
        capture_output=True, text=True, cwd=SCRAPE_CONFIG.parent,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        ok("promtool check config (kubernetes-pods job)")
        return
    if "kubernetes_sd_configs not found" not in output:
        fail(f"promtool check config: {output}")
        return
    # Debian's Prometheus is built without Kubernetes service discovery, so
    # its promtool refuses kubernetes_sd_configs. Check everything else (the
    # relabelling, the rule file) with file-based discovery in its place;
    # host/tests/all/k8s.rs runs the same job in a real Prometheus.
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    for job in config["scrape_configs"]:
        sd = job.pop("kubernetes_sd_configs", None)
        if sd is not None:
            if sd != [{"role": "pod"}]:
                fail(f"job {job['job_name']}: kubernetes_sd_configs is not [{{role: pod}}]")
            job["file_sd_configs"] = [{"files": ["targets.json"]}]
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "prometheus"
        sub.mkdir()
        shutil.copytree(RULES_FILE.parent, Path(tmp) / "rules")
        (sub / "prometheus.yml").write_text(yaml.safe_dump(config))
        (sub / "targets.json").write_text("[]")
        if run_tool(["promtool", "check", "config", "prometheus.yml"],
                    "promtool check config (kubernetes_sd_configs swapped for file_sd_configs)", cwd=sub):
            print("     note: this promtool has no Kubernetes service discovery (Debian's build); "
                  "the rest of the job was checked")


# ----------------------------------------------------------------- logging


def check_logging_pipelines() -> None:
    section("log pipelines over real hero-host lines (model of Fluentd / Fluent Bit / Alloy)")
    for message in logging_model.run_all(K8S):
        if message.startswith("FAIL "):
            fail(message[5:])
        else:
            ok(message)


# -------------------------------------------------------------------- main


def main() -> int:
    have_promtool = "--no-promtool" not in sys.argv
    have_kubectl = "--no-kubectl" not in sys.argv
    have_validate = "--no-validate" not in sys.argv
    renders = render_all() if have_kubectl else {}
    if renders and "--no-helm" not in sys.argv:
        renders.update(render_chart(renders))
    if renders and have_validate:
        validate_schemas(renders)
    if renders:
        check_policies(renders)
    check_promql_and_rules(have_promtool)
    check_logging_pipelines()
    print()
    if failures:
        print(f"k8s/check: {len(failures)} failed")
        return 1
    print("k8s/check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
