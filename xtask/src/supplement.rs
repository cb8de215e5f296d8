//! `gen-supplement`: signatures for the Nt* system calls that Microsoft's
//! metadata lacks, written to crates/signatures/data/supplement.tsv.
//!
//! Prototypes come from the `ntapi` crate's Rust declarations (parameter
//! names and types, no SAL annotations). Directions are guessed by
//! [`infer`], and every such row is marked `inferred`. Functions listed in
//! crates/signatures/data/supplement-review.tsv replace the guess with the
//! reviewed rows (marked with their own basis, e.g. `phnt`), and functions
//! ntapi lacks can only come from there.

use std::collections::{BTreeMap, BTreeSet};

use crate::sigfile::{self, Function, Param};

const OUTPUT: &str = "crates/signatures/data/supplement.tsv";
const REVIEW: &str = "crates/signatures/data/supplement-review.tsv";
pub const WIN11_CSV: &str = "crates/signatures/data/win11-24h2-x64-nt-syscalls.csv";
const NTAPI_VERSION: &str = "0.4.3";

/// Nt* names from the Windows 11 syscall list (`number,name` lines).
pub fn win11_names() -> Result<Vec<String>, String> {
    let path = crate::workspace_root().join(WIN11_CSV);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(',').nth(1))
        .map(|n| n.trim().to_string())
        .collect())
}

/// One ntapi declaration: name, return type, (param name, Rust type).
struct Decl {
    name: String,
    ret: String,
    params: Vec<(String, String)>,
}

/// Pulls `fn NtXxx(Name: Type, ...) -> Ret;` declarations out of ntapi's
/// sources. Its `EXTERN!` blocks are regular enough for this small scanner:
/// one parameter per line, `//` comments only.
fn ntapi_decls() -> Result<BTreeMap<String, Decl>, String> {
    let src = crate::winmd::package_dir("ntapi", NTAPI_VERSION)?.join("src");
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let text: String =
            text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("fn Nt") {
            rest = &rest[at + 3..];
            let Some(open) = rest.find('(') else { break };
            let name = rest[..open].trim().to_string();
            let Some(close) = rest.find(')') else { break };
            let body = &rest[open + 1..close];
            let after = &rest[close + 1..];
            let ret = after
                .trim_start()
                .strip_prefix("->")
                .and_then(|r| r.split(';').next())
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|| "VOID".into());
            let mut params = Vec::new();
            for p in body.split(',') {
                let p = p.trim();
                if p.is_empty() {
                    continue;
                }
                let (n, t) = p.split_once(':').ok_or_else(|| format!("{name}: bad parameter {p:?}"))?;
                params.push((n.trim().to_string(), t.trim().to_string()));
            }
            rest = after;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            out.entry(name.clone()).or_insert(Decl { name, ret, params });
        }
    }
    Ok(out)
}

/// Rust type as ntapi writes it -> C spelling (`*mut PVOID` -> `PVOID*`).
fn c_type(rust: &str) -> String {
    if let Some(inner) = rust.strip_prefix("*mut ") {
        format!("{}*", c_type(inner))
    } else if let Some(inner) = rust.strip_prefix("*const ") {
        format!("const {}*", c_type(inner))
    } else {
        rust.to_string()
    }
}

/// Typedefs starting with `P` that are not data pointers the callee reads
/// or writes through (opaque pointers, function pointers, enums).
fn is_value_type(ty: &str) -> bool {
    !ty.starts_with("*")
        && (!ty.starts_with('P')
            || ty.ends_with("CLASS")
            || ty.ends_with("ROUTINE")
            || ty.ends_with("_LEVEL")
            || matches!(ty, "PSID" | "PSECURITY_DESCRIPTOR" | "POWER_ACTION" | "PORT_INFORMATION_CLASS"))
}

/// Conservative direction/optional guess for a parameter ntapi declares
/// without SAL annotations. Returns (dir, optional).
pub fn infer(func: &str, name: &str, rust_ty: &str) -> (&'static str, bool) {
    let optional = matches!(name, "ApcRoutine" | "ApcContext" | "Reserved") || name.starts_with("Reserved");
    if is_value_type(rust_ty) {
        return ("in", optional);
    }
    let query = ["NtQuery", "NtGet", "NtRead", "NtEnumerate", "NtRemove"].iter().any(|p| func.starts_with(p));
    let dir = if rust_ty == "PIO_STATUS_BLOCK" {
        "out"
    } else if rust_ty == "PHANDLE" || rust_ty == "*mut HANDLE" {
        // Handle arrays are inputs; a single PHANDLE receives a new handle.
        if name.ends_with("Handles") || name.ends_with("Array") {
            "in"
        } else {
            "out"
        }
    } else if name.contains("ReturnLength")
        || name.contains("ResultLength")
        || name.contains("Returned")
        || name.starts_with("Previous")
        || name.starts_with("NumberOfBytes")
    {
        "out"
    } else if rust_ty == "*mut PVOID" && name.contains("BaseAddress") {
        // The kernel may round the address it is given and reports the result.
        "inout"
    } else if rust_ty == "PSIZE_T" && (name.contains("Size") || name.contains("ToProtect")) {
        "inout"
    } else if rust_ty == "PCLIENT_ID" {
        if func.starts_with("NtCreate") {
            "out"
        } else {
            "in"
        }
    } else if matches!(
        rust_ty,
        "POBJECT_ATTRIBUTES" | "PUNICODE_STRING" | "PCUNICODE_STRING" | "PLARGE_INTEGER"
    ) && !query
    {
        "in"
    } else if query {
        "out"
    } else {
        "in"
    };
    (dir, optional)
}

fn from_ntapi(d: &Decl) -> Function {
    Function {
        name: d.name.clone(),
        ret: d.ret.clone(),
        params: d
            .params
            .iter()
            .map(|(n, t)| {
                let (dir, optional) = infer(&d.name, n, t);
                Param {
                    name: n.clone(),
                    ty: c_type(t),
                    dir,
                    optional,
                    meta: t.clone(),
                    basis: "inferred".into(),
                }
            })
            .collect(),
        basis: "inferred".into(),
    }
}

pub fn run() -> Result<(), String> {
    let generated = crate::signatures::from_metadata()?;
    let mut wanted: BTreeSet<String> = win11_names()?.into_iter().collect();
    wanted.extend(crate::coverage::wine_stubs()?);
    let review_path = crate::workspace_root().join(REVIEW);
    let review_text =
        std::fs::read_to_string(&review_path).map_err(|e| format!("{}: {e}", review_path.display()))?;
    let review = sigfile::parse(&review_text, REVIEW)?;
    let ntapi = ntapi_decls()?;

    let mut out = BTreeMap::new();
    let (mut reviewed, mut inferred, mut agree, mut agree_dir) = (0, 0, 0, 0);
    let mut missing = Vec::new();
    for name in wanted.iter().filter(|n| !generated.contains_key(*n)) {
        let guess = ntapi.get(name).map(from_ntapi);
        if let Some(r) = review.get(name) {
            reviewed += 1;
            if let Some(g) = &guess {
                // Tell the reviewer when ntapi disagrees on the shape, and
                // measure how often the direction guess was right.
                let names = |f: &Function| f.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
                if names(g) != names(r) {
                    eprintln!("note: {name}: ntapi parameters {:?} vs reviewed {:?}", names(g), names(r));
                } else {
                    let pairs = || g.params.iter().zip(&r.params);
                    if pairs().all(|(a, b)| a.dir == b.dir) {
                        agree_dir += 1;
                        if pairs().all(|(a, b)| a.optional == b.optional) {
                            agree += 1;
                        }
                    }
                }
            }
            out.insert(name.clone(), r.clone());
        } else if let Some(g) = guess {
            inferred += 1;
            out.insert(name.clone(), g);
        } else {
            missing.push(name.clone());
        }
    }
    let unused: Vec<_> = review.keys().filter(|k| !out.contains_key(*k)).collect();
    if !unused.is_empty() {
        eprintln!("note: review entries not used (in metadata or not wanted): {unused:?}");
    }
    let header = format!(
        "Nt* system-call signatures that Windows.Wdk/Win32.winmd lack, for the Windows 11 24H2\n\
         syscall list and Wine's ntdll syscall stubs. {} functions: {reviewed} reviewed (rows copied\n\
         from data/supplement-review.tsv; basis column says what they were checked against),\n\
         {inferred} inferred (ntapi {NTAPI_VERSION} prototype; dir/opt guessed by xtask/src/supplement.rs;\n\
         meta = ntapi's Rust type). Without a signature: {}.\n\
         Generated; do not edit (edit supplement-review.tsv). Regenerate with:\n\
         cargo run -p xtask -- gen-supplement",
        out.len(),
        if missing.is_empty() { "none".to_string() } else { missing.join(", ") }
    );
    crate::write_output(OUTPUT, &sigfile::render(&header, &out))?;
    eprintln!(
        "xtask: {} functions: {reviewed} reviewed, {inferred} inferred; no source for {missing:?}\n\
         xtask: the ntapi guess had every direction right for {agree_dir} reviewed functions, \
         and directions and optional flags for {agree}",
        out.len()
    );
    Ok(())
}
