//! Handler tests against the in-memory store: every API row, success and errors.

use bytes::Bytes;
use futures::executor::block_on;
use http_body_util::Full;
use serde_json::{Value, json};

use super::*;
use crate::store::memory::MemoryStore;

fn call(store: &MemoryStore, method: &str, uri: &str, body: &str) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    block_on(handle(request, || async { Ok::<_, StoreError>(store) }))
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&reply.body)
        )
    })
}

fn create(store: &MemoryStore, name: &str, team: Option<&str>) -> Value {
    let reply = call(
        store,
        "POST",
        "/heroes",
        &json!({"name": name, "power": "flight", "team": team}).to_string(),
    );
    assert_eq!(
        reply.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    json_of(&reply)
}

fn names(reply: &Reply) -> Vec<String> {
    json_of(reply)
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect()
}

fn error_types(reply: &Reply) -> Vec<String> {
    json_of(reply)["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn root_greets() {
    let reply = call(&MemoryStore::default(), "GET", "/", "");
    assert_eq!(reply.status, 200);
    assert_eq!(
        json_of(&reply),
        json!({"message": "Welcome to the Hero Registry"})
    );
}

#[test]
fn root_does_not_open_the_store() {
    let request = http::Request::get("/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = block_on(handle(request, || async {
        Err::<MemoryStore, _>(StoreError("must not be opened".into()))
    }));
    assert_eq!(reply.status, 200);
}

#[test]
fn create_returns_201_with_location_and_the_hero() {
    let store = MemoryStore::default();
    let reply = call(
        &store,
        "POST",
        "/heroes",
        r#"{"name":" Deadpond ","power":"regeneration"}"#,
    );
    assert_eq!(reply.status, 201);
    let hero = json_of(&reply);
    let id = hero["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    assert_eq!(
        reply.location.as_deref(),
        Some(format!("/heroes/{id}").as_str())
    );
    assert_eq!(hero["name"], "Deadpond");
    assert_eq!(hero["team"], Value::Null);
    assert!(hero["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        hero.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "id", "name", "power", "team"]
    );
    let heroes = store
        .map
        .borrow()
        .keys()
        .filter(|k| k.starts_with("hero:"))
        .count();
    assert_eq!(heroes, 1, "the hero is stored");
}

#[test]
fn create_rejects_invalid_input_with_422_and_stores_nothing() {
    let store = MemoryStore::default();
    let reply = call(
        &store,
        "POST",
        "/heroes",
        r#"{"name":"","power":"x","extra":1}"#,
    );
    assert_eq!(reply.status, 422);
    assert_eq!(error_types(&reply), ["string_too_short", "extra_forbidden"]);
    let reply = call(&store, "POST", "/heroes", r#"{"name": "a", "power": "#);
    assert_eq!(reply.status, 422);
    assert_eq!(error_types(&reply), ["json_invalid"]);
    assert!(store.map.borrow().is_empty());
}

#[test]
fn create_rejects_bodies_over_64_kib_with_413() {
    let store = MemoryStore::default();
    let padding = "x".repeat(MAX_BODY_BYTES);
    let body = json!({"name": "a", "power": padding}).to_string();
    let reply = call(&store, "POST", "/heroes", &body);
    assert_eq!(reply.status, 413);
    assert_eq!(json_of(&reply), json!({"detail": "Request body too large"}));
    assert!(store.map.borrow().is_empty());

    // Exactly at the limit is read (and then fails validation on length).
    let exact = format!(
        r#"{{"name":"a","power":"{}"}}"#,
        "p".repeat(MAX_BODY_BYTES - 23)
    );
    assert_eq!(exact.len(), MAX_BODY_BYTES);
    assert_eq!(call(&store, "POST", "/heroes", &exact).status, 422);
}

/// A body as the WASI request gives it: `data` in one frame, announcing at
/// most `announced` bytes (the client's `Content-Length`); counts the polls.
struct CountedBody {
    data: Option<Bytes>,
    announced: u64,
    polls: std::rc::Rc<std::cell::Cell<usize>>,
}

impl CountedBody {
    fn new(data: &'static str, announced: usize) -> (Self, std::rc::Rc<std::cell::Cell<usize>>) {
        let polls = std::rc::Rc::default();
        let body = CountedBody {
            data: Some(Bytes::from_static(data.as_bytes())),
            announced: announced as u64,
            polls: std::rc::Rc::clone(&polls),
        };
        (body, polls)
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.polls.set(self.polls.get() + 1);
        std::task::Poll::Ready(
            self.data
                .take()
                .map(|data| Ok(http_body::Frame::data(data))),
        )
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = http_body::SizeHint::new();
        hint.set_upper(self.announced);
        hint
    }
}

#[test]
fn announced_oversize_body_is_refused_before_reading() {
    let (body, polls) = CountedBody::new("{}", MAX_BODY_BYTES + 1);
    let request = http::Request::post("/heroes").body(body).unwrap();
    let store = MemoryStore::default();
    let reply = block_on(handle(request, || async { Ok::<_, StoreError>(&store) }));
    assert_eq!(reply.status, 413);
    assert_eq!(polls.get(), 0, "the body was read");
    assert!(store.map.borrow().is_empty());
}

/// The component hands the API an empty body for methods `reads_body` does
/// not name (see `component` in `lib.rs`): no route may read one.
#[test]
fn bodies_are_read_only_for_the_methods_reads_body_names() {
    const HERO: &str = r#"{"name":"Rusty-Man","power":"rust"}"#;
    let store = MemoryStore::default();
    let id = create(&store, "Target", None)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut read = Vec::new();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for uri in ["/", "/heroes", &format!("/heroes/{id}")] {
            let (body, polls) = CountedBody::new(HERO, HERO.len());
            let request = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(body)
                .unwrap();
            let reply = block_on(handle(request, || async { Ok::<_, StoreError>(&store) }));
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            if polls.get() > 0 {
                assert!(reads_body(&method), "{method} {uri} read its body");
                read.push(format!("{method} {uri} {}", reply.status.as_u16()));
            }
        }
    }
    let id_path = format!("/heroes/{id}");
    assert_eq!(
        read,
        ["POST /heroes 201".to_owned(), format!("PUT {id_path} 200")]
    );
}

#[test]
fn get_returns_the_stored_hero_or_404() {
    let store = MemoryStore::default();
    let hero = create(&store, "Rusty-Man", Some("Avengers"));
    let id = hero["id"].as_str().unwrap();
    let reply = call(&store, "GET", &format!("/heroes/{id}"), "");
    assert_eq!(reply.status, 200);
    assert_eq!(json_of(&reply), hero);

    let missing = ulid::Ulid::generate().to_string();
    for path in [
        format!("/heroes/{missing}"),
        "/heroes/not-a-ulid".to_owned(),
    ] {
        let reply = call(&store, "GET", &path, "");
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(json_of(&reply), json!({"detail": "Hero not found"}));
    }
}

#[test]
fn list_returns_heroes_in_creation_order_with_paging() {
    let store = MemoryStore::default();
    for i in 0..5 {
        create(&store, &format!("hero{i}"), None);
    }
    assert_eq!(
        names(&call(&store, "GET", "/heroes", "")),
        ["hero0", "hero1", "hero2", "hero3", "hero4"]
    );
    assert_eq!(
        names(&call(&store, "GET", "/heroes?limit=2&offset=1", "")),
        ["hero1", "hero2"]
    );
    assert_eq!(
        names(&call(&store, "GET", "/heroes?offset=4", "")),
        ["hero4"]
    );
    assert!(names(&call(&store, "GET", "/heroes?offset=99", "")).is_empty());
}

#[test]
fn list_defaults_to_100_and_caps_at_1000() {
    let store = MemoryStore::default();
    for i in 0..120 {
        create(&store, &format!("h{i}"), None);
    }
    assert_eq!(names(&call(&store, "GET", "/heroes", "")).len(), 100);
    assert_eq!(
        names(&call(&store, "GET", "/heroes?limit=1000", "")).len(),
        120
    );
}

#[test]
fn list_filters_by_team_before_paging() {
    let store = MemoryStore::default();
    for (name, team) in [
        ("a", Some("X")),
        ("b", None),
        ("c", Some("X")),
        ("d", Some("Y")),
        ("e", Some("X")),
    ] {
        create(&store, name, team);
    }
    assert_eq!(
        names(&call(&store, "GET", "/heroes?team=X", "")),
        ["a", "c", "e"]
    );
    assert_eq!(
        names(&call(&store, "GET", "/heroes?team=X&offset=1&limit=1", "")),
        ["c"]
    );
    assert!(names(&call(&store, "GET", "/heroes?team=Z", "")).is_empty());
}

#[test]
fn list_decodes_percent_encoded_team() {
    let store = MemoryStore::default();
    create(&store, "a", Some("Justice League"));
    create(&store, "b", Some("Justice"));
    assert_eq!(
        names(&call(&store, "GET", "/heroes?team=Justice%20League", "")),
        ["a"]
    );
    assert_eq!(
        names(&call(&store, "GET", "/heroes?team=Justice+League", "")),
        ["a"]
    );
}

#[test]
fn list_ignores_keys_that_are_not_heroes() {
    let store = MemoryStore::default();
    create(&store, "a", None);
    store
        .map
        .borrow_mut()
        .insert("other-app:thing".into(), b"not json".to_vec());
    assert_eq!(names(&call(&store, "GET", "/heroes", "")), ["a"]);
}

#[test]
fn list_rejects_bad_queries_with_422() {
    let store = MemoryStore::default();
    for (query, kind, loc) in [
        ("limit=0", "greater_than_equal", "limit"),
        ("limit=1001", "less_than_equal", "limit"),
        ("limit=ten", "int_parsing", "limit"),
        ("limit=", "int_parsing", "limit"),
        ("offset=-1", "greater_than_equal", "offset"),
        ("offset=1.5", "int_parsing", "offset"),
    ] {
        let reply = call(&store, "GET", &format!("/heroes?{query}"), "");
        assert_eq!(reply.status, 422, "{query}");
        let detail = &json_of(&reply)["detail"][0];
        assert_eq!(detail["type"], kind, "{query}");
        assert_eq!(detail["loc"], json!(["query", loc]), "{query}");
    }
    let both = call(&store, "GET", "/heroes?limit=0&offset=x", "");
    assert_eq!(error_types(&both), ["greater_than_equal", "int_parsing"]);
}

#[test]
fn parses_list_query_defaults() {
    assert_eq!(
        ListQuery::parse(None).unwrap(),
        ListQuery {
            limit: 100,
            offset: 0,
            team: None
        }
    );
    assert_eq!(
        ListQuery::parse(Some("team=a&limit=5&unknown=1")).unwrap(),
        ListQuery {
            limit: 5,
            offset: 0,
            team: Some("a".into())
        }
    );
}

#[test]
fn put_replaces_keeping_id_and_created_at() {
    let store = MemoryStore::default();
    let hero = create(&store, "Spider-Boy", Some("X"));
    let path = format!("/heroes/{}", hero["id"].as_str().unwrap());
    let reply = call(
        &store,
        "PUT",
        &path,
        r#"{"name":"Spider-Man","power":"webs"}"#,
    );
    assert_eq!(reply.status, 200);
    let replaced = json_of(&reply);
    assert_eq!(replaced["id"], hero["id"]);
    assert_eq!(replaced["created_at"], hero["created_at"]);
    assert_eq!(replaced["name"], "Spider-Man");
    assert_eq!(replaced["team"], Value::Null);
    assert_eq!(json_of(&call(&store, "GET", &path, "")), replaced);
}

#[test]
fn put_answers_404_422_and_413() {
    let store = MemoryStore::default();
    let missing = format!("/heroes/{}", ulid::Ulid::generate());
    assert_eq!(
        call(&store, "PUT", &missing, r#"{"name":"a","power":"b"}"#).status,
        404
    );

    let hero = create(&store, "a", None);
    let path = format!("/heroes/{}", hero["id"].as_str().unwrap());
    let reply = call(&store, "PUT", &path, r#"{"name":"a"}"#);
    assert_eq!(reply.status, 422);
    assert_eq!(error_types(&reply), ["missing"]);
    let huge = json!({"name": "a", "power": "p".repeat(MAX_BODY_BYTES)}).to_string();
    assert_eq!(call(&store, "PUT", &path, &huge).status, 413);
    assert_eq!(
        json_of(&call(&store, "GET", &path, "")),
        hero,
        "nothing changed"
    );
}

#[test]
fn delete_answers_204_then_404() {
    let store = MemoryStore::default();
    let hero = create(&store, "a", None);
    let path = format!("/heroes/{}", hero["id"].as_str().unwrap());
    let reply = call(&store, "DELETE", &path, "");
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    assert_eq!(call(&store, "GET", &path, "").status, 404);
    assert_eq!(call(&store, "DELETE", &path, "").status, 404);
}

#[test]
fn unknown_paths_are_404_not_found() {
    let store = MemoryStore::default();
    for path in ["/nope", "/heroes/", "/heroes/a/b", "/heroesx", ""] {
        let reply = call(
            &store,
            "GET",
            if path.is_empty() { "/x/y" } else { path },
            "",
        );
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(json_of(&reply), json!({"detail": "Not Found"}));
    }
}

#[test]
fn wrong_method_is_405_with_allow() {
    let store = MemoryStore::default();
    for (method, path, allow) in [
        ("POST", "/", "GET"),
        ("DELETE", "/heroes", "GET, POST"),
        (
            "PATCH",
            "/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "GET, PUT, DELETE",
        ),
        (
            "POST",
            "/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "GET, PUT, DELETE",
        ),
    ] {
        let reply = call(&store, method, path, "");
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.allow, Some(allow));
        assert_eq!(json_of(&reply), json!({"detail": "Method Not Allowed"}));
    }
}

#[test]
fn store_failure_is_500_with_a_generic_body() {
    let store = MemoryStore::default();
    let hero = create(&store, "a", None);
    store.broken.set(true);
    let path = format!("/heroes/{}", hero["id"].as_str().unwrap());
    for (method, uri, body) in [
        ("GET", path.as_str(), ""),
        ("GET", "/heroes", ""),
        ("POST", "/heroes", r#"{"name":"a","power":"b"}"#),
        ("DELETE", path.as_str(), ""),
    ] {
        let reply = call(&store, method, uri, body);
        assert_eq!(reply.status, 500, "{method} {uri}");
        assert_eq!(json_of(&reply), json!({"detail": "Internal Server Error"}));
    }
}

#[test]
fn store_open_failure_is_500() {
    let request = http::Request::get("/heroes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = block_on(handle(request, || async {
        Err::<MemoryStore, _>(StoreError("no such store".into()))
    }));
    assert_eq!(reply.status, 500);
}

#[test]
fn corrupt_stored_value_is_500_not_a_panic() {
    let store = MemoryStore::default();
    let hero = create(&store, "a", Some("X"));
    let key = format!("hero:{}", hero["id"].as_str().unwrap());
    store.map.borrow_mut().insert(key, b"{broken".to_vec());
    assert_eq!(call(&store, "GET", "/heroes?team=X", "").status, 500);
}
