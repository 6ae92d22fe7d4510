"""Traces, checked where they are wired: the OTEL_* variables of hero-host
(the values hero-host accepts at start, `$(VAR)` references only to variables
defined before them, as Kubernetes expands them), and the Grafana links
between signals (exemplars and log lines to Tempo, spans to Loki) pointing
at datasources that are provisioned, with exemplars shown on the latency
panel.

Each check returns (passed, message) pairs for check.py to report.
"""

from __future__ import annotations

import re

import yaml

Result = tuple[bool, str]

SAMPLERS = {
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
}
PROTOCOLS = {"http/protobuf", "grpc"}
LATENCY_PANEL = "Latency p50 / p99 by route"


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def check_env(docs: list[dict]) -> list[Result]:
    """The hero-host container's OTEL_* variables, as hero-host reads them."""
    results: list[Result] = []
    for deployment in find(docs, "Deployment", "hero-registry"):
        containers = deployment["spec"]["template"]["spec"]["containers"]
        host = next((c for c in containers if c["name"] == "hero-host"), None)
        env_list = host.get("env", []) if host else []
        env = {e["name"]: e.get("value") for e in env_list}
        if "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
            continue
        problems = []
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"] or ""
        if not re.fullmatch(r"http://[^/:]+(:\d+)?/?", endpoint):
            problems.append(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} is not http://host[:port]")
        protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        if protocol not in PROTOCOLS:
            problems.append(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of {sorted(PROTOCOLS)}")
        sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        if sampler not in SAMPLERS:
            problems.append(f"OTEL_TRACES_SAMPLER {sampler!r} is not one hero-host knows")
        if sampler.endswith("traceidratio") and "OTEL_TRACES_SAMPLER_ARG" in env:
            try:
                ratio = float(env["OTEL_TRACES_SAMPLER_ARG"])
            except ValueError:
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                problems.append(f"OTEL_TRACES_SAMPLER_ARG {env['OTEL_TRACES_SAMPLER_ARG']!r} is not a ratio")
        defined: set[str] = set()
        for variable in env_list:
            for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable.get("value") or ""):
                if reference not in defined:
                    problems.append(f"{variable['name']} refers to $({reference}) before it is defined")
            defined.add(variable["name"])
        results += [(False, f"hero-host tracing: {p}") for p in problems] or [
            (True, f"hero-host exports traces to {endpoint} ({protocol}, {sampler})")
        ]
    return results


def check_links(docs: list[dict], dashboard: dict) -> list[Result]:
    """Exemplars and trace ids lead to a provisioned Tempo, spans to Loki."""
    datasources = [
        source
        for cm in find(docs, "ConfigMap")
        if cm["metadata"].get("labels", {}).get("grafana_datasource") == "1"
        for text in cm["data"].values()
        for source in yaml.safe_load(text)["datasources"]
    ]
    if not datasources:
        return []
    uids = {d["uid"]: d["type"] for d in datasources}
    links = []
    for source in datasources:
        data = source.get("jsonData", {})
        for destination in data.get("exemplarTraceIdDestinations", []):
            links.append((source["uid"], "exemplar", destination.get("datasourceUid"), "tempo"))
        for field in data.get("derivedFields", []):
            links.append((source["uid"], "derived field", field.get("datasourceUid"), "tempo"))
        if "tracesToLogsV2" in data:
            links.append((source["uid"], "traces to logs", data["tracesToLogsV2"].get("datasourceUid"), "loki"))
    problems = [
        f"{uid}: {what} links to {target!r}, which is not a provisioned {kind} datasource"
        for uid, what, target, kind in links
        if uids.get(target) != kind
    ]
    kinds = {what for _, what, _, _ in links}
    for needed in ("exemplar", "derived field", "traces to logs"):
        if needed not in kinds:
            problems.append(f"no {needed} link between the datasources")
    panels = [p for p in walk(dashboard.get("panels", [])) if p.get("title") == LATENCY_PANEL]
    if not panels or not all(t.get("exemplar") is True for p in panels for t in p.get("targets", [])):
        problems.append(f"the dashboard's {LATENCY_PANEL!r} panel does not show exemplars")
    return [(False, f"trace links: {p}") for p in problems] or [
        (True, "exemplars and log lines link to Tempo, spans to Loki; the latency panel shows exemplars")
    ]


def walk(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))
