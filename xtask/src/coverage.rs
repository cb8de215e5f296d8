//! `coverage`: which Windows 11 24H2 system calls and which Wine ntdll
//! syscall stubs have no signature in crates/signatures/data.
//!
//! Options: `--wine-ntdll PATH` (default: Debian's Wine 64-bit ntdll.dll).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::sigfile;

const WINE_NTDLL: &str = "/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/ntdll.dll";
const DATA: [&str; 2] = ["crates/signatures/data/generated.tsv", "crates/signatures/data/supplement.tsv"];

/// Nt* exports of a Wine ntdll.dll whose code is a syscall stub.
pub fn wine_stubs_in(path: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names: Vec<String> = crate::pe::exports(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_iter()
        .filter(|e| e.name.starts_with("Nt") && crate::pe::is_syscall_stub(&e.code))
        .map(|e| e.name)
        .collect();
    names.sort();
    Ok(names)
}

pub fn wine_stubs() -> Result<Vec<String>, String> {
    wine_stubs_in(Path::new(WINE_NTDLL))
}

fn report(what: &str, names: &[String], have: &BTreeSet<String>) {
    let missing: Vec<&String> = names.iter().filter(|n| !have.contains(*n)).collect();
    let covered = names.len() - missing.len();
    let pct = if names.is_empty() { 100.0 } else { 100.0 * covered as f64 / names.len() as f64 };
    println!("{what}: {covered}/{} have a signature ({pct:.1}%), {} missing", names.len(), missing.len());
    for m in missing {
        println!("  missing: {m}");
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut wine = PathBuf::from(WINE_NTDLL);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--wine-ntdll" => wine = it.next().ok_or("--wine-ntdll needs a path")?.into(),
            other => return Err(format!("coverage: unknown argument {other}")),
        }
    }
    let mut have = BTreeSet::new();
    for rel in DATA {
        let path = crate::workspace_root().join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let funcs = sigfile::parse(&text, rel)?;
        println!("{rel}: {} functions", funcs.len());
        have.extend(funcs.into_keys());
    }
    report("Windows 11 24H2 x64 syscalls", &crate::supplement::win11_names()?, &have);
    report(&format!("Wine ntdll syscall stubs ({})", wine.display()), &wine_stubs_in(&wine)?, &have);
    Ok(())
}
