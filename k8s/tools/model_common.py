"""What the log pipeline models share: the pod whose lines are shipped, the
file names the kubelet gives its logs, the metadata the agents' Kubernetes
filters add, and record accessors."""

from __future__ import annotations

import re

NAMESPACE = "hero-registry"
POD = "hero-registry-6b9c8d7f5-x2x7q"
POD_UID = "5f0c2c59-8a1e-4c3b-9e7d-2f4a6b8c0d1e"
CONTAINER = "hero-host"
CONTAINER_ID = "0123456789abcdef" * 4
POD_LABELS = {"app": "hero-registry", "pod-template-hash": "6b9c8d7f5"}
# /var/log/containers/<pod>_<namespace>_<container>-<id>.log, a link the
# kubelet makes to /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log.
LOG_FILE = f"/var/log/containers/{POD}_{NAMESPACE}_{CONTAINER}-{CONTAINER_ID}.log"
POD_LOG_FILE = f"/var/log/pods/{NAMESPACE}_{POD}_{POD_UID}/{CONTAINER}/0.log"
OTHER_FILE = f"/var/log/containers/web-1_default_nginx-{'f' * 64}.log"
OTHER_LINE = '10.0.0.1 - - [24/Nov/2026:01:18:46 +0000] "GET / HTTP/1.1" 200 612'

# kubernetes_metadata's default tag_to_kubernetes_name_regexp (fluentd) and
# Fluent Bit's kube-tag regex: pod, namespace and container from the file
# name under /var/log/containers.
KUBE_TAG = re.compile(
    r"^(?P<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r"_(?P<namespace_name>[^_]+)_(?P<container_name>.+)-(?P<docker_id>[a-z0-9]{64})\.log$"
)


def record_accessor(path: str):
    """Fluentd's `$.a.b` and Fluent Bit's `$a['b']['c']` record accessors."""
    if path.startswith("$."):
        keys = path[2:].split(".")
    else:
        match = re.fullmatch(r"\$(\w+)((?:\['[^']+'\])*)", path)
        if not match:
            return None
        keys = [match[1]] + re.findall(r"\['([^']+)'\]", match[2])
    return keys


def get_path(record: dict, keys: list[str]):
    value = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def delete_path(record: dict, keys: list[str]) -> None:
    parent = get_path(record, keys[:-1]) if len(keys) > 1 else record
    if isinstance(parent, dict):
        parent.pop(keys[-1], None)


def kubernetes_metadata(file: str) -> dict:
    """What kubernetes_metadata (Fluentd) and the kubernetes filter (Fluent
    Bit) add: both read pod, namespace and container from the file name."""
    match = KUBE_TAG.search(file.rsplit("/", 1)[-1])
    assert match, f"kubernetes tag regex does not match {file}"
    meta = match.groupdict()
    labels = POD_LABELS if meta["namespace_name"] == NAMESPACE else {"app": "web"}
    return {
        "kubernetes": {
            "namespace_name": meta["namespace_name"],
            "pod_name": meta["pod_name"],
            "container_name": meta["container_name"],
            "pod_id": POD_UID,
            "host": "node-1",
            "labels": dict(labels),
        },
        "docker": {"container_id": meta["docker_id"]},
    }
