//! `gen-signatures`: Nt*/Zw* function signatures from Windows.Wdk.winmd and
//! Windows.Win32.winmd, written to crates/signatures/data/generated.tsv.

use std::collections::BTreeMap;

use windows_metadata::reader::{HasAttributes, ParamDirection};
use windows_metadata::Type;

use crate::sigfile::{self, Function, Param};

const OUTPUT: &str = "crates/signatures/data/generated.tsv";
const FILES: [&str; 2] = ["Windows.Wdk.winmd", "Windows.Win32.winmd"];

/// Enums the metadata substitutes for a plain integer parameter (the C
/// prototype says ACCESS_MASK or ULONG). The enum name stays in the `meta`
/// column, where a decoder can use it to pick a flag table.
fn metadata_enum_spelling(name: &str) -> Option<&'static str> {
    match name {
        "FILE_ACCESS_RIGHTS" => Some("ACCESS_MASK"),
        "FILE_FLAGS_AND_ATTRIBUTES"
        | "FILE_SHARE_MODE"
        | "NTCREATEFILE_CREATE_DISPOSITION"
        | "NTCREATEFILE_CREATE_OPTIONS" => Some("ULONG"),
        _ => None,
    }
}

/// The metadata's own spelling, kept in the `meta` column.
fn meta_spelling(ty: &Type) -> String {
    match ty {
        Type::ValueName(n) | Type::ClassName(n) => n.name.clone(),
        Type::PtrMut(inner, n) => format!("{}{}", meta_spelling(inner), "*".repeat(*n)),
        Type::PtrConst(inner, n) => format!("const {}{}", meta_spelling(inner), "*".repeat(*n)),
        Type::Void => "void".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Spells a metadata type the way the Windows headers write NT prototypes.
///
/// The metadata erases typedefs (LARGE_INTEGER becomes i64, ACCESS_MASK
/// becomes u32, PHANDLE becomes HANDLE*), so this applies the headers'
/// conventions: ULONG/LONG for 32-bit integers, `P` + name for one level of
/// pointer to a named type, PLARGE_INTEGER for a pointer to a 64-bit signed
/// integer, `T*` for deeper pointers (PVOID*), and ACCESS_MASK for a 32-bit
/// `DesiredAccess`/`GrantedAccess`, SECURITY_INFORMATION for a 32-bit
/// `SecurityInformation`, PNTSTATUS for an `AccessStatus` pointer, SIZE_T
/// for other pointer-sized integers (ULONG_PTR for `ZeroBits`, `AsynchronousContext`). `gen-signatures` was checked against the prototypes in
/// the phnt headers; the remaining differences are listed in the README.
fn c_spelling(ty: &Type, param: &str) -> String {
    match ty {
        Type::Void => "VOID".into(),
        Type::Bool => "BOOL".into(),
        Type::Char => "WCHAR".into(),
        Type::I8 => "CHAR".into(),
        Type::U8 => "UCHAR".into(),
        Type::I16 => "SHORT".into(),
        Type::U16 => "USHORT".into(),
        Type::I32 => "LONG".into(),
        Type::U32 if matches!(param, "DesiredAccess" | "GrantedAccess") => "ACCESS_MASK".into(),
        Type::U32 if param == "SecurityInformation" => "SECURITY_INFORMATION".into(),
        Type::U32 => "ULONG".into(),
        Type::I64 => "LONGLONG".into(),
        Type::U64 => "ULONGLONG".into(),
        Type::ISize => "LONG_PTR".into(),
        // Sizes are SIZE_T in the headers; ZeroBits and AsynchronousContext
        // are ULONG_PTR.
        Type::USize if matches!(param, "ZeroBits" | "AsynchronousContext") => "ULONG_PTR".into(),
        Type::USize => "SIZE_T".into(),
        Type::ValueName(n) | Type::ClassName(n) => {
            if n.namespace == "System" && n.name == "Guid" {
                "GUID".into()
            } else if let Some(s) = metadata_enum_spelling(&n.name) {
                s.into()
            } else {
                n.name.clone()
            }
        }
        Type::PtrMut(inner, 1) | Type::PtrConst(inner, 1) => {
            let konst = matches!(ty, Type::PtrConst(..));
            match &**inner {
                Type::Void if konst => "PCVOID".into(),
                Type::Void => "PVOID".into(),
                Type::Char if konst => "PCWSTR".into(),
                Type::Char => "PWSTR".into(),
                Type::I64 => "PLARGE_INTEGER".into(),
                Type::U64 => "PULARGE_INTEGER".into(),
                Type::USize => "PSIZE_T".into(),
                // typedefs the metadata erases, recognisable by parameter name
                Type::U32 if param == "GrantedAccess" => "PACCESS_MASK".into(),
                Type::I32 if param == "AccessStatus" => "PNTSTATUS".into(),
                Type::ValueName(n) if n.namespace == "System" && n.name == "Guid" => "LPGUID".into(),
                other => format!("P{}", c_spelling(other, "")),
            }
        }
        Type::PtrMut(inner, n) | Type::PtrConst(inner, n) => {
            let one = match ty {
                Type::PtrMut(..) => Type::PtrMut(inner.clone(), 1),
                _ => Type::PtrConst(inner.clone(), 1),
            };
            format!("{}{}", c_spelling(&one, param), "*".repeat(n - 1))
        }
        other => format!("{other:?}"),
    }
}

/// Reads every Nt*/Zw* method from the metadata files.
pub fn from_metadata() -> Result<BTreeMap<String, Function>, String> {
    // Nt name -> (came from the Zw form?, function)
    let mut found: BTreeMap<String, (bool, Function)> = BTreeMap::new();
    for file in FILES {
        let index = crate::winmd::open(file)?;
        for def in index.types() {
            for method in def.methods() {
                let name = method.name();
                let (nt_name, from_zw) = if let Some(rest) = name.strip_prefix("Zw") {
                    (format!("Nt{rest}"), true)
                } else if name.starts_with("Nt") {
                    (name.to_string(), false)
                } else {
                    continue;
                };
                // Only real imports from ntdll are system-call wrappers.
                let dll = method.impl_map().map(|m| m.import_scope().name().to_ascii_lowercase());
                if dll.as_deref() != Some("ntdll.dll") {
                    continue;
                }
                let sig = method.signature(&[]);
                let rows = method.params_by_sequence(sig.types.len()).map_err(|e| format!("{name}: {e}"))?;
                let basis = if from_zw { "winmd-zw" } else { "winmd" };
                let mut params = Vec::new();
                for (i, (ty, row)) in sig.types.iter().zip(rows.params()).enumerate() {
                    let row = row.ok_or_else(|| format!("{name}: parameter {} has no row", i + 1))?;
                    let dir = match row.direction() {
                        ParamDirection::Output => "out",
                        ParamDirection::InputOutput => "inout",
                        // Unspecified only occurs on [Reserved] inputs.
                        ParamDirection::Input | ParamDirection::Unspecified => "in",
                    };
                    params.push(Param {
                        name: row.name().to_string(),
                        ty: c_spelling(ty, row.name()),
                        dir,
                        optional: row.is_optional() || row.has_attribute("ReservedAttribute"),
                        meta: meta_spelling(ty),
                        basis: basis.to_string(),
                    });
                }
                let func = Function {
                    name: nt_name.clone(),
                    ret: c_spelling(&sig.return_type, ""),
                    params,
                    basis: basis.to_string(),
                };
                // An Nt declaration beats a Zw one (it is what user mode calls
                // and carries the richer types); first seen wins otherwise.
                match found.get(&nt_name) {
                    Some((false, _)) => {}
                    Some((true, _)) if from_zw => {}
                    _ => {
                        found.insert(nt_name, (from_zw, func));
                    }
                }
            }
        }
    }
    Ok(found.into_iter().map(|(k, (_, f))| (k, f)).collect())
}

pub fn run() -> Result<(), String> {
    let funcs = from_metadata()?;
    let zw = funcs.values().filter(|f| f.basis == "winmd-zw").count();
    let header = format!(
        "Nt* system-call signatures from Microsoft's metadata: Windows.Wdk.winmd and\n\
         Windows.Win32.winmd shipped in the windows-bindgen 0.65.0 crate (`default/`).\n\
         {} functions ({} only declared as Zw*, listed under the Nt name).\n\
         Generated; do not edit. Regenerate with: cargo run -p xtask -- gen-signatures\n\
         type: C spelling (metadata types re-spelled by the rules in xtask/src/signatures.rs);\n\
         meta: the metadata's type; dir/opt: the metadata's In/Out/Optional flags\n\
         ([Reserved] parameters count as optional); basis: winmd (Nt* form) or winmd-zw.",
        funcs.len(),
        zw
    );
    crate::write_output(OUTPUT, &sigfile::render(&header, &funcs))?;
    eprintln!("xtask: {} functions ({zw} from Zw* forms)", funcs.len());
    Ok(())
}
