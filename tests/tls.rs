//! Client TLS policies against a real TLS endpoint on loopback: a rustls
//! terminator in front of our plain-HTTP trickle server.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::net::{start_server, test_config};
use support::time::within;
use support::tmp::temp_dir;
use tokio::net::{TcpListener, TcpStream};
use trickle_edge::trickle::tls::fingerprint;
use trickle_edge::trickle::{
    ClientOptions, Publisher, PublisherOptions, Subscriber, SubscriberOptions, TlsOptions,
};

struct Pki {
    ca_pem: String,
    leaf_der: Vec<u8>,
    leaf_key: Vec<u8>,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().to_vec(),
        leaf_key: leaf_key.serialize_der(),
    }
}

/// Terminates TLS on a loopback port and forwards to `backend`.
async fn tls_front(pki: &Pki, backend: std::net::SocketAddr) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(pki.leaf_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key.clone())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

async fn roundtrip(url: &str, tls: TlsOptions) -> Result<Bytes, String> {
    let client = ClientOptions {
        tls,
        ..Default::default()
    };
    let mut publisher = Publisher::connect(
        url,
        PublisherOptions {
            client: client.clone(),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut sub = Subscriber::new(
        url,
        SubscriberOptions {
            client,
            start_seq: 0,
            max_retries: Some(0),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut w = publisher.next_segment().await.map_err(|e| e.to_string())?;
    w.write(Bytes::from_static(b"over tls"))
        .await
        .map_err(|e| e.to_string())?;
    w.finish().await.map_err(|e| e.to_string())?;
    let seg = within("segment over TLS", sub.next_segment())
        .await
        .map_err(|e| e.to_string())?;
    seg.ok_or("end of stream")?
        .collect(100)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_pin_and_insecure_each_work_and_the_default_refuses_a_private_ca() {
    let pki = make_pki();
    let dir = temp_dir("tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    let mut n = 0;
    let mut fresh = || {
        n += 1;
        format!("c{n}")
    };
    let server = start_server(test_config(), &["c1", "c2", "c3", "c4", "c5", "c6"]).await;
    let port = tls_front(&pki, server.local_addr()).await;
    let by_name = |ch: &str| format!("https://localhost:{port}/ai/trickle/{ch}");
    let by_ip = |ch: &str| format!("https://127.0.0.1:{port}/ai/trickle/{ch}");

    // System roots do not know our private CA.
    let err = roundtrip(&by_name(&fresh()), TlsOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );

    // The CA file makes it trusted.
    let ca = TlsOptions {
        ca_file: Some(ca_file.clone()),
        ..Default::default()
    };
    assert_eq!(
        roundtrip(&by_name(&fresh()), ca.clone()).await.unwrap(),
        "over tls"
    );
    // ...but the name must still match: the cert is for localhost, not 127.0.0.1.
    assert!(roundtrip(&by_ip(&fresh()), ca).await.is_err());

    // A pin accepts exactly this certificate, whatever name is used.
    let pin = TlsOptions {
        pin_sha256: Some(fingerprint(&pki.leaf_der)),
        ..Default::default()
    };
    assert_eq!(roundtrip(&by_ip(&fresh()), pin).await.unwrap(), "over tls");
    let wrong = TlsOptions {
        pin_sha256: Some("00".repeat(32)),
        ..Default::default()
    };
    let err = roundtrip(&by_ip(&fresh()), wrong).await.unwrap_err();
    assert!(err.contains("does not match tls.pin_sha256"), "{err}");

    // The explicit opt-out accepts anything.
    let insecure = TlsOptions {
        insecure: true,
        ..Default::default()
    };
    assert_eq!(
        roundtrip(&by_ip(&fresh()), insecure).await.unwrap(),
        "over tls"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A board installed without `ca-certificates` (a minimal Debian root has
/// none) must still publish over plain http, and an https URL must fail with
/// the reason instead of a bare "unknown issuer". The `trickle-edge` binary
/// runs as a child with `SSL_CERT_FILE`/`SSL_CERT_DIR` pointing at an empty
/// file and folder, which is what it finds on such a system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_system_roots_http_still_works_and_https_names_ca_certificates() {
    let pki = make_pki();
    let dir = temp_dir("noroots");
    std::fs::create_dir(dir.join("certs")).unwrap();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    std::fs::write(dir.join("segment.bin"), b"plain http without roots").unwrap();
    let server = start_server(test_config(), &["plain", "secure"]).await;
    let port = tls_front(&pki, server.local_addr()).await;
    let publish = |url: String| {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
                .args(["publish", &url, "--file"])
                .arg(dir.join("segment.bin"))
                .env("SSL_CERT_FILE", dir.join("empty.pem"))
                .env("SSL_CERT_DIR", dir.join("certs"))
                .env("RUST_LOG", "warn")
                .output()
                .expect("run trickle-edge publish")
        })
    };
    let plain = within(
        "publish over http",
        publish(format!("http://{}/ai/trickle/plain", server.local_addr())),
    )
    .await
    .unwrap();
    assert!(
        plain.status.success(),
        "http publish failed without system roots: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let mut sub = Subscriber::new(
        &format!("http://{}/ai/trickle/plain", server.local_addr()),
        SubscriberOptions {
            start_seq: 0,
            max_retries: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    let seg = within("the plain segment", sub.next_segment())
        .await
        .unwrap()
        .expect("a segment");
    assert_eq!(seg.collect(100).await.unwrap(), "plain http without roots");

    let secure = within(
        "publish over https",
        publish(format!("https://localhost:{port}/ai/trickle/secure")),
    )
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&secure.stderr);
    assert!(!secure.status.success(), "https must fail without roots");
    assert!(
        stderr.contains("install ca-certificates"),
        "the error must say why: {stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A TLS front that can be stopped with every connection it holds, as a
/// server restart does.
struct Front {
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Front {
    async fn start(pki: &Pki, backend: std::net::SocketAddr, listener: TcpListener) -> Front {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(pki.leaf_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key.clone())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let held = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let conn = tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
                held.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Front { tasks }
    }

    fn stop(self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn bind_again(addr: std::net::SocketAddr) -> TcpListener {
    within(format!("binding {addr} again"), async {
        loop {
            if let Ok(l) = TcpListener::bind(addr).await {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The server restarts on the same address with another certificate: a
/// client pinned to the old one refuses it with an error naming the pin,
/// reads nothing from it, keeps trying (with backoff), and reads on once
/// the pinned certificate is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_changes_under_a_pin_is_refused_until_it_comes_back() {
    let (pinned, other) = (make_pki(), make_pki());
    let server = start_server(test_config(), &["cam"]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let front = Front::start(&pinned, server.local_addr(), listener).await;
    let url = format!("https://127.0.0.1:{}/ai/trickle/cam", addr.port());
    let pin = TlsOptions {
        pin_sha256: Some(fingerprint(&pinned.leaf_der)),
        ..Default::default()
    };
    let client = ClientOptions {
        tls: pin.clone(),
        ..Default::default()
    };
    let plain = format!("{}cam", server.base_url());
    let mut publisher = Publisher::connect(
        &plain,
        PublisherOptions {
            start_seq: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            client: client.clone(),
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"zero")).await.unwrap();
    w.finish().await.unwrap();
    let seg = within("segment 0 over the pinned cert", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seg.collect(100).await.unwrap(), "zero");

    // Restart with another certificate on the same address.
    front.stop();
    let front = Front::start(&other, server.local_addr(), bind_again(addr).await).await;
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"one")).await.unwrap();
    w.finish().await.unwrap();
    let mut once = Subscriber::new(
        &url,
        SubscriberOptions {
            client,
            start_seq: 1,
            max_retries: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    let err = within("a one-shot reader's verdict", once.next_segment())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match tls.pin_sha256"), "{err}");
    let reader = tokio::spawn(async move {
        let seg = sub.next_segment().await.unwrap().unwrap();
        (seg.seq, seg.collect(100).await.unwrap(), sub.reconnects)
    });
    // A few refused tries, and nothing read from the impostor.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !reader.is_finished(),
        "nothing is read through a changed cert"
    );

    // The pinned certificate is back: the reader goes on with segment 1.
    front.stop();
    let _front = Front::start(&pinned, server.local_addr(), bind_again(addr).await).await;
    let (seq, body, reconnects) = within("the reader recovers", reader).await.unwrap();
    assert_eq!((seq, body.as_ref()), (1, &b"one"[..]));
    assert!(reconnects >= 1, "the refused tries were counted");
}
