//! What `trickle-edge probe` reports about the media side of a board:
//! the cameras V4L2 exposes, the GStreamer elements of the package table that
//! are missing, and which H.264 encoders really produce video here.
//!
//! Gathering ([`probe_media`]) is separate from rendering ([`MediaReport`]'s
//! `Display`) so the wording can be tested on a machine without cameras or
//! hardware encoders, and so the command line only prints.

use std::fmt;
use std::path::{Path, PathBuf};

use super::elements::{self, Element, Need};
use super::encoder::{ProbeResult, probe_encoders};

/// Stable camera names (`/dev/v4l/by-id`) first: they survive a reboot that
/// renumbers `/dev/videoN`, so they are the ones worth putting in a config.
const BY_ID_DIR: &str = "/dev/v4l/by-id";
const DEV_DIR: &str = "/dev";

/// Everything the media half of `probe` found, ready to print.
#[derive(Debug, Clone)]
pub struct MediaReport {
    /// V4L2 device paths, by-id links first, each group sorted.
    pub cameras: Vec<PathBuf>,
    /// Required elements of the package table that are not installed.
    pub missing_required: Vec<&'static Element>,
    /// Optional elements of the package table that are not installed.
    pub missing_optional: Vec<&'static Element>,
    /// One result per encoder, in the order `auto` tries them.
    pub encoders: Vec<ProbeResult>,
}

/// Lists cameras, checks the element table and test-encodes with every
/// encoder. Blocking (the encoder probes run pipelines): call from
/// `spawn_blocking` in async code.
pub fn probe_media() -> MediaReport {
    MediaReport {
        cameras: list_cameras(Path::new(BY_ID_DIR), Path::new(DEV_DIR)),
        missing_required: elements::missing(Need::Required),
        missing_optional: elements::missing(Need::Optional),
        encoders: probe_encoders(),
    }
}

/// Every entry of `by_id`, then the `video*` nodes of `dev`; a directory that
/// cannot be read contributes nothing (most boards have no by-id directory).
fn list_cameras(by_id: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut cameras = sorted_entries(by_id, |_| true);
    cameras.extend(sorted_entries(dev, |name| name.starts_with("video")));
    cameras
}

fn sorted_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| keep(&n.to_string_lossy())))
        .collect();
    paths.sort();
    paths
}

/// One encoder's line after its name and time: works, installed but broken,
/// or absent with what to install (or why installing may not help).
fn encoder_state(r: &ProbeResult) -> String {
    match (r.present, r.works) {
        (_, true) => "works".to_string(),
        (true, false) => format!(
            "present but failed: {}",
            r.error.as_deref().unwrap_or_default()
        ),
        (false, _) => match elements::lookup(r.element) {
            Some(e) if e.hardware => format!(
                "not present ({} registers it only where its hardware exists)",
                e.package
            ),
            _ => format!("missing (install {})", elements::package_for(r.element)),
        },
    }
}

impl fmt::Display for MediaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cameras:")?;
        for camera in &self.cameras {
            writeln!(f, "  v4l2:{}", camera.display())?;
        }
        if self.cameras.is_empty() {
            writeln!(
                f,
                "  (no V4L2 device; `test` and `file:PATH` sources always work)"
            )?;
        }
        writeln!(f, "GStreamer elements:")?;
        if self.missing_required.is_empty() && self.missing_optional.is_empty() {
            writeln!(f, "  all required and optional elements installed")?;
        }
        for (what, list) in [
            ("required", &self.missing_required),
            ("optional", &self.missing_optional),
        ] {
            for e in list {
                writeln!(
                    f,
                    "  {what} {:<14} missing (install {})",
                    e.factory, e.package
                )?;
            }
        }
        writeln!(f, "H.264 encoders (auto picks the first that works):")?;
        for r in &self.encoders {
            writeln!(
                f,
                "  {:<16} {:>7.1} ms  {}",
                r.element,
                r.took.as_secs_f64() * 1e3,
                encoder_state(r)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(element: &'static str, present: bool, works: bool) -> ProbeResult {
        ProbeResult {
            element,
            present,
            works,
            took: Duration::from_micros(12_345),
            error: (present && !works).then(|| "no caps".to_string()),
        }
    }

    fn empty_report() -> MediaReport {
        MediaReport {
            cameras: Vec::new(),
            missing_required: Vec::new(),
            missing_optional: Vec::new(),
            encoders: Vec::new(),
        }
    }

    #[test]
    fn renders_every_section_and_state() {
        let report = MediaReport {
            cameras: vec![
                PathBuf::from("/dev/v4l/by-id/usb-cam-video-index0"),
                PathBuf::from("/dev/video0"),
            ],
            missing_required: vec![elements::lookup("mpegtsmux").unwrap()],
            missing_optional: vec![elements::lookup("x264enc").unwrap()],
            encoders: vec![
                result("v4l2h264enc", false, false),
                result("vaapih264enc", false, false),
                result("x264enc", true, false),
                result("openh264enc", true, true),
            ],
        };
        let expected = "cameras:\n\
             \x20 v4l2:/dev/v4l/by-id/usb-cam-video-index0\n\
             \x20 v4l2:/dev/video0\n\
             GStreamer elements:\n\
             \x20 required mpegtsmux      missing (install gstreamer1.0-plugins-bad)\n\
             \x20 optional x264enc        missing (install gstreamer1.0-plugins-ugly)\n\
             H.264 encoders (auto picks the first that works):\n\
             \x20 v4l2h264enc         12.3 ms  not present (gstreamer1.0-plugins-good registers it only where its hardware exists)\n\
             \x20 vaapih264enc        12.3 ms  missing (install gstreamer1.0-vaapi)\n\
             \x20 x264enc             12.3 ms  present but failed: no caps\n\
             \x20 openh264enc         12.3 ms  works\n";
        assert_eq!(report.to_string(), expected);
    }

    #[test]
    fn says_what_works_without_a_camera_or_missing_elements() {
        assert_eq!(
            empty_report().to_string(),
            "cameras:\n\
             \x20 (no V4L2 device; `test` and `file:PATH` sources always work)\n\
             GStreamer elements:\n\
             \x20 all required and optional elements installed\n\
             H.264 encoders (auto picks the first that works):\n"
        );
    }

    #[test]
    fn lists_by_id_links_then_video_nodes_sorted() {
        let root = std::env::temp_dir().join(format!("trickle-edge-probe-{}", std::process::id()));
        let by_id = root.join("by-id");
        let dev = root.join("dev");
        std::fs::create_dir_all(&by_id).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        for name in ["usb-b", "usb-a"] {
            std::fs::write(by_id.join(name), b"").unwrap();
        }
        for name in ["video1", "null", "video0", "gpiochip0"] {
            std::fs::write(dev.join(name), b"").unwrap();
        }
        let found = list_cameras(&by_id, &dev);
        let missing = list_cameras(&root.join("absent"), &root.join("absent-too"));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found,
            vec![
                by_id.join("usb-a"),
                by_id.join("usb-b"),
                dev.join("video0"),
                dev.join("video1"),
            ]
        );
        assert!(missing.is_empty());
    }
}
