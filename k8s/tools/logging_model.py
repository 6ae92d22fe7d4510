"""A model of the Fluentd, Fluent Bit, sidecar and Grafana Alloy log
pipelines, driven by their config files, run over real hero-host log lines.

Neither fluentd, fluent-bit nor alloy can be installed here (no Debian
package, no PyPI or npm package, no registry for Ruby gems or container
images), so the binaries cannot run. fluentd_model.py, fluent_bit_model.py
and alloy_model.py read the settings each pipeline actually has in
k8s/components/logging/ (the tail parsers and their time settings, the
filters or stages, the Loki labels, removed keys and line format) and apply
them the way the plugins' code does, to:

- the real hero-host lines in components/logging/testdata/hero-host.log
  (captured from `hero-host up` serving the registry and the chaos guest:
  2xx, 4xx, traps, a timeout, guest JSON output),
- wrapped as the kubelet's runtimes write them: CRI (containerd, CRI-O),
  including a line split into partial P/F records, and docker json-file,
- beside a plain-text line of another container.

It then checks what reaches Loki: the stream labels are exactly namespace,
pod, container, app (never a request id or path), every field of the host's
line is kept in the line, the seed's LogQL (`| json | level="error"`,
`| json | line_format "{{.message}}"`) finds what it should, and each line's
event time, computed as the agent computes it from the runtime's timestamp
(logtime.py), is the time the line was written and inside the window Loki
accepts (components/logging/loki-values.yaml: reject_old_samples_max_age,
creation_grace_period).

What the model cannot prove: that the plugins behave as documented in the
versions the images ship, and that the images start. Those need a cluster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import logtime
from alloy_model import alloy_pipeline
from fluent_bit_model import parse_fluent_bit, fluent_bit_pipeline
from fluentd_model import fluentd_pipeline, parse_fluentd
from logtime import NS, LokiWindow
from model_common import CONTAINER, LOG_FILE, NAMESPACE, OTHER_FILE, OTHER_LINE, POD, POD_LABELS, POD_LOG_FILE

ALLOWED_LABELS = {"namespace", "pod", "container", "app"}


# ------------------------------------------------------------- inputs


def host_lines(k8s: Path) -> list[str]:
    path = k8s / "components/logging/testdata/hero-host.log"
    return [line for line in path.read_text().splitlines() if line]


# When the runtime wrote line i: the first host line's own time, then steps
# whose fractions end in zeros or not (Go trims them: `.5Z`, `.00125Z`).
FIRST_WRITE_NS = logtime.rfc3339nano("2026-11-24T01:18:44.546988Z") + 61_000
STEPS_NS = (500_000_000, 1_250_000, 123_456_789)
# How long after the write the agent reads a line and Loki receives it.
READ_DELAY_NS = 2 * NS
# CRI-O writes the node's local time with its offset: a node in UTC+9.
CRIO_OFFSET_S = 9 * 3600


def written_at(i: int) -> int:
    return FIRST_WRITE_NS + sum(STEPS_NS[k % len(STEPS_NS)] for k in range(i))


def cri_file(lines: list[str], split_last: int = 0) -> list[str]:
    """CRI log lines; the line at index split_last is split into P, P, F.
    containerd writes UTC (`Z`), CRI-O the node's offset: both appear."""
    out = []
    for i, line in enumerate(lines):
        stamp = logtime.go_rfc3339nano(written_at(i), CRIO_OFFSET_S if i % 2 else 0)
        if i == split_last and len(line) > 30:
            third = len(line) // 3
            for tag, chunk in (("P", line[:third]), ("P", line[third:2 * third]), ("F", line[2 * third:])):
                out.append(f"{stamp} stdout {tag} {chunk}")
        else:
            out.append(f"{stamp} stdout F {line}")
    return out


def docker_file(lines: list[str]) -> list[str]:
    """docker json-file lines: Go's RFC 3339 with nanoseconds, UTC."""
    return [
        json.dumps({"log": line + "\n", "stream": "stdout", "time": logtime.go_rfc3339nano(written_at(i))})
        for i, line in enumerate(lines)
    ]


# ------------------------------------------------------------- checks

POD_STREAM = {"namespace": NAMESPACE, "pod": POD, "container": CONTAINER, "app": "hero-registry"}
REQUEST_FIELDS = {"request_id", "trace_id", "span_id", "component", "route", "method", "path", "status",
                  "duration_ms", "request_bytes", "response_bytes", "client_addr", "user_agent", "instance_reused"}


def check_times(pushed: list[tuple[dict, str, int]], written: list[int], window: LokiWindow) -> list[str]:
    """Each line's event time is when it was written (to the microsecond:
    Fluent Bit keeps times as doubles) and Loki accepts it on arrival."""
    refused, moved = [], []
    for (_, _, event), wrote in zip(pushed, written):
        reason = window.refusal(event, wrote + READ_DELAY_NS)
        if reason:
            refused.append(f"event time {logtime.iso(event)} for a line written {logtime.iso(wrote)} is {reason}")
        elif abs(event - wrote) > 1000:
            moved.append(f"event time {logtime.iso(event)} for a line written {logtime.iso(wrote)}")
    problems = []
    if refused:
        problems.append(f"Loki refuses {len(refused)} of {len(pushed)} lines: {refused[0]}")
    if moved:
        problems.append(f"{len(moved)} of {len(pushed)} lines are filed at the wrong time: {moved[0]}")
    return problems


def check_lines(pushed: list[tuple[dict, str, int]], originals: list[str]) -> list[str]:
    unbounded = set()
    for original in originals:
        data = json.loads(original)
        unbounded |= {str(data[k]) for k in ("request_id", "trace_id", "span_id", "path", "client_addr") if k in data}
    for (labels, line, _), original in zip(pushed, originals):
        if set(labels) != ALLOWED_LABELS:
            return [f"labels {sorted(labels)} are not exactly {sorted(ALLOWED_LABELS)}"]
        if labels != POD_STREAM:
            return [f"label values {labels} are not the pod's"]
        if set(labels.values()) & unbounded:
            return [f"a request value became a label: {labels}"]
        pushed_fields, want = json.loads(line), json.loads(original)
        lost = {k for k, v in want.items() if pushed_fields.get(k) != v}
        if lost:
            return [f"fields lost or changed in the line: {sorted(lost)}"]
    return []


def check_pushed(what: str, pushed: list[tuple[dict, str, int]], originals: list[str], written: list[int],
                 window: LokiWindow) -> list[str]:
    """FAIL/ok messages for what a pipeline would push for the host's lines."""
    problems = []
    if len(pushed) != len(originals):
        problems.append(f"{len(pushed)} lines reach Loki for {len(originals)} written")
    problems += check_lines(pushed, originals)
    problems += check_times(pushed, written, window)
    # The seed's LogQL over the pushed lines: {app="hero-registry"} | json | ...
    selected = [json.loads(line) for labels, line, _ in pushed if labels.get("app") == "hero-registry"]
    errors = [entry for entry in selected if entry.get("level") == "error"]
    expected_errors = [entry for entry in map(json.loads, originals) if entry["level"] == "error"]
    if len(errors) != len(expected_errors) or not errors:
        problems.append(f'| json | level="error" finds {len(errors)} lines, expected {len(expected_errors)}')
    if any("message" not in entry for entry in selected):
        problems.append('| json | line_format "{{.message}}" finds a line without message')
    invocations = [entry for entry in selected if entry.get("target") == "hero_host::request"]
    if not invocations or any(REQUEST_FIELDS - set(entry) for entry in invocations):
        problems.append("invocation lines lack request fields")
    if problems:
        return [f"FAIL {what}: {p}" for p in problems]
    return [f"{what}: {len(pushed)} lines, labels exactly {{namespace, pod, container, app}}, "
            f"request fields kept, | json | level=\"error\" finds {len(errors)}, "
            f"event times as written and inside Loki's window ({window.max_age} old, {window.grace} ahead)"]


def check_other(what: str, other: list[tuple[dict, str, int]]) -> list[str]:
    if len(other) != 1 or set(other[0][0]) - ALLOWED_LABELS:
        return [f"FAIL {what}: a plain-text line of another container is not kept as is: {other}"]
    line = other[0][1]
    try:
        text = json.loads(line).get("log", "") if line.startswith("{") else line
    except ValueError:
        text = line
    if text.rstrip("\n") != OTHER_LINE:
        return [f"FAIL {what}: a plain-text line of another container is not kept as is: {other}"]
    return []


# ------------------------------------------------------------ pipelines

RUNTIME_FORMATS = (("CRI with a split line", cri_file, "containerd"), ("docker json-file", docker_file, "docker"))


def run_fluentd(conf_text: str, lines: list[str], window: LokiWindow) -> list[str]:
    messages = []
    fluentd = parse_fluentd(conf_text)
    written = [written_at(i) for i in range(len(lines))]
    now = written[-1] + READ_DELAY_NS
    for fmt, wrap, _ in RUNTIME_FORMATS:
        pushed = fluentd_pipeline(fluentd, LOG_FILE, wrap(lines), now)
        messages += check_pushed(f"Fluentd, {fmt}", pushed, lines, written, window)
        messages += check_other(f"Fluentd, {fmt}", fluentd_pipeline(fluentd, OTHER_FILE, wrap([OTHER_LINE]), now))
    own = "/var/log/containers/fluentd-abcde_logging_fluentd-" + "a" * 64 + ".log"
    if fluentd_pipeline(fluentd, own, cri_file(lines[:1]), now):
        messages.append("FAIL Fluentd ships its own log lines (exclude_path)")
    return messages


def run_fluent_bit(conf_text: str, lines: list[str], window: LokiWindow) -> list[str]:
    messages = []
    bit = parse_fluent_bit(conf_text)
    env = {"LOKI_HOST": "loki", "LOKI_PORT": "80"}
    written = [written_at(i) for i in range(len(lines))]
    now = written[-1] + READ_DELAY_NS
    for fmt, wrap, _ in RUNTIME_FORMATS:
        pushed = fluent_bit_pipeline(bit, LOG_FILE, wrap(lines), env, now)
        messages += check_pushed(f"Fluent Bit, {fmt}", pushed, lines, written, window)
        other = fluent_bit_pipeline(bit, OTHER_FILE, wrap([OTHER_LINE]), env, now)
        messages += check_other(f"Fluent Bit, {fmt}", other)
    own = "/var/log/containers/fluent-bit-abcde_logging_fluent-bit-" + "a" * 64 + ".log"
    if fluent_bit_pipeline(bit, own, cri_file(lines[:1]), env, now):
        messages.append("FAIL Fluent Bit ships its own log lines (Exclude_Path)")
    return messages


def run_sidecar(sidecar_dir: Path, lines: list[str], window: LokiWindow) -> list[str]:
    sidecar = parse_fluent_bit((sidecar_dir / "fluent-bit.conf").read_text())
    parsers = parse_fluent_bit((sidecar_dir / "parsers.conf").read_text())
    patch = yaml.safe_load((sidecar_dir / "deployment-patch.yaml").read_text())
    agent = patch["spec"]["template"]["spec"]["initContainers"][0]
    env = {}
    for entry in agent["env"]:
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[entry["name"]] = {"metadata.name": POD, "metadata.namespace": NAMESPACE,
                              "metadata.labels['app']": POD_LABELS["app"]}.get(field, entry.get("value", ""))
    missing = set(re.findall(r"\$\{(\w+)\}", (sidecar_dir / "fluent-bit.conf").read_text())) - set(env)
    if missing:
        return [f"FAIL sidecar: fluent-bit.conf uses ${{{', '.join(sorted(missing))}}} the container does not set"]
    host = patch["spec"]["template"]["spec"]["containers"][0]
    log_file = {e["name"]: e.get("value") for e in host["env"]}["HERO_LOG_FILE"]
    # The teed file holds the host's lines themselves, written at their own timestamp.
    written = [logtime.rfc3339nano(json.loads(line)["timestamp"]) for line in lines]
    pushed = fluent_bit_pipeline(sidecar, log_file, lines, env, written[-1] + READ_DELAY_NS, parsers)
    return check_pushed("Fluent Bit sidecar, teed file", pushed, lines, written, window)


def run_alloy(conf_text: str, lines: list[str], window: LokiWindow) -> list[str]:
    messages = []
    env = {"NODE_NAME": "node-1", "LOKI_URL": "http://loki"}
    written = [written_at(i) for i in range(len(lines))]
    now = written[-1] + READ_DELAY_NS
    other_file = "/var/log/pods/default_web-1_7a1b-uid/nginx/0.log"
    own_file = "/var/log/pods/logging_alloy-abcde_9c2d-uid/alloy/0.log"
    for fmt, wrap, runtime in RUNTIME_FORMATS:
        files = {POD_LOG_FILE: wrap(lines), other_file: wrap([OTHER_LINE]), own_file: wrap(lines[:1])}
        pushed = alloy_pipeline(conf_text, env, runtime, files, now)
        messages += check_pushed(f"Alloy, {fmt}", pushed.get(POD_LOG_FILE, []), lines, written, window)
        messages += check_other(f"Alloy, {fmt}", pushed.get(other_file, []))
        if own_file in pushed:
            messages.append("FAIL Alloy ships its own log lines")
    return messages


def loki_window(logging: Path) -> LokiWindow:
    values = yaml.safe_load((logging / "loki-values.yaml").read_text())
    return LokiWindow(values["loki"].get("limits_config", {}))


# Configs with one known mistake each, which the checks above must fail:
# if one passes, the model no longer sees what it is there to see.
MUTANTS = (
    ("Fluentd without time_type/time_format (its json time read as a float)", "fluentd/fluent.conf",
     lambda text: re.sub(r"\n\s*time_(type|format) [^\n]*", "", text), run_fluentd, "Loki refuses"),
    ("Fluent Bit with Auto_Kubernetes_Labels On", "fluent-bit/fluent-bit.conf",
     lambda text: text.replace("Auto_Kubernetes_Labels   Off", "Auto_Kubernetes_Labels   On"), run_fluent_bit,
     "auto labels"),
    ("Alloy without stage.label_keep (filename and stream become labels)", "alloy/config.alloy",
     lambda text: re.sub(r"stage\.label_keep \{[^}]*\}", "", text), run_alloy, "labels ["),
    ("Alloy without stage.docker (docker lines keep their wrapper and read time)", "alloy/config.alloy",
     lambda text: text.replace("stage.docker { }", ""), run_alloy, "docker json-file"),
)


def run_mutants(logging: Path, lines: list[str], window: LokiWindow) -> list[str]:
    messages = []
    for what, file, mutate, run, expected in MUTANTS:
        text = (logging / file).read_text()
        mutant = mutate(text)
        if mutant == text:
            messages.append(f"FAIL mutant {what!r} changes nothing in {file}: update the mutation")
            continue
        try:
            failures = [m for m in run(mutant, lines, window) if m.startswith("FAIL ")]
        except AssertionError as error:
            failures = [f"FAIL {error}"]
        if any(expected in m for m in failures):
            messages.append(f"the check fails a config {what}")
        else:
            messages.append(f"FAIL the check passes a config {what} (expected a failure with {expected!r})")
    return messages


def run_all(k8s: Path) -> list[str]:
    lines = host_lines(k8s)
    logging = k8s / "components/logging"
    window = loki_window(logging)
    messages = run_fluentd((logging / "fluentd/fluent.conf").read_text(), lines, window)
    messages += run_fluent_bit((logging / "fluent-bit/fluent-bit.conf").read_text(), lines, window)
    messages += run_sidecar(logging / "fluent-bit-sidecar", lines, window)
    messages += run_alloy((logging / "alloy/config.alloy").read_text(), lines, window)
    messages += run_mutants(logging, lines, window)
    return messages


if __name__ == "__main__":
    for message in run_all(Path(__file__).resolve().parent.parent):
        print(message)
