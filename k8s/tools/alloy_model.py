"""The Grafana Alloy pipeline of components/logging/alloy/config.alloy, as
the file declares it: discovery.kubernetes (pods of this node), the
discovery.relabel rules (Prometheus relabelling), local.file_match,
loki.source.file (one reader per file and public label set, plus its
`filename` label), the loki.process stages, and loki.write.

The discovered pods are the registry's (two container ports, so two targets
for one container), a plain-text web server's, and Alloy's own; the files
are what the kubelet writes under /var/log/pods in the CRI or docker
json-file format. Entries travel as (labels, line, event time in ns).
"""

from __future__ import annotations

import fnmatch
import json
import re

from alloy_syntax import Block, Ref, parse_alloy
from logtime import TimeParseError, rfc3339nano
from model_common import CONTAINER, CONTAINER_ID, NAMESPACE, POD, POD_LABELS, POD_UID

Entry = tuple[dict, str, int]


def pod_targets(runtime: str) -> list[dict]:
    """discovery.kubernetes role "pod": one target per container port, one
    per container without ports."""
    def target(namespace, pod, uid, labels, container, cid, port=None):
        t = {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_uid": uid,
            "__meta_kubernetes_pod_container_name": container,
            "__meta_kubernetes_pod_container_id": f"{runtime}://{cid}",
            "__meta_kubernetes_pod_container_init": "false",
            "__meta_kubernetes_pod_node_name": "node-1",
            "__address__": "10.1.0.7" + (f":{port}" if port else ""),
        }
        t.update({f"__meta_kubernetes_pod_label_{k.replace('-', '_')}": v for k, v in labels.items()})
        if port:
            t["__meta_kubernetes_pod_container_port_number"] = str(port)
        return t

    return [
        target(NAMESPACE, POD, POD_UID, POD_LABELS, CONTAINER, CONTAINER_ID, 3000),
        target(NAMESPACE, POD, POD_UID, POD_LABELS, CONTAINER, CONTAINER_ID, 9464),
        target("default", "web-1", "7a1b-uid", {"app": "web"}, "nginx", "f" * 64),
        target("logging", "alloy-abcde", "9c2d-uid", {"app": "alloy"}, "alloy", "a" * 64, 12345),
    ]


def expand(replacement: str, match: re.Match) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: match.group(int(m[1]) if m[1].isdigit() else m[1]) or "", replacement)


def relabel(targets: list[dict], rules: list[Block]) -> list[dict]:
    """Prometheus relabelling: replace (default), keep, drop, labeldrop,
    labelkeep; regexes are anchored; missing source labels are empty."""
    out = []
    for target in targets:
        labels = dict(target)
        for rule in rules:
            attrs = rule.attrs
            action = attrs.get("action", "replace")
            regex = re.compile(f"^(?:{attrs.get('regex', '(.*)')})$")
            value = attrs.get("separator", ";").join(labels.get(s, "") for s in attrs.get("source_labels", []))
            if action == "replace":
                match = regex.match(value)
                if match:
                    result = expand(attrs.get("replacement", "$1"), match)
                    if result:
                        labels[attrs["target_label"]] = result
                    else:
                        labels.pop(attrs["target_label"], None)
            elif action in ("keep", "drop"):
                if bool(regex.match(value)) != (action == "keep"):
                    labels = None
                    break
            elif action in ("labeldrop", "labelkeep"):
                labels = {k: v for k, v in labels.items() if bool(regex.match(k)) == (action == "labelkeep")}
            else:
                raise ValueError(f"relabel action {action} not modelled")
        if labels is not None:
            out.append(labels)
    return out


def component(root: Block, ref: Ref, export: str) -> Block:
    for block in root.blocks:
        if f"{block.name}.{block.label}.{export}" == ref.path:
            return block
    raise AssertionError(f"config.alloy: {ref.path} is not an export of any component")


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    body = selector.strip()
    assert body.startswith("{") and body.endswith("}"), f"selector {selector!r}"
    return re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body)


def selects(selector: str, labels: dict) -> bool:
    for name, op, value in parse_selector(selector):
        actual = labels.get(name, "")
        hit = re.fullmatch(value, actual) is not None if "~" in op else actual == value
        if hit != (op in ("=", "=~")):
            return False
    return True


class Stages:
    """loki.process stages over one file's entries (partial CRI lines are
    held per stream until their F line)."""

    CRI = re.compile(r"(?s)^(?P<time>\S+?) (?P<stream>stdout|stderr) (?P<flags>\S+?) (?P<content>.*)$")

    def __init__(self):
        self.partial: dict[str, list[str]] = {}

    def run(self, stages: list[Block], labels: dict, line: str, time: int) -> Entry | None:
        for stage in stages:
            kind = stage.name
            if kind == "stage.match":
                if selects(stage.attrs["selector"], labels):
                    if stage.attrs.get("action", "keep") == "drop":
                        return None
                    result = self.run(stage.blocks, labels, line, time)
                    if result is None:
                        return None
                    labels, line, time = result
            elif kind == "stage.cri":
                match = self.CRI.match(line)
                if match:
                    held = self.partial.setdefault(match["stream"], [])
                    if match["flags"] == "P":
                        held.append(match["content"])
                        return None
                    line = "".join(held) + match["content"]
                    held.clear()
                    labels = {**labels, "stream": match["stream"]}
                    time = rfc3339nano(match["time"])
            elif kind == "stage.docker":
                try:
                    record = json.loads(line)
                    line, labels = record["log"], {**labels, "stream": record["stream"]}
                    time = rfc3339nano(record["time"])
                except (ValueError, KeyError, TimeParseError):
                    pass
            elif kind == "stage.label_keep":
                labels = {k: v for k, v in labels.items() if k in stage.attrs["values"]}
            elif kind == "stage.label_drop":
                labels = {k: v for k, v in labels.items() if k not in stage.attrs["values"]}
            else:
                raise ValueError(f"{kind} not modelled")
        return labels, line, time


def alloy_pipeline(text: str, env: dict[str, str], runtime: str, files: dict[str, list[str]],
                   now_ns: int) -> dict[str, list[Entry]]:
    """What loki.write pushes, per file read."""
    root = parse_alloy(text, env)
    sources = root.find("loki.source.file")
    assert len(sources) == 1, "one loki.source.file expected"
    source = sources[0]
    matcher = component(root, source.attrs["targets"], "targets")
    assert matcher.name == "local.file_match"
    relabeler = component(root, matcher.attrs["path_targets"], "output")
    assert relabeler.name == "discovery.relabel"
    discovery = component(root, relabeler.attrs["targets"], "targets")
    assert discovery.name == "discovery.kubernetes" and discovery.attrs["role"] == "pod"
    selectors = [s.attrs for s in discovery.find("selectors")]
    assert {"role": "pod", "field": f"spec.nodeName={env['NODE_NAME']}"} in selectors, \
        "discovery must keep to this node's pods (one agent per node)"

    targets = relabel(pod_targets(runtime), relabeler.find("rule"))
    readers: dict[tuple[str, str], dict] = {}
    for target in targets:
        for path in sorted(files):
            if fnmatch.fnmatch(path, target.get("__path__", "")):
                public = {k: v for k, v in target.items() if not k.startswith("__")}
                readers.setdefault((path, json.dumps(public, sort_keys=True)), public)

    [process] = [component(root, ref, "receiver") for ref in source.attrs["forward_to"]]
    assert process.name == "loki.process"
    [writer] = [component(root, ref, "receiver") for ref in process.attrs["forward_to"]]
    assert writer.name == "loki.write" and writer.find("endpoint")[0].attrs["url"].endswith("/loki/api/v1/push")
    stage_blocks = [b for b in process.blocks if b.name.startswith("stage.")]
    pushed: dict[str, list[Entry]] = {}
    for (path, _), public in readers.items():
        stages = Stages()
        for raw in files[path]:
            entry = stages.run(stage_blocks, {**public, "filename": path}, raw, now_ns)
            if entry is not None:
                pushed.setdefault(path, []).append(entry)
    return pushed
