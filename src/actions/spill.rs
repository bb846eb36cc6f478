//! The log output's overflow file: when its in-memory queue is full, effects
//! are appended here as finished log lines instead of being dropped, and the
//! writer takes them back in order once the queue is empty.
//!
//! The file sits next to the log (`<path>.spill`), is bounded by
//! `spill_max_bytes` (appends past it are refused: only then does the log
//! output drop, and it says so), and is emptied (truncated) whenever the
//! writer has caught up. Lines left in it by a process that stopped first
//! are written at the next start, before anything new.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How much the writer reads back at once.
const READ_CHUNK: usize = 1 << 20;

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
    /// Where the writer reads next.
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

impl SpillFile {
    /// Opens an existing spill (its lines are still to be written) or
    /// notes where one would go; the file is created on first use.
    pub(crate) fn open(path: PathBuf, max_bytes: u64) -> io::Result<SpillFile> {
        let mut spill = SpillFile {
            path,
            max_bytes,
            file: None,
            end: 0,
            start: 0,
            lines: 0,
        };
        match std::fs::read(&spill.path) {
            Ok(left) if !left.is_empty() => {
                // A line cut by a crash mid-append is kept whole-lines only.
                let whole = left.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                spill.lines = left[..whole].iter().filter(|b| **b == b'\n').count() as u64;
                let file = spill.open_file()?;
                file.set_len(whole as u64)?;
                spill.file = Some(file);
                spill.end = whole as u64;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
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

    /// Lines waiting to be written to the log.
    pub(crate) fn pending(&self) -> u64 {
        self.lines
    }

    /// Appends one line (ending in `\n`).
    pub(crate) fn append(&mut self, line: &[u8]) -> Result<(), SpillRefused> {
        if self.end + line.len() as u64 > self.max_bytes {
            return Err(SpillRefused::Full {
                max_bytes: self.max_bytes,
            });
        }
        if self.file.is_none() {
            let file = self.open_file().map_err(SpillRefused::Io)?;
            file.set_len(0).map_err(SpillRefused::Io)?;
            self.file = Some(file);
        }
        let file = self.file.as_ref().expect("opened above");
        file.write_all_at(line, self.end)
            .map_err(SpillRefused::Io)?;
        self.end += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Takes up to `max_lines` lines from the front, oldest first. Once the
    /// reader has caught up the file is removed, so it takes no disk.
    pub(crate) fn take(&mut self, max_lines: usize) -> io::Result<Vec<Vec<u8>>> {
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
        if out.is_empty() && want > 0 {
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
            used = line.len();
            out.push(line);
        }
        self.start += used as u64;
        self.lines -= out.len() as u64;
        if self.start >= self.end {
            self.file = None;
            self.start = 0;
            self.end = 0;
            self.lines = 0;
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
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
}
