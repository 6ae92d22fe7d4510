//! `wasi:otel` values as the host uses them. Attribute values arrive as JSON
//! text (WIT has no recursive types); they become OpenTelemetry values for
//! spans and JSON for log lines. Anything malformed is kept as text, never
//! refused: a guest's telemetry must not fail its request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::{Array, KeyValue, StringValue, Value};

use super::generated::wasi::clocks::wall_clock::Datetime;
use super::generated::wasi::otel::types::KeyValue as WitKeyValue;

/// Attributes kept per span, event, link, scope or log record (the SDK's
/// default limit); beyond, they are counted as dropped.
pub const MAX_ATTRIBUTES: usize = 128;

/// A WASI datetime as a system time.
pub fn time(datetime: Datetime) -> SystemTime {
    UNIX_EPOCH + Duration::new(datetime.seconds, datetime.nanoseconds.min(999_999_999))
}

/// Attributes as OpenTelemetry key-values, at most [`MAX_ATTRIBUTES`];
/// also returns how many were dropped.
pub fn attributes(list: Vec<WitKeyValue>) -> (Vec<KeyValue>, u32) {
    capped(list, |kv| Some(KeyValue::new(kv.key, value(&kv.value))))
}

/// The first [`MAX_ATTRIBUTES`] of `list`, each converted by `convert`
/// (`None`: left out, not counted); also returns how many were past the
/// limit.
pub fn capped<T, U>(list: Vec<T>, convert: impl FnMut(T) -> Option<U>) -> (Vec<U>, u32) {
    let dropped = list.len().saturating_sub(MAX_ATTRIBUTES);
    let kept = list
        .into_iter()
        .take(MAX_ATTRIBUTES)
        .filter_map(convert)
        .collect();
    (kept, u32::try_from(dropped).unwrap_or(u32::MAX))
}

/// A JSON-encoded attribute value as an OpenTelemetry value: scalars and
/// arrays of one scalar type as themselves, anything else as its text.
pub fn value(json: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(text)) => Value::from(text),
        Ok(serde_json::Value::Bool(b)) => Value::Bool(b),
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Ok(serde_json::Value::Array(items)) => {
            array(&items).unwrap_or_else(|| json.to_owned().into())
        }
        _ => Value::from(json.to_owned()),
    }
}

fn array(items: &[serde_json::Value]) -> Option<Value> {
    use serde_json::Value as J;
    let array = if items.iter().all(J::is_string) {
        Array::String(
            items
                .iter()
                .filter_map(|i| i.as_str().map(|s| StringValue::from(s.to_owned())))
                .collect(),
        )
    } else if items.iter().all(J::is_boolean) {
        Array::Bool(items.iter().filter_map(J::as_bool).collect())
    } else if items.iter().all(J::is_i64) {
        Array::I64(items.iter().filter_map(J::as_i64).collect())
    } else if items.iter().all(J::is_number) {
        Array::F64(items.iter().filter_map(J::as_f64).collect())
    } else {
        return None;
    };
    Some(Value::Array(array))
}

/// A JSON-encoded value as JSON for a log line: itself when it parses, else
/// its text as a string.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_become_typed_attribute_values() {
        assert_eq!(value("\"hi\""), Value::from("hi"));
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("42"), Value::I64(42));
        assert_eq!(value("1.5"), Value::F64(1.5));
        assert_eq!(
            value("[\"a\",\"b\"]"),
            Value::Array(Array::String(vec!["a".into(), "b".into()]))
        );
        assert_eq!(value("[1,2]"), Value::Array(Array::I64(vec![1, 2])));
        assert_eq!(value("[1,2.5]"), Value::Array(Array::F64(vec![1.0, 2.5])));
        assert_eq!(value("[1,\"a\"]"), Value::from("[1,\"a\"]"));
        assert_eq!(value("{\"a\":1}"), Value::from("{\"a\":1}"));
        assert_eq!(value("not json"), Value::from("not json"));
    }

    #[test]
    fn attributes_beyond_the_limit_are_counted_as_dropped() {
        let list: Vec<_> = (0..MAX_ATTRIBUTES + 3)
            .map(|i| WitKeyValue {
                key: format!("k{i}"),
                value: i.to_string(),
            })
            .collect();
        let (kept, dropped) = attributes(list);
        assert_eq!((kept.len(), dropped), (MAX_ATTRIBUTES, 3));
        assert_eq!(kept[5], KeyValue::new("k5", 5));
    }

    #[test]
    fn times_are_seconds_and_nanoseconds_since_the_epoch() {
        let at = time(Datetime {
            seconds: 10,
            nanoseconds: 5,
        });
        assert_eq!(at.duration_since(UNIX_EPOCH).unwrap(), Duration::new(10, 5));
    }
}
