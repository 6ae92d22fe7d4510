"""A model of the Fluentd, Fluent Bit and sidecar log pipelines, driven by
their config files, run over real hero-host log lines.

Neither fluentd nor fluent-bit can be installed here (no Debian package,
no PyPI or npm package, no registry for Ruby gems or container images), so
the binaries cannot run. This module reads the settings each pipeline
actually has in k8s/components/logging/ (the tail parser patterns, the
concat, kubernetes_metadata and parser filters, the Loki labels,
remove_keys and line_format) and applies them the way the plugins document
it, to:

- the real hero-host lines in components/logging/testdata/hero-host.log
  (captured from `hero-host up` serving the registry and the chaos guest:
  2xx, 4xx, traps, a timeout, guest JSON output),
- wrapped as the kubelet's runtimes write them: CRI (containerd, CRI-O),
  including a line split into partial P/F records, and docker json-file,
- beside a plain-text line of another container.

It then checks what reaches Loki: the stream labels are exactly namespace,
pod, container, app (never a request id or path), every field of the host's
line is kept in the line, and the seed's LogQL (`| json | level="error"`,
`| json | line_format "{{.message}}"`) finds what it should.

What the model cannot prove: that the plugins behave as documented in the
versions the images ship, and that the images start. Those need a cluster.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from datetime import datetime
from pathlib import Path

import yaml

ALLOWED_LABELS = {"namespace", "pod", "container", "app"}
NAMESPACE = "hero-registry"
POD = "hero-registry-6b9c8d7f5-x2x7q"
CONTAINER = "hero-host"
CONTAINER_ID = "0123456789abcdef" * 4
POD_LABELS = {"app": "hero-registry", "pod-template-hash": "6b9c8d7f5"}
LOG_FILE = f"/var/log/containers/{POD}_{NAMESPACE}_{CONTAINER}-{CONTAINER_ID}.log"
OTHER_FILE = f"/var/log/containers/web-1_default_nginx-{'f' * 64}.log"
OTHER_LINE = '10.0.0.1 - - [24/Nov/2026:01:18:46 +0000] "GET / HTTP/1.1" 200 612'

# kubernetes_metadata's default tag_to_kubernetes_name_regexp (fluentd) and
# Fluent Bit's kube-tag regex: pod, namespace and container from the file
# name under /var/log/containers.
KUBE_TAG = re.compile(
    r"^(?P<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r"_(?P<namespace_name>[^_]+)_(?P<container_name>.+)-(?P<docker_id>[a-z0-9]{64})\.log$"
)


# ------------------------------------------------------------- inputs


def host_lines(k8s: Path) -> list[str]:
    path = k8s / "components/logging/testdata/hero-host.log"
    return [line for line in path.read_text().splitlines() if line]


def timestamp(i: int, cri_offset: bool = False) -> str:
    base = f"2026-11-24T01:18:{i % 60:02d}.{i:09d}"
    return base + ("+00:00" if cri_offset else "Z")


def cri_file(lines: list[str], split_last: int = 0) -> list[str]:
    """CRI log lines; the line at index split_last is split into P, P, F."""
    out = []
    for i, line in enumerate(lines):
        if i == split_last and len(line) > 30:
            third = len(line) // 3
            for tag, chunk in (("P", line[:third]), ("P", line[third:2 * third]), ("F", line[2 * third:])):
                out.append(f"{timestamp(i)} stdout {tag} {chunk}")
        else:
            # CRI-O writes a numeric offset, containerd "Z": both appear.
            out.append(f"{timestamp(i, cri_offset=i % 2 == 1)} stdout F {line}")
    return out


def docker_file(lines: list[str]) -> list[str]:
    return [json.dumps({"log": line + "\n", "stream": "stdout", "time": timestamp(i)}) for i, line in enumerate(lines)]


# ----------------------------------------------------- fluentd config


class Directive:
    def __init__(self, name: str, arg: str = ""):
        self.name, self.arg = name, arg
        self.params: dict[str, str] = {}
        self.children: list[Directive] = []

    def find(self, name: str, **params) -> list["Directive"]:
        return [c for c in self.children if c.name == name and all(c.params.get(k) == v for k, v in params.items())]


def parse_fluentd(text: str) -> Directive:
    root = Directive("root")
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("</"):
            stack.pop()
            continue
        opening = re.fullmatch(r"<(\w+)\s*([^>]*)>", line)
        if opening:
            directive = Directive(opening[1], opening[2].strip())
            stack[-1].children.append(directive)
            stack.append(directive)
            continue
        key, _, value = line.partition(" ")
        stack[-1].params[key] = value.strip()
    if len(stack) != 1:
        raise ValueError("unbalanced <directive> in fluent.conf")
    return root


def ruby_regexp(expression: str) -> re.Pattern:
    body = expression.strip()
    if not (body.startswith("/") and body.endswith("/")):
        raise ValueError(f"regexp expression {expression!r} is not /.../")
    return re.compile(body[1:-1].replace("(?<", "(?P<"))


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
    # Fluentd matches the tag (var.log.containers.<file>), Fluent Bit the tag
    # less Kube_Tag_Prefix: both come down to the file name.
    match = KUBE_TAG.search(file.rsplit("/", 1)[-1])
    assert match, f"kubernetes tag regex does not match {file}"
    meta = match.groupdict()
    labels = POD_LABELS if meta["namespace_name"] == NAMESPACE else {"app": "web"}
    return {
        "kubernetes": {
            "namespace_name": meta["namespace_name"],
            "pod_name": meta["pod_name"],
            "container_name": meta["container_name"],
            "pod_id": "5f0c-uid",
            "host": "node-1",
            "labels": dict(labels),
        },
        "docker": {"container_id": meta["docker_id"]},
    }


def fluentd_pipeline(conf: Directive, file: str, raw_lines: list[str]) -> list[tuple[dict, str]]:
    """(labels, line) pairs as the Loki output would push them."""
    sources = conf.find("source", **{"@type": "tail"})
    assert len(sources) == 1, "one tail source expected"
    source = sources[0]
    paths = [p.strip() for p in source.params["path"].split(",")]
    excludes = json.loads(source.params.get("exclude_path", "[]"))
    if not any(fnmatch.fnmatch(file, p) for p in paths) or any(fnmatch.fnmatch(file, p) for p in excludes):
        return []
    parse = source.find("parse")[0]
    assert parse.params["@type"] == "multi_format"
    patterns = parse.find("pattern")

    records = []
    for raw in raw_lines:
        for pattern in patterns:
            if pattern.params["format"] == "json":
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
            elif pattern.params["format"] == "regexp":
                match = ruby_regexp(pattern.params["expression"]).match(raw)
                if not match:
                    continue
                record = {k: v for k, v in match.groupdict().items() if v is not None}
            else:
                raise ValueError(f"pattern format {pattern.params['format']}")
            time_key = pattern.params.get("time_key", "time")
            if time_key in record and pattern.params.get("keep_time_key", "false") != "true":
                record.pop(time_key)
            records.append(record)
            break
        else:
            raise AssertionError(f"no tail pattern parses {raw[:80]!r}")

    def apply_filters(container: Directive, records: list[dict]) -> list[dict]:
        for child in container.children:
            if child.name != "filter":
                continue
            kind = child.params["@type"]
            if kind == "concat":
                key, pkey, pvalue = child.params["key"], child.params["partial_key"], child.params["partial_value"]
                sep = json.loads(child.params.get("separator", '""'))
                out, pending = [], []
                for record in records:
                    if record.get(pkey) == pvalue:
                        pending.append(record)
                        continue
                    if pending:
                        joined = copy.deepcopy(pending[0])
                        joined[key] = sep.join([r[key] for r in pending] + [record[key]])
                        record = joined
                        pending = []
                    if child.params.get("keep_partial_key", "false") != "true":
                        record.pop(pkey, None)
                    out.append(record)
                assert not pending, "partial records left unjoined"
                records = out
            elif kind == "kubernetes_metadata":
                records = [{**r, **kubernetes_metadata(file)} for r in records]
            elif kind == "parser":
                key = child.params["key_name"]
                assert child.find("parse")[0].params["@type"] == "json"
                out = []
                for record in records:
                    try:
                        parsed = json.loads(record[key])
                        if not isinstance(parsed, dict):
                            raise ValueError
                    except (ValueError, KeyError):
                        assert child.params.get("reserve_data") == "true", "non-JSON lines would be lost"
                        out.append(record)
                        continue
                    base = dict(record) if child.params.get("reserve_data") == "true" else {}
                    if child.params.get("remove_key_name_field") == "true":
                        base.pop(key, None)
                    base.update(parsed)
                    out.append(base)
                records = out
            else:
                raise ValueError(f"filter @type {kind} not modelled")
        return records

    records = apply_filters(conf, records)
    # The events are relabelled to @NORMAL (the concat timeout path too).
    relabel = [m for m in conf.find("match") if m.params.get("@type") == "relabel"]
    assert relabel, "no relabel to @NORMAL"
    label = [c for c in conf.children if c.name == "label" and c.arg == relabel[0].params["@label"]][0]
    records = apply_filters(label, records)
    match = [m for m in label.find("match") if m.params.get("@type") == "loki"]
    assert len(match) == 1, "one Loki output expected"
    return loki_fluentd(match[0], records)


def loki_fluentd(match: Directive, records: list[dict]) -> list[tuple[dict, str]]:
    label_sections = match.find("label")
    assert len(label_sections) == 1
    accessors = {k: record_accessor(v or k) for k, v in label_sections[0].params.items()}
    remove = [k.strip() for k in match.params.get("remove_keys", "").split(",") if k.strip()]
    assert match.params.get("line_format") == "json", "line_format must be json for | json"
    threads = int(match.find("buffer")[0].params.get("flush_thread_count", "1"))
    out = []
    for record in records:
        record = copy.deepcopy(record)
        labels = {}
        for name, keys in accessors.items():
            value = get_path(record, keys)
            if isinstance(value, str):
                labels[re.sub(r"[.\-/]", "_", name)] = value
            delete_path(record, keys)
        if threads > 1 and match.params.get("include_thread_label", "true") == "true":
            labels["fluentd_thread"] = "flush_thread_0"
        for key in remove:
            keys = record_accessor(key) if key.startswith("$") else [key]
            delete_path(record, keys)
        out.append((labels, json.dumps(record)))
    return out


# -------------------------------------------------- fluent bit config


def parse_fluent_bit(text: str) -> list[tuple[str, dict[str, str]]]:
    sections = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            sections.append((header[1].upper(), {}))
            continue
        key, _, value = line.partition(" ")
        sections[-1][1][key.lower()] = value.strip()
    return sections


def expand_env(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], value)


def fluent_bit_labels(spec: str, env: dict[str, str]) -> list[tuple[str, object]]:
    labels = []
    for item in spec.split(","):
        name, _, value = item.strip().partition("=")
        value = expand_env(value, env)
        if value.startswith("$"):
            labels.append((name, record_accessor(value)))
        else:
            labels.append((name, value))
    return labels


def fluent_bit_pipeline(sections, file: str, raw_lines: list[str], env: dict[str, str],
                        parsers: list[tuple[str, dict]] | None = None) -> list[tuple[dict, str]]:
    inputs = [s for n, s in sections if n == "INPUT"]
    assert len(inputs) == 1 and inputs[0]["name"] == "tail"
    tail = inputs[0]
    paths = [p.strip() for p in tail["path"].split(",")]
    excludes = [p.strip() for p in tail.get("exclude_path", "").split(",") if p.strip()]
    if not any(fnmatch.fnmatch(file, p) for p in paths) or any(fnmatch.fnmatch(file, p) for p in excludes):
        return []
    records = []
    if "multiline.parser" in tail:
        multiline = {p.strip() for p in tail["multiline.parser"].split(",")}
        assert {"cri", "docker"} <= multiline, "both runtime formats must be read"
        pending = []
        for raw in raw_lines:
            # The built-in parsers: docker's JSON first, then CRI's regex.
            try:
                record = json.loads(raw)
                assert isinstance(record, dict) and "log" in record
                record.pop("time", None)
                records.append(record)
                continue
            except ValueError:
                pass
            match = re.match(r"^(?P<time>.+?) (?P<stream>stdout|stderr) (?P<_p>F|P) (?P<log>.*)$", raw)
            assert match, f"CRI parser does not match {raw[:80]!r}"
            if match["_p"] == "P":
                pending.append(match["log"])
                continue
            records.append({"stream": match["stream"], "_p": "F", "log": "".join(pending) + match["log"]})
            pending = []
        assert not pending
        tag = tail["tag"].replace("*", file.lstrip("/").replace("/", "."))
    else:
        parser_name = tail["parser"]
        parser = [s for n, s in (parsers or []) if n == "PARSER" and s["name"] == parser_name][0]
        assert parser["format"] == "json"
        fmt = parser["time_format"].replace("%L", "%f")
        for raw in raw_lines:
            record = json.loads(raw)
            datetime.strptime(record[parser["time_key"]], fmt)  # the event time parses
            if parser.get("time_keep", "Off").lower() != "on":
                record.pop(parser["time_key"])
            records.append(record)
        tag = tail["tag"]

    for name, spec in sections:
        if name != "FILTER" or not fnmatch.fnmatch(tag, spec["match"]):
            continue
        assert spec["name"] == "kubernetes", f"filter {spec['name']} not modelled"
        prefix = spec.get("kube_tag_prefix", "kube.var.log.containers.")
        assert tag.startswith(prefix), f"tag {tag} does not start with Kube_Tag_Prefix {prefix}"
        merged = []
        for record in records:
            record = {**record, **kubernetes_metadata(file)}
            if spec.get("labels", "On").lower() != "on":
                record["kubernetes"].pop("labels")
            record.pop("docker")
            if spec.get("merge_log", "Off").lower() == "on":
                try:
                    parsed = json.loads(record["log"].rstrip("\n"))
                    if isinstance(parsed, dict):
                        if spec.get("keep_log", "On").lower() == "off":
                            record.pop("log")
                        record.update(parsed)
                except ValueError:
                    pass
            merged.append(record)
        records = merged

    outputs = [s for n, s in sections if n == "OUTPUT" and fnmatch.fnmatch(tag, s["match"])]
    assert len(outputs) == 1 and outputs[0]["name"] == "loki"
    out = outputs[0]
    assert out.get("line_format", "json").lower() == "json"
    assert out.get("auto_kubernetes_labels", "off").lower() == "off", "auto labels would add every pod label"
    labels_spec = fluent_bit_labels(out.get("labels", "job=fluent-bit"), env)
    remove = [k.strip() for k in out.get("remove_keys", "").split(",") if k.strip()]
    pushed = []
    for record in records:
        record = copy.deepcopy(record)
        labels = {}
        for name, value in labels_spec:
            value = get_path(record, value) if isinstance(value, list) else value
            if isinstance(value, str):
                labels[name] = value
        for key in remove:
            delete_path(record, record_accessor(key) if key.startswith("$") else [key])
        pushed.append((labels, json.dumps(record)))
    return pushed


# ------------------------------------------------------------- checks


def check_pushed(what: str, pushed: list[tuple[dict, str]], originals: list[str]) -> list[str]:
    """FAIL/ok messages for what a pipeline would push for the host's lines."""
    problems = []
    if len(pushed) != len(originals):
        problems.append(f"{len(pushed)} lines reach Loki for {len(originals)} written")
    unbounded = set()
    for original in originals:
        data = json.loads(original)
        for key in ("request_id", "trace_id", "span_id", "path", "client_addr"):
            if key in data:
                unbounded.add(str(data[key]))
    for (labels, line), original in zip(pushed, originals):
        if set(labels) != ALLOWED_LABELS:
            problems.append(f"labels {sorted(labels)} are not exactly {sorted(ALLOWED_LABELS)}")
            break
        if labels != {"namespace": NAMESPACE, "pod": POD, "container": CONTAINER, "app": "hero-registry"}:
            problems.append(f"label values {labels} are not the pod's")
            break
        if set(labels.values()) & unbounded:
            problems.append(f"a request value became a label: {labels}")
            break
        pushed_fields = json.loads(line)
        want = json.loads(original)
        lost = {k for k, v in want.items() if pushed_fields.get(k) != v}
        if lost:
            problems.append(f"fields lost or changed in the line: {sorted(lost)}")
            break
    # The seed's LogQL over the pushed lines: {app="hero-registry"} | json | ...
    selected = [json.loads(line) for labels, line in pushed if labels.get("app") == "hero-registry"]
    errors = [l for l in selected if l.get("level") == "error"]
    expected_errors = [l for l in map(json.loads, originals) if l["level"] == "error"]
    if len(errors) != len(expected_errors) or not errors:
        problems.append(f'| json | level="error" finds {len(errors)} lines, expected {len(expected_errors)}')
    if any("message" not in l for l in selected):
        problems.append('| json | line_format "{{.message}}" finds a line without message')
    invocations = [l for l in selected if l.get("target") == "hero_host::request"]
    fields = {"request_id", "trace_id", "span_id", "component", "route", "method", "path", "status",
              "duration_ms", "request_bytes", "response_bytes", "client_addr", "user_agent", "instance_reused"}
    if not invocations or any(fields - set(l) for l in invocations):
        problems.append("invocation lines lack request fields")
    if problems:
        return [f"FAIL {what}: {p}" for p in problems]
    return [f"{what}: {len(pushed)} lines, labels exactly {{namespace, pod, container, app}}, "
            f"request fields kept, | json | level=\"error\" finds {len(errors)}"]


def run_all(k8s: Path) -> list[str]:
    messages = []
    lines = host_lines(k8s)
    logging = k8s / "components/logging"

    fluentd = parse_fluentd((logging / "fluentd/fluent.conf").read_text())
    for fmt, raw in (("CRI with a split line", cri_file(lines)), ("docker json-file", docker_file(lines))):
        pushed = fluentd_pipeline(fluentd, LOG_FILE, raw)
        messages += check_pushed(f"Fluentd, {fmt}", pushed, lines)
        other = fluentd_pipeline(fluentd, OTHER_FILE, cri_file([OTHER_LINE], split_last=-1))
        if len(other) != 1 or json.loads(other[0][1]).get("log") != OTHER_LINE or set(other[0][0]) - ALLOWED_LABELS:
            messages.append(f"FAIL Fluentd, {fmt}: a plain-text line of another container is not kept as is: {other}")
    own = "/var/log/containers/fluentd-abcde_logging_fluentd-" + "a" * 64 + ".log"
    if fluentd_pipeline(fluentd, own, cri_file(lines[:1])):
        messages.append("FAIL Fluentd ships its own log lines (exclude_path)")

    bit = parse_fluent_bit((logging / "fluent-bit/fluent-bit.conf").read_text())
    env = {"LOKI_HOST": "loki", "LOKI_PORT": "80"}
    for fmt, raw in (("CRI with a split line", cri_file(lines)), ("docker json-file", docker_file(lines))):
        pushed = fluent_bit_pipeline(bit, LOG_FILE, raw, env)
        messages += check_pushed(f"Fluent Bit, {fmt}", pushed, lines)
        other = fluent_bit_pipeline(bit, OTHER_FILE, cri_file([OTHER_LINE], split_last=-1), env)
        if len(other) != 1 or json.loads(other[0][1]).get("log") != OTHER_LINE:
            messages.append(f"FAIL Fluent Bit, {fmt}: a plain-text line of another container is not kept: {other}")
    own = "/var/log/containers/fluent-bit-abcde_logging_fluent-bit-" + "a" * 64 + ".log"
    if fluent_bit_pipeline(bit, own, cri_file(lines[:1]), env):
        messages.append("FAIL Fluent Bit ships its own log lines (Exclude_Path)")

    sidecar_dir = logging / "fluent-bit-sidecar"
    sidecar = parse_fluent_bit((sidecar_dir / "fluent-bit.conf").read_text())
    parsers = parse_fluent_bit((sidecar_dir / "parsers.conf").read_text())
    patch = yaml.safe_load((sidecar_dir / "deployment-patch.yaml").read_text())
    agent = patch["spec"]["template"]["spec"]["initContainers"][0]
    declared = {e["name"]: e for e in agent["env"]}
    env = {}
    for name, entry in declared.items():
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[name] = {"metadata.name": POD, "metadata.namespace": NAMESPACE,
                     "metadata.labels['app']": POD_LABELS["app"]}.get(field, entry.get("value", ""))
    missing = set(re.findall(r"\$\{(\w+)\}", (sidecar_dir / "fluent-bit.conf").read_text())) - set(env)
    if missing:
        messages.append(f"FAIL sidecar: fluent-bit.conf uses ${{{', '.join(sorted(missing))}}} the container does not set")
    else:
        host = patch["spec"]["template"]["spec"]["containers"][0]
        log_file = {e["name"]: e.get("value") for e in host["env"]}["HERO_LOG_FILE"]
        pushed = fluent_bit_pipeline(sidecar, log_file, lines, env, parsers)
        messages += check_pushed("Fluent Bit sidecar, teed file", pushed, lines)
    return messages


if __name__ == "__main__":
    for message in run_all(Path(__file__).resolve().parent.parent):
        print(message)

