//! `type = "log"`: one JSON line per effect in a size-rotated file.
//!
//! Effects are written in batches (everything queued when the writer wakes)
//! on the blocking pool, flushed to the OS per batch, and fsync'ed at most
//! once per `fsync_interval`: SD cards wear out from per-line syncs.
//!
//! A log is a record, so this output does not drop under a burst: what its
//! queue cannot hold goes to its overflow file (`<path>.spill`, see
//! [`super::spill`]) as finished lines, which the writer takes back in
//! order once the queue is empty, and marks consumed once written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use tokio::time::{Instant, sleep_until};

use super::config::LogConfig;
use super::counters::Counters;
use super::error::ActionError;
use super::json::action_name;
use super::json::{item_json, rfc3339};
use super::queue::{Overflow, Queue};
use super::spill::path_for;
use crate::rules::{Effect, OutputAction};

/// The open log file and its rotation policy. Only used from blocking code.
pub(crate) struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

/// The checks that need no file system.
pub(crate) fn validate(output: &str, cfg: &LogConfig) -> Result<(), ActionError> {
    let invalid = |field, reason: &str| ActionError::Invalid {
        output: output.into(),
        field,
        reason: reason.into(),
    };
    if cfg.max_files == 0 {
        return Err(invalid("max_files", "must be at least 1"));
    }
    if cfg.max_bytes == 0 {
        return Err(invalid("max_bytes", "must be at least 1"));
    }
    if cfg.path.as_os_str().is_empty() {
        return Err(invalid("path", "must name a file"));
    }
    Ok(())
}

/// Whether the log's directory exists, so `check` finds what `run` would:
/// the file itself is created only when the agent starts.
pub(crate) fn check_directory(output: &str, cfg: &LogConfig) -> Result<(), ActionError> {
    let dir = match cfg.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ActionError::Io {
            output: output.into(),
            field: "path",
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        }),
        Err(source) => Err(ActionError::Io {
            output: output.into(),
            field: "path",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

impl LogFile {
    /// Opens (appending) at build time so a bad path fails `Outputs::build`.
    pub(crate) fn open(output: &str, cfg: &LogConfig) -> Result<LogFile, ActionError> {
        let io_err = |source| ActionError::Io {
            output: output.to_string(),
            field: "path",
            path: cfg.path.clone(),
            source,
        };
        validate(output, cfg)?;
        let file = open_append(&cfg.path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        Ok(LogFile {
            path: cfg.path.clone(),
            file: BufWriter::new(file),
            size,
            max_bytes: cfg.max_bytes,
            max_files: cfg.max_files,
        })
    }

    /// Appends one line (with its newline), rotating first if it would not fit.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// `path` → `path.1` → … → `path.(max_files-1)`; the oldest falls off.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let keep = self.max_files - 1;
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..keep).rev() {
                match std::fs::rename(numbered(i), numbered(i + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The overflow file of a log output; one left by an earlier run is taken
/// up (its lines are written first).
pub(crate) fn overflow(output: &str, cfg: &LogConfig) -> Result<Overflow, ActionError> {
    Overflow::open(
        output,
        "path",
        path_for(&cfg.path),
        cfg.spill_max_bytes,
        Box::new(line_now),
    )
}

/// Spilled lines written per batch.
const SPILL_BATCH: usize = 4096;

/// The line for an effect spilled now: stamped when it fired, not when the
/// writer got to it.
fn line_now(effect: &Effect) -> Vec<u8> {
    line_for(effect, SystemTime::now())
}

/// One log line for an effect.
fn line_for(effect: &Effect, now: SystemTime) -> Vec<u8> {
    let mut v = json!({
        "ts": rfc3339(now),
        "rule": &*effect.rule,
        "output": &*effect.output,
        "action": action_name(&effect.action),
        "item": item_json(&effect.rule, effect.item.as_deref()),
    });
    if let OutputAction::Pulse { ms } = effect.action {
        v["ms"] = ms.into();
    }
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The output's task. On close it writes what is left, syncs, and returns.
pub(crate) async fn run(
    output: Arc<str>,
    cfg: LogConfig,
    file: LogFile,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
) {
    // Under systemd, the lead wires a journald layer: structured fields there.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut file = Some(file);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let sync_at = dirty.then(|| last_sync + cfg.fsync_interval);
        let more = tokio::select! {
            more = queue.ready() => more,
            _ = sleep_until(sync_at.unwrap_or_else(Instant::now)), if sync_at.is_some() => {
                with_file(&mut file, |f| f.sync(), &output).await;
                last_sync = Instant::now();
                dirty = false;
                continue;
            }
        };
        if !more {
            with_file(&mut file, |f| f.sync(), &output).await;
            return;
        }
        // The queue first: while the overflow holds lines, new effects go
        // behind them there, so what is queued is older.
        let batch = queue.drain_ready();
        let from_spill = batch.is_empty();
        let lines: Vec<Vec<u8>> = if from_spill {
            let q = queue.clone();
            match tokio::task::spawn_blocking(move || q.peek_spilled(SPILL_BATCH)).await {
                Ok(Ok(lines)) => lines,
                Ok(Err(e)) => {
                    tracing::warn!(output = %output, error = %e, "cannot read the log's overflow file back; retrying");
                    tokio::time::sleep(cfg.fsync_interval).await;
                    continue;
                }
                Err(_) => return,
            }
        } else {
            let now = SystemTime::now();
            batch.iter().map(|e| line_for(e, now)).collect()
        };
        let count = lines.len();
        let spilled_bytes: u64 = if from_spill {
            lines.iter().map(|l| l.len() as u64).sum()
        } else {
            0
        };
        if journald {
            for e in &batch {
                let item = e.item.as_deref();
                tracing::info!(
                    target: "trickle_edge::actions::log",
                    output = %e.output,
                    rule = %e.rule,
                    action = action_name(&e.action),
                    channel = item.map(|i| &*i.channel),
                    seq = item.map(|i| i.seq),
                    event_type = item.and_then(|i| i.event_type.as_deref()),
                    "effect"
                );
            }
        }
        let written = with_file(
            &mut file,
            move |f| {
                let mut ok = 0usize;
                for line in &lines {
                    f.write_line(line)?;
                    ok += 1;
                }
                f.flush().map(|()| ok)
            },
            &output,
        )
        .await
        .unwrap_or(0);
        if from_spill {
            // Taken whether written or not: a line the log could not take
            // is counted failed, as one from the queue is.
            let q = queue.clone();
            let consumed =
                tokio::task::spawn_blocking(move || q.consume_spilled(count as u64, spilled_bytes))
                    .await;
            if let Ok(Err(e)) = consumed {
                tracing::warn!(output = %output, error = %e, "cannot update the log's overflow file");
            }
        }
        for _ in 0..written {
            counters.sent();
        }
        for _ in written..count {
            counters.failed();
        }
        dirty = true;
        if last_sync.elapsed() >= cfg.fsync_interval {
            with_file(&mut file, |f| f.sync(), &output).await;
            last_sync = Instant::now();
            dirty = false;
        }
    }
}

/// Runs blocking file work on the blocking pool, handing the file there and
/// back. After an error the file is reopened for the next batch (the disk
/// may have been full, or the file removed under us).
async fn with_file<T: Send + 'static>(
    slot: &mut Option<LogFile>,
    work: impl FnOnce(&mut LogFile) -> io::Result<T> + Send + 'static,
    output: &str,
) -> Option<T> {
    let mut f = slot.take()?;
    let (f, r) = tokio::task::spawn_blocking(move || {
        let r = work(&mut f);
        if r.is_err()
            && let Ok(file) = open_append(&f.path)
        {
            f.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            f.file = BufWriter::new(file);
        }
        (f, r)
    })
    .await
    .ok()?;
    *slot = Some(f);
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(output, path = %slot.as_ref().map(|f| f.path.display().to_string()).unwrap_or_default(), error = %e, "log write failed");
            None
        }
    }
}
