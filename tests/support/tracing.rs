//! One log-capturing `tracing` subscriber, so tests can assert on what the
//! agent logs ("exactly one warning, naming X") without a log-parsing
//! dev-dependency.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use ::tracing::field::{Field, Visit};
use ::tracing::level_filters::LevelFilter;
use ::tracing::span::{Attributes, Id, Record};
use ::tracing::subscriber::Interest;
use ::tracing::{Event, Level, Metadata, Subscriber};

/// One event as it was logged.
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: Level,
    pub target: String,
    /// Every field, `message` included, in the order the event recorded
    /// them: strings as they are, anything else as `{:?}` shows it.
    pub fields: Vec<(String, String)>,
}

impl Logged {
    /// The value of field `name` (the last one, should it repeat).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The formatted message; empty when the event has none.
    pub fn message(&self) -> &str {
        self.field("message").unwrap_or_default()
    }

    /// Every field as `name=value `, in order: what a test greps.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            let _ = write!(out, "{k}={v} ");
        }
        out
    }
}

/// Records every event at `max_level` or more severe. Clones share one
/// record, so a test keeps a clone and installs the other.
#[derive(Clone)]
pub struct LogCapture {
    max_level: Level,
    logged: Arc<Mutex<Vec<Logged>>>,
    /// The fields of every span opened, as `name=value ` text: a span's
    /// fields are printed with each event inside it, so a secret in one is
    /// as logged as a secret in an event.
    spans: Arc<Mutex<Vec<String>>>,
}

impl LogCapture {
    pub fn new(max_level: Level) -> LogCapture {
        LogCapture {
            max_level,
            logged: Arc::default(),
            spans: Arc::default(),
        }
    }

    /// The fields of each span opened so far, as [`Logged::text`] shows an event's.
    pub fn span_texts(&self) -> Vec<String> {
        self.spans.lock().unwrap().clone()
    }

    /// What was logged so far.
    pub fn events(&self) -> Vec<Logged> {
        self.logged.lock().unwrap().clone()
    }

    /// What was logged so far, leaving the record empty.
    pub fn take(&self) -> Vec<Logged> {
        std::mem::take(&mut *self.logged.lock().unwrap())
    }

    /// How many events at exactly `level` have a message containing `text`.
    pub fn count(&self, level: Level, text: &str) -> usize {
        self.logged
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.level == level && e.message().contains(text))
            .count()
    }
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().into(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().into(), value.into()));
    }
}

impl Subscriber for LogCapture {
    /// Ask on every event: a capture lives on one test's thread while other
    /// tests run beside it, so no answer may be cached for the process.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max_level
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields(Vec::new());
        attributes.record(&mut fields);
        let mut text = format!("span={} ", attributes.metadata().name());
        for (k, v) in &fields.0 {
            let _ = write!(text, "{k}={v} ");
        }
        self.spans.lock().unwrap().push(text);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if !self.enabled(metadata) {
            return;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.logged.lock().unwrap().push(Logged {
            level: *metadata.level(),
            target: metadata.target().into(),
            fields: fields.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a fresh capture installed on this thread and returns its
/// result with the text ([`Logged::text`]) of each WARN event it logged.
/// ERROR events are recorded but not returned: these tests count warnings.
pub fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    install_floor();
    let capture = LogCapture::new(Level::WARN);
    let result = ::tracing::subscriber::with_default(capture.clone(), f);
    let warnings = capture
        .take()
        .into_iter()
        .filter(|e| e.level == Level::WARN)
        .map(|e| e.text())
        .collect();
    (result, warnings)
}

/// The process-wide subscriber under the per-thread captures: it records
/// nothing, but it is always registered, so `tracing` never caches a
/// callsite as "never" nor lowers its global level to OFF in the moment
/// when one test's capture has ended and the next has not begun. Without it
/// a warning logged by a test in that moment was lost (seen in CI; here
/// `data_fixtures -- --test-threads=16` failed 5 of 60 runs without it and
/// 0 of 60 with it).
struct Floor;

impl Subscriber for Floor {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs [`Floor`] once per test binary; [`with_warnings`] calls it, and
/// so should a test binary's helpers that log without a capture, before they
/// first log. A binary that sets its own global subscriber must not call it.
#[allow(dead_code)] // each test binary compiles the kit; not all log
pub fn install_floor() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ::tracing::subscriber::set_global_default(Floor)
            .expect("no other global subscriber in a binary using with_warnings");
    });
}
