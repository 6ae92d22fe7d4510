//! The host side of `spin:sqlite/sqlite@3.1.0` (spin-sdk 7), on [`ctx`].
//!
//! `execute-async` runs the statement to completion on a blocking thread,
//! then hands the guest its rows through the `stream<row-result>` as fast as
//! it reads them; the `future` says how the statement ended.
//!
//! [`ctx`]: super::ctx

use std::sync::Arc;

use wasmtime::component::{Accessor, FutureReader, HasData, Linker, Resource, StreamReader};

use super::ctx::{self, SqliteHostView, SqliteView};
use super::database::GuestConnection;
use super::query::Rows;
use crate::guest_stream::ListStream;

mod generated {
    wasmtime::component::bindgen!({
        inline: "
            package hero-host:sqlite;
            world sqlite-imports {
                import spin:sqlite/sqlite@3.1.0;
            }
        ",
        path: "wit/sqlite.wit",
        imports: { default: async | trappable },
        with: { "spin:sqlite/sqlite.connection": crate::sqlite::host::ConnectionHandle },
    });
}

use self::bindings::{Error as WitError, QueryResult, RowResult, Value as WitValue};
use self::generated::spin::sqlite::sqlite as bindings;

/// What a guest's `connection` resource points at.
pub struct ConnectionHandle(pub Arc<GuestConnection>);

/// The `HasData` marker of this interface.
pub struct Sqlite;

impl HasData for Sqlite {
    type Data<'a> = SqliteView<'a>;
}

/// Adds the interface to a linker.
pub fn add_to_linker<T: SqliteHostView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::add_to_linker::<T, Sqlite>(linker, T::sqlite)
}

super::wit_conversions::wit_conversions!(WitError, WitValue, RowResult, QueryResult);

impl SqliteView<'_> {
    fn open_handle(
        &mut self,
        database: &str,
    ) -> wasmtime::Result<Result<Resource<ConnectionHandle>, WitError>> {
        match self.state.open(database) {
            Ok(connection) => Ok(Ok(self
                .table
                .push(ConnectionHandle(Arc::new(connection)))?)),
            Err(error) => Ok(Err(to_wit(error))),
        }
    }

    fn connection(
        &self,
        handle: &Resource<ConnectionHandle>,
    ) -> wasmtime::Result<Arc<GuestConnection>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

impl bindings::Host for SqliteView<'_> {}

impl bindings::HostConnection for SqliteView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnectionHandle>, WitError>> {
        self.open_handle(&database)
    }

    async fn execute(
        &mut self,
        handle: Resource<ConnectionHandle>,
        statement: String,
        parameters: Vec<WitValue>,
    ) -> wasmtime::Result<Result<QueryResult, WitError>> {
        let statement_ctx = self.state.statement(self.connection(&handle)?);
        let parameters = parameters.into_iter().map(from_wit).collect();
        Ok(ctx::run(statement_ctx, statement, parameters)
            .await
            .map(to_query_result)
            .map_err(to_wit))
    }

    async fn last_insert_rowid(
        &mut self,
        handle: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<i64> {
        Ok(self.connection(&handle)?.last_insert_rowid())
    }

    async fn changes(&mut self, handle: Resource<ConnectionHandle>) -> wasmtime::Result<u64> {
        Ok(self.connection(&handle)?.changes())
    }

    async fn drop(&mut self, handle: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.closed();
        Ok(())
    }
}

impl<T> bindings::HostConnectionWithStore<T> for Sqlite {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnectionHandle>, WitError>> {
        accessor.with(|mut access| access.get().open_handle(&database))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        handle: Resource<ConnectionHandle>,
        statement: String,
        parameters: Vec<WitValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<RowResult>,
                FutureReader<Result<(), WitError>>,
            ),
            WitError,
        >,
    > {
        let statement_ctx = accessor.with(|mut access| {
            let view = access.get();
            Ok::<_, wasmtime::Error>(view.state.statement(view.connection(&handle)?))
        })?;
        let parameters = parameters.into_iter().map(from_wit).collect();
        let Rows { columns, rows } = match ctx::run(statement_ctx, statement, parameters).await {
            Ok(rows) => rows,
            Err(error) => return Ok(Err(to_wit(error))),
        };
        accessor.with(|mut access| {
            let rows =
                StreamReader::new(&mut access, ListStream::new(rows, ROWS_PER_READ, to_row))?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        handle: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut access| Ok(access.get().connection(&handle)?.last_insert_rowid()))
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        handle: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut access| Ok(access.get().connection(&handle)?.changes()))
    }
}

/// Rows handed over per read when the reader does not say how many it wants.
const ROWS_PER_READ: usize = 64;
