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
        let dir = dir.clone();
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
