//! The Livepeer stand-ins (`tests/support/livepeer.rs`) and our own
//! `lp_rpc.proto`, proven against Livepeer's Python SDK
//! (`livepeer-gateway`): if Livepeer's own client refuses the stand-in
//! orchestrator or signer, these tests fail, whatever our client thinks.
//! Without the SDK they fail, never skip (`ci/interop-venv.sh` makes it).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use prost::Message;
use serde_json::Value;
use support::livepeer::{OrchOffer, StandInOrchestrator, StandInSigner};
use support::time::within;
use tokio::process::Command;
use trickle_edge::livepeer::proto::FILE_DESCRIPTOR_SET;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TRICKLE_EDGE_INTEROP_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    assert!(
        venv.exists(),
        "Livepeer's Python SDK (the interop peer) is missing: TRICKLE_EDGE_INTEROP_PYTHON is unset \
         and target/interop-venv does not exist. `export TRICKLE_EDGE_INTEROP_PYTHON=$(bash ci/interop-venv.sh)`"
    );
    venv
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Runs a Python script to the end; its stdout as JSON, or a failure with
/// the SDK's own error.
async fn run_python(args: &[&str]) -> Value {
    let out = within(
        "the Python SDK script",
        Command::new(python())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run the Python SDK");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Livepeer's SDK failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK output is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every message and field of our `.proto` exists in Livepeer's with the
/// same number, type and cardinality; the service and its method match.
#[tokio::test]
async fn our_proto_names_and_field_numbers_are_livepeers() {
    let theirs = run_python(&[script("py_lp_descriptor.py").to_str().unwrap()]).await;
    let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "net")
        .expect("package net");
    let mut ours: BTreeMap<String, Vec<(String, i32, i32, i32)>> = BTreeMap::new();
    fn walk(
        prefix: &str,
        m: &prost_types::DescriptorProto,
        out: &mut BTreeMap<String, Vec<(String, i32, i32, i32)>>,
    ) {
        let name = format!("{prefix}.{}", m.name());
        out.insert(
            name.clone(),
            m.field
                .iter()
                .map(|f| {
                    (
                        f.name().to_string(),
                        f.number(),
                        f.r#type() as i32,
                        f.label() as i32,
                    )
                })
                .collect(),
        );
        for n in &m.nested_type {
            walk(&name, n, out);
        }
    }
    for m in &file.message_type {
        walk("net", m, &mut ours);
    }
    assert!(ours.len() >= 15, "{:?}", ours.keys());
    let mut checked = 0;
    for (msg, fields) in &ours {
        let theirs_msg = theirs
            .get(msg)
            .unwrap_or_else(|| panic!("Livepeer's proto has no message {msg}"));
        for (name, number, ty, label) in fields {
            let t = theirs_msg
                .get(name)
                .unwrap_or_else(|| panic!("Livepeer's {msg} has no field {name}"));
            assert_eq!(
                (t[0].as_i64(), t[1].as_i64(), t[2].as_i64()),
                (
                    Some(i64::from(*number)),
                    Some(i64::from(*ty)),
                    Some(i64::from(*label))
                ),
                "{msg}.{name}: Livepeer's [number, type, label] differ from ours"
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} fields compared");
    let service = &file.service[0];
    assert_eq!(service.name(), "Orchestrator");
    let method = &service.method[0];
    assert_eq!(method.name(), "GetOrchestrator");
    assert_eq!(
        theirs["service"]["GetOrchestrator"],
        serde_json::json!([
            method.input_type().trim_start_matches('.'),
            method.output_type().trim_start_matches('.')
        ])
    );
}

/// Off-chain: the SDK pins the stand-in's self-signed certificate, asks
/// GetOrchestrator, starts the job with `SegData{auth_token}` and pays
/// (empty payment) on `/payment`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_sdk_starts_an_offchain_job_on_the_stand_in() {
    let orch = StandInOrchestrator::start(OrchOffer::default(), true).await;
    let job = run_python(&[
        script("py_lv2v.py").to_str().unwrap(),
        "orch",
        &orch.url,
        "noop",
    ])
    .await;
    let starts = orch.starts();
    assert_eq!(starts.len(), 1, "{:?}", orch.refused_starts());
    let start = &starts[0];
    assert_eq!(job["manifest_id"], start.manifest_id.as_str());
    assert_eq!(start.body["model_id"], "noop");
    assert_eq!(start.body["stream_id"], "sdk-stream");
    assert_eq!(start.payment, "", "off-chain: no payment");
    assert_eq!(
        start.segment.auth_token.as_ref().unwrap().session_id,
        orch.session_id()
    );
    assert_eq!(job["transcoder"], orch.url.as_str());
    assert!(
        job["events_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}-events", start.manifest_id))
    );
    // The SDK asked for capability 35 with the model as its constraint.
    let req = &orch.grpc_requests()[0];
    let caps = req.capabilities.as_ref().unwrap();
    assert_eq!(caps.capacities.get(&35), Some(&1));
    assert!(
        caps.constraints.as_ref().unwrap().per_capability[&35]
            .models
            .contains_key("noop")
    );
    assert_eq!(orch.payments().len(), 1, "the SDK's one payment arrived");
    orch.stop();
}

/// Priced: the SDK discovers the stand-in through the stand-in signer's
/// `/discover-orchestrators`, signs its `OrchestratorRequest` with
/// `/sign-orchestrator-info`, pays the start and a `/payment` with
/// `/generate-live-payment` (state echoed, `ManifestID` once known).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_sdk_pays_a_priced_job_through_the_stand_in_signer() {
    let orch = StandInOrchestrator::start(
        OrchOffer {
            price_per_unit: 7,
            ..Default::default()
        },
        true,
    )
    .await;
    let signer = StandInSigner::start(vec![orch.url.clone()]).await;
    let job = run_python(&[
        script("py_lv2v.py").to_str().unwrap(),
        "signer",
        &signer.url,
        "noop",
    ])
    .await;
    assert_eq!(job["price_per_unit"], 7);
    assert_eq!(
        signer.discover_queries(),
        ["caps=live-video-to-video/noop"],
        "discovery through the signer, caps unescaped"
    );
    assert_eq!(signer.info_calls().len(), 1, "sign-orchestrator-info once");
    let req = &orch.grpc_requests()[0];
    assert_eq!(req.address.len(), 20, "the signer's address was sent");
    let starts = orch.starts();
    assert_eq!(starts.len(), 1, "{:?}", orch.refused_starts());
    assert!(!starts[0].payment.is_empty());
    let calls = signer.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].body["type"], "lv2v");
    assert!(calls[0].body.get("ManifestID").is_none());
    assert!(calls[0].body.get("state").is_none());
    assert_eq!(calls[1].body["ManifestID"], starts[0].manifest_id.as_str());
    assert_eq!(calls[1].body["state"]["n"], 1, "state echoed");
    let payments = orch.payments();
    assert_eq!(payments.len(), 1);
    assert!(!payments[0].payment.is_empty());
    orch.stop();
    signer.stop();
}

/// BYOC: the SDK's `_sign_byoc_job` is answered by the stand-in signer,
/// and the `Livepeer` header it builds decodes to the same fields as the
/// header our agent builds for the same job (JSON strings compared as
/// JSON: the SDK writes `{"a": 1}`, we write `{"a":1}`), each signed over
/// its own strings, as the stand-in orchestrator checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_sdk_signs_a_byoc_job_as_our_agent_does() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use trickle_edge::job::byoc::signed_job_request_header;
    use trickle_edge::livepeer::signer::{ByocJobFields, RemoteSigner};
    let signer = StandInSigner::start(vec![]).await;
    let (id, capability, timeout) = ("stream-1", "ball-detector", 30);
    let request = serde_json::json!({"stream_id": id});
    let parameters = serde_json::json!({"enable_video_ingress": true, "enable_data_output": true});
    let sdk = run_python(&[
        script("py_byoc_header.py").to_str().unwrap(),
        &signer.url,
        id,
        capability,
        &request.to_string(),
        &parameters.to_string(),
        &timeout.to_string(),
    ])
    .await;
    assert_eq!(sdk["signed"]["sender"], support::livepeer::SIGNER_ADDRESS);

    // Ours, through the same signer.
    let http = trickle_edge::trickle::HttpClient::new(&Default::default()).unwrap();
    let ours_signer = RemoteSigner::new(&signer.url, Default::default(), http);
    let (req_s, par_s) = (request.to_string(), parameters.to_string());
    let fields = ByocJobFields {
        id,
        capability,
        request: &req_s,
        parameters: &par_s,
        timeout_seconds: timeout,
    };
    let signed = ours_signer.sign_byoc_job(fields).await.unwrap();
    let ours = signed_job_request_header(&fields, &signed.sender, &signed.signature);

    // The signer was asked the same questions, field for field.
    let asked = signer.byoc_signs();
    assert_eq!(asked.len(), 2);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&asked[0]), keys(&asked[1]));
    for k in ["id", "capability", "timeout_seconds"] {
        assert_eq!(asked[0][k], asked[1][k], "{k}");
    }

    let decode = |h: &str| -> Value { serde_json::from_slice(&BASE64.decode(h).unwrap()).unwrap() };
    let theirs = decode(sdk["header"].as_str().unwrap());
    let ours = decode(&ours);
    for k in ["id", "capability", "timeout_seconds", "sender"] {
        assert_eq!(theirs[k], ours[k], "{k}: SDK {theirs} vs ours {ours}");
    }
    for k in ["request", "parameters"] {
        let parse = |v: &Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };
        assert_eq!(parse(&theirs[k]), parse(&ours[k]), "{k}");
    }
    // Each signature is the signer's over that header's own strings.
    for h in [&theirs, &ours] {
        assert_eq!(
            h["sig"].as_str().unwrap(),
            support::livepeer::byoc_signature(h),
            "{h}"
        );
    }
    signer.stop();
}
