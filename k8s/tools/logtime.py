"""Event times as the log agents compute them, and Loki's acceptance window.

A line reaches Loki with the time its agent parsed, not the time it was
written: an agent that misreads the runtime's timestamp ships lines that Loki
refuses (too old, or too far in the future) or files them at the wrong time.
This module computes, from a config's settings, the event time each agent
gives a record, following the plugins' own code:

- Fluentd (lib/fluent/time.rb, lib/fluent/plugin/parser*.rb): the JSON
  parser's time_type defaults to `float` unless a time_format is set, and a
  float time is `value.split('.')` read with Ruby's `to_i`, so the docker
  json-file time `2026-11-24T01:18:44.5Z` becomes 2026 seconds after the
  epoch; the regexp parser defaults to `string`, read by Ruby's Time.parse;
  `%iso8601` is Time.iso8601; other formats are strptime, in the agent's
  local time unless they carry `%z`.
- Fluent Bit (src/flb_parser.c, src/multiline/flb_ml_parser_{cri,docker}.c):
  strptime up to `%L`, up to nine digits of fraction, strptime of the rest;
  without `%z` the time is UTC plus Time_Offset.
- Grafana Alloy (loki.process stage.cri, stage.docker): RFC 3339 with
  nanoseconds.

Times are integers: nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone

NS = 1_000_000_000
# The Fluentd image's process time zone (the upstream images set none: UTC).
AGENT_UTC_OFFSET_S = 0


class TimeParseError(ValueError):
    """The agent cannot read the time: Fluentd skips the pattern, Fluent
    Bit keeps the record without a parsed time."""


# ------------------------------------------------------------ formatting


def go_rfc3339nano(ns: int, offset_s: int = 0) -> str:
    """Go's time.RFC3339Nano, as docker and containerd write it (trailing
    zeros of the fraction dropped; `Z` for UTC, else +hh:mm)."""
    seconds, frac = divmod(ns, NS)
    moment = datetime.fromtimestamp(seconds, timezone.utc) + timedelta(seconds=offset_s)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset_s == 0:
        return text + "Z"
    sign = "+" if offset_s > 0 else "-"
    hours, minutes = divmod(abs(offset_s) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def iso(ns: int) -> str:
    return go_rfc3339nano(ns)


def parse_duration(text: str) -> int:
    """A Loki/Prometheus duration (`168h`, `10m`, `1h30m`) in nanoseconds."""
    units = {"ms": NS // 1000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS, "w": 7 * 86400 * NS}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(value) * units[unit] for value, unit in parts)


# ------------------------------------------------------ strptime subset

_DIRECTIVES = {
    "Y": r"(?P<Y>[+-]?\d{4})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "M": r"(?P<M>\d{1,2})",
    "S": r"(?P<S>\d{1,2})",
    "N": r"(?P<N>\d+)",
    "z": r"(?P<z>Z|[+-]\d\d:?\d\d)",
    ":z": r"(?P<z>Z|[+-]\d\d:\d\d)",
}


def _strptime_regex(fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            out.append(re.escape(fmt[i]))
            i += 1
            continue
        key = fmt[i + 1:i + 3] if fmt[i + 1] == ":" else fmt[i + 1]
        if key == "%":
            out.append("%")
        elif key == "T":
            out.append(_DIRECTIVES["H"] + ":" + _DIRECTIVES["M"] + ":" + _DIRECTIVES["S"])
        elif key in _DIRECTIVES:
            out.append(_DIRECTIVES[key])
        else:
            raise ValueError(f"strptime directive %{key} not modelled (in {fmt!r})")
        i += 1 + len(key)
    return "".join(out)


def _zone_seconds(zone: str) -> int:
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def _epoch_ns(fields: dict, frac_ns: int, offset_s: int) -> int:
    try:
        seconds = calendar.timegm((int(fields.get("Y") or 1970), int(fields.get("m") or 1), int(fields.get("d") or 1),
                                   int(fields.get("H") or 0), int(fields.get("M") or 0), int(fields.get("S") or 0)))
    except (ValueError, OverflowError) as error:
        raise TimeParseError(str(error)) from None
    return (seconds - offset_s) * NS + frac_ns


def _fraction_ns(digits: str) -> int:
    return int((digits + "0" * 9)[:9]) if digits else 0


# --------------------------------------------------------------- Fluentd


def _ruby_to_i(text: str) -> int:
    """Ruby's String#to_i: the leading integer, 0 when there is none."""
    match = re.match(r"\s*([-+]?\d+(?:_\d+)*)", text)
    return int(match[1].replace("_", "")) if match else 0


def _fluentd_float(value) -> int:
    """Fluent::NumericTimeParser#parse_float."""
    sec_s, *rest = str(value).split(".", 2)
    nsec_s = rest[0][:10] if rest else "0"
    if len(nsec_s) < 9:
        nsec_s += "0" * (9 - len(nsec_s))
    return _ruby_to_i(sec_s) * NS + _ruby_to_i(nsec_s)


_XMLSCHEMA = re.compile(
    r"\s*(-?\d+)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d(?::?\d\d)?)?\s*", re.IGNORECASE
)


def _ruby_iso8601(value: str, local_offset_s: int) -> int:
    """Ruby's Time.iso8601 (Time.xmlschema): no zone means local time."""
    match = _XMLSCHEMA.fullmatch(value)
    if not match:
        raise TimeParseError(f"invalid xmlschema format: {value!r}")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    if zone is None:
        offset = local_offset_s
    else:
        zone = zone.upper()
        offset = _zone_seconds(zone + "00" if len(zone) == 3 else zone)
    return _epoch_ns({"Y": y, "m": mo, "d": d, "H": h, "M": mi, "S": s}, _fraction_ns(frac or ""), offset)


def _ruby_time_parse(value: str, local_offset_s: int) -> int:
    """Ruby's Time.parse for the date-time shapes container runtimes write
    (ISO 8601, `T` or space, optional fraction and zone)."""
    match = re.fullmatch(
        r"\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?\s*", value, re.IGNORECASE
    )
    if not match:
        raise TimeParseError(f"Time.parse cannot read {value!r} (outside the modelled shapes)")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    offset = local_offset_s if zone is None else _zone_seconds(zone.upper())
    return _epoch_ns({"Y": y, "m": mo, "d": d, "H": h, "M": mi, "S": s}, _fraction_ns(frac or ""), offset)


def fluentd_time(value, params: dict[str, str], parser_type: str) -> int:
    """The event time a Fluentd parser (`json` or `regexp`, configured with
    `params`) gives a record whose time field holds `value`."""
    time_format = params.get("time_format")
    default_type = "float" if parser_type == "json" else "string"
    if parser_type == "json" and time_format is not None:
        default_type = "string"
    time_type = params.get("time_type", default_type)
    if time_type == "float":
        if not isinstance(value, (str, int, float)):
            raise TimeParseError(f"value must be a string or a number: {value!r}")
        return _fluentd_float(value)
    if time_type == "unixtime":
        return _ruby_to_i(str(value)) * NS
    if time_type != "string":
        raise ValueError(f"time_type {time_type} not modelled")
    if not isinstance(value, str):
        raise TimeParseError(f"value must be string: {value!r}")
    utc = params.get("utc") == "true" or params.get("localtime") == "false"
    local = 0 if utc else AGENT_UTC_OFFSET_S
    if "timezone" in params:
        raise ValueError("timezone not modelled")
    if time_format is None:
        return _ruby_time_parse(value, local)
    if time_format == "%iso8601":
        return _ruby_iso8601(value, local)
    match = re.fullmatch(_strptime_regex(time_format), value)
    if not match:
        raise TimeParseError(f"{value!r} does not match time_format {time_format!r}")
    fields = match.groupdict()
    offset = _zone_seconds(fields["z"]) if fields.get("z") else local
    return _epoch_ns(fields, _fraction_ns(fields.get("N") or ""), offset)


# ------------------------------------------------------------ Fluent Bit


def fluent_bit_time(value: str, time_format: str, time_offset_s: int = 0) -> int:
    """flb_parser_time_lookup: strptime up to %L, the fraction, strptime of
    the rest (trailing text ignored); UTC plus Time_Offset without %z."""
    head, has_frac, tail = time_format.partition("%L")
    match = re.match(_strptime_regex(head), value)
    if not match:
        raise TimeParseError(f"{value!r} does not match {time_format!r}")
    fields = dict(match.groupdict())
    rest = value[match.end():]
    frac_ns = 0
    if has_frac:
        digits = re.match(r"\d{1,9}", rest)
        if not digits:
            raise TimeParseError(f"no fraction for %L in {value!r}")
        frac_ns = _fraction_ns(digits[0])
        rest = rest[digits.end():]
        after = re.match(_strptime_regex(tail), rest)
        if not after:
            raise TimeParseError(f"{value!r} does not match {tail!r} after %L")
        fields.update({k: v for k, v in after.groupdict().items() if v is not None})
    offset = _zone_seconds(fields["z"]) if fields.get("z") else time_offset_s
    return _epoch_ns(fields, frac_ns, offset)


# ----------------------------------------------------------------- Alloy


def rfc3339nano(value: str) -> int:
    """Go's time.Parse(time.RFC3339Nano, value), as Alloy's stage.cri and
    stage.docker read the runtime's time."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value)
    if not match:
        raise TimeParseError(f"not RFC 3339: {value!r}")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    return _epoch_ns({"Y": y, "m": mo, "d": d, "H": h, "M": mi, "S": s}, _fraction_ns(frac or ""), _zone_seconds(zone))


# ------------------------------------------------------------------ Loki


class LokiWindow:
    """Loki's limits on a sample's time (limits_config): older than
    reject_old_samples_max_age is refused when reject_old_samples is on;
    later than creation_grace_period ahead of the ingester's clock is
    refused always."""

    def __init__(self, limits: dict):
        self.reject_old = bool(limits.get("reject_old_samples", True))
        self.max_age = limits.get("reject_old_samples_max_age", "168h")
        self.grace = limits.get("creation_grace_period", "10m")
        self.max_age_ns = parse_duration(self.max_age)
        self.grace_ns = parse_duration(self.grace)

    def refusal(self, event_ns: int, received_ns: int) -> str | None:
        if self.reject_old and event_ns < received_ns - self.max_age_ns:
            return f"older than reject_old_samples_max_age {self.max_age}"
        if event_ns > received_ns + self.grace_ns:
            return f"more than creation_grace_period {self.grace} in the future"
        return None
