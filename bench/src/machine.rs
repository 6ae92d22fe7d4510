//! The machine a run measured on, read from `/proc`.

use serde::Serialize;

/// The machine.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// /proc/loadavg when the run started.
    pub loadavg_before: String,
    /// /proc/loadavg when it ended.
    pub loadavg_after: String,
}

impl Machine {
    /// Reads /proc.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            loadavg_before: loadavg(),
            loadavg_after: String::new(),
        }
    }

    /// Whether other work kept the machine busy when the run started (a
    /// 1-minute load average above 0.5). Only the figure from before says
    /// anything: the run itself keeps two cores busy.
    pub fn was_busy(&self) -> bool {
        self.loadavg_before
            .split_whitespace()
            .next()
            .and_then(|one| one.parse::<f64>().ok())
            .is_some_and(|one| one > 0.5)
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_means_a_one_minute_load_above_half_a_core() {
        let machine = |before: &str| Machine {
            loadavg_before: before.into(),
            ..Machine::default()
        };
        assert!(machine("1.22 1.94 1.92").was_busy());
        assert!(!machine("0.31 1.94 1.92").was_busy());
        assert!(!machine("").was_busy());
    }
}
