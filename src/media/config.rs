//! The `[camera]` and `[encoder]` config sections and the parsed camera source.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

use super::error::MediaError;

/// `[camera]`: what to capture and at which size and rate.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Kept as text in the config so error messages can quote it; see
    /// [`Source`]. Serialized (and `Debug`-printed) with an `rtsp://` URL's
    /// password as `***`: `check` prints the config.
    #[serde(default = "default_source", serialize_with = "serialize_redacted")]
    pub source: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// H.264 from the source (an IP camera, an H.264 UVC camera, a file)
    /// goes to the muxer as it is: no decoder, no encoder, and segments
    /// follow the source's own GOP. `false` decodes and re-encodes it with
    /// `[encoder]` at this size and rate: for a camera whose keyframes are
    /// too far apart (or never come: intra refresh) to cut segments at.
    #[serde(default = "default_passthrough")]
    pub passthrough: bool,
}

/// As derived, but the source's password as `***`.
impl fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraConfig")
            .field("source", &redact_url(&self.source))
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

fn serialize_redacted<S: serde::Serializer>(source: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(source))
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
            passthrough: default_passthrough(),
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
fn default_passthrough() -> bool {
    true
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
        let bad = |why: &str| {
            let quoted = redact_url(s);
            MediaError::Config(format!("camera source {quoted:?}: {why}"))
        };
        if s == "test" {
            Ok(Source::Test)
        } else if s == "libcamera" {
            Ok(Source::Libcamera)
        } else if s.starts_with("rtsp://") || s.starts_with("rtsps://") {
            let after_scheme = s.split_once("://").map_or("", |(_, tail)| tail);
            let host = split_userinfo(s).map_or(after_scheme, |parts| parts.rest);
            if host.is_empty() || host.starts_with(['/', '?', '#', ':']) {
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
            Source::Rtsp(u) => f.write_str(&redact_url(u)),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::Test => f.write_str("test"),
        }
    }
}

/// `url` with the password of its user info as `***`
/// (`rtsp://admin:***@cam/stream`): how an RTSP URL is logged, printed and
/// quoted in errors. Anything without a password comes back as it is.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some(parts) if parts.password.is_some() => {
            format!("{}{}:***@{}", parts.scheme, parts.user, parts.rest)
        }
        _ => url.to_owned(),
    }
}

/// `url` without its user info, and the user and password it held
/// (percent-decoded), for rtspsrc's `location`, `user-id` and `user-pw`: so
/// the password is not in the element's location, which GStreamer quotes in
/// its own debug output and error details.
pub fn rtsp_location_and_credentials(url: &str) -> (String, Option<(String, String)>) {
    match split_userinfo(url) {
        Some(parts) => (
            format!("{}{}", parts.scheme, parts.rest),
            Some((
                percent_decode(parts.user),
                parts.password.map(percent_decode).unwrap_or_default(),
            )),
        ),
        None => (url.to_owned(), None),
    }
}

/// `scheme://user[:password]@rest`, split; `None` without user info.
struct UserInfo<'a> {
    /// Up to and including `://`.
    scheme: &'a str,
    user: &'a str,
    password: Option<&'a str>,
    /// After the `@`: host, port, path.
    rest: &'a str,
}

fn split_userinfo(url: &str) -> Option<UserInfo<'_>> {
    let after_scheme = url.find("://")? + 3;
    let (scheme, tail) = url.split_at(after_scheme);
    let authority_end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
    // The last `@` of the authority: a password may hold a raw `@`.
    let at = tail[..authority_end].rfind('@')?;
    let (userinfo, rest) = (&tail[..at], &tail[at + 1..]);
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Some(UserInfo {
        scheme,
        user,
        password,
        rest,
    })
}

/// `%XX` escapes decoded; anything else (a stray `%` included) kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn rtsp_passwords_are_redacted_wherever_a_source_is_shown() {
        let url = "rtsp://admin:s3cr%40t@10.0.0.5:554/live?x=a@b";
        assert_eq!(redact_url(url), "rtsp://admin:***@10.0.0.5:554/live?x=a@b");
        let source: Source = url.parse().unwrap();
        assert_eq!(
            source.to_string(),
            "rtsp://admin:***@10.0.0.5:554/live?x=a@b"
        );
        // No user info, or a user alone: nothing to hide.
        for plain in [
            "rtsp://cam/stream",
            "rtsp://viewer@cam/s",
            "test",
            "file:/a@b:c",
        ] {
            assert_eq!(redact_url(plain), plain);
        }
        // A raw `@` in the password: the authority ends at the last one.
        assert_eq!(redact_url("rtsp://u:p@ss@cam/s"), "rtsp://u:***@cam/s");
        let camera = CameraConfig {
            source: url.into(),
            ..CameraConfig::default()
        };
        let printed = toml::to_string(&camera).unwrap();
        assert!(printed.contains("rtsp://admin:***@10.0.0.5"), "{printed}");
        assert!(!format!("{camera:?}").contains("s3cr"), "{camera:?}");
        let err = "rtsps://admin:s3cr3t@".parse::<Source>().unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn rtsp_credentials_leave_the_location_decoded() {
        assert_eq!(
            rtsp_location_and_credentials("rtsp://admin:s3cr%40t@cam:8554/live"),
            (
                "rtsp://cam:8554/live".to_owned(),
                Some(("admin".to_owned(), "s3cr@t".to_owned()))
            )
        );
        assert_eq!(
            rtsp_location_and_credentials("rtsp://cam/live"),
            ("rtsp://cam/live".to_owned(), None)
        );
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
