//! Typed errors of the media module.

/// What went wrong in config, pipeline construction or a running pipeline.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The config cannot work whatever the hardware; retrying will not help.
    #[error("media config: {0}")]
    Config(String),
    /// A GStreamer element is not installed; names the Debian package that ships it.
    #[error("GStreamer element {element:?} is missing: install {package}")]
    MissingElement {
        element: String,
        package: &'static str,
    },
    /// `encoder.kind = "auto"` and no candidate passed the encode probe.
    #[error("no working H.264 encoder found (probed: {0})")]
    NoEncoder(String),
    /// Building or running the pipeline failed; the supervisor retries these.
    #[error("pipeline for {source_desc}: {message}")]
    Pipeline {
        source_desc: String,
        message: String,
    },
}

impl MediaError {
    /// Errors that no rebuild can fix: the supervisor gives up on these.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MediaError::Config(_) | MediaError::MissingElement { .. } | MediaError::NoEncoder(_)
        )
    }
}

/// The Debian package that ships a GStreamer element, for "install X" messages.
pub fn package_for(element: &str) -> &'static str {
    match element {
        "videotestsrc" | "videoconvert" | "videoscale" | "videorate" | "appsink" | "appsrc"
        | "clockoverlay" | "timeoverlay" | "decodebin" | "parsebin" | "playbin" | "capsfilter"
        | "identity" | "queue" | "fakesink" | "filesrc" => "gstreamer1.0-plugins-base",
        "v4l2src" | "v4l2h264enc" | "rtspsrc" | "rtph264depay" | "qtdemux" | "jpegdec" => {
            "gstreamer1.0-plugins-good"
        }
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "openh264enc" | "openh264dec" | "h264parse" | "mpegtsmux" | "tsdemux" | "qsvh264enc" => {
            "gstreamer1.0-plugins-bad"
        }
        "avdec_h264" => "gstreamer1.0-libav",
        "libcamerasrc" => "gstreamer1.0-libcamera",
        "vaapih264enc" => "gstreamer1.0-vaapi",
        "mpph264enc" => "gstreamer1.0-rockchip1 (Rockchip BSP repository)",
        "nvv4l2h264enc" => "nvidia-l4t-gstreamer (NVIDIA JetPack repository)",
        _ => "the GStreamer plugin package that provides it",
    }
}

/// Creates an element by factory name, turning "not installed" into [`MediaError::MissingElement`].
pub(crate) fn make(factory: &str, name: &str) -> Result<gstreamer::Element, MediaError> {
    gstreamer::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| MediaError::MissingElement {
            element: factory.to_owned(),
            package: package_for(factory),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_debian_packages() {
        assert_eq!(package_for("x264enc"), "gstreamer1.0-plugins-ugly");
        assert_eq!(package_for("mpegtsmux"), "gstreamer1.0-plugins-bad");
        assert_eq!(package_for("v4l2src"), "gstreamer1.0-plugins-good");
        assert_eq!(package_for("libcamerasrc"), "gstreamer1.0-libcamera");
        assert_eq!(package_for("vaapih264enc"), "gstreamer1.0-vaapi");
        let e = MediaError::MissingElement {
            element: "x264enc".into(),
            package: package_for("x264enc"),
        };
        assert_eq!(
            e.to_string(),
            "GStreamer element \"x264enc\" is missing: install gstreamer1.0-plugins-ugly"
        );
    }
}
