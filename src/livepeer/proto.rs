//! The generated protobuf types and gRPC client of `lp_rpc.proto` (package
//! `net`), built by `build.rs`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("net");

/// The compiled `lp_rpc.proto` (a `google.protobuf.FileDescriptorSet`), so a
/// test can compare our names and field numbers with Livepeer's.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lp_rpc_descriptor.bin"));

/// Capability 35: live-video-to-video.
pub const LIVE_VIDEO_TO_VIDEO: u32 = 35;

/// The capabilities an LV2V gateway asks for: `capacities {35: 1}` and the
/// model as a constraint on capability 35 (as the SDK's `build_capabilities`).
pub fn lv2v_capabilities(model_id: &str) -> Capabilities {
    let mut models = std::collections::HashMap::new();
    models.insert(
        model_id.to_string(),
        capabilities::capability_constraints::ModelConstraint::default(),
    );
    let mut per_capability = std::collections::HashMap::new();
    per_capability.insert(
        LIVE_VIDEO_TO_VIDEO,
        capabilities::CapabilityConstraints { models },
    );
    Capabilities {
        capacities: [(LIVE_VIDEO_TO_VIDEO, 1)].into_iter().collect(),
        constraints: Some(capabilities::Constraints {
            min_version: String::new(),
            per_capability,
        }),
        ..Default::default()
    }
}
