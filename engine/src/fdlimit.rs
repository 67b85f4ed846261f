//! The process's open-file limit. Every customer bind, vendor bind and API connection is a file
//! descriptor; container runtimes and login shells commonly start a process at a soft limit of
//! 1,024 while allowing far more, so a node configured for thousands of binds would refuse
//! connections ("Too many open files") long before its `max_binds`.

/// Descriptors kept beside the binds: listeners per core, io_uring rings and eventfds, the HTTP
/// API's connections, PostgreSQL, Redis, logs.
pub const FD_OVERHEAD: u64 = 512;

/// The open-file limit after [`raise_open_files`]: the soft limit in force, and the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// What the process may open now.
    pub soft: u64,
    /// What it could be raised to.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one (as nginx and Go's runtime do), and returns
/// the limits in force. `None` when they cannot be read.
pub fn raise_open_files() -> Option<OpenFiles> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Some(OpenFiles { soft: lim.rlim_cur, hard: lim.rlim_max })
}

/// The descriptors a configuration may need at once: every customer bind it admits, every
/// vendor connection (two per bind slot of a `transmitter_receiver` vendor), and
/// [`FD_OVERHEAD`].
pub fn needed(config: &crate::config::Config) -> u64 {
    let vendor_binds: u64 = config
        .vendors
        .iter()
        .map(|v| {
            let per_slot = match v.bind_type {
                crate::config::VendorBindType::TransmitterReceiver => 2,
                _ => 1,
            };
            u64::from(v.binds) * per_slot
        })
        .sum();
    u64::from(config.server.max_binds) + vendor_binds + FD_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_the_need_follows_the_binds() {
        let got = raise_open_files().expect("readable");
        assert_eq!(got.soft, got.hard);
        let mut cfg = crate::config::Config::default();
        cfg.server.max_binds = 10_000;
        let mut v = crate::config::VendorConfig::new("v", "h", 1, "s", "p");
        v.binds = 4;
        cfg.vendors = vec![v.clone(), v.clone()];
        assert_eq!(needed(&cfg), 10_000 + 8 + 512);
        // A transmitter and a receiver connection per slot.
        v.bind_type = crate::config::VendorBindType::TransmitterReceiver;
        cfg.vendors.push(v);
        assert_eq!(needed(&cfg), 10_000 + 8 + 8 + 512);
    }
}
