//! The process's open-file limit: raised to the hard limit at start, and the connection caps
//! fitted under it, so that a flood of connections is turned away by the caps (which keep
//! room for real clients) and never by `accept()` failing with EMFILE (which turns away
//! everyone, the admin port's probes included).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but client connections: connections to upstreams, cache
/// files being written or indexed, the listeners, logs.
pub const RESERVED: u64 = 256;
/// What one client connection may hold: its socket and the cached file it streams. That is
/// HTTP/1.1, what the go command speaks to a GOPROXY; an HTTP/2 connection may stream up to
/// [`super::H2_MAX_STREAMS`] files at once, which the reserve absorbs only for a few of them.
pub const PER_CONNECTION: u64 = 2;

/// The soft limit before and after [`raise`], and the hard limit (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (allowed without privileges).
pub fn raise() -> FdLimit {
    let Rlimit {
        current: before,
        maximum: hard,
    } = getrlimit(Resource::Nofile);
    // An unlimited hard limit cannot be the soft one (the kernel caps it at fs.nr_open):
    // ask for nr_open's default instead.
    let wanted = hard.or(Some(1 << 20));
    if before.is_some() && before < wanted {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: wanted,
                maximum: hard,
            },
        );
    }
    FdLimit {
        before,
        soft: getrlimit(Resource::Nofile).current,
        hard,
    }
}

/// The largest cap of client connections that `soft` allows, given the other listeners' caps.
pub fn fit(wanted: usize, other_connections: usize, soft: Option<u64>) -> usize {
    let Some(soft) = soft else {
        return wanted;
    };
    let spare = soft.saturating_sub(RESERVED + other_connections as u64 * PER_CONNECTION);
    wanted.min((spare / PER_CONNECTION).max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_under_the_limit() {
        assert_eq!(fit(4096, 64, Some(20_000)), 4096);
        assert_eq!(fit(4096, 64, Some(1024)), (1024 - 256 - 128) / 2);
        assert_eq!(fit(4096, 64, None), 4096);
        assert_eq!(
            fit(10, 64, Some(100)),
            1,
            "never 0: the listener must serve someone"
        );
    }

    #[test]
    fn raising_keeps_the_hard_limit_and_never_lowers() {
        let limit = raise();
        assert!(limit.soft >= limit.before || limit.before.is_none());
        if let Some(hard) = limit.hard {
            assert_eq!(limit.soft, Some(hard));
        }
        assert_eq!(getrlimit(Resource::Nofile).maximum, limit.hard);
    }
}
