//! `fermyon:spin/sqlite@2.0.0` on the SQLite databases: the same labels,
//! metrics and failure reports as `spin:sqlite@3.1.0`.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::sqlite2::{Error, Host, HostConnection, QueryResult, RowResult, Value as WitValue};
use crate::sqlite::ctx::{self, GuestError, SqliteView};
use crate::sqlite::host::ConnectionHandle;
use crate::sqlite::query::{Rows, Value};

fn to_wit(error: GuestError) -> Error {
    match error {
        GuestError::NoSuchDatabase => Error::NoSuchDatabase,
        GuestError::AccessDenied => Error::AccessDenied,
        GuestError::InvalidConnection => Error::InvalidConnection,
        GuestError::DatabaseFull => Error::DatabaseFull,
        GuestError::Io(text) => Error::Io(text),
    }
}

fn from_wit(value: WitValue) -> Value {
    match value {
        WitValue::Integer(i) => Value::Integer(i),
        WitValue::Real(r) => Value::Real(r),
        WitValue::Text(t) => Value::Text(t),
        WitValue::Blob(b) => Value::Blob(b),
        WitValue::Null => Value::Null,
    }
}

fn to_row(values: Vec<Value>) -> RowResult {
    RowResult {
        values: values
            .into_iter()
            .map(|value| match value {
                Value::Integer(i) => WitValue::Integer(i),
                Value::Real(r) => WitValue::Real(r),
                Value::Text(t) => WitValue::Text(t),
                Value::Blob(b) => WitValue::Blob(b),
                Value::Null => WitValue::Null,
            })
            .collect(),
    }
}

impl Host for SqliteView<'_> {}

impl HostConnection for SqliteView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnectionHandle>, Error>> {
        match self.state.open(&database) {
            Ok(connection) => Ok(Ok(self
                .table
                .push(ConnectionHandle(Arc::new(connection)))?)),
            Err(error) => Ok(Err(to_wit(error))),
        }
    }

    async fn execute(
        &mut self,
        handle: Resource<ConnectionHandle>,
        statement: String,
        parameters: Vec<WitValue>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let connection = self.table.get(&handle)?.0.clone();
        let statement_ctx = self.state.statement(connection);
        let parameters = parameters.into_iter().map(from_wit).collect();
        Ok(ctx::run(statement_ctx, statement, parameters)
            .await
            .map(|Rows { columns, rows }| QueryResult {
                columns,
                rows: rows.into_iter().map(to_row).collect(),
            })
            .map_err(to_wit))
    }

    async fn drop(&mut self, handle: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.closed();
        Ok(())
    }
}
