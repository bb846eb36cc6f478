//! Our Livepeer client (`trickle_edge::livepeer`) against the stand-in
//! orchestrator and signer that `tests/livepeer_sdk.rs` proves against
//! Livepeer's own client: certificate choices, h2c, answers in arrival
//! order with refusals kept, and the signer's payment statuses.

mod support;

use std::time::Duration;

use http::HeaderMap;
use support::livepeer::{OrchOffer, StandInOrchestrator, StandInSigner};
use support::time::within;
use support::tmp::temp_dir;
use trickle_edge::livepeer::LivepeerError;
use trickle_edge::livepeer::grpc::get_orchestrator;
use trickle_edge::livepeer::network::{Network, NetworkConfig};
use trickle_edge::livepeer::payment::{PaymentOutcome, PaymentSession};
use trickle_edge::livepeer::proto::OrchestratorRequest;
use trickle_edge::livepeer::tls::{OrchestratorTls, pin_file, target};
use trickle_edge::trickle::ClientOptions;

const DEADLINE: Duration = Duration::from_secs(10);

fn network(orchestrators: Vec<String>, signer: Option<&str>, tls: OrchestratorTls) -> Network {
    Network::new(
        NetworkConfig {
            model_id: "noop".into(),
            orchestrators,
            discovery_url: None,
            discovery_headers: HeaderMap::new(),
            signer_url: signer.map(str::to_string),
            signer_headers: HeaderMap::new(),
            tls,
            deadline: DEADLINE,
        },
        &ClientOptions::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_pins_and_then_refuses_another_certificate() {
    let dir = temp_dir("lp-tofu");
    let tls = OrchestratorTls::Tofu {
        pins_dir: dir.to_path_buf(),
    };
    let a = StandInOrchestrator::start(OrchOffer::default(), true).await;
    let answer = within(
        "GetOrchestrator",
        get_orchestrator(&a.url, &tls, OrchestratorRequest::default(), DEADLINE),
    )
    .await
    .unwrap();
    assert_eq!(answer.info.transcoder, a.url);
    assert_eq!(
        answer.tls.pin_sha256.as_deref(),
        Some(a.fingerprint.as_str())
    );
    let stored = std::fs::read_to_string(pin_file(&dir, &target(&a.url).unwrap())).unwrap();
    assert_eq!(stored.trim(), a.fingerprint);
    // Second contact: the stored pin is used and holds.
    get_orchestrator(&a.url, &tls, OrchestratorRequest::default(), DEADLINE)
        .await
        .unwrap();
    // A different certificate at a pinned address is refused, loudly.
    let b = StandInOrchestrator::start(OrchOffer::default(), true).await;
    std::fs::write(pin_file(&dir, &target(&b.url).unwrap()), &a.fingerprint).unwrap();
    let err = get_orchestrator(&b.url, &tls, OrchestratorRequest::default(), DEADLINE)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(b.grpc_requests().is_empty());
    a.stop();
    b.stop();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_pins_insecure_and_h2c() {
    let o = StandInOrchestrator::start(OrchOffer::default(), true).await;
    let t = target(&o.url).unwrap();
    let good = OrchestratorTls::Pins([(t.clone(), o.fingerprint.clone())].into());
    get_orchestrator(&o.url, &good, OrchestratorRequest::default(), DEADLINE)
        .await
        .unwrap();
    let wrong = OrchestratorTls::Pins([(t, "00".repeat(32))].into());
    let err = get_orchestrator(&o.url, &wrong, OrchestratorRequest::default(), DEADLINE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let insecure = get_orchestrator(
        &o.url,
        &OrchestratorTls::Insecure,
        OrchestratorRequest::default(),
        DEADLINE,
    )
    .await
    .unwrap();
    assert!(insecure.tls.insecure);
    // http:// is h2c: gRPC without TLS.
    let clear = StandInOrchestrator::start(OrchOffer::default(), false).await;
    let answer = get_orchestrator(
        &clear.url,
        &OrchestratorTls::Insecure,
        OrchestratorRequest::default(),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(answer.info.transcoder, clear.url);
    assert_eq!(clear.grpc_requests().len(), 1);
    o.stop();
    clear.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_arrive_in_order_and_refusals_keep_their_reason() {
    let refusing = StandInOrchestrator::start(
        OrchOffer {
            refuse_grpc: Some("insufficient capacity".into()),
            ..Default::default()
        },
        false,
    )
    .await;
    let good = StandInOrchestrator::start(OrchOffer::default(), false).await;
    let dead = format!("http://127.0.0.1:{}", support::net::free_port());
    let net = network(
        vec![refusing.url.clone(), dead.clone(), good.url.clone()],
        None,
        OrchestratorTls::Insecure,
    );
    let mut rx = net.ask().await.unwrap();
    let mut probes = Vec::new();
    while let Some(p) = within("an answer", rx.recv()).await {
        probes.push(p);
    }
    assert_eq!(probes.len(), 3);
    for p in &probes {
        match (&p.result, p.url.as_str()) {
            (Ok(a), u) if u == good.url => assert_eq!(a.info.transcoder, good.url),
            (Err(e), u) if u == refusing.url => {
                assert!(e.to_string().contains("insufficient capacity"), "{e}");
                net.refuse(u, e.to_string());
            }
            (Err(_), u) if u == dead => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        net.refusal(&refusing.url)
            .unwrap()
            .contains("insufficient capacity")
    );
    // The request asked for capability 35 and the model, capacity checked.
    let req = &good.grpc_requests()[0];
    assert!(!req.ignore_capacity_check);
    assert!(req.address.is_empty(), "off-chain: no signer, no address");
    refusing.stop();
    good.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_payments_echo_state_and_follow_480_482_481() {
    let o = StandInOrchestrator::start(
        OrchOffer {
            price_per_unit: 5,
            ..Default::default()
        },
        false,
    )
    .await;
    let signer = StandInSigner::start(vec![o.url.clone()]).await;
    // Discovered through the signer.
    let net = network(Vec::new(), Some(&signer.url), OrchestratorTls::Insecure);
    assert_eq!(net.candidates().await.unwrap(), [o.url.as_str()]);
    assert_eq!(signer.discover_queries(), ["caps=live-video-to-video/noop"]);
    let mut rx = net.ask().await.unwrap();
    let answer = rx.recv().await.unwrap().result.unwrap();
    assert_eq!(o.grpc_requests()[0].address.len(), 20);
    let mut session = PaymentSession::new(
        &o.url,
        answer.info,
        net.capabilities(),
        net.signer().cloned(),
    )
    .unwrap();
    assert!(session.is_priced());
    let refresh = |url: String| {
        let net = &net;
        async move { net.refresh(&url).await }
    };
    let PaymentOutcome::Pay(first) = session.next_with_refresh(refresh).await.unwrap() else {
        panic!("a payment")
    };
    assert!(!first.payment.is_empty() && !first.segment.is_empty());
    session.set_manifest_id("m-1");
    // 480: refresh the session at its transcoder, state kept, then pay.
    signer.inject(&[480]);
    let asked = o.grpc_requests().len();
    let out = session.next_with_refresh(refresh).await.unwrap();
    assert!(matches!(out, PaymentOutcome::Pay(_)));
    assert_eq!(o.grpc_requests().len(), asked + 1, "refreshed once");
    let calls = signer.calls();
    assert_eq!(calls[1].status, 480);
    assert_eq!(calls[2].body["ManifestID"], "m-1");
    assert_eq!(calls[2].body["state"]["n"], 1, "state kept across the 480");
    // 482: skip this cycle.
    signer.inject(&[482]);
    assert!(matches!(
        session.next_with_refresh(refresh).await.unwrap(),
        PaymentOutcome::Skip
    ));
    // 481: price above the limit; the caller moves on.
    signer.inject(&[481]);
    let err = session.next_with_refresh(refresh).await.unwrap_err();
    assert_eq!(err.status(), Some(481), "{err}");
    assert!(matches!(err, LivepeerError::Refused { .. }));
    assert!(
        err.to_string().contains("stand-in signer status 481"),
        "{err}"
    );
    o.stop();
    signer.stop();
}
