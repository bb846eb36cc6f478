//! Tokens and passwords are used but never shown: not by `check`, not in
//! `Debug` output, not in error messages.

mod support;

use std::process::Command;

use support::config::write;
use support::tmp::temp_dir;
use trickle_edge::config::{self, ErrorKind};

const TOKEN: &str = "s3cr3t-token-7f1d9c";

fn assert_hidden(text: &str) {
    assert!(!text.contains(TOKEN), "secret leaked:\n{text}");
    assert!(!text.contains("mqtt-pass-42"), "secret leaked:\n{text}");
}

#[test]
fn token_from_file_is_loaded_but_never_printed() {
    let d = temp_dir("token_file");
    let token_file = write(&d, "token", &format!("{TOKEN}\n"));
    let file = write(
        &d,
        "config.toml",
        &format!(
            "[auth]\ntoken_file = \"{}\"\n\n[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1:1883\"\nusername = \"edge\"\npassword = \"mqtt-pass-42\"\n\n[job]\nmode = \"worker\"\n",
            token_file.display()
        ),
    );
    let r = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.token.as_ref().map(|t| t.0.as_str()), Some(TOKEN));
    assert_hidden(&format!("{r:?}"));
    assert_hidden(&format!("{:#?}", r.config));
    let printed = config::check(&file, None).unwrap();
    assert_hidden(&printed);
    assert!(printed.contains("password = \"***\""), "{printed}");
    assert!(printed.contains("# auth token: ***"), "{printed}");
}

#[test]
fn inline_token_is_printed_as_stars() {
    let d = temp_dir("token_inline");
    let file = write(
        &d,
        "config.toml",
        &format!("[auth]\ntoken = \"{TOKEN}\"\n\n[job]\nmode = \"worker\"\n"),
    );
    let printed = config::check(&file, None).unwrap();
    assert_hidden(&printed);
    assert!(printed.contains("token = \"***\""), "{printed}");
    let r = config::load(&file).unwrap();
    assert_eq!(r.token.unwrap().to_string(), "***");
}

#[test]
fn token_from_env_via_the_cli() {
    let d = temp_dir("token_env");
    let file = write(
        &d,
        "config.toml",
        "[auth]\ntoken_env = \"TRICKLE_EDGE_TEST_TOKEN\"\n\n[job]\nmode = \"worker\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .env("TRICKLE_EDGE_TEST_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_hidden(&stdout);
    assert_hidden(&stderr);
    assert!(
        stdout.contains("token_env = \"TRICKLE_EDGE_TEST_TOKEN\""),
        "{stdout}"
    );
    assert!(stdout.contains("# auth token: ***"), "{stdout}");
}

#[test]
fn unset_env_and_unreadable_file_name_the_source_not_the_value() {
    let d = temp_dir("token_missing");
    let file = write(
        &d,
        "config.toml",
        "[auth]\ntoken_env = \"TRICKLE_EDGE_TEST_TOKEN_SURELY_UNSET\"\n\n[job]\nmode = \"worker\"\n",
    );
    let e = config::load(&file).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Secret);
    assert_eq!(
        e.to_string(),
        format!(
            "error: environment variable `TRICKLE_EDGE_TEST_TOKEN_SURELY_UNSET` is not set or empty\n  --> {}:2:1\n  = hint: set it in the systemd unit (`Environment=` or `EnvironmentFile=`), or use `token_file`",
            file.display()
        )
    );

    let file = write(
        &d,
        "config.toml",
        "[auth]\ntoken_file = \"/nonexistent/token\"\n\n[job]\nmode = \"worker\"\n",
    );
    let e = config::load(&file).unwrap_err();
    assert_eq!(
        (e.kind, e.key.as_str(), e.position),
        (ErrorKind::Read, "auth.token_file", Some((2, 1)))
    );

    let file = write(
        &d,
        "config.toml",
        "[auth]\ntoken = \"a\"\ntoken_env = \"B\"\n\n[job]\nmode = \"worker\"\n",
    );
    let e = config::load(&file).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.position),
        ("auth.token_env", Some((3, 1)))
    );
}

#[test]
fn cli_check_exits_non_zero_with_the_message() {
    let d = temp_dir("cli_error");
    let file = write(
        &d,
        "config.toml",
        "[outputs.door]\ntype = \"gpio\"\nchipp = \"x\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: unknown field `chipp` in `outputs.door`\n  --> {}:3:1\n  = hint: did you mean `chip`?\n",
            file.display()
        )
    );
}

/// Issue 15: a token file every user can read gave no warning.
#[test]
fn a_world_readable_token_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let d = temp_dir("token_perm");
    let token_file = write(&d, "token", &format!("{TOKEN}\n"));
    let file = write(
        &d,
        "config.toml",
        &format!(
            "[auth]\ntoken_file = \"{}\"\n\n[job]\nmode = \"worker\"\n",
            token_file.display()
        ),
    );
    let warned = |mode: u32| {
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
        config::load(&file)
            .unwrap()
            .warnings
            .into_iter()
            .find(|w| w.contains("readable by every user"))
    };
    let w = warned(0o644).expect("0644 is warned about");
    assert!(w.contains("(mode 0644)") && w.contains("chmod o-r"), "{w}");
    assert_eq!(warned(0o640), None, "group-readable is the packaged layout");
    assert_eq!(warned(0o600), None);
    // `check` shows it.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o604)).unwrap();
    let printed = config::check(&file, None).unwrap();
    assert!(printed.contains("# warning: auth.token_file"), "{printed}");
    assert_hidden(&printed);
}

/// An IP camera's password in `camera.source` is used (the pipeline gets
/// it) but `check` prints it as `***`, and neither a config error about the
/// source nor `Debug` shows it.
#[test]
fn an_rtsp_camera_password_is_used_but_never_printed() {
    let d = temp_dir("rtsp_password");
    let source = "rtsp://admin:cam-pass-31@127.0.0.1:8554/live";
    let file = write(
        &d,
        "config.toml",
        &format!("[camera]\nsource = \"{source}\"\n\n[job]\nmode = \"worker\"\n"),
    );
    let r = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.config.camera.source, source,
        "the pipeline gets the password"
    );
    let shown = format!("{:?}", r.config);
    assert!(!shown.contains("cam-pass-31"), "{shown}");
    let out = Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("cam-pass-31"), "{stdout}");
    assert!(
        stdout.contains("source = \"rtsp://admin:***@127.0.0.1:8554/live\""),
        "{stdout}"
    );

    let bad = write(
        &d,
        "bad.toml",
        "[camera]\nsource = \"rtsp://admin:cam-pass-31@\"\n\n[job]\nmode = \"worker\"\n",
    );
    let e = config::load(&bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidValue);
    assert!(!e.to_string().contains("cam-pass-31"), "{e}");
    assert!(e.to_string().contains("rtsp://admin:***@"), "{e}");
}
