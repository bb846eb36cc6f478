//! Every shipped board preset and the example config pass `check`, presets
//! merge under the file, and what `check` prints loads back to the same config.

mod support;

use support::config::{boards, write};
use support::tmp::temp_dir;
use trickle_edge::config::{self, JobMode, LoadOptions};
use trickle_edge::media::EncoderKind;

fn preset_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(boards())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_board_preset_passes_check() {
    let names = preset_names();
    assert_eq!(
        names,
        [
            "jetson-orin-nano",
            "jetson-orin-nx",
            "rk3588",
            "rpi4",
            "rpi5",
            "usb-h264-camera",
            "x86-vaapi"
        ]
    );
    let d = temp_dir("every_board");
    for name in names {
        // Named by a config file…
        let file = write(
            &d,
            &format!("{name}.toml"),
            &format!("board = \"{name}\"\n\n[job]\nmode = \"worker\"\n"),
        );
        let text = config::check(&file, None).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(text.contains(&format!("board = \"{name}\"")), "{text}");
        // …and checked on its own, as a config file: every key in it is
        // right, and only the `[job]` a preset may not hold is missing.
        let preset = boards().join(format!("{name}.toml"));
        let e = config::check(&preset, None).expect_err("a preset alone has no [job]");
        assert_eq!(
            (e.kind, e.key.as_str()),
            (trickle_edge::config::ErrorKind::MissingKey, "job"),
            "{name} alone:\n{e}"
        );
    }
}

#[test]
fn example_config_passes_check_and_round_trips() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");
    let resolved = config::load(example).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(resolved.config.job, JobMode::Worker(_)));
    assert_eq!(resolved.config.rules[0].name, "ball-left-third");
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);

    let printed = config::check(example, None).unwrap();
    let d = temp_dir("round_trip");
    let again = config::load(write(&d, "printed.toml", &printed))
        .unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(again.config, resolved.config);
}

#[test]
fn file_overrides_preset_table_by_table() {
    let d = temp_dir("override");
    let file = write(
        &d,
        "config.toml",
        "board = \"rpi5\"\n\n[camera]\nfps = 15\n\n[encoder]\nbitrate_kbps = 900\n\n[job]\nmode = \"worker\"\n",
    );
    let r = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let c = &r.config;
    // From the file.
    assert_eq!(c.camera.fps, 15);
    assert_eq!(c.encoder.bitrate_kbps, 900);
    // From the preset, in the same tables.
    assert_eq!(c.camera.source, "libcamera");
    assert_eq!((c.camera.width, c.camera.height), (1280, 720));
    assert_eq!(c.encoder.kind, EncoderKind::X264);
    assert_eq!(c.gpio.chip.as_deref(), Some("pinctrl-rp1"));
    assert_eq!(r.preset, Some(boards().join("rpi5.toml")));
    // Defaults for what neither sets.
    assert_eq!(c.queue.gops, 2);
    assert_eq!(c.supervisor.listen.to_string(), "127.0.0.1:9464");
}

#[test]
fn board_override_and_boards_dir() {
    let d = temp_dir("board_dir");
    write(
        &d,
        "boards/lab.toml",
        "[camera]\nsource = \"test\"\nwidth = 320\nheight = 240\nfps = 5\n\n[gpio]\nchip = \"gpio-sim\"\n",
    );
    let file = write(
        &d,
        "config.toml",
        "board = \"rpi5\"\n\n[outputs.led]\ntype = \"gpio\"\nline = 3\n\n[[rules]]\nname = \"on\"\non = \"reconnected\"\nthen = [{ output = \"led\", action = \"pulse\", ms = 100 }]\n\n[job]\nmode = \"worker\"\n",
    );
    let opts = LoadOptions {
        board: Some("lab".into()),
        boards_dir: Some(d.join("boards")),
        ..LoadOptions::default()
    };
    let r = config::load_with(&file, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.config.board.as_deref(), Some("lab"));
    assert_eq!(r.config.camera.source, "test");
    // The preset's [gpio] chip fills outputs that do not name one.
    let config::AgentConfig { outputs, .. } = &r.config;
    let trickle_edge::actions::OutputConfig::Gpio(led) = &outputs["led"] else {
        panic!("led is gpio")
    };
    assert_eq!(led.chip.as_deref(), Some("gpio-sim"));
}

#[test]
fn defaults_for_a_file_with_only_a_job_mode() {
    let d = temp_dir("only_mode");
    let r = config::load(write(&d, "config.toml", "[job]\nmode = \"worker\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = &r.config;
    let JobMode::Worker(w) = &c.job else {
        panic!("default mode is worker")
    };
    assert_eq!(w.worker_url, "http://127.0.0.1:8000");
    assert_eq!(w.listen.to_string(), "127.0.0.1:2939");
    assert_eq!(c.supervisor.watchdog_interval.as_secs(), 10);
    assert_eq!(c.supervisor.pipeline_dead_after.as_secs(), 30);
    assert_eq!(c.supervisor.keepalive_interval.as_secs(), 10);
    assert!(!c.tls.insecure);
    assert_eq!(r.token, None);
    assert_eq!(
        (
            c.camera.source.as_str(),
            c.camera.width,
            c.camera.height,
            c.camera.fps
        ),
        ("v4l2:/dev/video0", 1280, 720, 30)
    );
}

#[test]
fn static_mode_and_tls_options() {
    let d = temp_dir("static");
    let file = write(
        &d,
        "config.toml",
        "[job]\nmode = \"static\"\npublish_url = \"https://gw.example:8935/ai/trickle/cam\"\ndata_url = \"https://gw.example:8935/ai/trickle/cam-data\"\n\n[tls]\npin_sha256 = \"AB:\" \n",
    );
    // A pin that is not 64 hex digits is refused…
    let err = config::load(&file).unwrap_err();
    assert_eq!(err.key, "tls.pin_sha256");
    // …a good one becomes TlsOptions.
    let pin = "ab".repeat(32);
    let text = std::fs::read_to_string(&file).unwrap().replace("AB:", &pin);
    let r = config::load(write(&d, "config.toml", &text)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.tls_options().pin_sha256, Some(pin));
    let JobMode::Static(s) = &r.config.job else {
        panic!("static")
    };
    assert_eq!(s.subscribe_url, None);
}

#[test]
fn unused_outputs_and_insecure_tls_are_warnings() {
    let d = temp_dir("warnings");
    let file = write(
        &d,
        "config.toml",
        "[job]\nmode = \"worker\"\n\n[tls]\ninsecure = true\n\n[outputs.spare]\ntype = \"gpio\"\nbackend = \"simulated\"\n",
    );
    let r = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.warnings,
        [
            "tls.insecure = true: server certificates are not verified",
            "output `spare` is not used by any rule"
        ]
    );
    let printed = r.to_toml();
    assert!(
        printed.contains("# warning: output `spare` is not used by any rule\n"),
        "{printed}"
    );
}
