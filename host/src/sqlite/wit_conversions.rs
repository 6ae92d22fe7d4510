//! Conversions between the host's SQLite types and those of a generated
//! `sqlite` interface; `spin:sqlite@3.1.0` and `fermyon:spin/sqlite@2.0.0`
//! generate distinct types of the same shape, and both convert alike.

/// Defines `to_wit` (a [`super::ctx::GuestError`] as the interface's
/// `error`), `from_wit` (a parameter), `to_row` (a result row) and
/// `to_query_result` (a whole result) for the interface whose `error`,
/// `value`, `row-result` and `query-result` types are named.
macro_rules! wit_conversions {
    ($error:ident, $value:ident, $row:ident, $result:ident) => {
        fn to_wit(error: $crate::sqlite::ctx::GuestError) -> $error {
            use $crate::sqlite::ctx::GuestError;
            match error {
                GuestError::NoSuchDatabase => $error::NoSuchDatabase,
                GuestError::AccessDenied => $error::AccessDenied,
                GuestError::InvalidConnection => $error::InvalidConnection,
                GuestError::DatabaseFull => $error::DatabaseFull,
                GuestError::Io(text) => $error::Io(text),
            }
        }

        fn from_wit(value: $value) -> $crate::sqlite::query::Value {
            use $crate::sqlite::query::Value;
            match value {
                $value::Integer(i) => Value::Integer(i),
                $value::Real(r) => Value::Real(r),
                $value::Text(t) => Value::Text(t),
                $value::Blob(b) => Value::Blob(b),
                $value::Null => Value::Null,
            }
        }

        fn to_row(values: Vec<$crate::sqlite::query::Value>) -> $row {
            use $crate::sqlite::query::Value;
            $row {
                values: values
                    .into_iter()
                    .map(|value| match value {
                        Value::Integer(i) => $value::Integer(i),
                        Value::Real(r) => $value::Real(r),
                        Value::Text(t) => $value::Text(t),
                        Value::Blob(b) => $value::Blob(b),
                        Value::Null => $value::Null,
                    })
                    .collect(),
            }
        }

        fn to_query_result(rows: $crate::sqlite::query::Rows) -> $result {
            $result {
                columns: rows.columns,
                rows: rows.rows.into_iter().map(to_row).collect(),
            }
        }
    };
}

pub(crate) use wit_conversions;
