//! A guest that misbehaves on purpose, so the host's defences can be tested
//! against a real component. Every behaviour is chosen by the path (the last
//! segment) and query parameters:
//!
//! - `/hello`: 200 `hello`.
//! - `/loop`: spins forever (only the host's timeout stops it).
//! - `/trap`: panics (a trap).
//! - `/alloc?mb=N`: allocates and touches N MiB, then answers 200.
//! - `/sleep?ms=N`: waits N ms without using the CPU, then answers 200.
//! - `/print?lines=N&bytes=B&json=1&stream=stderr&partial=1`: prints N lines
//!   of B bytes (JSON objects when `json=1`), the last without a newline when
//!   `partial=1`.
//! - `/<tag>/markers?lines=N&ms=M`: N times, prints a whole stdout line
//!   `marker <tag> <i> out`, then a stderr line in two parts, `marker <tag>
//!   <i>` and ` err`, then `marker <tag> <i> stream` into a WASIp3 stdout
//!   stream the request opened first, with a wait of M ms between each
//!   write: lines of requests served at once by one instance interleave,
//!   whole and partial, through both kinds of WASI output.
//! - `/linger?ms=M`: answers at once, and leaves a task running that prints
//!   `lingering` M ms later, after the response has ended.
//! - `/echo`: answers with the size of the request body.
//! - `/status?code=N`: answers with that status.
//! - `/fetch?url=U`: sends a GET to U and reports what happened.
//! - `/kv?label=L`: opens store L, sets, reads back and lists a key.
//! - `/kvop?label=L&op=O&key=K`: one key-value operation for conformance
//!   tests: `set` (the body is the value), `get` (200 with the value, or 404),
//!   `delete`, `exists` (`true`/`false`), `keys` (sorted, one per line).
//!   Keys are percent-decoded. Failures answer 500 with the error.
//! - `/headers`: answers with the request's headers, one `name: value` a line.
//! - `/env`: answers with the environment the guest sees, one `K=V` a line.
//! - `/fs`: tries to read `/etc/hostname` and says what happened.
//! - `/otel?url=U`: telemetry through `wasi:otel`: asks the host for its
//!   span, starts a guest span `chaos.work` under it, sets the key `otel` in
//!   the `default` store and, with `url`, sends a GET to U while the span is
//!   open; emits a log record, ends the span, and answers with the host
//!   span's trace and span ids and the guest span's id, space-separated.

#[cfg(target_arch = "wasm32")]
mod otel {
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        inline: "
            package chaos:otel;
            world otel {
                import wasi:clocks/wall-clock@0.2.0;
                import wasi:otel/tracing@0.2.0-rc.2;
                import wasi:otel/logs@0.2.0-rc.2;
            }
        ",
        path: [
            "../../host/wit/deps/io@0.2.0",
            "../../host/wit/deps/clocks@0.2.0",
            "../../host/wit/deps/otel@0.2.0-rc.2",
        ],
        generate_all,
    });

    use self::wasi::clocks::wall_clock;
    use self::wasi::otel::types::{InstrumentationScope, KeyValue};
    use self::wasi::otel::{logs, tracing};

    /// A span the guest has started, to end later.
    pub struct GuestSpan {
        outer: tracing::SpanContext,
        context: tracing::SpanContext,
        started: wall_clock::Datetime,
    }

    impl GuestSpan {
        /// Starts a span under the host's.
        pub fn start() -> Self {
            let outer = tracing::outer_span_context();
            let started = wall_clock::now();
            // Unique enough for a test guest, never zero.
            let id = (started.seconds << 30) ^ u64::from(started.nanoseconds) | 1;
            let context = tracing::SpanContext {
                span_id: format!("{id:016x}"),
                is_remote: false,
                ..outer.clone()
            };
            tracing::on_start(&context);
            GuestSpan {
                outer,
                context,
                started,
            }
        }

        /// The host span's trace and span ids, and the guest span's id.
        pub fn ids(&self) -> String {
            format!(
                "{} {} {}",
                self.outer.trace_id, self.outer.span_id, self.context.span_id
            )
        }

        /// Emits a log record naming this span.
        pub fn log(&self, message: &str) {
            logs::on_emit(&logs::LogRecord {
                timestamp: Some(wall_clock::now()),
                observed_timestamp: None,
                severity_text: Some("WARN".into()),
                severity_number: Some(13),
                body: Some(format!("{message:?}")),
                attributes: Some(vec![KeyValue {
                    key: "hero".into(),
                    value: "\"deadpond\"".into(),
                }]),
                event_name: Some("chaos.otel".into()),
                resource: None,
                instrumentation_scope: None,
                trace_id: Some(self.context.trace_id.clone()),
                span_id: Some(self.context.span_id.clone()),
                trace_flags: Some(self.context.trace_flags),
            });
        }

        /// Ends the span.
        pub fn end(self) {
            let now = wall_clock::now();
            tracing::on_end(&tracing::SpanData {
                span_context: self.context,
                parent_span_id: self.outer.span_id,
                span_kind: tracing::SpanKind::Internal,
                name: "chaos.work".into(),
                start_time: self.started,
                end_time: now,
                attributes: vec![KeyValue {
                    key: "chaos.step".into(),
                    value: "\"otel\"".into(),
                }],
                events: vec![tracing::Event {
                    name: "halfway".into(),
                    time: now,
                    attributes: Vec::new(),
                }],
                links: Vec::new(),
                status: tracing::Status::Ok,
                instrumentation_scope: InstrumentationScope {
                    name: "chaos".into(),
                    version: Some("1".into()),
                    schema_url: None,
                    attributes: Vec::new(),
                },
                dropped_attributes: 0,
                dropped_events: 0,
                dropped_links: 0,
            });
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::time::Duration;

    use spin_sdk::http::body::IncomingBodyExt;
    use spin_sdk::http::{IntoResponse, Request, StatusCode};

    fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// `%XX` escapes decoded; anything malformed is kept as it is.
    fn percent_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                }
                (byte, _, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn number(query: &str, name: &str, default: u64) -> u64 {
        param(query, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn reply(
        status: StatusCode,
        body: String,
    ) -> spin_sdk::http::Result<spin_sdk::wasip3::http::types::Response> {
        Ok((status, body).into_response()?)
    }

    #[spin_sdk::http_service]
    async fn handle(request: Request) -> impl IntoResponse {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let action = path.rsplit('/').next().unwrap_or("");
        match action {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "trap" => panic!("chaos asked to trap"),
            "alloc" => {
                let mb = number(&query, "mb", 16) as usize;
                let block = vec![1u8; mb << 20];
                reply(
                    StatusCode::OK,
                    format!("allocated {}", std::hint::black_box(&block).len()),
                )
            }
            "sleep" => {
                spin_sdk::time::sleep(Duration::from_millis(number(&query, "ms", 100))).await;
                reply(StatusCode::OK, "slept".into())
            }
            "print" => {
                let lines = number(&query, "lines", 1);
                let bytes = number(&query, "bytes", 16) as usize;
                let json = param(&query, "json") == Some("1");
                let partial = param(&query, "partial") == Some("1");
                let stderr = param(&query, "stream") == Some("stderr");
                for i in 0..lines {
                    let text = if json {
                        format!(
                            r#"{{"level":"info","message":"line {i}","seq":{i},"pad":"{}"}}"#,
                            "x".repeat(bytes)
                        )
                    } else {
                        format!("line {i} {}", "x".repeat(bytes))
                    };
                    let last = i + 1 == lines;
                    match (stderr, partial && last) {
                        (false, false) => println!("{text}"),
                        (false, true) => print!("{text}"),
                        (true, false) => eprintln!("{text}"),
                        (true, true) => eprint!("{text}"),
                    }
                }
                reply(StatusCode::OK, format!("printed {lines}"))
            }
            "markers" => {
                let tag = path.rsplit('/').nth(1).unwrap_or("").to_owned();
                let lines = number(&query, "lines", 5);
                let pause = Duration::from_millis(number(&query, "ms", 1));
                // Standard output as a WASIp3 stream too, beside the WASIp2
                // one Rust's `println!` writes to.
                let (mut stream, readable) = spin_sdk::wasip3::wit_stream::new::<u8>();
                let written = spin_sdk::wasip3::cli::stdout::write_via_stream(readable);
                for i in 0..lines {
                    println!("marker {tag} {i} out");
                    spin_sdk::time::sleep(pause).await;
                    eprint!("marker {tag} {i}");
                    spin_sdk::time::sleep(pause).await;
                    eprintln!(" err");
                    spin_sdk::time::sleep(pause).await;
                    let line = format!("marker {tag} {i} stream\n");
                    if !stream.write_all(line.into_bytes()).await.is_empty() {
                        return reply(StatusCode::INTERNAL_SERVER_ERROR, "stdout closed".into());
                    }
                    spin_sdk::time::sleep(pause).await;
                }
                drop(stream);
                if let Err(error) = written.await {
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("stdout: {error:?}"),
                    );
                }
                reply(StatusCode::OK, format!("marked {lines}"))
            }
            "linger" => {
                let pause = Duration::from_millis(number(&query, "ms", 50));
                spin_sdk::wasip3::spawn(async move {
                    spin_sdk::time::sleep(pause).await;
                    println!("lingering");
                });
                reply(StatusCode::OK, "lingering".into())
            }
            "echo" => match request.into_body().bytes().await {
                Ok(body) => reply(StatusCode::OK, body.len().to_string()),
                Err(error) => reply(StatusCode::BAD_REQUEST, format!("body error: {error:?}")),
            },
            "status" => {
                let code = StatusCode::from_u16(number(&query, "code", 200) as u16)
                    .unwrap_or(StatusCode::OK);
                reply(code, "status".into())
            }
            "fetch" => {
                let url = param(&query, "url")
                    .unwrap_or("http://127.0.0.1:1/")
                    .to_owned();
                match spin_sdk::http::get(url.as_str()).await {
                    Ok(response) => reply(
                        StatusCode::OK,
                        format!("upstream {}", response.status().as_u16()),
                    ),
                    Err(error) => reply(
                        StatusCode::BAD_GATEWAY,
                        format!("outbound error: {error:?}"),
                    ),
                }
            }
            "kv" => {
                let label = param(&query, "label").unwrap_or("default");
                let store = match spin_sdk::key_value::Store::open(label).await {
                    Ok(store) => store,
                    Err(error) => return reply(StatusCode::FORBIDDEN, format!("open: {error:?}")),
                };
                if let Err(error) = store.set("chaos", b"value").await {
                    return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("set: {error:?}"));
                }
                let value = store.get("chaos").await;
                let keys = store.get_keys().await.collect().await;
                reply(StatusCode::OK, format!("get: {value:?} keys: {keys:?}"))
            }
            "kvop" => {
                let label = param(&query, "label").unwrap_or("default").to_owned();
                let op = param(&query, "op").unwrap_or("").to_owned();
                let key = percent_decode(param(&query, "key").unwrap_or(""));
                let store = match spin_sdk::key_value::Store::open(&label).await {
                    Ok(store) => store,
                    Err(error) => return reply(StatusCode::FORBIDDEN, format!("open: {error:?}")),
                };
                let failed = |error: spin_sdk::key_value::Error| {
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{op}: {error:?}"),
                    )
                };
                match op.as_str() {
                    "set" => {
                        let value = match request.into_body().bytes().await {
                            Ok(value) => value,
                            Err(error) => {
                                return reply(StatusCode::BAD_REQUEST, format!("body: {error:?}"));
                            }
                        };
                        match store.set(&key, &value).await {
                            Ok(()) => reply(StatusCode::OK, "set".into()),
                            Err(error) => failed(error),
                        }
                    }
                    "get" => match store.get(&key).await {
                        Ok(Some(value)) => Ok(value.into_response()?),
                        Ok(None) => reply(StatusCode::NOT_FOUND, "absent".into()),
                        Err(error) => failed(error),
                    },
                    "delete" => match store.delete(&key).await {
                        Ok(()) => reply(StatusCode::OK, "deleted".into()),
                        Err(error) => failed(error),
                    },
                    "exists" => match store.exists(&key).await {
                        Ok(exists) => reply(StatusCode::OK, exists.to_string()),
                        Err(error) => failed(error),
                    },
                    "keys" => match store.get_keys().await.collect().await {
                        Ok(mut keys) => {
                            keys.sort();
                            reply(
                                StatusCode::OK,
                                keys.iter().map(|k| format!("{k}\n")).collect(),
                            )
                        }
                        Err(error) => failed(error),
                    },
                    _ => reply(StatusCode::BAD_REQUEST, format!("unknown op {op:?}")),
                }
            }
            "headers" => {
                let mut text = String::new();
                for (name, value) in request.headers() {
                    text.push_str(&format!(
                        "{}: {}\n",
                        name,
                        String::from_utf8_lossy(value.as_bytes())
                    ));
                }
                reply(StatusCode::OK, text)
            }
            "env" => reply(
                StatusCode::OK,
                std::env::vars()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect(),
            ),
            "otel" => {
                let span = crate::otel::GuestSpan::start();
                if let Ok(store) = spin_sdk::key_value::Store::open("default").await {
                    let _ = store.set("otel", b"1").await;
                }
                if let Some(url) = param(&query, "url") {
                    let _ = spin_sdk::http::get(url).await;
                }
                span.log("guest says hi");
                let ids = span.ids();
                span.end();
                reply(StatusCode::OK, ids)
            }
            "fs" => match std::fs::read_to_string("/etc/hostname") {
                Ok(text) => reply(StatusCode::OK, format!("read: {text}")),
                Err(error) => reply(StatusCode::FORBIDDEN, format!("no filesystem: {error}")),
            },
            _ => reply(StatusCode::OK, "hello".into()),
        }
    }
}
