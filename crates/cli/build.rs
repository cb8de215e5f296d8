//! Embeds the agent DLL in winstrace.exe, so that users handle one file.
//!
//! For a Windows target, this builds the `winstrace-agent` cdylib with the
//! same cargo, for the same target, in release mode (its hooks run inside
//! every traced call), in a target directory of its own under OUT_DIR (the
//! outer build holds the lock on the main one). `src/agent_dll.rs` includes
//! the result with `include_bytes!` and writes it out at run time.
//!
//! `WINSTRACE_AGENT_DLL=path` uses a DLL built elsewhere instead. For other
//! targets (winstrace's Linux build, which traces nothing) the embedded DLL
//! is empty.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WINSTRACE_AGENT_DLL");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("winstrace_agent.dll");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    if !target.contains("windows") {
        std::fs::write(&dest, b"").expect("writing an empty agent");
        return;
    }
    if let Some(prebuilt) = env::var_os("WINSTRACE_AGENT_DLL") {
        println!("cargo:rerun-if-changed={}", PathBuf::from(&prebuilt).display());
        std::fs::copy(&prebuilt, &dest).expect("copying WINSTRACE_AGENT_DLL");
        return;
    }
    // Everything the agent is built from.
    for dir in ["agent", "hook", "decode", "signatures", "core", "ring"] {
        println!("cargo:rerun-if-changed=../{dir}");
    }
    let target_dir = out.join("agent-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "winstrace-agent",
            "--target",
            &target,
            "--target-dir",
        ])
        .arg(&target_dir)
        // The outer build's settings for its own crates are not the agent's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running cargo to build the agent DLL");
    assert!(status.success(), "building the agent DLL failed (see the cargo output above)");
    let built = target_dir.join(&target).join("release").join("winstrace_agent.dll");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}
