//! A Spin app of the spin-sdk 7 generation (WASIp3). Each path exercises
//! one Spin interface as such apps use it:
//!
//! - `GET /variables`: component variables through `spin:variables@3.0.0`
//!   and `wasi:config/store`, and an undefined one.
//! - `GET /secret`: calls `{{ upstream }}/check` with the secret `token` as
//!   a bearer token (outbound `wasi:http` 0.3 through a templated
//!   `allowed_outbound_hosts`), and answers what the upstream said.
//! - `POST /notes`, `GET /notes`: `spin:sqlite@3.1.0` (rows streamed) on a
//!   table made by `--sqlite` at start.
//! - `GET /bad-sql`: a failing statement, answered with the guest's error.
//! - `GET /count`: a counter in the key-value store
//!   (`spin:key-value@3.0.0`).

#[cfg(target_arch = "wasm32")]
mod component {
    use spin_sdk::http::body::IncomingBodyExt;
    use spin_sdk::http::{EmptyBody, FullBody, Method, Request};
    use spin_sdk::sqlite::{Connection, Value};

    type Reply = (u16, String);

    #[spin_sdk::http_service]
    async fn handle(request: Request) -> http::Response<FullBody<bytes::Bytes>> {
        let (status, body) = route(request).await.unwrap_or_else(|e| (500, e));
        http::Response::builder()
            .status(status)
            .body(FullBody::new(bytes::Bytes::from(body)))
            .expect("a valid response")
    }

    async fn route(request: Request) -> Result<Reply, String> {
        let method = request.method().clone();
        match (method, request.uri().path()) {
            (Method::GET, "/variables") => Ok((200, variables().await)),
            (Method::GET, "/secret") => secret().await,
            (Method::POST, "/notes") => {
                let body = request
                    .into_body()
                    .bytes()
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                add_note(String::from_utf8_lossy(&body).into_owned()).await
            }
            (Method::GET, "/notes") => notes().await,
            (Method::GET, "/bad-sql") => Ok(bad_sql().await),
            (Method::GET, "/count") => count().await,
            _ => Ok((404, "not found".to_owned())),
        }
    }

    async fn variables() -> String {
        use spin_sdk::experimental::wasi::config::store;
        let greeting = spin_sdk::variables::get("greeting")
            .await
            .unwrap_or_else(|e| format!("{e:?}"));
        let config = store::get("greeting").map_err(|e| format!("{e:?}"));
        let config = match config {
            Ok(Some(value)) => value,
            other => format!("{other:?}"),
        };
        let missing = match spin_sdk::variables::get("not_declared").await {
            Ok(value) => format!("unexpected {value}"),
            Err(spin_sdk::variables::Error::Undefined(_)) => "undefined".to_owned(),
            Err(other) => format!("{other:?}"),
        };
        format!("{{\"greeting\":{greeting:?},\"config\":{config:?},\"not_declared\":{missing:?}}}")
    }

    async fn secret() -> Result<Reply, String> {
        let upstream = spin_sdk::variables::get("upstream")
            .await
            .map_err(|e| format!("{e:?}"))?;
        let token = spin_sdk::variables::get("token")
            .await
            .map_err(|e| format!("{e:?}"))?;
        let request = http::Request::builder()
            .uri(format!("{upstream}/check"))
            .header("authorization", format!("Bearer {token}"))
            .body(EmptyBody::new())
            .map_err(|e| e.to_string())?;
        let response = spin_sdk::http::send(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn add_note(text: String) -> Result<Reply, String> {
        let db = Connection::open_default()
            .await
            .map_err(|e| format!("{e:?}"))?;
        db.execute("INSERT INTO notes (text) VALUES (?)", [Value::Text(text)])
            .await
            .map_err(|e| format!("{e:?}"))?
            .result()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok((201, db.last_insert_rowid().await.to_string()))
    }

    async fn notes() -> Result<Reply, String> {
        let db = Connection::open_default()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut result = db
            .execute("SELECT id, text FROM notes ORDER BY id", [])
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut notes = Vec::new();
        while let Some(row) = result.next().await {
            let id: i64 = row.get(0).unwrap_or(0);
            let text: &str = row.get(1).unwrap_or("");
            notes.push(format!("{{\"id\":{id},\"text\":{text:?}}}"));
        }
        result.result().await.map_err(|e| format!("{e:?}"))?;
        Ok((200, format!("[{}]", notes.join(","))))
    }

    async fn bad_sql() -> Reply {
        let error = match Connection::open_default().await {
            Ok(db) => match db.execute("SELECT * FROM no_such_table", []).await {
                Ok(result) => result.result().await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match error {
            Ok(()) => (200, "no error".to_owned()),
            Err(error) => (500, format!("{error:?}")),
        }
    }

    async fn count() -> Result<Reply, String> {
        let store = spin_sdk::key_value::Store::open_default()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let count = store
            .get("count")
            .await
            .map_err(|e| format!("{e:?}"))?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        store
            .set("count", count.to_string())
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok((200, count.to_string()))
    }
}
