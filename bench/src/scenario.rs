//! What the load generator sends in each scenario, and the order a contender
//! goes through them.

use std::path::Path;

use serde::{Serialize, Serializer};

/// Body of every `POST /heroes`; `{n}` is a counter, so names differ.
pub const HERO_BODY: &str =
    r#"{"name":"Hero {n}","power":"Lifts {n} tonnes before breakfast","team":"Bench League"}"#;

/// A scenario: what the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `GET /heroes/{id}` over the seeded ids.
    GetHero,
    /// `GET /heroes?limit=100` with `stored` heroes in the store.
    List {
        /// Heroes stored while the lists run.
        stored: usize,
    },
    /// `GET /` of the registry (its hello-equivalent).
    Root,
    /// `POST /heroes`; last, since it grows the store.
    PostHero,
    /// `GET /` of a hello server.
    Hello,
}

impl Scenario {
    /// A stable key, for the JSON results: `get-hero`, `list-10000`, ...
    pub fn key(self) -> String {
        match self {
            Scenario::GetHero => "get-hero".into(),
            Scenario::List { stored } => format!("list-{stored}"),
            Scenario::Root => "root".into(),
            Scenario::PostHero => "post-hero".into(),
            Scenario::Hello => "hello".into(),
        }
    }

    /// A short name, for narrow columns.
    pub fn short(self) -> String {
        match self {
            Scenario::GetHero => "GET /heroes/{id}".into(),
            Scenario::List { stored } => format!("GET /heroes?limit ({stored})"),
            Scenario::Root => "GET /".into(),
            Scenario::PostHero => "POST /heroes".into(),
            Scenario::Hello => "GET / (hello)".into(),
        }
    }

    /// The heading in the table.
    pub fn title(self) -> String {
        match self {
            Scenario::GetHero => "GET /heroes/{id}".into(),
            Scenario::List { stored } => {
                format!("GET /heroes?limit=100 ({stored} heroes stored)")
            }
            Scenario::Root => "GET / (registry welcome)".into(),
            Scenario::PostHero => "POST /heroes".into(),
            Scenario::Hello => "GET / (hello component; the runtime floor)".into(),
        }
    }

    /// Arguments of `hero-bench load` for this scenario; `ids` is the file of
    /// seeded ids.
    pub fn load_args(self, ids: &Path) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Scenario::GetHero => {
                let mut args = s(&["--path", "/heroes/{id}", "--ids"]);
                args.push(ids.display().to_string());
                args
            }
            Scenario::List { .. } => s(&["--path", "/heroes?limit=100"]),
            Scenario::Root | Scenario::Hello => s(&["--path", "/"]),
            Scenario::PostHero => {
                s(&["--method", "POST", "--path", "/heroes", "--body", HERO_BODY])
            }
        }
    }
}

impl Serialize for Scenario {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

/// One step of a contender's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create heroes until the store holds `total`.
    Seed {
        /// Heroes stored once the step is done.
        total: usize,
    },
    /// Measure one scenario.
    Load(Scenario),
}

/// The registry's session: seed, then the reads at `seed_count` heroes, then
/// (when `large_count` is larger) grow the store and list again, and the
/// writes last, since they grow the store.
pub fn registry_steps(seed_count: usize, large_count: usize) -> Vec<Step> {
    let mut steps = vec![
        Step::Seed { total: seed_count },
        Step::Load(Scenario::GetHero),
        Step::Load(Scenario::List { stored: seed_count }),
        Step::Load(Scenario::Root),
    ];
    if large_count > seed_count {
        steps.push(Step::Seed { total: large_count });
        steps.push(Step::Load(Scenario::List {
            stored: large_count,
        }));
    }
    steps.push(Step::Load(Scenario::PostHero));
    steps
}

/// A hello server's session.
pub fn hello_steps() -> Vec<Step> {
    vec![Step::Load(Scenario::Hello)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_named_by_the_heroes_stored() {
        let small = Scenario::List { stored: 10_000 };
        let large = Scenario::List { stored: 100_000 };
        assert_eq!(small.key(), "list-10000");
        assert_eq!(
            large.title(),
            "GET /heroes?limit=100 (100000 heroes stored)"
        );
        assert_ne!(small.title(), large.title());
        assert_eq!(serde_json::to_string(&large).unwrap(), "\"list-100000\"");
        assert_eq!(
            serde_json::to_string(&Scenario::GetHero).unwrap(),
            "\"get-hero\""
        );
    }

    #[test]
    fn the_registry_lists_at_both_sizes_and_posts_last() {
        use Scenario::*;
        let steps = registry_steps(10_000, 100_000);
        assert_eq!(
            steps,
            [
                Step::Seed { total: 10_000 },
                Step::Load(GetHero),
                Step::Load(List { stored: 10_000 }),
                Step::Load(Root),
                Step::Seed { total: 100_000 },
                Step::Load(List { stored: 100_000 }),
                Step::Load(PostHero),
            ]
        );
    }

    #[test]
    fn no_large_list_when_it_would_not_be_larger() {
        let steps = registry_steps(10_000, 0);
        assert_eq!(steps.len(), 5);
        assert_eq!(steps.last(), Some(&Step::Load(Scenario::PostHero)));
    }

    #[test]
    fn only_the_single_hero_read_needs_ids() {
        let ids = Path::new("ids.txt");
        assert!(
            Scenario::GetHero
                .load_args(ids)
                .contains(&"ids.txt".to_owned())
        );
        for scenario in [Scenario::Root, Scenario::Hello, Scenario::PostHero] {
            assert!(!scenario.load_args(ids).contains(&"--ids".to_owned()));
        }
    }
}
