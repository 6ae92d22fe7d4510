//! `fermyon:spin/sqlite@2.0.0` on the SQLite databases: the same labels,
//! metrics and failure reports as `spin:sqlite@3.1.0`.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::sqlite2::{Error, Host, HostConnection, QueryResult, RowResult, Value as WitValue};
use crate::sqlite::ctx::{self, SqliteView};
use crate::sqlite::host::ConnectionHandle;

crate::sqlite::wit_conversions::wit_conversions!(Error, WitValue, RowResult, QueryResult);

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
            .map(to_query_result)
            .map_err(to_wit))
    }

    async fn drop(&mut self, handle: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.closed();
        Ok(())
    }
}
