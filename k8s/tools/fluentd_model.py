"""The Fluentd pipeline of components/logging/fluentd/fluent.conf, as its
config declares it: tail with multi_format (json, regexp) and each pattern's
time settings, concat of CRI partial lines, kubernetes_metadata, the JSON
parser filter, and the Loki output's labels, remove_keys and line format.

Records travel as (event time in ns, record) pairs, so the time Loki
receives is the one Fluentd's parsers compute (see logtime.py).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re

from logtime import TimeParseError, fluentd_time
from model_common import delete_path, get_path, kubernetes_metadata, record_accessor

Event = tuple[int, dict]


class Directive:
    """One <directive arg> of fluent.conf with its parameters and children."""

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


def parse_with_pattern(pattern: Directive, raw: str, now_ns: int) -> Event | None:
    """One multi_format pattern: (time, record), or None when it does not
    match or its time does not parse (multi_format then tries the next)."""
    kind = pattern.params["format"]
    if kind == "json":
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
    elif kind == "regexp":
        match = ruby_regexp(pattern.params["expression"]).match(raw)
        if not match:
            return None
        record = {k: v for k, v in match.groupdict().items() if v is not None}
    else:
        raise ValueError(f"pattern format {kind} not modelled")
    time_key = pattern.params.get("time_key", "time")
    if time_key not in record:
        return now_ns, record  # estimate_current_event
    value = record[time_key] if pattern.params.get("keep_time_key", "false") == "true" else record.pop(time_key)
    try:
        return fluentd_time(value, pattern.params, kind), record
    except TimeParseError:
        return None


def tail(source: Directive, file: str, raw_lines: list[str], now_ns: int) -> list[Event]:
    paths = [p.strip() for p in source.params["path"].split(",")]
    excludes = json.loads(source.params.get("exclude_path", "[]"))
    if not any(fnmatch.fnmatch(file, p) for p in paths) or any(fnmatch.fnmatch(file, p) for p in excludes):
        return []
    parse = source.find("parse")[0]
    assert parse.params["@type"] == "multi_format"
    events = []
    for raw in raw_lines:
        for pattern in parse.find("pattern"):
            event = parse_with_pattern(pattern, raw, now_ns)
            if event is not None:
                events.append(event)
                break
        else:
            raise AssertionError(f"no tail pattern parses {raw[:80]!r}: in_tail drops the line")
    return events


def concat(child: Directive, events: list[Event]) -> list[Event]:
    key, pkey, pvalue = child.params["key"], child.params["partial_key"], child.params["partial_value"]
    sep = json.loads(child.params.get("separator", '""'))
    out, pending = [], []
    for time, record in events:
        if record.get(pkey) == pvalue:
            pending.append((time, record))
            continue
        if pending:
            first_time, first = pending[0]
            joined = copy.deepcopy(first)
            joined[key] = sep.join([r[key] for _, r in pending] + [record[key]])
            time, record = first_time, joined
            pending = []
        if child.params.get("keep_partial_key", "false") != "true":
            record.pop(pkey, None)
        out.append((time, record))
    assert not pending, "partial records left unjoined"
    return out


def parser_filter(child: Directive, events: list[Event]) -> list[Event]:
    key = child.params["key_name"]
    parse = child.find("parse")[0]
    assert parse.params["@type"] == "json"
    out = []
    for time, record in events:
        try:
            parsed = json.loads(record[key])
            if not isinstance(parsed, dict):
                raise ValueError
        except (ValueError, KeyError):
            assert child.params.get("reserve_data") == "true", "non-JSON lines would be lost"
            out.append((time, record))
            continue
        if child.params.get("reserve_time") != "true":
            time_key = parse.params.get("time_key", "time")
            if time_key in parsed:
                time = fluentd_time(parsed.pop(time_key), parse.params, "json")
        base = dict(record) if child.params.get("reserve_data") == "true" else {}
        if child.params.get("remove_key_name_field") == "true":
            base.pop(key, None)
        base.update(parsed)
        out.append((time, base))
    return out


def apply_filters(container: Directive, file: str, events: list[Event]) -> list[Event]:
    for child in container.children:
        if child.name != "filter":
            continue
        kind = child.params["@type"]
        if kind == "concat":
            events = concat(child, events)
        elif kind == "kubernetes_metadata":
            events = [(t, {**r, **kubernetes_metadata(file)}) for t, r in events]
        elif kind == "parser":
            events = parser_filter(child, events)
        else:
            raise ValueError(f"filter @type {kind} not modelled")
    return events


def fluentd_pipeline(conf: Directive, file: str, raw_lines: list[str], now_ns: int) -> list[tuple[dict, str, int]]:
    """(labels, line, time) as the Loki output would push them."""
    sources = conf.find("source", **{"@type": "tail"})
    assert len(sources) == 1, "one tail source expected"
    events = apply_filters(conf, file, tail(sources[0], file, raw_lines, now_ns))
    # The events are relabelled to @NORMAL (the concat timeout path too).
    relabel = [m for m in conf.find("match") if m.params.get("@type") == "relabel"]
    assert relabel, "no relabel to @NORMAL"
    label = [c for c in conf.children if c.name == "label" and c.arg == relabel[0].params["@label"]][0]
    events = apply_filters(label, file, events)
    match = [m for m in label.find("match") if m.params.get("@type") == "loki"]
    assert len(match) == 1, "one Loki output expected"
    return loki_output(match[0], events)


def loki_output(match: Directive, events: list[Event]) -> list[tuple[dict, str, int]]:
    label_sections = match.find("label")
    assert len(label_sections) == 1
    accessors = {k: record_accessor(v or k) for k, v in label_sections[0].params.items()}
    remove = [k.strip() for k in match.params.get("remove_keys", "").split(",") if k.strip()]
    assert match.params.get("line_format") == "json", "line_format must be json for | json"
    threads = int(match.find("buffer")[0].params.get("flush_thread_count", "1"))
    out = []
    for time, record in events:
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
        # fluent-plugin-grafana-loki sends the event time, in nanoseconds.
        out.append((labels, json.dumps(record), time))
    return out
