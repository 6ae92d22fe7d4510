//! The registry's data model through the real host: racing writes to one
//! hero stay linearizable, a storm of writers on SQLite and on Redis shared
//! by two hosts leaves every list equal to the acknowledged heroes, a host
//! killed mid-storm leaves nothing a list shows wrongly, and a store the
//! previous version wrote is indexed on first use without losing a hero.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{AppDir, Host, Redis, agent, exclusive, send, start};

/// Hosts serving the registry on one store: SQLite (one host) or Redis
/// (two hosts, as two replicas).
struct Deployment {
    hosts: Vec<Host>,
    app: AppDir,
    args: Vec<String>,
    redis: Option<Redis>,
}

impl Deployment {
    fn sqlite() -> Self {
        Self::serve(AppDir::registry(), Vec::new(), None, 1)
    }

    fn redis() -> Self {
        let redis = Redis::start();
        let app = AppDir::registry();
        let config = app.write(
            "runtime-config.toml",
            &format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
                redis.url()
            ),
        );
        let args = vec![
            "--runtime-config-file".to_owned(),
            config.to_str().unwrap().to_owned(),
        ];
        Self::serve(app, args, Some(redis), 2)
    }

    fn serve(app: AppDir, args: Vec<String>, redis: Option<Redis>, count: usize) -> Self {
        let mut deployment = Deployment {
            hosts: Vec::new(),
            app,
            args,
            redis,
        };
        deployment.start(count);
        deployment
    }

    fn start(&mut self, count: usize) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.hosts = (0..count).map(|_| start(&self.app, &args)).collect();
    }

    /// Stops every host (SIGKILL) and starts as many on the same store.
    fn restart(&mut self) {
        let count = self.hosts.len();
        self.hosts.clear();
        self.start(count);
    }

    /// The URL of `path` on the `n`th host (round robin).
    fn url(&self, n: usize, path: &str) -> String {
        self.hosts[n % self.hosts.len()].url(path)
    }
}

fn body(name: &str, team: Option<&str>) -> String {
    json!({"name": name, "power": "tests", "team": team}).to_string()
}

fn create(url: &str, name: &str, team: Option<&str>) -> String {
    let reply = send(&agent(), "POST", url, Some(&body(name, team)));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// Creates `count` heroes named `name`, through each host in turn: the
/// first two of every three in `teams`, the third in none. Their ids and
/// teams.
fn create_in_turn(
    deployment: &Deployment,
    count: usize,
    name: &str,
    teams: [&str; 2],
) -> BTreeMap<String, Option<String>> {
    let mut heroes = BTreeMap::new();
    for i in 0..count {
        let team = teams.get(i % 3).copied();
        let id = create(&deployment.url(i, "/heroes"), name, team);
        heroes.insert(id, team.map(str::to_owned));
    }
    heroes
}

/// Every hero of a list (`team` or all), paging `step` at a time, as
/// `(id, team)` in the order listed.
fn list_all(url: &str, team: Option<&str>, step: usize) -> Vec<(String, Option<String>)> {
    let agent = agent();
    let mut heroes = Vec::new();
    loop {
        let mut query = format!("/heroes?limit={step}&offset={}", heroes.len());
        if let Some(team) = team {
            query.push_str(&format!("&team={}", team.replace(' ', "%20")));
        }
        let reply = send(&agent, "GET", &format!("{url}{query}"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        let page = page.as_array().unwrap();
        heroes.extend(page.iter().map(|hero| {
            (
                hero["id"].as_str().unwrap().to_owned(),
                hero["team"].as_str().map(str::to_owned),
            )
        }));
        if page.len() < step {
            return heroes;
        }
    }
}

/// Checks that the list of everything, and of each team, is exactly
/// `expected` (id to team), in id (creation) order.
fn assert_lists_equal(url: &str, expected: &BTreeMap<String, Option<String>>) {
    let listed = list_all(url, None, 97);
    let want: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(id, team)| (id.clone(), team.clone()))
        .collect();
    assert_eq!(listed.len(), want.len(), "how many heroes are listed");
    assert_eq!(listed, want, "the list of all heroes");
    let teams: BTreeSet<&String> = expected.values().flatten().collect();
    for team in teams {
        let ids: Vec<String> = list_all(url, Some(team), 41)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let want: Vec<String> = expected
            .iter()
            .filter(|(_, of)| of.as_ref() == Some(team))
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(ids, want, "the list of team {team}");
    }
}

/// Checks the lists of every host of `deployment` against `expected`.
fn assert_every_host_lists(deployment: &Deployment, expected: &BTreeMap<String, Option<String>>) {
    for n in 0..deployment.hosts.len() {
        assert_lists_equal(&deployment.url(n, ""), expected);
    }
}

/// Racing pairs behind a barrier on fresh heroes: two DELETEs and a PUT per
/// hero, each from its own thread (and host, with Redis). Counts DELETEs
/// that both answered 204 and heroes a GET finds after a 204.
fn race_puts_and_deletes(deployment: &Deployment, pairs: usize) -> (usize, usize) {
    let (mut double_deletes, mut resurrected) = (0, 0);
    for n in 0..pairs {
        let id = create(&deployment.url(n, "/heroes"), "racer", Some("A"));
        let path = format!("/heroes/{id}");
        let barrier = Arc::new(Barrier::new(3));
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let racers: Vec<_> = ["DELETE", "DELETE", "PUT"]
                .into_iter()
                .enumerate()
                .map(|(i, method)| {
                    let (barrier, url) = (barrier.clone(), deployment.url(n + i, &path));
                    let put = body("put", Some("B"));
                    scope.spawn(move || {
                        let agent = agent();
                        barrier.wait();
                        let payload = (method == "PUT").then_some(put.as_str());
                        send(&agent, method, &url, payload).status
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().unwrap())
                .collect()
        });
        let deleted = statuses[..2].iter().filter(|s| **s == 204).count();
        assert!(
            statuses[..2].iter().all(|s| [204, 404].contains(s)),
            "{statuses:?}"
        );
        assert!([200, 404].contains(&statuses[2]), "{statuses:?}");
        double_deletes += usize::from(deleted == 2);
        let after = send(&agent(), "GET", &deployment.url(n + 1, &path), None).status;
        resurrected += usize::from(deleted >= 1 && after != 404);
    }
    (double_deletes, resurrected)
}

/// 300 racing pairs on `deployment`: no DELETE answered 204 twice, no hero
/// found after a 204, and nothing left to list.
fn never_resurrect_or_delete_twice(deployment: Deployment) {
    let (double_deletes, resurrected) = race_puts_and_deletes(&deployment, 300);
    assert_eq!(
        (double_deletes, resurrected),
        (0, 0),
        "(double 204s, resurrected) of 300"
    );
    assert_lists_equal(&deployment.url(0, ""), &BTreeMap::new());
}

#[test]
fn racing_puts_and_deletes_on_one_hero_never_resurrect_or_delete_twice_on_sqlite() {
    let _heavy = exclusive();
    never_resurrect_or_delete_twice(Deployment::sqlite());
}

#[test]
fn racing_puts_and_deletes_on_one_hero_never_resurrect_or_delete_twice_on_redis() {
    let _heavy = exclusive();
    never_resurrect_or_delete_twice(Deployment::redis());
}

/// What the storm's clients know for sure.
#[derive(Default)]
struct Acknowledged {
    /// Heroes whose creation was answered, with the team of their last
    /// answered write; removed when a DELETE was answered 204.
    live: BTreeMap<String, Option<String>>,
    /// Heroes whose DELETE was answered 204.
    deleted: BTreeSet<String>,
    /// Heroes whose last write was never answered (the host was killed).
    in_doubt: BTreeSet<String>,
    /// Creations never answered.
    unanswered_creates: usize,
}

/// Sends one request; `None` when no answer came (connection refused or
/// cut: the host died).
fn try_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    payload: Option<&str>,
) -> Option<(u16, String)> {
    let request = http::Request::builder().method(method).uri(url);
    let response = match payload {
        Some(payload) => agent.run(request.body(payload.to_owned()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// One storm client's next request: of five, two creations, a move, a
/// deletion (of its own heroes) and a list.
fn next_request(
    round: usize,
    n: usize,
    mine: &[String],
    team: Option<&str>,
) -> (&'static str, String, Option<String>) {
    match (round % 5, mine.get(n % mine.len().max(1))) {
        (1, Some(id)) => ("PUT", format!("/heroes/{id}"), Some(body("moved", team))),
        (4, Some(id)) => ("DELETE", format!("/heroes/{id}"), None),
        (2, _) => ("GET", format!("/heroes?limit=50&offset={}", n % 40), None),
        _ => ("POST", "/heroes".to_owned(), Some(body("storm", team))),
    }
}

/// `clients` threads, each writing its own heroes (so the last write to
/// each is known): creates, moves between teams, deletes, and lists, for
/// `rounds` requests each or until `stop` is set. Requests round-robin over
/// the hosts.
fn storm(
    deployment: &Deployment,
    clients: usize,
    rounds: usize,
    stop: &AtomicBool,
) -> Acknowledged {
    let known = Mutex::new(Acknowledged::default());
    std::thread::scope(|scope| {
        for client in 0..clients {
            let known = &known;
            scope.spawn(move || {
                let agent = agent();
                let mut mine: Vec<String> = Vec::new();
                for round in 0..rounds {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let n = client * 7919 + round;
                    let team = ["Red", "Blue Team", "Green"].get(n % 4).copied();
                    let (method, path, payload) = next_request(round, n, &mine, team);
                    let reply = try_send(
                        &agent,
                        method,
                        &deployment.url(n, &path),
                        payload.as_deref(),
                    );
                    let id = path.trim_start_matches("/heroes/").to_owned();
                    let mut known = known.lock().unwrap();
                    match (method, reply) {
                        ("POST", Some((201, text))) => {
                            let hero: Value = serde_json::from_str(&text).unwrap();
                            let id = hero["id"].as_str().unwrap().to_owned();
                            known.live.insert(id.clone(), team.map(str::to_owned));
                            mine.push(id);
                        }
                        ("PUT", Some((200, _))) => {
                            known.live.insert(id, team.map(str::to_owned));
                        }
                        ("DELETE", Some((204, _))) => {
                            known.live.remove(&id);
                            mine.retain(|kept| *kept != id);
                            known.deleted.insert(id);
                        }
                        ("GET", Some((200, _))) => {}
                        (_, None) if stop.load(Ordering::SeqCst) => {
                            if method == "POST" {
                                known.unanswered_creates += 1;
                            } else if method != "GET" {
                                known.in_doubt.insert(id);
                            }
                            return;
                        }
                        (_, reply) => panic!("{method} {path}: {reply:?}"),
                    }
                }
            });
        }
    });
    known.into_inner().unwrap()
}

/// The heroes as `GET /heroes/{id}` sees them, among every id the clients
/// know of and every id listed; checks that they agree with what was
/// acknowledged. Heroes nobody acknowledged may exist only as many as
/// creations went unanswered.
fn heroes_by_get(url: &str, known: &Acknowledged) -> BTreeMap<String, Option<String>> {
    let agent = agent();
    let listed = list_all(url, None, 200).into_iter().map(|(id, _)| id);
    let ids: BTreeSet<String> = known
        .live
        .keys()
        .chain(&known.deleted)
        .cloned()
        .chain(listed)
        .collect();
    let mut found = BTreeMap::new();
    for id in ids {
        let reply = send(&agent, "GET", &format!("{url}/heroes/{id}"), None);
        let doubt = known.in_doubt.contains(&id);
        match reply.status {
            200 => {
                let team = reply.json()["team"].as_str().map(str::to_owned);
                if let (Some(acked), false) = (known.live.get(&id), doubt) {
                    assert_eq!(
                        &team, acked,
                        "{id}: the team of its last acknowledged write"
                    );
                }
                assert!(
                    !known.deleted.contains(&id),
                    "{id}: deleted, yet it is back"
                );
                found.insert(id, team);
            }
            404 => assert!(
                !known.live.contains_key(&id) || doubt,
                "{id}: acknowledged, yet gone"
            ),
            other => panic!("GET {id}: {other}"),
        }
    }
    let unknown = found
        .keys()
        .filter(|id| !known.live.contains_key(*id))
        .count();
    assert!(
        unknown <= known.unanswered_creates,
        "{unknown} heroes nobody created"
    );
    found
}

#[test]
fn a_storm_on_sqlite_leaves_every_list_equal_to_the_acknowledged_heroes() {
    let _heavy = exclusive();
    let deployment = Deployment::sqlite();
    let known = storm(&deployment, 8, 150, &AtomicBool::new(false));
    assert!(known.live.len() > 100 && !known.deleted.is_empty());
    assert_eq!(heroes_by_get(&deployment.url(0, ""), &known), known.live);
    assert_every_host_lists(&deployment, &known.live);
}

#[test]
fn a_storm_on_redis_shared_by_two_hosts_leaves_every_list_equal_to_the_acknowledged_heroes() {
    let _heavy = exclusive();
    let deployment = Deployment::redis();
    let known = storm(&deployment, 8, 150, &AtomicBool::new(false));
    assert!(known.live.len() > 100 && !known.deleted.is_empty());
    assert_eq!(heroes_by_get(&deployment.url(0, ""), &known), known.live);
    assert_every_host_lists(&deployment, &known.live);
}

/// A storm, the host(s) killed with SIGKILL in the middle of it, restarted
/// on the same store: every list shows exactly the heroes GET finds, and
/// those agree with every acknowledged write. Then more writes, and again.
fn killed_mid_storm(mut deployment: Deployment) {
    let stop = AtomicBool::new(false);
    let known = std::thread::scope(|scope| {
        let storm = scope.spawn(|| storm(&deployment, 8, 100_000, &stop));
        std::thread::sleep(Duration::from_millis(2_500));
        stop.store(true, Ordering::SeqCst);
        for host in &deployment.hosts {
            host.signal("KILL");
        }
        storm.join().unwrap()
    });
    assert!(
        known.live.len() > 20,
        "the storm got going: {}",
        known.live.len()
    );
    deployment.restart();
    let url = deployment.url(0, "");
    let heroes = heroes_by_get(&url, &known);
    assert_lists_equal(&url, &heroes);
    // Later requests carry on (and fold what the killed host left).
    let mut heroes = heroes;
    heroes.extend(create_in_turn(&deployment, 40, "after", ["Red", "Green"]));
    assert_every_host_lists(&deployment, &heroes);
}

#[test]
fn a_host_killed_mid_storm_on_sqlite_leaves_nothing_a_list_shows_wrongly() {
    let _heavy = exclusive();
    killed_mid_storm(Deployment::sqlite());
}

#[test]
fn hosts_killed_mid_storm_on_redis_leave_nothing_a_list_shows_wrongly() {
    let _heavy = exclusive();
    killed_mid_storm(Deployment::redis());
}

/// Leaves only the hero keys in the store, as the previous version (which
/// kept no index) wrote it.
fn strip_index(deployment: &Deployment) {
    match &deployment.redis {
        None => {
            let path = deployment.app.path("state").join("sqlite_key_value.db");
            let db = rusqlite::Connection::open(path).unwrap();
            let stripped = db
                .execute("DELETE FROM spin_key_value WHERE key NOT LIKE 'hero:%'", [])
                .unwrap();
            assert!(stripped >= 2, "the log and a set were there");
        }
        Some(redis) => {
            let mut connection = redis::Client::open(redis.url())
                .unwrap()
                .get_connection()
                .unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("default:heroes:*")
                .query(&mut connection)
                .unwrap();
            assert!(keys.len() >= 2, "the log and a set were there");
            let _: i64 = redis::cmd("DEL").arg(keys).query(&mut connection).unwrap();
        }
    }
}

/// Heroes written, the index removed (the previous version's store), then
/// the first requests after a restart come at once: lists, creations and
/// deletions while the index is built. Nothing is lost.
fn upgraded(mut deployment: Deployment) {
    let mut heroes = create_in_turn(&deployment, 400, "old", ["Old Guard", "Veterans"]);
    let count = deployment.hosts.len();
    deployment.hosts.clear();
    strip_index(&deployment);
    deployment.start(count);
    let doomed: Vec<String> = heroes.keys().step_by(50).cloned().collect();
    let first = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for client in 0..6 {
            let (first, deployment, doomed) = (&first, &deployment, &doomed);
            scope.spawn(move || {
                let url = deployment.url(client, "");
                match client % 3 {
                    0 => assert!(list_all(&url, None, 100).len() >= 300),
                    1 => {
                        for _ in 0..10 {
                            let id = create(&format!("{url}/heroes"), "new", Some("Veterans"));
                            first
                                .lock()
                                .unwrap()
                                .insert(id, Some("Veterans".to_owned()));
                        }
                    }
                    _ => {
                        for id in doomed.iter().skip(client / 3).step_by(2) {
                            let path = format!("{url}/heroes/{id}");
                            assert_eq!(send(&agent(), "DELETE", &path, None).status, 204);
                        }
                    }
                }
            });
        }
    });
    heroes.extend(first.into_inner().unwrap());
    for id in &doomed {
        heroes.remove(id);
    }
    assert_every_host_lists(&deployment, &heroes);
}

#[test]
fn a_sqlite_store_without_an_index_is_indexed_on_first_use_losing_no_hero() {
    let _heavy = exclusive();
    upgraded(Deployment::sqlite());
}

#[test]
fn a_redis_store_without_an_index_is_indexed_on_first_use_losing_no_hero() {
    let _heavy = exclusive();
    upgraded(Deployment::redis());
}
