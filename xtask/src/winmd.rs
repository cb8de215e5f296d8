//! Finding the crates xtask reads data from, and opening the .winmd files
//! shipped in the windows-bindgen crate.

use std::path::{Path, PathBuf};
use std::process::Command;

use windows_metadata::reader::Index;

/// The windows-bindgen release whose metadata we read; must match the
/// `=` requirement in xtask/Cargo.toml.
const BINDGEN_VERSION: &str = "0.65.0";

/// Directory holding Windows.Win32.winmd and Windows.Wdk.winmd.
///
/// `WINSTRACE_WINMD_DIR` overrides the lookup (for trying newer metadata);
/// otherwise we ask `cargo metadata` where the windows-bindgen package that
/// xtask depends on was unpacked, so we never guess registry paths.
pub fn dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("WINSTRACE_WINMD_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let dir = package_dir("windows-bindgen", BINDGEN_VERSION)?.join("default");
    if !dir.join("Windows.Win32.winmd").is_file() {
        return Err(format!("{} has no Windows.Win32.winmd", dir.display()));
    }
    Ok(dir)
}

/// Where cargo unpacked package `name` at `version` (a dependency of xtask),
/// from the manifest_path that `cargo metadata` reports.
pub fn package_dir(name: &str, version: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(crate::workspace_root())
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parsing cargo metadata output: {e}"))?;
    let packages = json["packages"].as_array().ok_or("cargo metadata: no packages array")?;
    let manifest = packages
        .iter()
        .find(|p| p["name"] == name && p["version"] == version)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("{name} {version} not in cargo metadata"))?;
    Ok(Path::new(manifest).parent().ok_or("manifest_path has no parent")?.to_path_buf())
}

/// Opens one .winmd file from [`dir`].
pub fn open(file: &str) -> Result<Index, String> {
    let path = dir()?.join(file);
    Index::read(&path).ok_or_else(|| format!("cannot read metadata {}", path.display()))
}
