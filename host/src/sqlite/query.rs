//! Running one guest statement on a connection: parameters in, columns and
//! rows out, with the rows' total size bounded so that a huge result fails
//! instead of exhausting the host's memory.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};

/// A column value, as the guest interfaces carry it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `integer(s64)`.
    Integer(i64),
    /// `real(f64)`.
    Real(f64),
    /// `text(string)`.
    Text(String),
    /// `blob(list<u8>)`.
    Blob(Vec<u8>),
    /// `null`.
    Null,
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Text(text) => text.len(),
            Value::Blob(blob) => blob.len(),
            Value::Integer(_) | Value::Real(_) | Value::Null => 8,
        }
    }
}

/// What a statement gave back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Each row's values, one per column.
    pub rows: Vec<Vec<Value>>,
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// SQLite refused or failed it.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The rows would take more than the limit.
    #[error("the result is larger than {0} bytes")]
    TooLarge(usize),
    /// The statement's thread ended without an answer (a host bug), or the
    /// handle no longer has a connection.
    #[error("the statement did not complete")]
    Incomplete,
}

/// Runs `statement` with `parameters`, collecting up to `max_bytes` of rows.
pub fn execute(
    connection: &Connection,
    statement: &str,
    parameters: Vec<Value>,
    max_bytes: usize,
) -> Result<Rows, QueryError> {
    let mut prepared = connection.prepare_cached(statement)?;
    let columns: Vec<String> = prepared.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = prepared.query(params_from_iter(parameters.into_iter().map(to_sql)))?;
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(width);
        for index in 0..width {
            let value = from_sql(row.get_ref(index)?);
            bytes += value.size();
            values.push(value);
        }
        if bytes > max_bytes {
            return Err(QueryError::TooLarge(max_bytes));
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        // SQLite does not check that text is UTF-8; a guest string must be.
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// The kind of statement, for the metric label: its first keyword when it
/// is one of SQL's common verbs, else `other` (a bounded set, whatever SQL a
/// guest sends).
pub fn operation(statement: &str) -> &'static str {
    const VERBS: &[&str] = &[
        "select",
        "insert",
        "update",
        "delete",
        "replace",
        "with",
        "create",
        "drop",
        "alter",
        "begin",
        "commit",
        "rollback",
        "savepoint",
        "release",
        "pragma",
        "vacuum",
        "analyze",
    ];
    let first = statement
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    VERBS
        .iter()
        .find(|verb| verb.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parameters_and_reads_every_type() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
            .unwrap();
        let values = vec![
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("héros".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ];
        let inserted = execute(
            &connection,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            values.clone(),
            1 << 20,
        )
        .unwrap();
        assert!(inserted.rows.is_empty());
        let read = execute(&connection, "SELECT * FROM t", vec![], 1 << 20).unwrap();
        assert_eq!(read.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(read.rows, [values]);
    }

    #[test]
    fn a_result_over_the_limit_fails() {
        let connection = Connection::open_in_memory().unwrap();
        let error = execute(
            &connection,
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1000) \
             SELECT printf('%100d', x) FROM n",
            vec![],
            10_000,
        )
        .unwrap_err();
        assert!(matches!(error, QueryError::TooLarge(10_000)), "{error}");
    }

    #[test]
    fn a_bad_statement_is_an_sqlite_error() {
        let connection = Connection::open_in_memory().unwrap();
        let error = execute(&connection, "SELEC 1", vec![], 1024).unwrap_err();
        assert!(matches!(error, QueryError::Sqlite(_)), "{error}");
    }

    #[test]
    fn operations_are_a_bounded_set_of_verbs() {
        assert_eq!(operation("  select * from t"), "select");
        assert_eq!(operation("INSERT INTO t VALUES (1)"), "insert");
        assert_eq!(operation("WITH x AS (SELECT 1) SELECT * FROM x"), "with");
        assert_eq!(operation("EXPLAIN SELECT 1"), "other");
        assert_eq!(operation("dropped(1)"), "other");
        assert_eq!(operation(""), "other");
    }
}
