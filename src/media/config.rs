//! The `[camera]` and `[encoder]` config sections and the parsed camera source.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

use super::error::MediaError;

/// `[camera]`: what to capture and at which size and rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Kept as text in the config so error messages can quote it; see [`Source`].
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
}

/// The first V4L2 camera, at the size and rate most boards and models
/// handle well; a board preset may change each of these.
impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: default_source(),
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
        }
    }
}

fn default_source() -> String {
    "v4l2:/dev/video0".into()
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}

impl CameraConfig {
    /// Parses `source` and checks the numbers, so a bad config fails before any pipeline exists.
    pub fn validate(&self) -> Result<Source, MediaError> {
        if self.width == 0 || self.height == 0 || self.fps == 0 {
            return Err(MediaError::Config(format!(
                "camera width, height and fps must be > 0 (got {}x{} @ {} fps)",
                self.width, self.height, self.fps
            )));
        }
        self.source.parse()
    }
}

/// Which H.264 encoder element family to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The first encoder, in board order, that passes a real encode probe.
    #[default]
    Auto,
    X264,
    Openh264,
    V4l2,
    Mpp,
    Nvv4l2,
    Vaapi,
    Qsv,
}

/// `[encoder]`: bitrate and GOP length, applied in each element's own terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    #[serde(default)]
    pub kind: EncoderKind,
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// One GOP is one trickle segment, so this is also the segment length.
    #[serde(default = "default_gop")]
    pub gop_seconds: f64,
}

fn default_bitrate() -> u32 {
    2000
}

fn default_gop() -> f64 {
    1.0
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            kind: EncoderKind::Auto,
            bitrate_kbps: default_bitrate(),
            gop_seconds: default_gop(),
        }
    }
}

impl EncoderConfig {
    /// GOP length in frames (at least 1) for a given frame rate.
    pub fn gop_frames(&self, fps: u32) -> u32 {
        ((self.gop_seconds * f64::from(fps)).round() as u32).max(1)
    }

    /// Rejects settings no encoder can honour.
    pub fn validate(&self) -> Result<(), MediaError> {
        if self.bitrate_kbps == 0 {
            return Err(MediaError::Config(
                "encoder bitrate_kbps must be > 0".into(),
            ));
        }
        if !(self.gop_seconds.is_finite() && (0.1..=10.0).contains(&self.gop_seconds)) {
            return Err(MediaError::Config(format!(
                "encoder gop_seconds must be between 0.1 and 10 (got {})",
                self.gop_seconds
            )));
        }
        Ok(())
    }
}

/// A parsed `camera.source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A V4L2 device node (`/dev/videoN` or a stable `/dev/v4l/by-id/…` link).
    V4l2Device(PathBuf),
    /// A V4L2 device chosen by its card name, for boards where node numbers move.
    V4l2Card(String),
    Libcamera,
    Rtsp(String),
    /// A media file, played in real time and looped, standing in for a camera.
    File(PathBuf),
    /// `videotestsrc` (moving ball) with the time burnt in.
    Test,
}

impl FromStr for Source {
    type Err = MediaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| MediaError::Config(format!("camera source {s:?}: {why}"));
        if s == "test" {
            Ok(Source::Test)
        } else if s == "libcamera" {
            Ok(Source::Libcamera)
        } else if s.starts_with("rtsp://") || s.starts_with("rtsps://") {
            if s.split("://").nth(1).is_none_or(str::is_empty) {
                return Err(bad("missing host after rtsp://"));
            }
            Ok(Source::Rtsp(s.to_owned()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad("expected file:PATH"));
            }
            Ok(Source::File(PathBuf::from(path)))
        } else if let Some(rest) = s.strip_prefix("v4l2:") {
            if let Some(card) = rest.strip_prefix("card=") {
                if card.is_empty() {
                    return Err(bad("expected v4l2:card=NAME"));
                }
                Ok(Source::V4l2Card(card.to_owned()))
            } else if rest.starts_with("/dev/") {
                Ok(Source::V4l2Device(PathBuf::from(rest)))
            } else {
                Err(bad(
                    "expected v4l2:/dev/videoN, v4l2:/dev/v4l/by-id/… or v4l2:card=NAME",
                ))
            }
        } else {
            Err(bad(
                "expected one of v4l2:/dev/videoN, v4l2:card=NAME, libcamera, rtsp://…, file:PATH, test",
            ))
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4l2Device(p) => write!(f, "v4l2:{}", p.display()),
            Source::V4l2Card(c) => write!(f, "v4l2:card={c}"),
            Source::Libcamera => f.write_str("libcamera"),
            Source::Rtsp(u) => f.write_str(u),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::Test => f.write_str("test"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_form() {
        assert_eq!("test".parse::<Source>().unwrap(), Source::Test);
        assert_eq!("libcamera".parse::<Source>().unwrap(), Source::Libcamera);
        assert_eq!(
            "v4l2:/dev/video2".parse::<Source>().unwrap(),
            Source::V4l2Device("/dev/video2".into())
        );
        assert_eq!(
            "v4l2:/dev/v4l/by-id/usb-cam-index0"
                .parse::<Source>()
                .unwrap(),
            Source::V4l2Device("/dev/v4l/by-id/usb-cam-index0".into())
        );
        assert_eq!(
            "v4l2:card=HD Webcam".parse::<Source>().unwrap(),
            Source::V4l2Card("HD Webcam".into())
        );
        assert_eq!(
            "rtsp://cam/stream".parse::<Source>().unwrap(),
            Source::Rtsp("rtsp://cam/stream".into())
        );
        assert_eq!(
            "file:/tmp/a.ts".parse::<Source>().unwrap(),
            Source::File("/tmp/a.ts".into())
        );
    }

    #[test]
    fn rejects_bad_sources_quoting_them() {
        for bad in [
            "",
            "v4l2:video0",
            "v4l2:card=",
            "file:",
            "rtsp://",
            "http://x",
        ] {
            let err = bad.parse::<Source>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn encoder_defaults_and_unknown_fields() {
        let e: EncoderConfig = toml::from_str(r#"kind = "x264""#).unwrap();
        assert_eq!(e.kind, EncoderKind::X264);
        assert_eq!(e.bitrate_kbps, 2000);
        assert_eq!(e.gop_seconds, 1.0);
        assert_eq!(e.gop_frames(30), 30);
        assert!(toml::from_str::<EncoderConfig>("kind = \"x264\"\nbitrate = 1").is_err());
        assert!(toml::from_str::<EncoderConfig>("kind = \"h265\"").is_err());
        let c: CameraConfig =
            toml::from_str("source = \"test\"\nwidth = 320\nheight = 240\nfps = 15").unwrap();
        assert_eq!(c.validate().unwrap(), Source::Test);
    }
}
