"""The Helm chart (k8s/chart) against the kustomize overlays.

Each overlay has a values file, chart/ci/<overlay>.yaml. The chart is
linted (`helm lint --strict`) and rendered (`helm template hero-registry
-n hero-registry`) with each; check.py then holds every render to the checks
of the overlays (schemas, restricted pod security, probes, selectors,
promtool), and this module checks that the render is the overlay's: the same
objects with the same specs, once the differences that are the tools' own
are set aside:

- the labels Helm adds (helm.sh/chart, app.kubernetes.io/managed-by,
  app.kubernetes.io/instance; the last also in selectors, so two releases
  in one namespace stay apart) and the chart's checksum/* pod annotations;
- kustomize's content hashes on generated ConfigMap names (the chart rolls
  pods through the checksum annotations instead);
- the order of lists of named items (env, volumes, ports);
- the registry's Namespace, which Helm does not create for its own release
  (`kubectl create namespace` with the Pod Security label, see README).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}
RELEASE = "hero-registry"
NAMESPACE = "hero-registry"
HASHED = re.compile(r"(.+)-[a-z0-9]{10}")


def values_files(chart: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted((chart / "ci").glob("*.yaml"))}


def helm(args: list[str]) -> subprocess.CompletedProcess:
    """Runs helm; its notes that chart files are symbolic links (the chart
    shares the kustomize layout's files) are dropped from stderr."""
    result = subprocess.run(["helm", *args], capture_output=True, text=True)
    result.stderr = "\n".join(line for line in result.stderr.splitlines() if "found symbolic link" not in line)
    return result


def lint(chart: Path, values: Path) -> str | None:
    result = helm(["lint", "--strict", str(chart), "-f", str(values)])
    if result.returncode != 0:
        return (result.stdout + result.stderr).strip()
    return None


def render(chart: Path, values: Path) -> tuple[list[dict] | None, str]:
    result = helm(["template", RELEASE, str(chart), "-n", NAMESPACE, "-f", str(values)])
    if result.returncode != 0:
        return None, result.stderr.strip()
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc], ""


def strip_tool_fields(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in HELM_LABELS or (isinstance(key, str) and key.startswith("checksum/")):
                continue
            value = strip_tool_fields(value)
            if key in ("labels", "annotations") and value == {}:
                continue
            out[key] = value
        return out
    if isinstance(node, list):
        items = [strip_tool_fields(item) for item in node]
        if items and all(isinstance(item, dict) and "name" in item for item in items):
            items.sort(key=lambda item: str(item["name"]))
        return items
    return node


def rename(node, names: dict[str, str]):
    if isinstance(node, dict):
        return {k: rename(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [rename(item, names) for item in node]
    return names.get(node, node) if isinstance(node, str) else node


def normalize(kustomized: list[dict], charted: list[dict]) -> tuple[dict, dict]:
    chart_configmaps = {d["metadata"]["name"] for d in charted if d["kind"] == "ConfigMap"}
    names = {}
    for doc in kustomized:
        match = HASHED.fullmatch(doc["metadata"]["name"]) if doc["kind"] == "ConfigMap" else None
        if match and match[1] in chart_configmaps:
            names[doc["metadata"]["name"]] = match[1]

    def index(docs):
        out = {}
        for doc in docs:
            if doc["kind"] == "Namespace" and doc["metadata"]["name"] == NAMESPACE:
                continue
            key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            out[key] = doc
        return out

    return index(strip_tool_fields(rename(kustomized, names))), index(strip_tool_fields(charted))


def differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in b:
                found.append(f"{path}.{key} only in the overlay")
            elif key not in a:
                found.append(f"{path}.{key} only in the chart")
            else:
                found += differences(a[key], b[key], f"{path}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: overlay {str(a)[:80]!r}, chart {str(b)[:80]!r}"]


def compare(overlay: str, kustomized: list[dict], charted: list[dict]) -> list[str]:
    """Problems that make the chart's render differ from the overlay's."""
    ours, theirs = normalize(kustomized, charted)
    problems = [f"{kind}/{name} ({namespace}) is in the overlay, not in the chart"
                for kind, namespace, name in sorted(set(ours) - set(theirs), key=str)]
    problems += [f"{kind}/{name} ({namespace}) is in the chart, not in the overlay"
                 for kind, namespace, name in sorted(set(theirs) - set(ours), key=str)]
    for key in sorted(set(ours) & set(theirs), key=str):
        diff = differences(ours[key], theirs[key])
        if diff:
            problems.append(f"{key[0]}/{key[2]}: {'; '.join(diff[:3])}")
    return problems
