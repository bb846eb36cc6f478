//! `check` (and `run`) on the outputs' TLS settings: a CA file that is not
//! there or not PEM, a client certificate without its key, a TLS setting on
//! a plain URL, contradicting ways to trust: each refused at file:line:col
//! naming the key; `insecure` and a clear-text MQTT password are warned about.

mod support;

use std::path::{Path, PathBuf};

use support::config::write;
use support::pki::make;
use support::tmp::temp_dir;
use trickle_edge::config::{self, ConfigError, LoadOptions};

const JOB: &str = "[job]\nmode = \"worker\"\n\n";

/// Loads `JOB` + `outputs` with the host checks `check` and `run` make.
fn load(dir: &Path, outputs: &str) -> (Result<config::ResolvedConfig, ConfigError>, PathBuf) {
    let file = write(dir, "config.toml", &format!("{JOB}{outputs}"));
    let opts = LoadOptions {
        host_checks: true,
        ..LoadOptions::default()
    };
    (config::load_with(&file, &opts), file)
}

fn refused(test: &str, outputs: &str) -> (ConfigError, String, PathBuf) {
    let dir = temp_dir(test);
    let (r, file) = load(&dir, outputs);
    let e = r.expect_err("config should be refused");
    let text = e.to_string();
    (e, text, file)
}

#[test]
fn an_https_webhook_whose_ca_file_is_missing_or_not_pem_is_refused_at_the_key() {
    let (e, s, f) = refused(
        "tls_ca_missing",
        "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://hooks.example.org/x\"\nca_file = \"/nonexistent-xyz/ca.pem\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.hook.ca_file");
    assert!(
        s.starts_with(
            "error: output `hook`: `ca_file`: cannot read CA file /nonexistent-xyz/ca.pem: No such file or directory"
        ),
        "{s}"
    );
    assert!(s.contains(&format!("{}:7:1", f.display())), "{s}");
    assert!(
        s.contains("a PEM file holding the certificate of the CA"),
        "{s}"
    );

    let dir = temp_dir("tls_ca_not_pem");
    let not_pem = write(&dir, "ca.der", "\u{30}\u{82} binary, not PEM");
    let (r, f) = load(
        &dir,
        &format!(
            "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://hooks.example.org/x\"\nca_file = \"{}\"\n",
            not_pem.display()
        ),
    );
    let s = r.expect_err("not PEM").to_string();
    assert!(
        s.starts_with(&format!(
            "error: output `hook`: `ca_file`: CA file {} holds no usable certificate (expected PEM",
            not_pem.display()
        )),
        "{s}"
    );
    assert!(s.contains(&format!("{}:7:1", f.display())), "{s}");
}

#[test]
fn mqtts_with_a_client_cert_but_no_key_is_refused() {
    let (e, s, f) = refused(
        "tls_cert_no_key",
        "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtts://broker.example.org\"\nclient_cert = \"/etc/edge.pem\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.bus.client_key");
    assert!(
        s.starts_with(
            "error: output `bus`: `client_key`: missing: `client_cert` needs the PEM file of its private key"
        ),
        "{s}"
    );
    // The key is not there, so the error points at its table.
    assert!(s.contains(&format!("{}:4:1", f.display())), "{s}");

    // A key file that holds no key, next to a good certificate.
    let dir = temp_dir("tls_bad_key");
    let pki = make(&dir);
    let (r, f) = load(
        &dir,
        &format!(
            "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtts://broker.example.org\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.ca.display(),
        ),
    );
    let e = r.expect_err("a certificate is no key");
    assert_eq!(e.key.as_str(), "outputs.bus.client_key");
    let s = e.to_string();
    assert!(s.contains("holds no private key"), "{s}");
    assert!(s.contains(&format!("{}:9:1", f.display())), "{s}");

    // Someone else's key: the certificate and key do not go together.
    let other = temp_dir("tls_other_key");
    let other = make(&other);
    let (r, _) = load(
        &dir,
        &format!(
            "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtts://broker.example.org\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.ca.display(),
            pki.client_cert.display(),
            other.client_key.display(),
        ),
    );
    let s = r.expect_err("mismatched key").to_string();
    assert!(s.contains("cannot be used together"), "{s}");
}

#[test]
fn tls_settings_on_plain_urls_and_contradictions_are_refused() {
    let (e, s, _) = refused(
        "tls_on_plain_mqtt",
        "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1\"\nca_file = \"/etc/ca.pem\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.bus.ca_file");
    assert!(
        s.contains("`ca_file`: applies to mqtts:// brokers only, and `broker` is not one"),
        "{s}"
    );
    let (e, s, _) = refused(
        "tls_two_trusts",
        "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://h/x\"\npin_sha256 = \"00\"\ninsecure = true\n",
    );
    assert_eq!(e.key.as_str(), "outputs.hook.insecure");
    assert!(
        s.contains("`pin_sha256` and `insecure` contradict each other"),
        "{s}"
    );
    let (e, _, _) = refused(
        "tls_bad_pin",
        "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://h/x\"\npin_sha256 = \"00\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.hook.pin_sha256");
    let (e, s, _) = refused(
        "tls_mqtt_scheme",
        "[outputs.bus]\ntype = \"mqtt\"\nbroker = \"ssl://127.0.0.1\"\n",
    );
    assert_eq!(e.key.as_str(), "outputs.bus.broker");
    assert!(s.contains("mqtts://host[:port]"), "{s}");
}

#[test]
fn insecure_and_a_clear_text_password_are_warned_about() {
    let dir = temp_dir("tls_warnings");
    let (r, _) = load(
        &dir,
        "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://h/x\"\ninsecure = true\n\n\
         [outputs.lan]\ntype = \"mqtt\"\nbroker = \"mqtt://192.0.2.7\"\nusername = \"u\"\npassword = \"p\"\n\n\
         [outputs.local]\ntype = \"mqtt\"\nbroker = \"mqtt://127.0.0.1\"\nusername = \"u\"\npassword = \"p\"\n",
    );
    let warnings = r.expect("a working config").warnings.join("\n");
    assert!(
        warnings.contains(
            "outputs.hook.insecure = true: the webhook server's certificate is NOT verified"
        ),
        "{warnings}"
    );
    assert!(
        warnings.contains("outputs.lan: the MQTT password goes to 192.0.2.7:1883 in clear text"),
        "{warnings}"
    );
    assert!(!warnings.contains("outputs.local:"), "{warnings}");
}

/// The binary: `check` refuses what `run` refuses, with file:line:col, and
/// `ftp://` stays refused.
#[test]
fn the_check_command_names_the_tls_key() {
    let dir = temp_dir("tls_check_cli");
    for (outputs, place, words) in [
        (
            "[outputs.hook]\ntype = \"webhook\"\nurl = \"https://h/x\"\nca_file = \"/nonexistent-xyz/ca.pem\"\n",
            "config.toml:7:1",
            "`ca_file`: cannot read CA file /nonexistent-xyz/ca.pem",
        ),
        (
            "[outputs.hook]\ntype = \"webhook\"\nurl = \"ftp://h/x\"\n",
            "config.toml:6:1",
            "only http:// and https:// are supported",
        ),
    ] {
        let file = write(&dir, "config.toml", &format!("{JOB}{outputs}"));
        for command in ["check", "run"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
                .args([command, "--config"])
                .arg(&file)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
            assert!(
                stderr.contains(place) && stderr.contains(words),
                "{command}: {stderr}"
            );
        }
    }
}
