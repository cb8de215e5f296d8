//! Developer commands for winstrace. Run with `cargo run -p xtask -- <command>`.
//!
//! Every command regenerates a checked-in data file (or reports on one) so
//! that the shipped crates stay dependency-free and the data stays reviewable
//! in diffs.

mod coverage;
mod ntstatus;
mod pe;
mod sigfile;
mod signatures;
mod supplement;
mod winmd;
mod xlat;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo run -p xtask -- <command>

commands:
  gen-ntstatus     write crates/core/data/ntstatus.tsv from Windows.Win32.winmd
  gen-signatures   write crates/signatures/data/generated.tsv from Windows.Wdk/Win32.winmd
  gen-supplement   write crates/signatures/data/supplement.tsv from the ntapi crate's sources
  gen-xlat         write crates/decode/data/xlat/*.tsv (enum and flag names) from the metadata
  coverage         list Windows 11 / Wine Nt* syscalls that lack a signature
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen-ntstatus") => ntstatus::run(),
        Some("gen-signatures") => signatures::run(),
        Some("gen-supplement") => supplement::run(),
        Some("gen-xlat") => xlat::run(&args[1..]),
        Some("coverage") => coverage::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().expect("xtask is inside the workspace").to_path_buf()
}

/// Writes `contents` to `path` (relative to the workspace root), creating the
/// directory, and says what it did.
pub fn write_output(rel: &str, contents: &str) -> Result<(), String> {
    let path = workspace_root().join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
