//! API errors and their FastAPI-shaped JSON bodies.
//!
//! Clients of the FastAPI registry read `{"detail": "..."}` for plain errors and
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}` for validation
//! errors; the shapes and the pydantic `type` names are kept so they keep working.

use serde::Serialize;
use serde_json::{Map, Value};

/// One step of a validation error's location: a field name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    /// A named part: `"body"`, `"query"`, a field name.
    Key(String),
    /// A position, such as the byte offset of a JSON syntax error.
    Index(usize),
}

impl From<&str> for Loc {
    fn from(key: &str) -> Self {
        Loc::Key(key.to_owned())
    }
}

impl From<usize> for Loc {
    fn from(index: usize) -> Self {
        Loc::Index(index)
    }
}

/// One entry of a 422 `detail` list, as pydantic reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Where the error is, e.g. `["body", "name"]`.
    pub loc: Vec<Loc>,
    /// A human-readable message.
    pub msg: String,
    /// The pydantic error type, e.g. `string_too_short`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The constraint that failed, e.g. `{"max_length": 100}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Map<String, Value>>,
}

impl FieldError {
    /// An error without context.
    pub fn new(loc: Vec<Loc>, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind,
            ctx: None,
        }
    }

    /// Adds one context entry.
    pub fn with_ctx(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.ctx
            .get_or_insert_with(Map::new)
            .insert(key.to_owned(), value.into());
        self
    }
}

/// Everything a handler can answer with other than success.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 404 for an unknown path.
    NotFound,
    /// 404 for an id that names no hero.
    HeroNotFound,
    /// 405, with the methods the path allows.
    MethodNotAllowed(&'static [&'static str]),
    /// 400 when the request body could not be read.
    BodyUnreadable,
    /// 413 when the request body is larger than the limit.
    PayloadTooLarge,
    /// 422 with every validation error found.
    Validation(Vec<FieldError>),
    /// 500; the detail is logged, never sent to the client.
    Internal(String),
    /// 503: the store is too busy for this request right now (it changed
    /// nothing); the detail is logged, never sent to the client.
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound | ApiError::HeroNotFound => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::BodyUnreadable => 400,
            ApiError::PayloadTooLarge => 413,
            ApiError::Validation(_) => 422,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The JSON body in FastAPI's shape.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Detail<'a, T: Serialize> {
            detail: &'a T,
        }
        let detail = |text: &str| serde_json::to_vec(&Detail { detail: &text });
        let encoded = match self {
            ApiError::NotFound => detail("Not Found"),
            ApiError::HeroNotFound => detail("Hero not found"),
            ApiError::MethodNotAllowed(_) => detail("Method Not Allowed"),
            ApiError::BodyUnreadable => detail("There was an error parsing the body"),
            ApiError::PayloadTooLarge => detail("Request body too large"),
            ApiError::Validation(errors) => serde_json::to_vec(&Detail { detail: errors }),
            ApiError::Internal(_) => detail("Internal Server Error"),
            ApiError::Unavailable(_) => detail("Service Unavailable"),
        };
        encoded.expect("error bodies are plain data and always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(error: &ApiError) -> Value {
        serde_json::from_slice(&error.body()).unwrap()
    }

    #[test]
    fn not_found_has_fastapi_detail() {
        assert_eq!(ApiError::NotFound.status(), 404);
        assert_eq!(
            body_json(&ApiError::NotFound),
            serde_json::json!({"detail": "Not Found"})
        );
        assert_eq!(
            body_json(&ApiError::HeroNotFound),
            serde_json::json!({"detail": "Hero not found"})
        );
    }

    #[test]
    fn validation_error_lists_loc_msg_type_and_ctx() {
        let error = ApiError::Validation(vec![
            FieldError::new(
                vec!["body".into(), "name".into()],
                "string_too_long",
                "String should have at most 100 characters",
            )
            .with_ctx("max_length", 100),
            FieldError::new(
                vec!["body".into(), 7usize.into()],
                "json_invalid",
                "JSON decode error",
            ),
        ]);
        assert_eq!(error.status(), 422);
        assert_eq!(
            body_json(&error),
            serde_json::json!({"detail": [
                {"loc": ["body", "name"], "msg": "String should have at most 100 characters",
                 "type": "string_too_long", "ctx": {"max_length": 100}},
                {"loc": ["body", 7], "msg": "JSON decode error", "type": "json_invalid"},
            ]})
        );
    }

    #[test]
    fn internal_error_hides_its_detail() {
        let error = ApiError::Internal("sqlite is on fire".into());
        assert_eq!(error.status(), 500);
        assert!(!String::from_utf8(error.body()).unwrap().contains("fire"));
        let busy = ApiError::Unavailable("the log kept changing".into());
        assert_eq!(busy.status(), 503);
        assert_eq!(
            body_json(&busy),
            serde_json::json!({"detail": "Service Unavailable"})
        );
    }
}
