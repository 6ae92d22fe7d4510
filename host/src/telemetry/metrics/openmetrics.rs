//! The OpenMetrics 1.0 text exposition of the gathered registry, with the
//! request-duration exemplars on its bucket lines. `prometheus`'s encoder
//! writes only the 0.0.4 text, which has no exemplars; the two differ in a
//! few places: a counter family is named without `_total` (its sample keeps
//! it), untyped is `unknown`, infinities are `+Inf`/`-Inf`, and the
//! exposition ends with `# EOF`. Bucket bounds are written as the 0.0.4 text
//! writes them, so a series is the same whichever format was scraped.

use std::collections::HashMap;
use std::io::Write;
use std::time::UNIX_EPOCH;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

use super::exemplars::{Exemplar, SERIES_LABEL_NAMES, SeriesLabels};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Exemplars by series labels, for the family named `family`.
pub struct ExemplarSource<'a> {
    /// The histogram family that carries them.
    pub family: &'a str,
    /// Its exemplars.
    pub exemplars: &'a HashMap<SeriesLabels, Vec<Option<Exemplar>>>,
}

/// Writes `families` as OpenMetrics text.
pub fn encode(families: &[MetricFamily], exemplars: &ExemplarSource<'_>, out: &mut Vec<u8>) {
    for family in families {
        let kind = family.get_field_type();
        let name = family.name();
        let (family_name, type_name) = match kind {
            MetricType::COUNTER => match name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (name, "unknown"),
            },
            MetricType::GAUGE => (name, "gauge"),
            MetricType::HISTOGRAM => (name, "histogram"),
            MetricType::SUMMARY => (name, "summary"),
            MetricType::UNTYPED => (name, "unknown"),
        };
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {family_name} {}", escape(family.help()));
        }
        let _ = writeln!(out, "# TYPE {family_name} {type_name}");
        let with_exemplars = (name == exemplars.family).then_some(exemplars.exemplars);
        for metric in family.get_metric() {
            match kind {
                MetricType::COUNTER => {
                    sample(out, name, metric, None, metric.get_counter().get_value());
                }
                MetricType::GAUGE => {
                    sample(out, name, metric, None, metric.get_gauge().get_value());
                }
                // No collector of ours makes one (the 0.0.4 encoder refuses
                // them too); the family is declared, without samples.
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => histogram(out, name, metric, with_exemplars),
                MetricType::SUMMARY => summary(out, name, metric),
            }
        }
    }
    out.extend_from_slice(b"# EOF\n");
}

fn histogram(
    out: &mut Vec<u8>,
    name: &str,
    metric: &Metric,
    exemplars: Option<&HashMap<SeriesLabels, Vec<Option<Exemplar>>>>,
) {
    let histogram = metric.get_histogram();
    let buckets = exemplars.and_then(|all| all.get(&series_labels(metric.get_label())));
    let bucket_name = format!("{name}_bucket");
    let mut inf_seen = false;
    for (index, bucket) in histogram.get_bucket().iter().enumerate() {
        let bound = bucket.upper_bound();
        inf_seen |= bound == f64::INFINITY;
        let le = if bound == f64::INFINITY {
            "+Inf".to_owned()
        } else {
            bound.to_string()
        };
        labelled(out, &bucket_name, metric, Some(("le", &le)));
        let _ = write!(out, " {}", bucket.cumulative_count());
        exemplar(out, buckets.and_then(|b| b.get(index)).copied().flatten());
        out.push(b'\n');
    }
    if !inf_seen {
        labelled(out, &bucket_name, metric, Some(("le", "+Inf")));
        let _ = write!(out, " {}", histogram.get_sample_count());
        let last = buckets.and_then(|b| b.get(histogram.get_bucket().len()));
        exemplar(out, last.copied().flatten());
        out.push(b'\n');
    }
    let count = histogram.get_sample_count() as f64;
    sum_and_count(out, name, metric, histogram.get_sample_sum(), count);
}

fn summary(out: &mut Vec<u8>, name: &str, metric: &Metric) {
    let summary = metric.get_summary();
    for quantile in summary.get_quantile() {
        let q = quantile.quantile().to_string();
        sample(out, name, metric, Some(("quantile", &q)), quantile.value());
    }
    let count = summary.sample_count() as f64;
    sum_and_count(out, name, metric, summary.sample_sum(), count);
}

/// The `_sum` and `_count` samples a histogram or a summary ends with.
fn sum_and_count(out: &mut Vec<u8>, name: &str, metric: &Metric, sum: f64, count: f64) {
    sample(out, &format!("{name}_sum"), metric, None, sum);
    sample(out, &format!("{name}_count"), metric, None, count);
}

/// ` # {trace_id="…",span_id="…"} <value> <timestamp>`, when there is one.
fn exemplar(out: &mut Vec<u8>, exemplar: Option<Exemplar>) {
    let Some(exemplar) = exemplar else {
        return;
    };
    let at = exemplar
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {at:.3}",
        exemplar.ids.trace_id,
        exemplar.ids.span_id,
        number(exemplar.value)
    );
}

fn sample(out: &mut Vec<u8>, name: &str, metric: &Metric, extra: Option<(&str, &str)>, value: f64) {
    labelled(out, name, metric, extra);
    let _ = writeln!(out, " {}", number(value));
}

fn labelled(out: &mut Vec<u8>, name: &str, metric: &Metric, extra: Option<(&str, &str)>) {
    out.extend_from_slice(name.as_bytes());
    let pairs = metric.get_label();
    if pairs.is_empty() && extra.is_none() {
        return;
    }
    let mut separator = b'{';
    let all = pairs
        .iter()
        .map(|pair| (pair.name(), pair.value()))
        .chain(extra);
    for (label, value) in all {
        out.push(separator);
        let _ = write!(out, "{label}=\"{}\"", escape(value));
        separator = b',';
    }
    out.push(b'}');
}

/// The series labels exemplars are kept under.
fn series_labels(pairs: &[LabelPair]) -> SeriesLabels {
    SERIES_LABEL_NAMES.map(|name| {
        pairs
            .iter()
            .find(|pair| pair.name() == name)
            .map_or_else(String::new, |pair| pair.value().to_owned())
    })
}

/// A number as OpenMetrics spells it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// Escapes `\`, `"` and newlines, as label values and help text need.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '"', '\n']) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes_follow_openmetrics() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }
}
