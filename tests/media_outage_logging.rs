//! A long outage costs one warning and one recovery line, not one per retry.

mod media_support;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use media_support::*;
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span,
};
use trickle_edge::shutdown::Shutdown;
use trickle_edge::{backoff::Backoff, media::EncoderKind};

/// Records the message of every event at INFO or above (a hand-rolled
/// subscriber keeps the dev-dependencies small).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Level, String)>>>);

impl Recorder {
    fn count(&self, level: Level, text: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|(l, m)| *l == level && m.contains(text))
            .count()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::INFO
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), m.0));
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_logged_once_and_recovery_once() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();

    let dir = temp_dir("outage-log");
    let original = dir.join("original.ts");
    let live = dir.join("camera.ts");
    make_h264_file(&original, 1, 15, "ts");

    // Start with the file missing: the camera is down from the first attempt.
    let (camera, mut queue) = camera(
        &format!("file:{}", live.display()),
        320,
        240,
        15,
        EncoderKind::X264,
    );
    let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
    let camera = camera.unpaced().with_backoff(backoff);
    let stats = camera.handle().stats();
    let task = tokio::spawn(camera.run(Shutdown::never()));

    wait_for(&stats, "several failed attempts", |s| {
        load(&s.pipeline_failures) >= 5
    })
    .await;
    // Appears whole (rename is atomic): a half-copied file would be a real
    // second outage (recovered on its first keyframe, then truncated).
    let partial = dir.join("camera.ts.partial");
    std::fs::copy(&original, &partial).unwrap();
    std::fs::rename(&partial, &live).unwrap();
    let mut seg = next_segment(&mut queue).await;
    read_segment(&mut seg).await;
    // Let the file loop a few times: EOS loops are not outages.
    let starts = load(&stats.pipeline_starts);
    wait_for(&stats, "a few loops", |s| {
        load(&s.pipeline_starts) >= starts + 3
    })
    .await;
    task.abort();

    assert_eq!(recorder.count(Level::WARN, "camera pipeline failed"), 1);
    assert_eq!(recorder.count(Level::INFO, "camera recovered"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
