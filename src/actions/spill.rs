//! The overflow file of a lossless output: when its in-memory queue is
//! full, effects are appended here as finished records (one line each)
//! instead of being dropped, and the output's task takes them back in order
//! once the queue is empty.
//!
//! The log output keeps it next to the log (`<path>.spill`); webhook and
//! MQTT outputs keep theirs in the state directory
//! (`<state dir>/spill/<output>.spill`, see [`path_in`]). The file is
//! bounded by `spill_max_bytes` (appends past it are refused: only then does
//! the output drop, and it says so) and removed whenever its reader has
//! caught up.
//!
//! It survives a restart: the first line is a fixed-width header holding
//! where the reader is, rewritten as each record is consumed, so a process
//! that starts over finds the records not yet consumed and sends them
//! first. That header is not fsync'ed (nor is anything here: SD cards), so
//! after a power cut a few records consumed just before it may be sent
//! again: delivery from the spill is at least once, never silently lost
//! short of the disk losing what it was given.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How much the reader reads back at once.
const READ_CHUNK: usize = 1 << 20;

/// The header: this, 20 decimal digits (the byte offset of the next record
/// to read), a newline.
const MAGIC: &[u8] = b"trickle-edge spill v1 next=";
const DIGITS: usize = 20;
const HEADER_LEN: u64 = (MAGIC.len() + DIGITS + 1) as u64;

/// Why a line was not spilled.
#[derive(Debug)]
pub(crate) enum SpillRefused {
    /// The file holds `max_bytes` already.
    Full {
        max_bytes: u64,
    },
    Io(io::Error),
}

/// An append-at-end, read-from-front file of lines.
#[derive(Debug)]
pub(crate) struct SpillFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    /// Where the next line goes.
    end: u64,
    /// Where the reader reads next.
    start: u64,
    /// Lines between `start` and `end`.
    lines: u64,
}

/// `<log path>.spill`.
pub(crate) fn path_for(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".spill");
    PathBuf::from(p)
}

/// `<dir>/<output>.spill`. An output's name is a TOML key and may hold any
/// character: bytes other than ASCII letters, digits, `-` and `_` (and a
/// leading `.`) are written `%XX`, so two names never share a file and
/// none leaves `dir`.
pub(crate) fn path_in(dir: &Path, output: &str) -> PathBuf {
    let mut name = String::with_capacity(output.len() + 6);
    for b in output.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !name.is_empty()) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".spill");
    dir.join(name)
}

/// An output's `spill_dir`, or `<state dir>/spill`.
pub(crate) fn dir_or_default(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(
        || crate::state_dir::state_dir().join("spill"),
        Path::to_path_buf,
    )
}

fn header(next: u64) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(format!("{next:0DIGITS$}\n").as_bytes());
    h
}

/// The reader's offset in a header, if `bytes` start with one.
fn parse_header(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(MAGIC)?;
    if rest.len() < DIGITS + 1 || rest[DIGITS] != b'\n' {
        return None;
    }
    std::str::from_utf8(&rest[..DIGITS]).ok()?.parse().ok()
}

impl SpillFile {
    /// Opens an existing spill (its unread lines are still to be sent) or
    /// notes where one would go; the file (and its directory) is created on
    /// first use.
    pub(crate) fn open(path: PathBuf, max_bytes: u64) -> io::Result<SpillFile> {
        let mut spill = SpillFile {
            path,
            max_bytes,
            file: None,
            end: HEADER_LEN,
            start: HEADER_LEN,
            lines: 0,
        };
        let left = match std::fs::read(&spill.path) {
            Ok(left) => left,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(spill),
            Err(e) => return Err(e),
        };
        let file = spill.open_file()?;
        let had_header = parse_header(&left);
        let (mut body, next) = match had_header {
            Some(next) => (left[HEADER_LEN as usize..].to_vec(), next.max(HEADER_LEN)),
            // No header: a file written before there was one; all unread.
            None => (left, HEADER_LEN),
        };
        // A line cut by a crash mid-append is dropped: whole lines only.
        let whole = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        body.truncate(whole);
        let end = HEADER_LEN + whole as u64;
        if next >= end {
            drop(file);
            std::fs::remove_file(&spill.path)?;
            return Ok(spill);
        }
        if had_header.is_none() {
            file.write_all_at(&header(next), 0)?;
            file.write_all_at(&body, HEADER_LEN)?;
        }
        file.set_len(end)?;
        spill.lines = body[(next - HEADER_LEN) as usize..]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        spill.file = Some(file);
        spill.start = next;
        spill.end = end;
        Ok(spill)
    }

    fn open_file(&self) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lines waiting to be taken.
    pub(crate) fn pending(&self) -> u64 {
        self.lines
    }

    /// Appends one line (ending in `\n`, with no other newline in it).
    pub(crate) fn append(&mut self, line: &[u8]) -> Result<(), SpillRefused> {
        if self.end - HEADER_LEN + line.len() as u64 > self.max_bytes {
            return Err(SpillRefused::Full {
                max_bytes: self.max_bytes,
            });
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(SpillRefused::Io)?;
            }
            let file = self.open_file().map_err(SpillRefused::Io)?;
            file.set_len(0).map_err(SpillRefused::Io)?;
            file.write_all_at(&header(HEADER_LEN), 0)
                .map_err(SpillRefused::Io)?;
            self.file = Some(file);
        }
        let file = self.file.as_ref().expect("opened above");
        file.write_all_at(line, self.end)
            .map_err(SpillRefused::Io)?;
        self.end += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Up to `max_lines` lines from the front, oldest first, left in the
    /// file until [`consume`](Self::consume)d: a reader that stops before
    /// it has sent them finds them again at the next start.
    pub(crate) fn peek(&self, max_lines: usize) -> io::Result<Vec<Vec<u8>>> {
        let Some(file) = self.file.as_ref() else {
            return Ok(Vec::new());
        };
        let want = ((self.end - self.start) as usize).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, self.start)?;
        let mut out = Vec::new();
        let mut used = 0;
        while out.len() < max_lines {
            let Some(nl) = buf[used..].iter().position(|b| *b == b'\n') else {
                break;
            };
            out.push(buf[used..used + nl + 1].to_vec());
            used += nl + 1;
        }
        if out.is_empty() && want > 0 && max_lines > 0 {
            // One line longer than a read chunk: read it whole.
            let mut line = Vec::new();
            let mut at = self.start;
            loop {
                let mut chunk = vec![0u8; READ_CHUNK.min((self.end - at) as usize)];
                file.read_exact_at(&mut chunk, at)?;
                at += chunk.len() as u64;
                if let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&chunk[..nl + 1]);
                    break;
                }
                line.extend_from_slice(&chunk);
            }
            out.push(line);
        }
        Ok(out)
    }

    /// Marks the first `lines` lines (`bytes` bytes, newlines included) as
    /// sent: the header moves past them, and once the reader has caught up
    /// the file is removed, so it takes no disk.
    pub(crate) fn consume(&mut self, lines: u64, bytes: u64) -> io::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        self.start = (self.start + bytes).min(self.end);
        self.lines = self.lines.saturating_sub(lines);
        if self.start >= self.end {
            self.file = None;
            self.start = HEADER_LEN;
            self.end = HEADER_LEN;
            self.lines = 0;
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        file.write_all_at(&header(self.start), 0)
    }

    /// Puts `lines` before every unread line: what a stopping output still
    /// held in memory, older than anything it spilled. Rewrites the file
    /// (through a temporary one and a rename), so it is for a stop, not for
    /// the hot path. The bound is not checked: those lines (at most the
    /// output's `queue`) were accepted already.
    pub(crate) fn prepend(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut body: Vec<u8> = lines.concat();
        if let Some(file) = &self.file {
            let mut unread = vec![0u8; (self.end - self.start) as usize];
            file.read_exact_at(&mut unread, self.start)?;
            body.extend_from_slice(&unread);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all_at(&header(HEADER_LEN), 0)?;
            f.write_all_at(&body, HEADER_LEN)?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = Some(self.open_file()?);
        self.start = HEADER_LEN;
        self.end = HEADER_LEN + body.len() as u64;
        self.lines += lines.len() as u64;
        Ok(())
    }

    /// [`peek`](Self::peek) and [`consume`](Self::consume) at once, for a
    /// reader that cannot fail to send what it took.
    #[cfg(test)]
    pub(crate) fn take(&mut self, max_lines: usize) -> io::Result<Vec<Vec<u8>>> {
        let out = self.peek(max_lines)?;
        let bytes = out.iter().map(|l| l.len() as u64).sum();
        self.consume(out.len() as u64, bytes)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spill-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("log.jsonl.spill")
    }

    #[test]
    fn lines_come_back_in_order_and_the_file_goes_once_drained() {
        let path = temp("order");
        let mut s = SpillFile::open(path.clone(), 1 << 20).unwrap();
        for i in 0..10 {
            s.append(format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(s.pending(), 10);
        let first: Vec<Vec<u8>> = s.take(4).unwrap();
        assert_eq!(
            first,
            (0..4)
                .map(|i| format!("{i}\n").into_bytes())
                .collect::<Vec<_>>()
        );
        s.append(b"10\n").unwrap();
        let rest = s.take(100).unwrap();
        assert_eq!(
            rest,
            (4..11)
                .map(|i| format!("{i}\n").into_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(s.pending(), 0);
        assert!(!path.exists(), "a drained spill takes no disk");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn a_full_spill_refuses_and_one_left_behind_is_taken_up_again() {
        let path = temp("full");
        let mut s = SpillFile::open(path.clone(), 8).unwrap();
        s.append(b"abc\n").unwrap();
        s.append(b"def\n").unwrap();
        assert!(matches!(
            s.append(b"g\n"),
            Err(SpillRefused::Full { max_bytes: 8 })
        ));
        drop(s);
        // A process that stopped with lines spilled: the next one finds them
        // (a line cut by a crash is dropped).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"cut").unwrap();
        let mut again = SpillFile::open(path.clone(), 64).unwrap();
        assert_eq!(again.pending(), 2);
        assert_eq!(
            again.take(10).unwrap(),
            vec![b"abc\n".to_vec(), b"def\n".to_vec()]
        );
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn a_restart_resumes_after_what_was_consumed_and_peeked_lines_stay() {
        let path = temp("resume");
        let mut s = SpillFile::open(path.clone(), 1 << 20).unwrap();
        for i in 0..6 {
            s.append(format!("{i}\n").as_bytes()).unwrap();
        }
        let peeked = s.peek(3).unwrap();
        assert_eq!(peeked.len(), 3);
        // Sent the first two, then stopped before the third.
        s.consume(2, 4).unwrap();
        drop(s);
        let mut again = SpillFile::open(path.clone(), 1 << 20).unwrap();
        assert_eq!(again.pending(), 4);
        let rest: Vec<String> = again
            .take(10)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(rest, ["2\n", "3\n", "4\n", "5\n"]);
        assert!(!path.exists(), "a drained spill takes no disk");
        // A file without a header (written before there was one) is unread.
        std::fs::write(&path, b"x\ny\n").unwrap();
        let mut old = SpillFile::open(path.clone(), 1 << 20).unwrap();
        assert_eq!(
            old.take(10).unwrap(),
            vec![b"x\n".to_vec(), b"y\n".to_vec()]
        );
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn names_become_file_names_that_stay_in_the_directory() {
        let dir = Path::new("/spill");
        assert_eq!(path_in(dir, "hook-1_a.b"), dir.join("hook-1_a.b.spill"));
        assert_eq!(path_in(dir, "../x"), dir.join("%2E.%2Fx.spill"));
        assert_eq!(path_in(dir, "a b/é"), dir.join("a%20b%2F%C3%A9.spill"));
    }

    #[test]
    fn prepended_lines_come_before_the_unread_ones_and_survive_a_restart() {
        let path = temp("prepend");
        let mut s = SpillFile::open(path.clone(), 1 << 20).unwrap();
        s.prepend(&[b"a\n".to_vec()]).unwrap();
        s.append(b"c\n").unwrap();
        s.append(b"d\n").unwrap();
        s.consume(1, 2).unwrap(); // "a" sent
        s.prepend(&[b"b\n".to_vec()]).unwrap();
        drop(s);
        let mut again = SpillFile::open(path.clone(), 1 << 20).unwrap();
        assert_eq!(again.pending(), 3);
        assert_eq!(
            again.take(10).unwrap(),
            vec![b"b\n".to_vec(), b"c\n".to_vec(), b"d\n".to_vec()]
        );
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }
}
