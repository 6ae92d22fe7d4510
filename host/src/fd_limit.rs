//! The open-file limit. Every connection, SQLite file and compiled artifact
//! takes a descriptor; a soft limit of 1024 (a common default) would stop
//! accepting long before the connection cap. As most servers do, `up` raises
//! the soft limit to the hard one at start.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft open-file limit before and after raising it to the hard limit
/// (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The soft limit the process started with.
    pub before: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_open_files_limit() -> std::io::Result<OpenFilesLimit> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(OpenFilesLimit {
        before: limit.current,
        now: limit.maximum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let raised = raise_open_files_limit().unwrap();
        assert_eq!(raised.now, getrlimit(Resource::Nofile).maximum);
        assert!(raised.now >= raised.before || raised.now.is_none());
    }
}
