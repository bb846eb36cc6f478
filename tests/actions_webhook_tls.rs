//! Webhook output over https against a real TLS peer on loopback: a hyper
//! server behind tokio-rustls, presenting a certificate signed by the
//! test's own CA. Verified by default: no `ca_file` (the system roots do not
//! know that CA), a CA file of another CA and a wrong pin are refused with
//! the certificate problem named; `ca_file`, the right pin and `insecure`
//! (warned about) deliver.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::actions::{build, configs, effect};
use support::pki::{Pki, make, server_config};
use support::time::wait_until;
use support::tmp::temp_dir;
use support::tracing::LogCapture;
use tracing::Level;
use trickle_edge::actions::Outputs;
use trickle_edge::rules::OutputAction::Deliver;
use trickle_edge::trickle::tls::fingerprint;

/// JSON bodies the server accepted.
type Seen = Arc<Mutex<Vec<Value>>>;

/// An https server on 127.0.0.1; returns its port. Every request that gets
/// through the handshake is recorded and answered 200.
async fn https_server(pki: &Pki, seen: Seen) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(pki));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// The warnings logged so far that name `output`, as text.
fn warnings_of(capture: &LogCapture, output: &str) -> Vec<String> {
    capture
        .events()
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.field("output") == Some(output))
        .map(|e| e.text())
        .collect()
}

/// Builds one webhook output named `name` with `extra` settings.
fn hook(name: &str, url: String, extra: Value) -> Outputs {
    let mut cfg = json!({
        "type": "webhook", "url": url,
        "timeout": "5s", "retry_min": "20ms", "retry_max": "200ms", "max_attempts": 3,
    });
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut table = serde_json::Map::new();
    table.insert(name.into(), cfg);
    build(Value::Object(table))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_verified_by_default_and_each_way_to_trust_works() {
    let capture = LogCapture::new(Level::WARN);
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let dir = temp_dir("webhook-tls");
    let pki = make(&dir);
    let seen: Seen = Arc::default();
    let port = https_server(&pki, seen.clone()).await;
    let by_name = format!("https://localhost:{port}/hook");
    let by_ip = format!("https://127.0.0.1:{port}/hook");
    let delivered = |seq: i64| {
        let seen = seen.clone();
        move || seen.lock().unwrap().iter().any(|v| v["seq"] == seq)
    };

    // The CA file makes the private CA's certificate trusted.
    let out = hook("with-ca", by_name.clone(), json!({ "ca_file": pki.ca }));
    out.dispatch(effect("with-ca", Deliver, 1));
    wait_until("delivered with ca_file", delivered(1)).await;
    wait_until("counted", || out.counters_of("with-ca").unwrap().sent == 1).await;
    assert_eq!(seen.lock().unwrap()[0]["rule"], "rule-1");
    assert!(warnings_of(&capture, "with-ca").is_empty());

    // Verified by default: the system roots do not know that CA. Refused,
    // not retried, and the warning names the certificate problem.
    let refused = |name: &'static str| {
        let capture = capture.clone();
        move || !warnings_of(&capture, name).is_empty()
    };
    for (name, extra) in [
        ("no-ca", json!({})),
        ("other-ca", json!({ "ca_file": pki.other_ca })),
    ] {
        let out = hook(name, by_name.clone(), extra);
        out.dispatch(effect(name, Deliver, 2));
        wait_until("refusal logged", refused(name)).await;
        let w = warnings_of(&capture, name).join("\n");
        assert!(
            w.contains("webhook refused: TLS handshake failed")
                && w.contains("invalid peer certificate: UnknownIssuer"),
            "{name}: {w}"
        );
        let c = out.counters_of(name).unwrap();
        assert_eq!((c.sent, c.failed, c.retries), (0, 1, 0), "{name}");
    }

    // A pin accepts exactly the server's certificate, by any name; a wrong
    // pin is refused and the refusal names the setting to change.
    let out = hook(
        "pinned",
        by_ip.clone(),
        json!({ "pin_sha256": fingerprint(&pki.server_der) }),
    );
    out.dispatch(effect("pinned", Deliver, 3));
    wait_until("delivered with the pin", delivered(3)).await;
    let out = hook(
        "wrong-pin",
        by_ip.clone(),
        json!({ "pin_sha256": "ab".repeat(32) }),
    );
    out.dispatch(effect("wrong-pin", Deliver, 4));
    wait_until("wrong pin refused", refused("wrong-pin")).await;
    let w = warnings_of(&capture, "wrong-pin").join("\n");
    assert!(
        w.contains(&format!(
            "certificate fingerprint {} does not match outputs.wrong-pin.pin_sha256",
            fingerprint(&pki.server_der)
        )),
        "{w}"
    );
    assert_eq!(out.counters_of("wrong-pin").unwrap().failed, 1);

    // `insecure` delivers, and says so at start.
    let out = hook("lab", by_ip, json!({ "insecure": true }));
    out.dispatch(effect("lab", Deliver, 5));
    wait_until("delivered insecurely", delivered(5)).await;
    let w = warnings_of(&capture, "lab");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("outputs.lab.insecure = true") && w[0].contains("NOT verified"),
        "{w:?}"
    );

    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["seq"] == 2 || v["seq"] == 4)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_build_naming_the_field() {
    let dir = temp_dir("webhook-tls-build");
    let pki = make(&dir);
    std::fs::write(dir.join("not.pem"), "just text\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let refusal = |cfg: Value| match Outputs::build(&configs(json!({ "hook": cfg }))) {
        Ok(_) => panic!("built: {cfg}"),
        Err(e) => trickle_edge::error_chain::error_chain(&e),
    };
    let https = "https://localhost:1/hook";
    let e = refusal(json!({ "type": "webhook", "url": https, "ca_file": dir.join("missing.pem") }));
    assert!(
        e.starts_with("output `hook`: `ca_file`: cannot read CA file")
            && e.contains("missing.pem: No such file or directory"),
        "{e}"
    );
    let e = refusal(json!({ "type": "webhook", "url": https, "ca_file": dir.join("not.pem") }));
    assert!(
        e.starts_with("output `hook`: `ca_file`: CA file") && e.contains("no usable certificate"),
        "{e}"
    );
    let e =
        refusal(json!({ "type": "webhook", "url": https, "ca_file": pki.ca, "insecure": true }));
    assert_eq!(
        e,
        "output `hook`: `insecure`: `ca_file` and `insecure` contradict each other: choose one way to trust the server"
    );
    let e = refusal(json!({ "type": "webhook", "url": https, "pin_sha256": "abcd" }));
    assert!(
        e.starts_with("output `hook`: `pin_sha256`: pin_sha256 \"abcd\""),
        "{e}"
    );
    // On plain http a TLS setting would protect nothing, silently.
    let e = refusal(json!({ "type": "webhook", "url": "http://127.0.0.1:1/", "ca_file": pki.ca }));
    assert_eq!(
        e,
        "output `hook`: `ca_file`: applies to https:// URLs only, and `url` is not one"
    );
    std::fs::remove_dir_all(&dir).ok();
}
