//! Each kind of config mistake gives one exact, rustc-shaped message: what is
//! wrong, file:line:col (of the preset when the preset is at fault), the key
//! path, and a hint.

mod support;

use std::path::Path;

use support::config::write;
use support::tmp::temp_dir;
use trickle_edge::config::{self, ConfigError, ErrorKind, LoadOptions};

/// Loads `text` as `config.toml` in a fresh directory; returns the error and
/// the file's path.
/// A text without `[job]` gets one appended (after every line the test
/// points at), so each test names only its own mistake.
fn fail(test: &str, text: &str) -> (ConfigError, std::path::PathBuf) {
    if text.contains("[job]") {
        fail_as_is(test, text)
    } else {
        fail_as_is(test, &format!("{text}\n[job]\nmode = \"worker\"\n"))
    }
}

fn fail_as_is(test: &str, text: &str) -> (ConfigError, std::path::PathBuf) {
    let d = temp_dir(test);
    let file = write(&d, "config.toml", text);
    let err = config::load(&file).expect_err("config should be rejected");
    (err, file)
}

const JOB_HINT: &str = "add `[job]` with `mode = \"static\"` and `publish_url = \"…\"` (a gateway's channels), `mode = \"worker\"` and `worker_url = \"http://HOST:PORT\"` (a worker on the LAN), or `mode = \"byoc\"` with `orchestrator_url` and `capability` (a Livepeer orchestrator); examples/config.toml shows them";

#[test]
fn an_empty_config_says_it_needs_a_job() {
    for (test, text) in [("empty", ""), ("comments_only", "# nothing yet\n\n")] {
        let (e, f) = fail_as_is(test, text);
        assert_eq!(
            e.to_string(),
            format!(
                "error: the config is empty: it needs at least a `[job]` table\n  --> {}\n  = hint: {JOB_HINT}",
                f.display()
            )
        );
        assert_eq!((e.kind, e.key.as_str()), (ErrorKind::MissingKey, "job"));
    }
}

#[test]
fn a_config_without_a_job_says_so_after_naming_typos() {
    let (e, f) = fail_as_is("no_job", "[camera]\nsource = \"test\"\n");
    assert_eq!(
        e.to_string(),
        format!(
            "error: no `[job]` table: the agent needs to know where to publish\n  --> {}\n  = hint: {JOB_HINT}",
            f.display()
        )
    );
    assert_eq!((e.kind, e.key.as_str()), (ErrorKind::MissingKey, "job"));
    // A typo elsewhere is named first: fixing it is what the user does next.
    let (e, _) = fail_as_is("no_job_typo", "[camera]\nsorce = \"test\"\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey, "{e}");
}

#[test]
fn a_camera_with_only_a_source_takes_the_default_size_and_rate() {
    let d = temp_dir("camera_source_only");
    let file = write(
        &d,
        "config.toml",
        "[camera]\nsource = \"test\"\n\n[job]\nmode = \"worker\"\n",
    );
    let cfg = config::load(&file).expect("accepted").config.camera;
    assert_eq!(
        (cfg.source.as_str(), cfg.width, cfg.height, cfg.fps),
        ("test", 1280, 720, 30)
    );
}

fn expect(err: &ConfigError, file: &Path, line_col: &str, message: &str, hint: &str) {
    let want = format!(
        "error: {message}\n  --> {}:{line_col}\n  = hint: {hint}",
        file.display()
    );
    assert_eq!(err.to_string(), want);
}

#[test]
fn unknown_key_at_top_level() {
    let (e, f) = fail("unknown_top", "# agent\nboardd = \"rpi5\"\n");
    expect(
        &e,
        &f,
        "2:1",
        "unknown field `boardd` at the top level",
        "did you mean `board`?",
    );
    assert_eq!((e.kind, e.key.as_str()), (ErrorKind::UnknownKey, "boardd"));

    let (e, f) = fail("unknown_top_far", "zzz = 1\n");
    expect(
        &e,
        &f,
        "1:1",
        "unknown field `zzz` at the top level",
        "allowed keys: `board`, `camera`, `encoder`, `gpio`, `job`, `tls`, `auth`, `supervisor`, `queue`, `outputs`, `rules`",
    );
}

#[test]
fn unknown_key_nested() {
    let text = "[job]\nmode = \"worker\"\n\n[outputs.door]\ntype = \"gpio\"\nchipp = \"pinctrl-rp1\"\nline = 17\n";
    let (e, f) = fail("unknown_nested", text);
    expect(
        &e,
        &f,
        "6:1",
        "unknown field `chipp` in `outputs.door`",
        "did you mean `chip`?",
    );
    assert_eq!(e.key, "outputs.door.chipp");

    let (e, f) = fail(
        "unknown_in_job",
        "[job]\nmode = \"worker\"\nworker = \"http://x\"\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "unknown field `worker` in `job`",
        "did you mean `worker_url`?",
    );

    let (e, f) = fail(
        "unknown_in_rule",
        "[[rules]]\nname = \"r\"\nthen = []\ncooldwn = \"1s\"\n",
    );
    expect(
        &e,
        &f,
        "4:1",
        "unknown field `cooldwn` in `rules[0]`",
        "did you mean `cooldown`?",
    );
}

#[test]
fn wrong_type() {
    let (e, f) = fail(
        "wrong_type",
        "[camera]\nsource = \"test\"\nwidth = \"640\"\nheight = 360\nfps = 15\n",
    );
    expect(
        &e,
        &f,
        "3:9",
        "wrong type for `camera.width`: expected u32, found string \"640\"",
        "numbers are written without quotes",
    );
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::WrongType, "camera.width")
    );
}

#[test]
fn bad_duration() {
    let hint = "a duration is a number and a unit (ms, s, m, h), parts may be combined: \"500ms\", \"10s\", \"1.5s\", \"2m\", \"1h\", \"1m30s\"";
    let (e, f) = fail(
        "bad_duration",
        "[supervisor]\nwatchdog_interval = \"10 sec\"\n",
    );
    expect(
        &e,
        &f,
        "2:21",
        "invalid duration \"10 sec\" for `supervisor.watchdog_interval`",
        hint,
    );

    // Inside an output table (serde reports only the table; the key is found by its text).
    let (e, f) = fail(
        "bad_duration_output",
        "[outputs.door]\ntype = \"gpio\"\nbackend = \"simulated\"\nwrite_timeout = \"1 s\"\n",
    );
    expect(
        &e,
        &f,
        "4:17",
        "invalid duration \"1 s\" for `outputs.door.write_timeout`",
        hint,
    );

    // In a rule (checked after serde, by the rules module).
    let (e, f) = fail(
        "bad_duration_rule",
        "[[rules]]\nname = \"r\"\ncooldown = \"5 s\"\nthen = []\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "invalid duration \"5 s\" for `rules[0].cooldown`",
        hint,
    );
}

#[test]
fn missing_publish_url_in_static_mode() {
    let (e, f) = fail(
        "static_no_publish",
        "[job]\nmode = \"static\"\ndata_url = \"http://127.0.0.1:2939/ai/trickle/data\"\n",
    );
    expect(
        &e,
        &f,
        "1:1",
        "missing field `publish_url` in `job`",
        "`mode = \"static\"` needs the trickle URL camera segments are published to, e.g. `publish_url = \"https://gateway.example/ai/trickle/cam\"`",
    );
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::MissingKey, "job.publish_url")
    );
}

#[test]
fn unknown_job_mode() {
    let (e, f) = fail("livepeer_mode", "[job]\nmode = \"livepear\"\n");
    expect(
        &e,
        &f,
        "2:8",
        "unknown value `livepear` for `job.mode`",
        "did you mean `livepeer`?",
    );
    let (e, f) = fail("unknown_mode", "[job]\nmode = \"gateway\"\n");
    expect(
        &e,
        &f,
        "2:8",
        "unknown value `gateway` for `job.mode`",
        "expected one of: `static`, `worker`, `byoc`, `livepeer`",
    );
}

#[test]
fn bad_url_and_port() {
    let hint = "expected `http://HOST[:PORT]/PATH` or `https://…`";
    let (e, f) = fail(
        "bad_port",
        "[job]\nmode = \"static\"\npublish_url = \"http://gw:99999/x\"\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "invalid URL \"http://gw:99999/x\" for `job.publish_url`: the port must be 1 to 65535",
        hint,
    );
    let (e, f) = fail(
        "bad_scheme",
        "[job]\nmode = \"worker\"\nworker_url = \"ftp://w/\"\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "invalid URL \"ftp://w/\" for `job.worker_url`: the scheme must be http or https",
        hint,
    );
}

#[test]
fn bad_api_prefix() {
    let (e, f) = fail(
        "bad_api_prefix",
        "[job]\nmode = \"worker\"\napi_prefix = \"api\"\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "invalid API prefix \"api\" for `job.api_prefix`",
        "use \"auto\", \"/\" (pytrickle's default routes) or a path such as \"/api\"",
    );
}

#[test]
fn rule_referencing_an_unknown_output() {
    let text = "[outputs.door]\ntype = \"gpio\"\nbackend = \"simulated\"\n\n[outputs.events]\ntype = \"log\"\npath = \"/tmp/e.jsonl\"\n\n[[rules]]\nname = \"person\"\nthen = [{ output = \"dor\", action = \"set\" }]\n";
    let (e, f) = fail("unknown_output", text);
    expect(
        &e,
        &f,
        "11:11",
        "rule `person` uses unknown output `dor`",
        "did you mean `door`?",
    );
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::UnknownOutput, "rules[0].then[0].output")
    );

    let text = text.replace("\"dor\"", "\"siren\"");
    let (e, f) = fail("unknown_output_far", &text);
    expect(
        &e,
        &f,
        "11:11",
        "rule `person` uses unknown output `siren`",
        "defined outputs: `door`, `events`",
    );
}

#[test]
fn gpio_output_needs_an_action() {
    let text = "[outputs.door]\ntype = \"gpio\"\nbackend = \"simulated\"\n\n[[rules]]\nname = \"r\"\nthen = [{ output = \"door\" }]\n";
    let (e, f) = fail("gpio_action", text);
    expect(
        &e,
        &f,
        "7:9",
        "rule `r` must say what to do with GPIO output `door`",
        "add `action = \"pulse\"` (with `ms`), `\"set\"`, `\"clear\"` or `\"hold\"`",
    );
}

#[test]
fn unknown_board() {
    let (e, f) = fail("unknown_board", "board = \"rpi6\"\n");
    expect(
        &e,
        &f,
        "1:9",
        "unknown board `rpi6`",
        "did you mean `rpi4` or `rpi5`?",
    );
    assert_eq!(e.kind, ErrorKind::UnknownBoard);

    // From the command line there is no line to point at.
    let d = temp_dir("unknown_board_cli");
    let file = write(&d, "config.toml", "");
    let opts = LoadOptions {
        board: Some("beaglebone".into()),
        boards_dir: None,
        ..LoadOptions::default()
    };
    let e = config::load_with(&file, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "error: unknown board `beaglebone` (from --board)\n  --> {}\n  = hint: known boards: `jetson-orin-nano`, `jetson-orin-nx`, `rk3588`, `rpi4`, `rpi5`, `usb-h264-camera`, `x86-vaapi`",
            file.display()
        )
    );

    // A path is not a board name.
    let (e, _) = fail("board_path", "board = \"../boards/rpi5\"\n");
    assert_eq!(e.kind, ErrorKind::UnknownBoard);
}

#[test]
fn errors_inside_a_preset_name_the_preset() {
    let d = temp_dir("bad_preset");
    let preset = write(
        &d,
        "boards/lab.toml",
        "# lab rig\n[camera]\nsource = \"test\"\nwidthh = 320\n",
    );
    let file = write(&d, "config.toml", "board = \"lab\"\n");
    let opts = LoadOptions {
        board: None,
        boards_dir: Some(d.join("boards")),
        ..LoadOptions::default()
    };
    let e = config::load_with(&file, &opts).unwrap_err();
    expect(
        &e,
        &preset,
        "4:1",
        "unknown field `widthh` in `camera`",
        "did you mean `width`?",
    );

    let preset = write(
        &d,
        "boards/lab.toml",
        "[camera]\nsource = \"test\"\n\n[job]\nmode = \"worker\"\n",
    );
    let e = config::load_with(&file, &opts).unwrap_err();
    expect(
        &e,
        &preset,
        "4:2",
        "a board preset cannot set `job`",
        "presets may set only `camera`, `encoder`, `gpio`, `queue`",
    );
}

#[test]
fn syntax_error_and_missing_file() {
    let d = temp_dir("syntax");
    let file = write(&d, "config.toml", "[camera]\nfps = [\n");
    let e = config::load(&file).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.to_string().starts_with("error: invalid TOML: "), "{e}");
    assert!(
        e.to_string().contains(&format!("{}:2:", file.display())),
        "{e}"
    );

    let e = config::load(d.join("nope.toml")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Read);
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn byoc_job_mistakes_name_their_key() {
    let (e, f) = fail(
        "byoc_no_cap",
        "[job]\nmode = \"byoc\"\norchestrator_url = \"https://o:8935\"\n",
    );
    expect(
        &e,
        &f,
        "1:1",
        "missing field `capability` in `job`",
        "`mode = \"byoc\"` needs the capability name the container was registered under, e.g. `capability = \"ball-detector\"`",
    );
    let (e, f) = fail(
        "byoc_scheme",
        "[job]\nmode = \"byoc\"\norchestrator_url = \"grpc://o:8935\"\ncapability = \"x\"\n",
    );
    expect(
        &e,
        &f,
        "3:1",
        "invalid URL \"grpc://o:8935\" for `job.orchestrator_url`: the scheme must be http or https",
        "expected `http://HOST[:PORT]/PATH` or `https://…`",
    );
    let (e, _) = fail(
        "byoc_zero_timeout",
        "[job]\nmode = \"byoc\"\norchestrator_url = \"https://o\"\ncapability = \"x\"\ntimeout_seconds = 0\n",
    );
    assert_eq!(e.key.as_str(), "job.timeout_seconds");
    assert!(e.to_string().contains("orchestrators refuse 0"), "{e}");
    assert!(e.to_string().contains(":5:1"), "{e}");
    let (e, _) = fail(
        "byoc_bad_cap",
        "[job]\nmode = \"byoc\"\norchestrator_url = \"https://o\"\ncapability = \"a, b\"\n",
    );
    assert_eq!(e.key.as_str(), "job.capability");
    assert!(
        e.to_string().contains("invalid capability name \"a, b\""),
        "{e}"
    );
}

/// The signer and payment settings of a BYOC job: each mistake names its
/// key and place; a signer headers file every user can read is warned
/// about, and `check` prints no signer secret.
#[test]
fn byoc_signer_and_payment_fields_name_their_key() {
    let job = "[job]\nmode = \"byoc\"\norchestrator_url = \"https://o:8935\"\ncapability = \"x\"\n";
    let (e, f) = fail(
        "byoc_signer_url",
        &format!("{job}signer_url = \"ftp://s\"\n"),
    );
    expect(
        &e,
        &f,
        "5:1",
        "invalid URL \"ftp://s\" for `job.signer_url`: the scheme must be http or https",
        "expected `http://HOST[:PORT]/PATH` or `https://…`",
    );
    let (e, f) = fail("byoc_grpc_url", &format!("{job}grpc_url = \"o:8935\"\n"));
    assert_eq!(e.key.as_str(), "job.grpc_url");
    assert!(
        e.to_string().contains(&format!("{}:5:1", f.display())),
        "{e}"
    );
    let (e, f) = fail(
        "byoc_interval_zero",
        &format!("{job}signer_url = \"https://s\"\npayment_interval = \"0s\"\n"),
    );
    assert_eq!(e.key.as_str(), "job.payment_interval");
    assert!(e.to_string().contains("`payment_interval` is zero"), "{e}");
    assert!(
        e.to_string().contains(&format!("{}:6:1", f.display())),
        "{e}"
    );
    let (e, _) = fail(
        "byoc_interval_text",
        &format!("{job}payment_interval = \"soon\"\n"),
    );
    assert_eq!(e.key.as_str(), "job.payment_interval");
    assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");

    use std::os::unix::fs::PermissionsExt;
    let d = temp_dir("byoc_signer_ok");
    let headers = write(
        &d,
        "signer.json",
        "{\"Authorization\": \"Bearer file-s3cret\"}",
    );
    std::fs::set_permissions(&headers, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = write(
        &d,
        "config.toml",
        &format!(
            "{job}signer_url = \"https://signer.example\"\nsigner_headers = {{ Authorization = \"Bearer s3cret\" }}\nsigner_headers_file = \"{}\"\npayment_interval = \"1s\"\n",
            headers.display()
        ),
    );
    let text = config::check_with(&file, &LoadOptions::default()).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.contains("# warning: job.signer_headers_file") && text.contains("chmod o-r"),
        "{text}"
    );
    std::fs::set_permissions(&headers, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = config::check_with(&file, &LoadOptions::default()).unwrap();
    assert!(!text.contains("readable by every user"), "{text}");
}

/// Loads `text` with the checks `check` and `run` make on this machine.
fn fail_on_host(test: &str, text: &str) -> (ConfigError, std::path::PathBuf) {
    let d = temp_dir(test);
    let file = write(
        &d,
        "config.toml",
        &format!("[job]\nmode = \"worker\"\n\n{text}"),
    );
    let opts = LoadOptions {
        host_checks: true,
        ..LoadOptions::default()
    };
    let err = config::load_with(&file, &opts).expect_err("config should be rejected");
    (err, file)
}

#[test]
fn webhook_schemes_run_refuses_are_refused_by_check_too() {
    for (test, url) in [
        ("hook_ftp", "ftp://example.org/x"),
        ("hook_file", "file:///tmp/x"),
    ] {
        let text = format!("[outputs.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n");
        let (e, f) = fail(test, &text);
        assert_eq!(e.key.as_str(), "outputs.hook.url");
        assert_eq!(
            e.to_string(),
            format!(
                "error: output `hook`: `url`: \"{url}\": only http:// and https:// are supported\n  --> {}:3:1",
                f.display()
            )
        );
    }
}

#[test]
fn a_missing_gpio_chip_is_found_by_check_not_at_start() {
    let text = "[outputs.door]\ntype = \"gpio\"\nchip = \"no-such-chip-label\"\nline = 17\n";
    // The text alone is fine: chips are this machine's business.
    let d = temp_dir("gpio_text_only");
    let file = write(
        &d,
        "config.toml",
        &format!("[job]\nmode = \"worker\"\n\n{text}"),
    );
    config::load(&file).expect("a chip name is not checked without host checks");
    let (e, f) = fail_on_host("gpio_missing_chip", text);
    assert_eq!(e.key.as_str(), "outputs.door.chip");
    let s = e.to_string();
    assert!(
        s.starts_with(
            "error: output `door`: `chip`: no GPIO chip with path, name or label \"no-such-chip-label\""
        ),
        "{s}"
    );
    assert!(s.contains(&format!("{}:6:1", f.display())), "{s}");
    assert!(s.contains("`trickle-edge probe` lists"), "{s}");
}

#[test]
fn a_gpio_line_name_not_on_any_chip_is_answered_with_the_names_there_are() {
    let (e, f) = fail_on_host(
        "gpio_missing_line",
        "[outputs.door]\ntype = \"gpio\"\nline = \"no-such-line-xyz\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.door.line");
    let s = e.to_string();
    // What follows depends on the machine's chips: their named lines, or
    // that it has none (see the unit tests of actions::gpio_chips).
    assert!(
        s.starts_with(
            "error: output `door`: `line`: no line named \"no-such-line-xyz\" on any GPIO chip; "
        ),
        "{s}"
    );
    assert!(s.contains(&format!("{}:6:1", f.display())), "{s}");
    assert!(s.contains("line names"), "{s}");
}

#[test]
fn an_exec_program_that_is_not_there_is_found_by_check() {
    let (e, f) = fail_on_host(
        "exec_missing",
        "[outputs.run]\ntype = \"exec\"\nargv = [\"no-such-program-xyz\", \"--flag\"]\n",
    );
    assert_eq!(e.key.as_str(), "outputs.run.argv");
    let s = e.to_string();
    assert!(
        s.starts_with(
            "error: output `run`: `argv`: program \"no-such-program-xyz\" not found in PATH ("
        ),
        "{s}"
    );
    assert!(s.contains(&format!("{}:6:1", f.display())), "{s}");
    assert!(s.contains("absolute path"), "{s}");

    // A path that exists but is not executable.
    let d = temp_dir("exec_not_x");
    let script = write(&d, "hook.sh", "#!/bin/sh\n");
    let (e, _) = fail_on_host(
        "exec_not_executable",
        &format!(
            "[outputs.run]\ntype = \"exec\"\nargv = [\"{}\"]\n",
            script.display()
        ),
    );
    assert!(e.to_string().contains("is not an executable file"), "{e}");

    // Found through PATH, or by absolute path: accepted.
    for program in ["sh", "/bin/sh"] {
        let d = temp_dir("exec_ok");
        let file = write(
            &d,
            "config.toml",
            &format!(
                "[job]\nmode = \"worker\"\n\n[outputs.run]\ntype = \"exec\"\nargv = [\"{program}\"]\n"
            ),
        );
        let opts = LoadOptions {
            host_checks: true,
            ..LoadOptions::default()
        };
        config::load_with(&file, &opts).unwrap_or_else(|e| panic!("{program}: {e}"));
    }
}

#[test]
fn a_log_in_a_missing_directory_is_found_by_check() {
    let (e, _) = fail_on_host(
        "log_missing_dir",
        "[outputs.events]\ntype = \"log\"\npath = \"/nonexistent-dir-xyz/events.jsonl\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.events.path");
    assert!(
        e.to_string()
            .contains("/nonexistent-dir-xyz: No such file or directory"),
        "{e}"
    );
}

/// The binary's `check` makes the host checks, as `run` does.
#[test]
fn the_check_command_refuses_what_run_refuses() {
    let d = temp_dir("check_cli_exec");
    let file = write(
        &d,
        "config.toml",
        "[job]\nmode = \"worker\"\n\n[outputs.run]\ntype = \"exec\"\nargv = [\"no-such-program-xyz\"]\n",
    );
    for command in ["check", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
            .args([command, "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("program \"no-such-program-xyz\" not found in PATH"),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("config.toml:6:1"), "{command}: {stderr}");
    }
}

#[test]
fn a_livepeer_job_needs_a_model_a_source_and_a_usable_tls_choice() {
    let (e, _) = fail(
        "lp_model",
        "[job]\nmode = \"livepeer\"\nmodel_id = \" \"\norchestrators = [\"https://o:8935\"]\n",
    );
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::InvalidValue, "job.model_id")
    );
    assert!(e.to_string().contains("`job.model_id` is empty"), "{e}");
    let (e, _) = fail(
        "lp_source",
        "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\n",
    );
    assert!(
        e.to_string().contains("nowhere to find orchestrators"),
        "{e}"
    );
    let (e, _) = fail(
        "lp_url",
        "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\norchestrators = [\"ftp://o\"]\n",
    );
    assert_eq!(e.key, "job.orchestrators");
    let (e, _) = fail(
        "lp_pin",
        "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\norchestrators = [\"https://o:8935\"]\norchestrator_tls = \"pin\"\n",
    );
    assert!(e.to_string().contains("no `orchestrator_pins`"), "{e}");
    let (e, _) = fail(
        "lp_tls",
        "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\norchestrators = [\"https://o:8935\"]\norchestrator_tls = \"skip\"\n",
    );
    assert!(
        e.to_string()
            .contains("unknown `orchestrator_tls` \"skip\""),
        "{e}"
    );
    let ok = temp_dir("lp_ok");
    let file = write(
        &ok,
        "config.toml",
        "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\nsigner_url = \"https://signer.example\"\nsigner_headers = { Authorization = \"Bearer s3cret\" }\n",
    );
    let text = config::check_with(&file, &LoadOptions::default()).unwrap();
    assert!(
        text.contains("livepeer") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn the_status_page_stays_on_loopback_unless_allowed_with_a_token() {
    let job = "[job]\nmode = \"worker\"\nworker_url = \"http://127.0.0.1:9/\"\n";
    let (e, f) = fail(
        "supervisor_wide",
        &format!("{job}[supervisor]\nlisten = \"0.0.0.0:9464\"\n"),
    );
    expect(
        &e,
        &f,
        "5:1",
        "`supervisor.listen` = 0.0.0.0:9464 is not a loopback address: the status page shows the camera to whoever connects",
        "keep 127.0.0.1 and use `ssh -L 9464:127.0.0.1:9464 board`, or set `supervisor.allow_remote = true` with a token in `[auth]`",
    );
    let (e, f) = fail(
        "supervisor_no_token",
        &format!("{job}[supervisor]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"),
    );
    expect(
        &e,
        &f,
        "6:1",
        "`supervisor.allow_remote` needs a token in `[auth]`: requests without it are refused",
        "set `[auth] token_file = \"/etc/trickle-edge/token\"`",
    );
    let d = temp_dir("supervisor_ok");
    let file = write(
        &d,
        "config.toml",
        &format!(
            "{job}[auth]\ntoken = \"t\"\n[supervisor]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"
        ),
    );
    config::load(&file).expect("allowed with a token");
}

#[test]
fn a_home_assistant_discovery_prefix_with_a_wildcard_is_placed_in_the_file() {
    for (test, prefix) in [
        ("ha_plus", "home+assistant"),
        ("ha_hash", "ha/#"),
        ("ha_empty", ""),
    ] {
        let text = format!(
            "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1\"\nhomeassistant = true\ndiscovery_prefix = \"{prefix}\"\n"
        );
        let (e, f) = fail(test, &text);
        assert_eq!(e.key.as_str(), "outputs.bus.discovery_prefix");
        assert_eq!(
            e.to_string(),
            format!(
                "error: output `bus`: `discovery_prefix`: \"{prefix}\": must be a non-empty topic without `+`, `#`, empty levels or a leading or trailing `/` (Home Assistant's default is \"homeassistant\")\n  --> {}:5:1",
                f.display()
            )
        );
    }
}

#[test]
fn two_rules_that_would_be_one_home_assistant_entity_are_refused_naming_both() {
    let rules = "[[rules]]\nname = \"door open\"\nthen = [{ output = \"bus\" }]\n\n[[rules]]\nname = \"door_open\"\nthen = [{ output = \"bus\" }]\n";
    let text = format!(
        "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1\"\nhomeassistant = true\n\n{rules}"
    );
    let (e, f) = fail("ha_same_entity", &text);
    assert_eq!(e.key.as_str(), "rules[1].name");
    assert_eq!(
        e.to_string(),
        format!(
            "error: rules `door open` and `door_open` would be one Home Assistant entity `door_open` (output `bus` has `homeassistant = true`)\n  --> {}:11:1\n  = hint: rename one: entity ids keep letters, digits, `_` and `-` and make anything else `_`",
            f.display()
        )
    );

    // Without discovery the two names are just two rules.
    let d = temp_dir("ha_off_same_entity");
    let file = write(
        &d,
        "config.toml",
        &format!(
            "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1\"\n\n{rules}\n[job]\nmode = \"worker\"\n"
        ),
    );
    config::load(&file).expect("distinct rule names without discovery");
}
