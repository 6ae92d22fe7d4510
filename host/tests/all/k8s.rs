//! The Kubernetes monitoring manifests (`k8s/components/monitoring/`)
//! against a real Prometheus that scrapes the real host: the shipped
//! `kubernetes-pods` job finds the pod by its annotations, every PromQL
//! expression of the Grafana dashboard returns data, and every alert rule
//! evaluates without error.
//!
//! Prometheus runs the shipped scrape config with one change: Kubernetes
//! service discovery is replaced by file discovery carrying the same
//! `__meta_kubernetes_*` labels a pod would have (Debian's Prometheus has no
//! Kubernetes discovery, and there is no cluster here). So the relabelling
//! itself (annotation filter, port rewrite, namespace/pod/app labels) is
//! what this test exercises.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    AppDir, Host, Prometheus, agent, registry_and_chaos_manifest, sample_value, send, start,
};

const NAMESPACE: &str = "hero-registry";
const POD: &str = "hero-registry-6b9c8d7f5-x2x7q";

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s")
}

fn monitoring_file(name: &str) -> PathBuf {
    k8s_dir().join("components/monitoring").join(name)
}

/// Prometheus running the shipped `kubernetes-pods` job and rule file,
/// scraping every second, with `targets` as the pods Kubernetes discovery
/// would list.
fn start_shipped_prometheus(targets: &Value) -> Prometheus {
    Prometheus::with_config(|dir| {
        let targets_file = dir.join("targets.json");
        std::fs::write(
            &targets_file,
            serde_json::to_string_pretty(targets).unwrap(),
        )
        .unwrap();
        let shipped =
            std::fs::read_to_string(monitoring_file("prometheus/prometheus.yml")).unwrap();
        let rules = monitoring_file("rules/hero-registry.rules.yml");
        [
            (
                "  scrape_interval: 15s\n",
                "  scrape_interval: 1s\n".to_owned(),
            ),
            (
                "  scrape_timeout: 10s\n",
                "  scrape_timeout: 1s\n".to_owned(),
            ),
            (
                "  evaluation_interval: 15s\n",
                "  evaluation_interval: 1s\n".to_owned(),
            ),
            (
                "  - ../rules/hero-registry.rules.yml\n",
                format!("  - {}\n", rules.display()),
            ),
            (
                "    kubernetes_sd_configs:\n      - role: pod\n",
                format!(
                    "    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                    targets_file.display()
                ),
            ),
        ]
        .into_iter()
        .fold(shipped, |text, (from, to)| {
            assert_eq!(
                text.matches(from).count(),
                1,
                "k8s/components/monitoring/prometheus/prometheus.yml no longer has {from:?} once: \
                 update k8s.rs to the new layout"
            );
            text.replace(from, &to)
        })
    })
}

/// How many times the hero-host target has been scraped in the last minute.
fn scrapes(prometheus: &Prometheus) -> usize {
    prometheus
        .query(r#"count_over_time(up{app="hero-registry"}[1m])"#)
        .ok()
        .and_then(|r| r.first().map(sample_value))
        .unwrap_or(0.0) as usize
}

/// What a pod of the Deployment looks like to Kubernetes discovery: one
/// target per container port, as the pod role lists them, plus pods the job
/// must drop (no scrape annotation; finished).
fn discovered_pods(host: &Host) -> Value {
    let pod = |name: &str, address: String, annotated: bool, phase: &str| {
        let mut labels = json!({
            "__meta_kubernetes_namespace": NAMESPACE,
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_container_name": "hero-host",
            "__meta_kubernetes_pod_node_name": "node-1",
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_label_app": "hero-registry",
        });
        if annotated {
            let annotations = json!({
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                "__meta_kubernetes_pod_annotation_prometheus_io_port": host.admin.port().to_string(),
                "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            });
            labels
                .as_object_mut()
                .unwrap()
                .extend(annotations.as_object().unwrap().clone());
        }
        json!({"targets": [address], "labels": labels})
    };
    json!([
        // The API port: the job must rewrite it to the annotated admin port.
        pod(POD, host.addr.to_string(), true, "Running"),
        pod(POD, host.admin.to_string(), true, "Running"),
        pod("not-annotated", host.addr.to_string(), false, "Running"),
        pod("finished-job", host.admin.to_string(), true, "Succeeded"),
    ])
}

/// Requests that reach every metric family the dashboard shows: each route,
/// 2xx/4xx/5xx, key-value reads and writes, instance reuse, and guest traps
/// of three kinds (unreachable, out of memory, timeout).
fn traffic(host: &Host) {
    let agent = agent();
    let hero = r#"{"name": "Deadpond", "power": "regeneration", "team": "Preventers"}"#;
    let created = send(&agent, "POST", &host.url("/heroes"), Some(hero));
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    for (method, path, body, status) in [
        ("GET", "/".to_owned(), None, 200),
        ("GET", "/heroes".to_owned(), None, 200),
        ("GET", format!("/heroes/{id}"), None, 200),
        ("PUT", format!("/heroes/{id}"), Some(hero), 200),
        ("POST", "/heroes".to_owned(), Some(r#"{"name": ""}"#), 422),
        (
            "GET",
            "/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
            None,
            404,
        ),
        ("GET", "/nowhere".to_owned(), None, 404),
        ("GET", "/chaos/kv".to_owned(), None, 200),
        ("GET", "/chaos/trap".to_owned(), None, 500),
        ("GET", "/chaos/alloc?mb=256".to_owned(), None, 500),
        ("GET", "/chaos/loop".to_owned(), None, 504),
        ("DELETE", format!("/heroes/{id}"), None, 204),
    ] {
        let reply = send(&agent, method, &host.url(&path), body);
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
    }
}

/// Grafana's variables as the dashboard's defaults resolve them ("All").
fn grafana_to_promql(expr: &str) -> String {
    let text = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$namespace", ".*")
        .replace("$pod", ".*");
    assert!(
        !text.contains('$'),
        "an expression uses a Grafana variable k8s.rs does not know: {expr}"
    );
    text
}

#[test]
fn dashboard_and_alert_queries_return_data_from_a_real_prometheus() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--request-timeout", "300ms"]);
    // Traffic before the first scrape creates the series; traffic after a
    // few scrapes makes rates and increases non-zero.
    traffic(&host);
    let prometheus = start_shipped_prometheus(&discovered_pods(&host));
    prometheus.wait("two scrapes of hero-host", || scrapes(&prometheus) >= 2);
    traffic(&host);
    let scraped = scrapes(&prometheus);
    prometheus.wait("two more scrapes", || scrapes(&prometheus) >= scraped + 2);

    // The kubernetes-pods job: one target, the annotated admin port, the
    // labels the dashboard and rules select on.
    let targets = prometheus.api("/api/v1/targets", None).unwrap();
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 1, "active targets: {active:#?}");
    let target = &active[0];
    assert_eq!(target["health"], "up", "{target:#?}");
    assert_eq!(
        target["scrapeUrl"],
        format!("http://{}/metrics", host.admin),
        "the job did not rewrite the address to the annotated admin port"
    );
    let labels = &target["labels"];
    for (name, value) in [
        ("job", "kubernetes-pods"),
        ("app", "hero-registry"),
        ("namespace", NAMESPACE),
        ("pod", POD),
        ("container", "hero-host"),
    ] {
        assert_eq!(labels[name], value, "target label {name}: {labels:#?}");
    }
    assert_eq!(
        targets["droppedTargets"].as_array().unwrap().len(),
        2,
        "the unannotated and the finished pod must be dropped: {targets:#?}"
    );

    // Every Prometheus query of the dashboard returns data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_file("dashboards/hero-registry.json")).unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            match target["datasource"]["type"].as_str() {
                Some("prometheus") => {}
                // Log panels; the log pipeline is checked by k8s/check.
                Some("loki") => continue,
                other => {
                    failures.push(format!(
                        "panel {}: a target with no known datasource ({other:?})",
                        panel["title"]
                    ));
                    continue;
                }
            }
            checked += 1;
            let expr = grafana_to_promql(target["expr"].as_str().unwrap());
            match prometheus.query(&expr) {
                Ok(result) if result.is_empty() => {
                    failures.push(format!("panel {}: no data: {expr}", panel["title"]))
                }
                Ok(_) => {}
                Err(error) => failures.push(format!("panel {}: {error}: {expr}", panel["title"])),
            }
        }
    }
    // Template variables: label_values(<selector>, <label>).
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .unwrap_or_else(|| {
                panic!("variable query {query} is not label_values(selector, label)")
            });
        let (selector, label) = (grafana_to_promql(inner.0), inner.1.trim());
        checked += 1;
        match prometheus.query(&selector) {
            Ok(result) if result.iter().any(|s| s["metric"][label].is_string()) => {}
            Ok(result) => failures.push(format!(
                "variable {}: no {label} in {selector}: {result:?}",
                variable["name"]
            )),
            Err(error) => failures.push(format!("variable {}: {error}", variable["name"])),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every alert rule is loaded, evaluates without error, and its query
    // runs; the guest traps above make HeroRegistryGuestTraps fire.
    let rules_text =
        std::fs::read_to_string(monitoring_file("rules/hero-registry.rules.yml")).unwrap();
    let expected = rules_text.matches("- alert: ").count();
    let mut rules = Vec::new();
    prometheus.wait("every rule evaluated", || {
        let data = prometheus.api("/api/v1/rules", None).unwrap();
        rules = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        rules.len() == expected
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
    });
    let mut failures = Vec::new();
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        if rule["health"] != "ok" {
            failures.push(format!(
                "{name}: health {} {}",
                rule["health"], rule["lastError"]
            ));
        }
        if let Err(error) = prometheus.query(rule["query"].as_str().unwrap()) {
            failures.push(format!("{name}: {error}"));
        }
    }
    assert!(
        failures.is_empty(),
        "alert rules failed:\n{}",
        failures.join("\n")
    );
    let state = |rules: &[Value], name: &str| {
        rules
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["state"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    prometheus.wait("HeroRegistryGuestTraps firing", || {
        let data = prometheus.api("/api/v1/rules", None).unwrap();
        rules = data["groups"][0]["rules"].as_array().unwrap().clone();
        state(&rules, "HeroRegistryGuestTraps") == "firing"
    });
    assert_eq!(state(&rules, "HeroRegistryTargetDown"), "inactive");
    assert_eq!(state(&rules, "HeroRegistryAbsent"), "inactive");
}
