//! `gen-ntstatus`: every NTSTATUS-typed constant in Windows.Win32.winmd,
//! written to crates/core/data/ntstatus.tsv.

use std::collections::BTreeSet;

use windows_metadata::{Type, Value};

const OUTPUT: &str = "crates/core/data/ntstatus.tsv";
const WINMD: &str = "Windows.Win32.winmd";

pub fn run() -> Result<(), String> {
    let index = crate::winmd::open(WINMD)?;

    // (code, name); a set both sorts and drops exact duplicates.
    let mut entries: BTreeSet<(u32, String)> = BTreeSet::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for def in index.types() {
        for field in def.fields() {
            // Struct members typed NTSTATUS have no constant; only literal
            // fields (the #defines the metadata scraper turned into
            // constants) are codes.
            let Some(constant) = field.constant() else {
                continue;
            };
            let Type::ValueName(ty) = field.ty() else {
                continue;
            };
            if ty.namespace != "Windows.Win32.Foundation" || ty.name != "NTSTATUS" {
                continue;
            }
            let code = match constant.value() {
                // NTSTATUS is a signed 32-bit typedef; we print its bits.
                Value::I32(v) => v as u32,
                Value::U32(v) => v,
                other => return Err(format!("{}: unexpected constant {other:?}", field.name())),
            };
            entries.insert((code, field.name().to_string()));
            namespaces.insert(def.namespace().to_string());
        }
    }
    if entries.is_empty() {
        return Err(format!("no NTSTATUS constants found in {WINMD}"));
    }
    let codes: BTreeSet<u32> = entries.iter().map(|(c, _)| *c).collect();

    let mut out = String::new();
    out.push_str("# NTSTATUS codes: every constant of type NTSTATUS in Microsoft's Win32 metadata\n");
    out.push_str("# (Windows.Win32.winmd from the windows-bindgen 0.65.0 crate), i.e. ntstatus.h\n");
    out.push_str("# plus the aliases other headers define with that type (EXCEPTION_*, IO_*, HIDP_*...).\n");
    out.push_str(&format!("# Namespaces: {}\n", namespaces.into_iter().collect::<Vec<_>>().join(", ")));
    out.push_str(&format!(
        "# {} names, {} distinct codes. Format: code<TAB>name, sorted by code then name.\n",
        entries.len(),
        codes.len()
    ));
    out.push_str("# Generated; do not edit. Regenerate with: cargo run -p xtask -- gen-ntstatus\n");
    for (code, name) in &entries {
        out.push_str(&format!("0x{code:08X}\t{name}\n"));
    }
    crate::write_output(OUTPUT, &out)?;
    eprintln!("xtask: {} NTSTATUS names, {} distinct codes", entries.len(), codes.len());
    Ok(())
}
