//! Config errors shaped like rustc's: what is wrong, where (file:line:col, in
//! the preset file when the preset is at fault), and what to write instead.

use std::fmt;
use std::path::PathBuf;

/// What kind of mistake, for callers and tests that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file (or a token file) cannot be read.
    Read,
    /// Not valid TOML.
    Syntax,
    /// A key the schema does not have.
    UnknownKey,
    /// A key the schema requires is absent.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// The right type, but a value that cannot be used.
    InvalidValue,
    /// A rule's `then` names an output that is not defined.
    UnknownOutput,
    /// `board` names no preset in any search directory.
    UnknownBoard,
    /// A token source is set but yields nothing usable.
    Secret,
}

/// One config problem. `Display` renders it for a terminal:
///
/// ```text
/// error: unknown field `chipp` in `outputs.door`
///   --> /etc/trickle-edge/config.toml:12:1
///   = hint: did you mean `chip`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub message: String,
    /// The config file, or the board preset when the mistake is in it.
    pub file: PathBuf,
    /// 1-based line and column (in characters); `None` when the problem is not
    /// at one place in the text (e.g. the file cannot be read).
    pub position: Option<(u32, u32)>,
    /// Dotted key path, e.g. `outputs.door.chip` or `rules[0].then[1].output`;
    /// empty for the whole document.
    pub key: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\n  --> {}", self.message, self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// "did you mean `x`?" when one candidate is close, else the full list, so
/// the user never has to open the docs to fix a typo.
pub(crate) fn suggest<'a>(
    what: &str,
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if candidates.is_empty() {
        return None;
    }
    // Close: a small edit distance, or one name extending the other
    // (`worker` for `worker_url`).
    let related = |c: &str| got.len() >= 3 && (c.starts_with(got) || got.starts_with(c));
    let close: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (edit_distance(got, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(got.len()) / 3).max(1) || related(c))
        .collect();
    let best = close.iter().map(|(d, _)| *d).min();
    let nearest: Vec<&str> = close
        .iter()
        .filter(|(d, _)| Some(*d) == best)
        .map(|(_, c)| *c)
        .collect();
    Some(match nearest.as_slice() {
        [] => format!("{what}: {}", quoted_list(&candidates)),
        [one] => format!("did you mean `{one}`?"),
        [init @ .., last] => format!("did you mean {} or `{last}`?", quoted_list(init)),
    })
}

/// Accepted duration forms, quoted in every duration error,
/// whether serde (load) or a cross-field check (validate) refused it.
pub(crate) const DURATION_HINT: &str = "a duration is a number and a unit (ms, s, m, h), parts may be combined: \"500ms\", \"10s\", \"1.5s\", \"2m\", \"1h\", \"1m30s\"";

/// `` `a`, `b`, `c` ``
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance over characters; inputs are short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_or_lists_all() {
        assert_eq!(edit_distance("chipp", "chip"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            suggest("allowed keys", "chipp", ["chip", "line"]).unwrap(),
            "did you mean `chip`?"
        );
        assert_eq!(
            suggest("allowed keys", "zzz", ["chip", "line"]).unwrap(),
            "allowed keys: `chip`, `line`"
        );
        assert_eq!(suggest("allowed keys", "x", []), None);
        assert_eq!(
            suggest("allowed keys", "worker", ["worker_url", "listen"]).unwrap(),
            "did you mean `worker_url`?"
        );
        assert_eq!(
            suggest("boards", "rpi6", ["rpi4", "rpi5", "rk3588"]).unwrap(),
            "did you mean `rpi4` or `rpi5`?"
        );
    }
}
