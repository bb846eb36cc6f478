//! A missing GStreamer plugin is a clear, permanent error naming the Debian
//! package; the encoder probe tells present from working.

mod support;

use gstreamer as gst;
use support::media::{
    MEDIA_PATIENCE, camera, decode_alone, factory_names, init, next_segment, read_segment,
};
use support::time::within_for;
use trickle_edge::media::{EncoderKind, MediaError, probe_encoders, resolve};
use trickle_edge::shutdown::Shutdown;

/// Serialises this binary's tests: `hide` changes the process-wide plugin
/// registry, and the probe test compares two looks at it.
static REGISTRY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes `element` missing for this process, whether or not this machine
/// has it installed, so the missing-element path is tested everywhere
/// instead of being skipped where the plugin exists.
fn hide(element: &str) {
    let registry = gst::Registry::get();
    if let Some(feature) = registry.lookup_feature(element) {
        registry.remove_feature(&feature);
    }
    assert!(
        gst::ElementFactory::find(element).is_none(),
        "{element} could not be hidden from the GStreamer registry"
    );
}

#[tokio::test]
async fn missing_encoder_names_its_package() {
    let _registry = REGISTRY.lock().await;
    init();
    hide("vaapih264enc");
    let (camera, _queue) = camera("test", 160, 120, 15, EncoderKind::Vaapi);
    let err = within_for(
        MEDIA_PATIENCE,
        "a permanent error to end run at once",
        camera.run(Shutdown::never()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, MediaError::MissingElement { element, package }
            if element == "vaapih264enc" && *package == "gstreamer1.0-vaapi"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("install gstreamer1.0-vaapi"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_source_names_its_package() {
    let _registry = REGISTRY.lock().await;
    init();
    hide("libcamerasrc");
    let (camera, _queue) = camera("libcamera", 160, 120, 15, EncoderKind::X264);
    let err = within_for(
        MEDIA_PATIENCE,
        "a permanent error to end run",
        camera.run(Shutdown::never()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("gstreamer1.0-libcamera"), "{err}");
}

#[test]
fn probe_tells_present_from_working() {
    let _registry = REGISTRY.blocking_lock();
    init();
    let results = probe_encoders();
    assert_eq!(results.len(), 7);
    for r in &results {
        assert_eq!(
            r.present,
            gst::ElementFactory::find(r.element).is_some(),
            "{r:?}"
        );
        if !r.present {
            assert!(!r.works);
            assert!(
                r.error.as_deref().unwrap_or("").contains("not installed"),
                "{r:?}"
            );
        }
    }
    let works = |name| results.iter().any(|r| r.element == name && r.works);
    assert!(works("x264enc"), "{results:?}");
    assert!(works("openh264enc"), "{results:?}");
    // `auto` picks the first working encoder in board order.
    let first = results.iter().find(|r| r.works).unwrap().element;
    let chosen = resolve(EncoderKind::Auto).unwrap();
    assert_eq!(trickle_edge::media::element_name(chosen), Some(first));
}

/// A minimal install has no pango plugin (`gstreamer1.0-x`, only a
/// Recommends): the test camera must still produce segments that decode
/// alone, just without its clock and time overlays.
#[tokio::test]
async fn test_camera_runs_without_the_pango_overlays() {
    let _registry = REGISTRY.lock().await;
    init();
    hide("clockoverlay");
    hide("timeoverlay");
    let (camera, mut queue) = camera("test", 160, 120, 15, EncoderKind::Openh264);
    let handle = camera.handle();
    let running = tokio::spawn(camera.run(Shutdown::never()));
    let mut gop = next_segment(&mut queue).await;
    let bytes = read_segment(&mut gop).await;
    let decoded = decode_alone(&bytes);
    assert!(decoded.frames > 0, "{decoded:?}");
    let names = factory_names(&handle.pipeline().expect("a running pipeline"));
    assert!(
        !names
            .iter()
            .any(|n| n == "clockoverlay" || n == "timeoverlay"),
        "{names:?}"
    );
    running.abort();
}
