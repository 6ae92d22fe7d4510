//! Routing and the handlers of the Hero Registry API, generic over the store so
//! they run natively in tests.

use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::error::{ApiError, FieldError};
use crate::hero::{HeroId, NewHero};
use crate::registry::{Page, Registry};
use crate::store::{KeyValue, StoreError};

/// Largest accepted request body: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// `limit` when the query does not give one.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 1000;

/// What a handler answers; turned into an HTTP response at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body (empty for 204).
    pub body: Vec<u8>,
    /// `Location` header, on create.
    pub location: Option<String>,
    /// `Allow` header, on 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json(status: StatusCode, body: Vec<u8>) -> Self {
        Reply {
            status,
            body,
            location: None,
            allow: None,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &error {
            log_line("error", "request failed", &[("error", detail)]);
        }
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let allow = match &error {
            ApiError::MethodNotAllowed(methods) => Some(allow_header(methods)),
            _ => None,
        };
        Reply {
            status,
            body: error.body(),
            location: None,
            allow,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.0)
    }
}

/// The API's paths, as matched against a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/`
    Root,
    /// `/heroes`
    Heroes,
    /// `/heroes/{id}`
    Hero(&'a str),
}

impl<'a> Route<'a> {
    /// The route a path names, if any.
    pub fn of(path: &'a str) -> Option<Self> {
        match path {
            "/" => Some(Route::Root),
            "/heroes" => Some(Route::Heroes),
            _ => path
                .strip_prefix("/heroes/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(Route::Hero),
        }
    }

    /// The methods this route answers.
    pub fn allowed(self) -> &'static [&'static str] {
        match self {
            Route::Root => &["GET"],
            Route::Heroes => &["GET", "POST"],
            Route::Hero(_) => &["GET", "PUT", "DELETE"],
        }
    }
}

fn allow_header(methods: &[&str]) -> &'static str {
    match methods {
        ["GET"] => "GET",
        ["GET", "POST"] => "GET, POST",
        _ => "GET, PUT, DELETE",
    }
}

/// Whether the API reads the body of a request with this method: only
/// `POST` and `PUT` carry heroes; any other request's body is ignored.
pub fn reads_body(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT
}

/// Answers one request. `open_store` is called only by handlers that need the
/// store, so `GET /` costs no key-value call.
pub async fn handle<B, S, F>(request: http::Request<B>, open_store: impl FnOnce() -> F) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
    S: KeyValue,
    F: Future<Output = Result<S, StoreError>>,
{
    match dispatch(request, open_store).await {
        Ok(reply) => reply,
        Err(error) => error.into(),
    }
}

async fn dispatch<B, S, F>(
    request: http::Request<B>,
    open_store: impl FnOnce() -> F,
) -> Result<Reply, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
    S: KeyValue,
    F: Future<Output = Result<S, StoreError>>,
{
    let (parts, body) = request.into_parts();
    let route = Route::of(parts.uri.path()).ok_or(ApiError::NotFound)?;
    let method = &parts.method;
    let not_allowed = || ApiError::MethodNotAllowed(route.allowed());
    match route {
        Route::Root if method == Method::GET => Ok(Reply::json(
            StatusCode::OK,
            br#"{"message":"Welcome to the Hero Registry"}"#.to_vec(),
        )),
        Route::Heroes if method == Method::GET => {
            let query = ListQuery::parse(parts.uri.query())?;
            list(&open_store().await?, &query).await
        }
        Route::Heroes if method == Method::POST => {
            let input = NewHero::parse(&read_body(body).await?)?;
            create(&open_store().await?, input).await
        }
        Route::Hero(id) => {
            // Anything that is not a ULID names no hero; no store call needed.
            let id = HeroId::parse(id);
            if method == Method::GET {
                read(&open_store().await?, id.ok_or(ApiError::HeroNotFound)?).await
            } else if method == Method::PUT {
                let input = NewHero::parse(&read_body(body).await?)?;
                replace(
                    &open_store().await?,
                    id.ok_or(ApiError::HeroNotFound)?,
                    input,
                )
                .await
            } else if method == Method::DELETE {
                remove(&open_store().await?, id.ok_or(ApiError::HeroNotFound)?).await
            } else {
                Err(not_allowed())
            }
        }
        _ => Err(not_allowed()),
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (early, when
/// the body's size hint says it is longer: from the WASI request, the
/// `Content-Length` the client announced).
async fn read_body<B>(body: B) -> Result<Vec<u8>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let hint = body.size_hint();
    let too_long = |len: u64| len > MAX_BODY_BYTES as u64;
    if too_long(hint.lower()) || hint.upper().is_some_and(too_long) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            log_line(
                "warn",
                "request body unreadable",
                &[("error", &e.to_string())],
            );
            ApiError::BodyUnreadable
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected)
}

/// `limit`, `offset` and `team` of `GET /heroes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1..=1000, default 100.
    pub limit: usize,
    /// How many matching heroes to skip.
    pub offset: usize,
    /// Only heroes of this team.
    pub team: Option<String>,
}

impl ListQuery {
    /// Parses the query string; unknown parameters are ignored, as FastAPI does.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut limit = None;
        let mut offset = None;
        let mut team = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "limit" => limit = Some(value),
                "offset" => offset = Some(value),
                "team" => team = Some(value.into_owned()),
                _ => {}
            }
        }
        let mut errors = Vec::new();
        let limit = bounded_int(
            "limit",
            limit.as_deref(),
            DEFAULT_LIMIT,
            1,
            Some(MAX_LIMIT),
            &mut errors,
        );
        let offset = bounded_int("offset", offset.as_deref(), 0, 0, None, &mut errors);
        if errors.is_empty() {
            Ok(ListQuery {
                limit,
                offset,
                team,
            })
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

fn bounded_int(
    name: &str,
    value: Option<&str>,
    default: usize,
    min: usize,
    max: Option<usize>,
    errors: &mut Vec<FieldError>,
) -> usize {
    let Some(text) = value else {
        return default;
    };
    let loc = || vec!["query".into(), name.into()];
    let Ok(number) = text.trim().parse::<i128>() else {
        errors.push(FieldError::new(
            loc(),
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        ));
        return default;
    };
    if number < min as i128 {
        errors.push(
            FieldError::new(
                loc(),
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            )
            .with_ctx("ge", min),
        );
        return default;
    }
    if let Some(max) = max.filter(|max| number > *max as i128) {
        errors.push(
            FieldError::new(
                loc(),
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            )
            .with_ctx("le", max),
        );
        return default;
    }
    usize::try_from(number).unwrap_or(usize::MAX)
}

/// The registry on `store`, on the wall clock.
fn registry<S: KeyValue>(store: &S) -> Registry<'_, S> {
    Registry::new(store, &SystemTime::now)
}

async fn list(store: &impl KeyValue, query: &ListQuery) -> Result<Reply, ApiError> {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
        team: query.team.as_deref(),
    };
    let body = registry(store).list(&page).await?;
    Ok(Reply::json(StatusCode::OK, body))
}

async fn create(store: &impl KeyValue, input: NewHero) -> Result<Reply, ApiError> {
    let (id, body) = registry(store).create(input).await?;
    log_line("info", "hero created", &[("hero_id", &id.to_string())]);
    Ok(Reply {
        location: Some(format!("/heroes/{id}")),
        ..Reply::json(StatusCode::CREATED, body)
    })
}

async fn read(store: &impl KeyValue, id: HeroId) -> Result<Reply, ApiError> {
    let value = registry(store)
        .read(id)
        .await?
        .ok_or(ApiError::HeroNotFound)?;
    Ok(Reply::json(StatusCode::OK, value))
}

async fn replace(store: &impl KeyValue, id: HeroId, input: NewHero) -> Result<Reply, ApiError> {
    let body = registry(store)
        .replace(id, input)
        .await?
        .ok_or(ApiError::HeroNotFound)?;
    log_line("info", "hero replaced", &[("hero_id", &id.to_string())]);
    Ok(Reply::json(StatusCode::OK, body))
}

async fn remove(store: &impl KeyValue, id: HeroId) -> Result<Reply, ApiError> {
    if !registry(store).remove(id).await? {
        return Err(ApiError::HeroNotFound);
    }
    log_line("info", "hero deleted", &[("hero_id", &id.to_string())]);
    Ok(Reply::json(StatusCode::NO_CONTENT, Vec::new()))
}

/// Prints one structured line (a JSON object) for the host to carry: info to
/// stdout, warnings and errors to stderr.
pub(crate) fn log_line(level: &str, message: &str, fields: &[(&str, &str)]) {
    let mut line = serde_json::Map::new();
    line.insert("level".into(), level.into());
    line.insert("message".into(), message.into());
    for (key, value) in fields {
        line.insert((*key).into(), (*value).into());
    }
    let line = serde_json::Value::Object(line);
    if level == "info" {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests;
