"""How the rendered objects refer to each other, checked: every selector
selects the registry's pods (and a Deployment's selector its own template),
every Service port and Ingress backend leads to a port that exists (the
Ingress never to the admin port), an autoscaler scales a Deployment that
exists with queries on hero-host's own metrics, and every alert names a
runbook that k8s/README.md has.

Each check returns (passed, message) pairs for check.py to report.
"""

from __future__ import annotations

import re
from pathlib import Path

Result = tuple[bool, str]


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def pod_templates(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(Deployment or DaemonSet, its pod template) pairs."""
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def selected(match_labels: dict, docs: list[dict], namespace: str | None) -> list[tuple[dict, dict]]:
    return [
        (workload, template) for workload, template in pod_templates(docs)
        if match_labels
        and workload["metadata"].get("namespace") == namespace
        and match_labels.items() <= template["metadata"].get("labels", {}).items()
    ]


def container_ports(template: dict) -> dict[str, int]:
    spec = template["spec"]
    return {p["name"]: p["containerPort"] for c in spec["containers"] + spec.get("initContainers", [])
            for p in c.get("ports", []) if "name" in p}


def max_replicas(docs: list[dict], deployment: dict) -> int:
    """The most replicas the Deployment can have: its own count, or what an
    autoscaler targeting it may scale it to."""
    name = deployment["metadata"]["name"]
    most = deployment["spec"].get("replicas", 1)
    for scaled in find(docs, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == name:
            most = max(most, scaled["spec"].get("maxReplicaCount", 100))
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            most = max(most, hpa["spec"]["maxReplicas"])
    return most


def check_selectors(docs: list[dict]) -> list[Result]:
    problems = []
    for workload, template in pod_templates(docs):
        labels = template["metadata"].get("labels", {})
        wanted = workload["spec"]["selector"].get("matchLabels", {})
        if not wanted or not wanted.items() <= labels.items():
            problems.append(f"{workload['kind']} {workload['metadata']['name']}: selector {wanted} "
                            f"does not select its own pod template {labels}")
    selectors = [(s, s["spec"].get("selector")) for s in find(docs, "Service")]
    selectors += [(n, n["spec"]["podSelector"].get("matchLabels")) for n in find(docs, "NetworkPolicy")]
    selectors += [(p, p["spec"]["selector"].get("matchLabels")) for p in find(docs, "PodDisruptionBudget")]
    selectors += [(m, m["spec"]["selector"].get("matchLabels"))
                  for m in find(docs, "ServiceMonitor") + find(docs, "PodMonitor")]
    for doc, match_labels in selectors:
        what = f"{doc['kind']} {doc['metadata']['name']}"
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] == "ServiceMonitor":
            services = [s for s in find(docs, "Service") if match_labels
                        and match_labels.items() <= s["metadata"].get("labels", {}).items()]
            if not services:
                problems.append(f"{what}: selector {match_labels} selects no Service's labels")
            continue
        pods = selected(match_labels or {}, docs, namespace)
        if not pods:
            problems.append(f"{what}: selector {match_labels} selects no pods of this render")
            continue
        if doc["kind"] == "Service":
            ports = {}
            for _, template in pods:
                ports.update(container_ports(template))
            for port in doc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if isinstance(target, str) and target not in ports:
                    problems.append(f"{what}: targetPort {target} is no container port of the selected pods")
    if problems:
        return [(False, p) for p in problems]
    return [(True, "every selector selects its pods (Services, NetworkPolicies, PDB, monitors, workloads)")]


def check_ingress(docs: list[dict]) -> list[Result]:
    results = []
    for ingress in find(docs, "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                port = backend["port"].get("name") or backend["port"].get("number")
                services = find(docs, "Service", backend["name"])
                ports = {p.get("name"): p["port"] for p in services[0]["spec"]["ports"]} if services else {}
                if not services or (port not in ports and port not in ports.values()):
                    results.append((False, f"Ingress {ingress['metadata']['name']}: backend "
                                           f"{backend['name']}:{port} is no Service port"))
                elif port in ("admin", ports.get("admin")):
                    results.append((False, f"Ingress {ingress['metadata']['name']}: exposes the admin port"))
                else:
                    results.append((True, f"Ingress {ingress['metadata']['name']}: {rule.get('host', '*')}"
                                          f"{path['path']} -> Service {backend['name']} port {port}"))
    return results


def check_autoscalers(docs: list[dict], known_metric) -> list[Result]:
    results = []
    for scaled in find(docs, "ScaledObject"):
        spec = scaled["spec"]
        what = f"ScaledObject {scaled['metadata']['name']}"
        target = spec["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or not find(docs, "Deployment", target["name"]):
            results.append((False, f"{what}: scales {target}, which this render has no Deployment for"))
            continue
        if find(docs, "Deployment", target["name"])[0]["spec"].get("replicas") is not None:
            results.append((False, f"{what}: the Deployment also sets replicas (every apply resets the scale)"))
        namespace = scaled["metadata"].get("namespace")
        for trigger in spec["triggers"]:
            if trigger["type"] != "prometheus":
                results.append((False, f"{what}: trigger {trigger['type']} is not driven by the host's metrics"))
                continue
            query = trigger["metadata"]["query"]
            names = set(re.findall(r"\b([a-z_:][a-z0-9_:]*)\s*\{", query))
            if not names or not all(known_metric(n) for n in names):
                results.append((False, f"{what}: query {query!r} uses metrics hero-host does not export"))
            elif 'app="hero-registry"' not in query or f'namespace="{namespace}"' not in query:
                results.append((False, f"{what}: query {query!r} does not select app and namespace {namespace}"))
            else:
                results.append((True, f"{what}: {trigger.get('name', 'trigger')} on {sorted(names)[0]}, "
                                      f"threshold {trigger['metadata']['threshold']} per replica"))
    return results


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def check_namespaces(docs: list[dict]) -> list[Result]:
    """Every namespaced object names its namespace: one without would land
    in whatever namespace kubectl's context has."""
    loose = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
             if d["kind"] not in CLUSTER_SCOPED and not d["metadata"].get("namespace")]
    if loose:
        return [(False, f"objects without a namespace: {', '.join(loose)}")]
    return []


def check_wiring(docs: list[dict], known_metric) -> list[Result]:
    return check_selectors(docs) + check_ingress(docs) + check_autoscalers(docs, known_metric)


def markdown_anchors(readme: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to -."""
    anchors = set()
    for line in readme.read_text().splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading[1].strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def check_runbooks(rules: dict, readme: Path) -> list[Result]:
    anchors = markdown_anchors(readme)
    problems = []
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    for rule in alerts:
        url = rule.get("annotations", {}).get("runbook_url", "")
        anchor = url.partition("#")[2]
        if not url.startswith("https://") or not url.partition("#")[0].endswith("/k8s/README.md"):
            problems.append(f"alert {rule['alert']}: runbook_url {url!r} is not a link to k8s/README.md")
        elif anchor not in anchors:
            problems.append(f"alert {rule['alert']}: runbook_url anchor #{anchor} is no heading of k8s/README.md")
    if problems:
        return [(False, p) for p in problems]
    return [(True, f"{len(alerts)} alerts, each with a runbook_url to its runbook in k8s/README.md")]
