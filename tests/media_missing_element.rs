//! A missing GStreamer plugin is a clear, permanent error naming the Debian
//! package; the encoder probe tells present from working.

mod media_support;

use gstreamer as gst;
use media_support::*;
use trickle_edge::media::{EncoderKind, MediaError, probe_encoders, resolve};

#[tokio::test]
async fn missing_encoder_names_its_package() {
    init();
    if gst::ElementFactory::find("vaapih264enc").is_some() {
        eprintln!("vaapih264enc is installed here; nothing to test");
        return;
    }
    let (camera, _queue) = camera("test", 160, 120, 15, EncoderKind::Vaapi);
    let err = tokio::time::timeout(TIMEOUT, camera.run(std::future::pending()))
        .await
        .expect("a permanent error ends run at once")
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
    init();
    if gst::ElementFactory::find("libcamerasrc").is_some() {
        eprintln!("libcamerasrc is installed here; nothing to test");
        return;
    }
    let (camera, _queue) = camera("libcamera", 160, 120, 15, EncoderKind::X264);
    let err = tokio::time::timeout(TIMEOUT, camera.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("gstreamer1.0-libcamera"), "{err}");
}

#[test]
fn probe_tells_present_from_working() {
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
