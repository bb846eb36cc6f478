//! The few `/proc` fields the agent's tests and benchmarks read: memory
//! (`VmRSS`, `VmHWM`), CPU ticks and the process state. One parser, so each
//! caller does not re-learn that `comm` may hold spaces and parentheses.

/// Which process: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    Current,
    Pid(u32),
}

impl Proc {
    fn file(self, name: &str) -> String {
        match self {
            Proc::Current => format!("/proc/self/{name}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{name}"),
        }
    }

    /// A `kB` field of `/proc/PID/status`, e.g. `VmRSS` or `VmHWM`.
    pub fn status_kib(self, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.file("status")).ok()?;
        parse_status_kib(&text, key)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(self) -> Option<u64> {
        self.status_kib("VmRSS")
    }

    /// (user, system) CPU time in clock ticks (`getconf CLK_TCK` per second).
    pub fn cpu_ticks(self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(self.file("stat")).ok()?;
        let f = stat_fields(&text)?;
        Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
    }

    /// The state letter of `/proc/PID/stat` (`R`, `S`, `Z` …); `None` once gone.
    pub fn state(self) -> Option<char> {
        let text = std::fs::read_to_string(self.file("stat")).ok()?;
        stat_fields(&text)?.first()?.chars().next()
    }

    /// Running or sleeping: neither gone nor a zombie waiting to be reaped.
    pub fn is_alive(self) -> bool {
        !matches!(self.state(), None | Some('Z') | Some('X'))
    }
}

fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The fields after `comm`, which ends at the *last* `)`.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let (_, after) = text.rsplit_once(')')?;
    Some(after.split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_a_comm_with_spaces_and_parentheses() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmRS"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194304 0 0 0 0 7 3 0 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!((f[11], f[12]), ("7", "3"));
    }

    #[test]
    fn reads_this_process() {
        assert!(Proc::Current.rss_kib().unwrap() > 0);
        assert!(Proc::Current.cpu_ticks().is_some());
        assert!(Proc::Pid(std::process::id()).is_alive());
    }
}
