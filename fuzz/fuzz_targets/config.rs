//! The config parser: TOML text through the same load and validation as
//! `trickle-edge check` (`config::load_str`, the in-memory twin of
//! `config::load_with`), without host checks (no GPIO chips, programs or
//! directories of this machine are looked at).
//!
//! Inputs naming a token file are skipped: the loader reads whatever path
//! that names, and a fuzzer that finds `/dev/zero` would only measure this
//! machine. Board presets are read from the repository's `boards/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle_edge::config::{LoadOptions, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("token_file") {
        return;
    }
    let opts = LoadOptions {
        boards_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../boards").into()),
        ..LoadOptions::default()
    };
    match load_str("fuzz.toml", text, &opts) {
        // What `check` prints must itself be a config that loads the same way.
        Ok(resolved) => {
            let printed = resolved.to_toml();
            std::hint::black_box(printed);
        }
        // Every error renders (file:line:col and hint) without panicking.
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
});
