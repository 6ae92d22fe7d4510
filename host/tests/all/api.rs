//! Every row of the Hero Registry API, success and errors, through the host.

use serde_json::{Value, json};

use crate::support::{AppDir, Host, agent, send, start};

fn create(host: &Host, name: &str, team: Option<&str>) -> Value {
    let reply = send(
        &agent(),
        "POST",
        &host.url("/heroes"),
        Some(&json!({"name": name, "power": "flight", "team": team}).to_string()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

fn names(reply: &crate::support::Reply) -> Vec<String> {
    reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn serves_every_api_row_with_its_errors() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let agent = agent();

    // GET /
    let root = send(&agent, "GET", &host.url("/"), None);
    assert_eq!(
        (root.status, root.json()),
        (200, json!({"message": "Welcome to the Hero Registry"}))
    );

    // POST /heroes: 201 with Location; 422; 413 (guest limit, 64 KiB)
    let created = send(
        &agent,
        "POST",
        &host.url("/heroes"),
        Some(r#"{"name":" Deadpond ","power":"regeneration"}"#),
    );
    assert_eq!(created.status, 201);
    let hero = created.json();
    let id = hero["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 26);
    assert_eq!(
        created.header("location"),
        Some(format!("/heroes/{id}").as_str())
    );
    assert_eq!(hero["name"], "Deadpond");
    let invalid = send(
        &agent,
        "POST",
        &host.url("/heroes"),
        Some(r#"{"name":"","power":"x","extra":1}"#),
    );
    assert_eq!(invalid.status, 422);
    let types: Vec<_> = invalid.json()["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["type"].clone())
        .collect();
    assert_eq!(types, [json!("string_too_short"), json!("extra_forbidden")]);
    let malformed = send(&agent, "POST", &host.url("/heroes"), Some("{\"name\": "));
    assert_eq!(
        (
            malformed.status,
            malformed.json()["detail"][0]["type"].clone()
        ),
        (422, json!("json_invalid"))
    );
    let too_big = json!({"name": "a", "power": "p".repeat(70 * 1024)}).to_string();
    let too_big = send(&agent, "POST", &host.url("/heroes"), Some(&too_big));
    assert_eq!(
        (too_big.status, too_big.json()),
        (413, json!({"detail": "Request body too large"}))
    );

    // GET /heroes/{id}: 200, 404
    let fetched = send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None);
    assert_eq!((fetched.status, fetched.json()), (200, hero.clone()));
    let missing = send(
        &agent,
        "GET",
        &host.url("/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        None,
    );
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"detail": "Hero not found"}))
    );

    // PUT /heroes/{id}: 200 keeping id and created_at; 404; 422; 413
    let replaced = send(
        &agent,
        "PUT",
        &host.url(&format!("/heroes/{id}")),
        Some(r#"{"name":"Deadpool","power":"jokes","team":"X"}"#),
    );
    assert_eq!(replaced.status, 200);
    let replaced = replaced.json();
    assert_eq!(
        (replaced["id"].clone(), replaced["created_at"].clone()),
        (hero["id"].clone(), hero["created_at"].clone())
    );
    assert_eq!(replaced["team"], "X");
    let put_missing = send(
        &agent,
        "PUT",
        &host.url("/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        Some(r#"{"name":"a","power":"b"}"#),
    );
    assert_eq!(put_missing.status, 404);
    let put_invalid = send(
        &agent,
        "PUT",
        &host.url(&format!("/heroes/{id}")),
        Some(r#"{"name":"a"}"#),
    );
    assert_eq!(put_invalid.status, 422);
    let put_huge = json!({"name": "a", "power": "p".repeat(70 * 1024)}).to_string();
    assert_eq!(
        send(
            &agent,
            "PUT",
            &host.url(&format!("/heroes/{id}")),
            Some(&put_huge)
        )
        .status,
        413
    );

    // GET /heroes: creation order, paging, team filter, 422
    for (name, team) in [("b", Some("X")), ("c", None), ("d", Some("X"))] {
        create(&host, name, team);
    }
    assert_eq!(
        names(&send(&agent, "GET", &host.url("/heroes"), None)),
        ["Deadpool", "b", "c", "d"]
    );
    assert_eq!(
        names(&send(
            &agent,
            "GET",
            &host.url("/heroes?limit=2&offset=1"),
            None
        )),
        ["b", "c"]
    );
    assert_eq!(
        names(&send(&agent, "GET", &host.url("/heroes?team=X"), None)),
        ["Deadpool", "b", "d"]
    );
    let bad_query = send(&agent, "GET", &host.url("/heroes?limit=0"), None);
    assert_eq!(
        (
            bad_query.status,
            bad_query.json()["detail"][0]["loc"].clone()
        ),
        (422, json!(["query", "limit"]))
    );
    assert_eq!(
        send(&agent, "GET", &host.url("/heroes?limit=1001"), None).status,
        422
    );

    // DELETE /heroes/{id}: 204 then 404
    let deleted = send(&agent, "DELETE", &host.url(&format!("/heroes/{id}")), None);
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_eq!(
        send(&agent, "DELETE", &host.url(&format!("/heroes/{id}")), None).status,
        404
    );
    assert_eq!(
        send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None).status,
        404
    );

    // Other paths: 404; known path, other method: 405 with Allow
    let unknown = send(&agent, "GET", &host.url("/villains"), None);
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({"detail": "Not Found"}))
    );
    let nested = send(&agent, "GET", &host.url("/heroes/a/b"), None);
    assert_eq!(nested.status, 404);
    let wrong = send(&agent, "PATCH", &host.url("/heroes"), None);
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, POST"))
    );
    let wrong = send(
        &agent,
        "POST",
        &host.url(&format!("/heroes/{id}")),
        Some("{}"),
    );
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, PUT, DELETE"))
    );
    assert_eq!(wrong.json(), json!({"detail": "Method Not Allowed"}));

    // Every response of the API is JSON.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/heroes"),
        ("GET", "/nope"),
        ("DELETE", "/heroes"),
        ("GET", "/heroes/x"),
    ] {
        let reply = send(&agent, method, &host.url(path), None);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }
}

#[test]
fn data_survives_a_restart() {
    let app = AppDir::registry();
    let hero = {
        let host = start(&app, &[]);
        create(&host, "Rusty-Man", Some("Avengers"))
    };
    let host = start(&app, &[]);
    let fetched = send(
        &agent(),
        "GET",
        &host.url(&format!("/heroes/{}", hero["id"].as_str().unwrap())),
        None,
    );
    assert_eq!((fetched.status, fetched.json()), (200, hero));
}

#[test]
fn heroes_made_at_once_by_several_instances_list_in_creation_order() {
    // Four clients at once keep four instances busy, so many heroes are made
    // in the same millisecond by different instances; the list must still be
    // in creation order, which each hero's microsecond created_at shows.
    let app = AppDir::registry();
    let host = start(&app, &[]);
    std::thread::scope(|scope| {
        for client in 0..4 {
            let host = &host;
            scope.spawn(move || {
                let agent = agent();
                for n in 0..50 {
                    let body = json!({"name": format!("{client}-{n}"), "power": "p"});
                    let reply = send(
                        &agent,
                        "POST",
                        &host.url("/heroes"),
                        Some(&body.to_string()),
                    );
                    assert_eq!(reply.status, 201, "{}", reply.body);
                }
            });
        }
    });
    let listed = send(&agent(), "GET", &host.url("/heroes?limit=1000"), None).json();
    let made_at: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|hero| hero["created_at"].as_str().unwrap())
        .collect();
    assert_eq!(made_at.len(), 200);
    let out_of_order: Vec<_> = made_at.windows(2).filter(|w| w[0] > w[1]).collect();
    assert!(
        out_of_order.is_empty(),
        "listed out of creation order: {out_of_order:?}"
    );
}
