"""The Fluent Bit pipelines of components/logging/fluent-bit (node agent)
and components/logging/fluent-bit-sidecar, as their configs declare them:
tail with the built-in `cri` and `docker` multiline parsers (or a named
parser), the kubernetes filter with Merge_Log, and the Loki output's labels,
Remove_Keys and line format.

Records travel as (event time in ns, record) pairs. The built-in parsers'
definitions (src/multiline/flb_ml_parser_{cri,docker}.c) are below: time
key `time`, kept in the record, read with their time formats.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re

from logtime import TimeParseError, fluent_bit_time
from model_common import delete_path, get_path, kubernetes_metadata, record_accessor

Event = tuple[int, dict]

CRI_REGEX = re.compile(r"^(?P<time>.+?) (?P<stream>stdout|stderr) (?P<_p>F|P) (?P<log>.*)$")
CRI_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%L%z"
DOCKER_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%L"


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


def event_time(value, time_format: str, now_ns: int) -> int:
    """A time the parser cannot read leaves the record with the time it was
    read (non-strict parsers log a debug line and go on)."""
    try:
        return fluent_bit_time(value, time_format)
    except TimeParseError:
        return now_ns


def read_runtime_formats(tail: dict, raw_lines: list[str], now_ns: int) -> list[Event]:
    """`multiline.parser cri, docker`: docker's JSON first, then CRI's regex;
    CRI partial lines (P ... F) joined, with the first part's time."""
    multiline = {p.strip() for p in tail["multiline.parser"].split(",")}
    assert {"cri", "docker"} <= multiline, "both runtime formats must be read"
    events, pending = [], []
    for raw in raw_lines:
        try:
            record = json.loads(raw)
            assert isinstance(record, dict) and "log" in record
            events.append((event_time(record["time"], DOCKER_TIME_FORMAT, now_ns), record))
            continue
        except ValueError:
            pass
        match = CRI_REGEX.match(raw)
        assert match, f"CRI parser does not match {raw[:80]!r}"
        pending.append(match)
        if match["_p"] == "P":
            continue
        first = pending[0]
        record = {"time": first["time"], "stream": match["stream"], "_p": "F",
                  "log": "".join(m["log"] for m in pending)}
        events.append((event_time(first["time"], CRI_TIME_FORMAT, now_ns), record))
        pending = []
    assert not pending
    return events


def read_with_parser(tail: dict, parsers, raw_lines: list[str], now_ns: int) -> list[Event]:
    parser = [s for n, s in (parsers or []) if n == "PARSER" and s["name"] == tail["parser"]][0]
    assert parser["format"] == "json"
    events = []
    for raw in raw_lines:
        record = json.loads(raw)
        time = event_time(record.get(parser["time_key"], ""), parser["time_format"], now_ns)
        if parser.get("time_keep", "Off").lower() != "on":
            record.pop(parser["time_key"])
        events.append((time, record))
    return events


def kubernetes_filter(spec: dict, file: str, events: list[Event]) -> list[Event]:
    merged = []
    for time, record in events:
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
        merged.append((time, record))
    return merged


def fluent_bit_pipeline(sections, file: str, raw_lines: list[str], env: dict[str, str], now_ns: int,
                        parsers: list[tuple[str, dict]] | None = None) -> list[tuple[dict, str, int]]:
    """(labels, line, time) as the Loki output would push them."""
    inputs = [s for n, s in sections if n == "INPUT"]
    assert len(inputs) == 1 and inputs[0]["name"] == "tail"
    tail = inputs[0]
    paths = [p.strip() for p in tail["path"].split(",")]
    excludes = [p.strip() for p in tail.get("exclude_path", "").split(",") if p.strip()]
    if not any(fnmatch.fnmatch(file, p) for p in paths) or any(fnmatch.fnmatch(file, p) for p in excludes):
        return []
    if "multiline.parser" in tail:
        events = read_runtime_formats(tail, raw_lines, now_ns)
        tag = tail["tag"].replace("*", file.lstrip("/").replace("/", "."))
    else:
        events = read_with_parser(tail, parsers, raw_lines, now_ns)
        tag = tail["tag"]

    for name, spec in sections:
        if name != "FILTER" or not fnmatch.fnmatch(tag, spec["match"]):
            continue
        assert spec["name"] == "kubernetes", f"filter {spec['name']} not modelled"
        prefix = spec.get("kube_tag_prefix", "kube.var.log.containers.")
        assert tag.startswith(prefix), f"tag {tag} does not start with Kube_Tag_Prefix {prefix}"
        events = kubernetes_filter(spec, file, events)

    outputs = [s for n, s in sections if n == "OUTPUT" and fnmatch.fnmatch(tag, s["match"])]
    assert len(outputs) == 1 and outputs[0]["name"] == "loki"
    out = outputs[0]
    assert out.get("line_format", "json").lower() == "json"
    assert out.get("auto_kubernetes_labels", "off").lower() == "off", "auto labels would add every pod label"
    labels_spec = fluent_bit_labels(out.get("labels", "job=fluent-bit"), env)
    remove = [k.strip() for k in out.get("remove_keys", "").split(",") if k.strip()]
    pushed = []
    for time, record in events:
        record = copy.deepcopy(record)
        labels = {}
        for name, value in labels_spec:
            value = get_path(record, value) if isinstance(value, list) else value
            if isinstance(value, str):
                labels[name] = value
        for key in remove:
            delete_path(record, record_accessor(key) if key.startswith("$") else [key])
        pushed.append((labels, json.dumps(record), time))
    return pushed
