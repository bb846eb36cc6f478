//! Every GStreamer element the agent can build, with the package that ships it.
//!
//! One table serves the "install X" error hint, `trickle-edge probe`, and the
//! packaging: `tests/media_elements.rs` checks each installed element's
//! plugin file against `dpkg -S`, and checks that `ci/setup.sh` and the
//! `.deb`'s Depends/Recommends/Suggests name the packages the table says are
//! needed. A new element goes here first, or that test fails.

/// How much the agent depends on an element, which decides where its package
/// goes in the `.deb` and whether `ci/setup.sh` must install it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Capture, segmenting or the worker's decoder cannot run without it:
    /// its package is a Depends of the `.deb`.
    Required,
    /// Used when installed, with a fallback or a clear error otherwise (the
    /// x264 encoder, libav's decoder, the test camera's overlays): a
    /// Recommends of the `.deb`, and installed by `ci/setup.sh`.
    Optional,
    /// One board's camera or encoder, from Debian: a Suggests of the `.deb`.
    Board,
    /// One board's camera or encoder from its vendor's repository (not
    /// Debian): named in hints only.
    Vendor,
}

/// One element the code creates by factory name.
#[derive(Debug, Clone, Copy)]
pub struct Element {
    pub factory: &'static str,
    /// The package shipping the plugin, as `dpkg -S` names it (for
    /// [`Need::Vendor`], the package and where it comes from).
    pub package: &'static str,
    pub need: Need,
    /// The factory is registered only when its hardware exists (V4L2 M2M
    /// and Intel encoders register per device), so an installed package
    /// does not mean `gst-inspect-1.0` finds it.
    pub hardware: bool,
}

const fn e(factory: &'static str, package: &'static str, need: Need) -> Element {
    Element {
        factory,
        package,
        need,
        hardware: false,
    }
}

const fn hw(factory: &'static str, package: &'static str, need: Need) -> Element {
    Element {
        factory,
        package,
        need,
        hardware: true,
    }
}

pub const CORE: &str = "libgstreamer1.0-0";
pub const BASE: &str = "gstreamer1.0-plugins-base";
pub const GOOD: &str = "gstreamer1.0-plugins-good";
pub const BAD: &str = "gstreamer1.0-plugins-bad";
pub const UGLY: &str = "gstreamer1.0-plugins-ugly";
pub const LIBAV: &str = "gstreamer1.0-libav";
/// The pango plugin (`clockoverlay`, `timeoverlay`), not part of plugins-base.
pub const PANGO: &str = "gstreamer1.0-x";

/// The table. Order is only for reading: grouped by package.
pub const ELEMENTS: &[Element] = &[
    e("capsfilter", CORE, Need::Required),
    e("identity", CORE, Need::Required),
    e("filesrc", CORE, Need::Required),
    e("queue", CORE, Need::Required),
    // The status page's snapshot branch (media/snapshot.rs).
    e("tee", CORE, Need::Required),
    e("valve", CORE, Need::Required),
    e("videotestsrc", BASE, Need::Required),
    e("videoconvert", BASE, Need::Required),
    e("videoscale", BASE, Need::Required),
    e("videorate", BASE, Need::Required),
    e("appsink", BASE, Need::Required),
    e("appsrc", BASE, Need::Required),
    e("parsebin", BASE, Need::Required),
    e("decodebin", BASE, Need::Required),
    e("v4l2src", GOOD, Need::Required),
    e("rtspsrc", GOOD, Need::Required),
    e("jpegenc", GOOD, Need::Required),
    e("h264parse", BAD, Need::Required),
    e("mpegtsmux", BAD, Need::Required),
    e("tsdemux", BAD, Need::Required),
    // The software encoder and decoder of last resort ship in plugins-bad.
    e("openh264enc", BAD, Need::Required),
    e("openh264dec", BAD, Need::Required),
    e("clockoverlay", PANGO, Need::Optional),
    e("timeoverlay", PANGO, Need::Optional),
    e("x264enc", UGLY, Need::Optional),
    e("avdec_h264", LIBAV, Need::Optional),
    e("libcamerasrc", "gstreamer1.0-libcamera", Need::Board),
    e("vaapih264enc", "gstreamer1.0-vaapi", Need::Board),
    hw("v4l2h264enc", GOOD, Need::Board),
    hw("qsvh264enc", BAD, Need::Board),
    e(
        "mpph264enc",
        "gstreamer1.0-rockchip1 (Rockchip BSP repository)",
        Need::Vendor,
    ),
    e(
        "nvv4l2h264enc",
        "nvidia-l4t-gstreamer (NVIDIA JetPack repository)",
        Need::Vendor,
    ),
    e(
        "nvvidconv",
        "nvidia-l4t-gstreamer (NVIDIA JetPack repository)",
        Need::Vendor,
    ),
];

/// The table's entry for a factory name.
pub fn lookup(factory: &str) -> Option<&'static Element> {
    ELEMENTS.iter().find(|e| e.factory == factory)
}

/// The package that ships `factory`, for "install X" messages.
pub fn package_for(factory: &str) -> &'static str {
    lookup(factory)
        .map(|e| e.package)
        .unwrap_or("the GStreamer plugin package that provides it")
}

/// Whether GStreamer can create `factory` here.
pub fn installed(factory: &str) -> bool {
    gstreamer::init().is_ok() && gstreamer::ElementFactory::find(factory).is_some()
}

/// Elements of the table that are not installed, skipping hardware-registered
/// ones: for `probe` and start-up hints.
pub fn missing(need: Need) -> Vec<&'static Element> {
    ELEMENTS
        .iter()
        .filter(|e| e.need == need && !e.hardware && !installed(e.factory))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_factory_once() {
        let mut names: Vec<_> = ELEMENTS.iter().map(|e| e.factory).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a factory is listed twice");
    }

    #[test]
    fn names_the_package_or_says_it_does_not_know() {
        assert_eq!(package_for("clockoverlay"), "gstreamer1.0-x");
        assert_eq!(package_for("capsfilter"), "libgstreamer1.0-0");
        assert_eq!(package_for("x264enc"), "gstreamer1.0-plugins-ugly");
        assert_eq!(
            package_for("nosuchelement"),
            "the GStreamer plugin package that provides it"
        );
    }

    #[test]
    fn encoders_of_the_auto_order_are_all_listed() {
        for name in super::super::encoder::all_element_names() {
            assert!(lookup(name).is_some(), "{name} is not in the table");
        }
    }
}
