//! A Spin app of the spin-sdk 5 generation: a core module
//! (`wasm32-wasip1`) that the host turns into a component at load. Each path
//! exercises one Spin interface as such apps use it:
//!
//! - `GET /variables`: component variables (`fermyon:spin/variables@2.0.0`),
//!   and an undefined one.
//! - `GET /secret`: calls `{{ upstream }}/check` with the secret `token` as
//!   a bearer token (outbound `wasi:http` 0.2 through a templated
//!   `allowed_outbound_hosts`), and answers what the upstream said.
//! - `POST /notes`, `GET /notes`: SQLite (`fermyon:spin/sqlite@2.0.0`) on a
//!   table made by `--sqlite` at start.
//! - `GET /bad-sql`: a failing statement, answered with the guest's error.
//! - `GET /count`: a counter in the key-value store
//!   (`fermyon:spin/key-value@2.0.0`).

#[cfg(target_arch = "wasm32")]
#[expect(
    unsafe_code,
    reason = "spin-sdk 5's #[http_component] expands to the component's FFI export"
)]
mod component {
    use spin_sdk::http::{Method, Request, Response};
    use spin_sdk::http_component;
    use spin_sdk::sqlite::{Connection, Value};

    #[http_component]
    async fn handle(request: Request) -> anyhow::Result<Response> {
        let (status, body) = match (request.method(), request.path()) {
            (Method::Get, "/variables") => (200, variables()),
            (Method::Get, "/secret") => secret().await?,
            (Method::Post, "/notes") => add_note(request.body())?,
            (Method::Get, "/notes") => (200, notes()?),
            (Method::Get, "/bad-sql") => bad_sql(),
            (Method::Get, "/count") => (200, count()?),
            _ => (404, "not found".to_owned()),
        };
        Ok(Response::new(status, body))
    }

    fn variables() -> String {
        let greeting = spin_sdk::variables::get("greeting").unwrap_or_else(|e| format!("{e:?}"));
        let missing = match spin_sdk::variables::get("not_declared") {
            Ok(value) => format!("unexpected {value}"),
            Err(spin_sdk::variables::Error::Undefined(_)) => "undefined".to_owned(),
            Err(other) => format!("{other:?}"),
        };
        format!("{{\"greeting\":{greeting:?},\"not_declared\":{missing:?}}}")
    }

    async fn secret() -> anyhow::Result<(u16, String)> {
        let upstream = spin_sdk::variables::get("upstream")?;
        let token = spin_sdk::variables::get("token")?;
        let request = Request::get(format!("{upstream}/check"))
            .header("authorization", format!("Bearer {token}"))
            .build();
        let response: Response = spin_sdk::http::send(request).await?;
        let body = String::from_utf8_lossy(response.body()).into_owned();
        Ok((*response.status(), body))
    }

    fn add_note(body: &[u8]) -> anyhow::Result<(u16, String)> {
        let text = String::from_utf8_lossy(body).into_owned();
        let db = Connection::open_default()?;
        db.execute("INSERT INTO notes (text) VALUES (?)", &[Value::Text(text)])?;
        let id = db.execute("SELECT last_insert_rowid()", &[])?;
        let id: i64 = id.rows.first().and_then(|row| row.get(0)).unwrap_or(0);
        Ok((201, id.to_string()))
    }

    fn notes() -> anyhow::Result<String> {
        let db = Connection::open_default()?;
        let result = db.execute("SELECT id, text FROM notes ORDER BY id", &[])?;
        let notes: Vec<String> = result
            .rows()
            .map(|row| {
                let id: i64 = row.get("id").unwrap_or(0);
                let text: &str = row.get("text").unwrap_or("");
                format!("{{\"id\":{id},\"text\":{text:?}}}")
            })
            .collect();
        Ok(format!("[{}]", notes.join(",")))
    }

    fn bad_sql() -> (u16, String) {
        let error = Connection::open_default()
            .and_then(|db| db.execute("SELECT * FROM no_such_table", &[]).map(drop));
        match error {
            Ok(()) => (200, "no error".to_owned()),
            Err(error) => (500, format!("{error:?}")),
        }
    }

    fn count() -> anyhow::Result<String> {
        let store = spin_sdk::key_value::Store::open_default()?;
        let count = store
            .get("count")?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        store.set("count", count.to_string().as_bytes())?;
        Ok(count.to_string())
    }
}
