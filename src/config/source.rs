//! Positions in the merged document. The config file and its board preset are
//! parsed separately, and the preset's spans are shifted past the end of the
//! file, as if both texts were laid end to end: one byte offset then says both
//! which file a value came from and where in it. An [`Index`] maps between key
//! paths and those offsets, so serde errors (which know a span) gain a key
//! path, and validation errors (which know a key path) gain a line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ErrorKind};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `outputs.door.chip`, `rules[0].then[1].output`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// Parses the dotted form back (used for paths reported by other modules,
    /// such as a rule's `where[1].regex`).
    pub fn parse(text: &str) -> KeyPath {
        let mut segs = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
                segs.push(Seg::Key(key.to_owned()));
            }
            for idx in pieces {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
        }
        KeyPath(segs)
    }

    pub fn join(&self, other: &KeyPath) -> KeyPath {
        KeyPath(self.0.iter().chain(&other.0).cloned().collect())
    }

    pub fn key(&self, key: &str) -> KeyPath {
        self.join(&KeyPath(vec![Seg::Key(key.to_owned())]))
    }

    pub fn parent(&self) -> KeyPath {
        KeyPath(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

struct Text<'a> {
    path: PathBuf,
    text: &'a str,
    offset: usize,
}

/// The texts laid end to end: the config file first, then its preset.
pub(crate) struct Sources<'a> {
    texts: Vec<Text<'a>>,
}

impl<'a> Sources<'a> {
    pub fn new(path: &Path, text: &'a str) -> Self {
        Sources {
            texts: vec![Text {
                path: path.to_owned(),
                text,
                offset: 0,
            }],
        }
    }

    /// Adds a text after the others and returns the offset its spans need.
    pub fn add(&mut self, path: &Path, text: &'a str) -> usize {
        let last = self.texts.last().expect("the config file is always first");
        // +1 so that an empty text still has an offset of its own.
        let offset = last.offset + last.text.len() + 1;
        self.texts.push(Text {
            path: path.to_owned(),
            text,
            offset,
        });
        offset
    }

    fn text_at(&self, pos: usize) -> &Text<'a> {
        self.texts
            .iter()
            .rev()
            .find(|t| t.offset <= pos)
            .expect("offset 0 is always present")
    }

    /// The raw text of a global span (within one source).
    pub fn slice(&self, span: &Range<usize>) -> Option<&'a str> {
        let t = self.text_at(span.start);
        t.text
            .get(span.start - t.offset..span.end.checked_sub(t.offset)?)
    }

    /// The character at a global offset (to tell `[table]` headers apart).
    fn char_at(&self, pos: usize) -> Option<char> {
        let t = self.text_at(pos);
        t.text.get(pos - t.offset..)?.chars().next()
    }

    /// An error at a global offset, or at no position in the config file.
    pub fn error(
        &self,
        kind: ErrorKind,
        message: String,
        pos: Option<usize>,
        key: &KeyPath,
        hint: Option<String>,
    ) -> ConfigError {
        let (file, position) = match pos {
            Some(pos) => {
                let t = self.text_at(pos);
                let local = (pos - t.offset).min(t.text.len());
                let before = &t.text[..floor_char_boundary(t.text, local)];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                (t.path.clone(), Some((clamp(line), clamp(col))))
            }
            None => (self.texts[0].path.clone(), None),
        };
        ConfigError {
            kind,
            message,
            file,
            position,
            key: key.to_string(),
            hint,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Node {
    path: KeyPath,
    key: Option<Range<usize>>,
    value: Range<usize>,
    /// A `[table]` / `[[array]]` header: point at it rather than at its key.
    header: bool,
}

/// Every key and value of the merged document with its global span.
pub(crate) struct Index {
    nodes: Vec<Node>,
}

impl Index {
    pub fn build(root: &Spanned<DeTable<'_>>, sources: &Sources<'_>) -> Index {
        let mut index = Index { nodes: Vec::new() };
        index.nodes.push(Node {
            path: KeyPath::default(),
            key: None,
            value: root.span(),
            header: true,
        });
        index.add_table(&KeyPath::default(), root.get_ref(), sources);
        index
    }

    fn add_table(&mut self, path: &KeyPath, table: &DeTable<'_>, sources: &Sources<'_>) {
        for (k, v) in table.iter() {
            self.add(path.key(k.get_ref()), Some(k.span()), v, sources);
        }
    }

    fn add(
        &mut self,
        path: KeyPath,
        key: Option<Range<usize>>,
        value: &Spanned<DeValue<'_>>,
        sources: &Sources<'_>,
    ) {
        let header = sources.char_at(value.span().start) == Some('[')
            && matches!(value.get_ref(), DeValue::Table(_));
        self.nodes.push(Node {
            path: path.clone(),
            key,
            value: value.span(),
            header,
        });
        match value.get_ref() {
            DeValue::Table(t) => self.add_table(&path, t, sources),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = path.join(&KeyPath(vec![Seg::Index(i)]));
                    self.add(item_path, None, item, sources);
                }
            }
            _ => {}
        }
    }

    /// The most specific key path whose key or value span holds `span`.
    pub fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let holds = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
        self.nodes
            .iter()
            .flat_map(|n| [n.key.clone(), Some(n.value.clone())].map(|r| (n, r)))
            .filter_map(|(n, r)| {
                r.filter(holds)
                    .map(|r| (r.len(), usize::MAX - n.path.0.len(), n))
            })
            .min_by_key(|(len, depth, _)| (*len, *depth))
            .map(|(_, _, n)| n.path.clone())
            .unwrap_or_default()
    }

    /// Where to point for `path`: its header, else its key, else its value;
    /// for a key that is not in the text (a default), its nearest ancestor.
    pub fn position(&self, path: &KeyPath) -> Option<usize> {
        let mut path = path.clone();
        loop {
            if let Some(n) = self.nodes.iter().find(|n| n.path == path) {
                return Some(match (&n.key, n.header) {
                    (Some(k), false) => k.start,
                    _ => n.value.start,
                });
            }
            if path.is_root() {
                return None;
            }
            path = path.parent();
        }
    }

    /// The key under `within` whose value is written as `literal` (quotes
    /// aside). Serde loses the inner position of internally tagged tables such
    /// as `[outputs.NAME]`; the offending text usually identifies the key.
    pub fn find_literal(
        &self,
        within: &KeyPath,
        literal: &str,
        sources: &Sources<'_>,
    ) -> Option<KeyPath> {
        let mut found = self.nodes.iter().filter(|n| {
            n.path.0.len() > within.0.len()
                && n.path.0.starts_with(&within.0)
                && sources
                    .slice(&n.value)
                    .is_some_and(|t| t.trim_matches(|c| c == '"' || c == '\'') == literal)
        });
        // Only when unambiguous.
        match (found.next(), found.next()) {
            (Some(n), None) => Some(n.path.clone()),
            _ => None,
        }
    }

    /// Where the value at `path` starts, if it is written in the text.
    pub fn value_position(&self, path: &KeyPath) -> Option<usize> {
        self.nodes
            .iter()
            .find(|n| &n.path == path)
            .map(|n| n.value.start)
    }

    /// Whether the exact path is in the text (not filled in by a default).
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.nodes.iter().any(|n| &n.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        for text in ["outputs.door.chip", "rules[0].then[1].output", "a[0][2]"] {
            assert_eq!(KeyPath::parse(text).to_string(), text);
        }
    }

    #[test]
    fn positions_name_the_right_file() {
        let mut s = Sources::new(Path::new("a.toml"), "x = 1\ny = 2\n");
        let off = s.add(Path::new("b.toml"), "z = 3\n");
        let e = s.error(
            ErrorKind::Syntax,
            "m".into(),
            Some(6),
            &KeyPath::default(),
            None,
        );
        assert_eq!(
            (e.file.to_str(), e.position),
            (Some("a.toml"), Some((2, 1)))
        );
        let e = s.error(
            ErrorKind::Syntax,
            "m".into(),
            Some(off + 4),
            &KeyPath::default(),
            None,
        );
        assert_eq!(
            (e.file.to_str(), e.position),
            (Some("b.toml"), Some((1, 5)))
        );
    }
}
