//! Generates the Livepeer orchestrator protocol's Rust types and gRPC client
//! from `src/livepeer/lp_rpc.proto`. The `.proto` is compiled by `protox`, a
//! protobuf compiler written in Rust, so no builder (CI, `cargo deb`, the
//! aarch64 cross build, a fresh Debian root) needs `protoc` installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "src/livepeer/lp_rpc.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["src/livepeer"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for tests/livepeer_sdk.rs, which compares it with Livepeer's own.
    std::fs::write(
        out.join("lp_rpc_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
