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

/// Creates an element by factory name, turning "not installed" into [`MediaError::MissingElement`].
pub(crate) fn make(factory: &str, name: &str) -> Result<gstreamer::Element, MediaError> {
    gstreamer::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| MediaError::MissingElement {
            element: factory.to_owned(),
            package: super::elements::package_for(factory),
        })
}

#[cfg(test)]
mod tests {
    use super::super::elements::package_for;
    use super::*;

    #[test]
    fn names_debian_packages() {
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
