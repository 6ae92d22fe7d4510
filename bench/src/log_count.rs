//! What a server wrote to stdout: lines, bytes, levels, and lines that are
//! not JSON.

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

/// What a server wrote to stdout over all its scenarios.
#[derive(Debug, Default, Serialize)]
pub struct LogRow {
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// Lines.
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// Lines at level warn (warning).
    pub warn: u64,
    /// Lines at level error (or critical).
    pub error: u64,
    /// Lines that are not JSON objects.
    pub not_json: u64,
}

impl LogRow {
    /// Counts the lines of a log file.
    pub fn count(contender: &str, label: &str, path: &Path) -> Self {
        let mut row = LogRow {
            contender: contender.into(),
            label: label.into(),
            ..LogRow::default()
        };
        if let Ok(file) = std::fs::File::open(path) {
            row.read(std::io::BufReader::new(file));
        }
        row
    }

    fn read(&mut self, reader: impl BufRead) {
        /// hero-host writes `level`; python-json-logger `levelname`.
        #[derive(serde::Deserialize)]
        struct Line {
            level: Option<String>,
            levelname: Option<String>,
        }
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            self.lines += 1;
            self.bytes += line.len() as u64 + 1;
            match serde_json::from_slice::<Line>(&line) {
                Ok(parsed) => {
                    let level = parsed.level.or(parsed.levelname).unwrap_or_default();
                    match level.to_ascii_lowercase().as_str() {
                        "warn" | "warning" => self.warn += 1,
                        "error" | "critical" => self.error += 1,
                        _ => {}
                    }
                }
                Err(_) => self.not_json += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_of_both_loggers_are_counted() {
        let text = "{\"level\":\"warn\"}\n{\"levelname\":\"ERROR\"}\n{\"level\":\"info\"}\nplain\n";
        let mut row = LogRow::default();
        row.read(text.as_bytes());
        assert_eq!(
            (row.lines, row.bytes, row.warn, row.error, row.not_json),
            (4, text.len() as u64, 1, 1, 1)
        );
    }
}
