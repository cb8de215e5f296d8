//! Signatures of the Windows NT system calls (`Nt*`): return type and, for
//! each parameter, its name, C type, direction and whether it may be NULL.
//!
//! The data is Microsoft's metadata (`data/generated.tsv`) plus a reviewed
//! supplement for the functions the metadata lacks (`data/supplement.tsv`);
//! see README.md for sources and how to regenerate. Platform-independent:
//! nothing here calls Windows.

/// Which way data flows through a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Read by the callee (decode at entry).
    In,
    /// Written by the callee (decode at exit).
    Out,
    /// Read and written (decode at entry and exit).
    InOut,
}

/// One parameter of a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Name as in the prototype, e.g. `FileHandle`.
    pub name: &'static str,
    /// C type as the prototype spells it, e.g. `PHANDLE`, `ACCESS_MASK`.
    pub ty: &'static str,
    pub dir: Dir,
    /// The caller may pass NULL / nothing (SAL `_opt_` or metadata Optional).
    pub optional: bool,
    /// The source's own, sometimes richer, type: for metadata-derived
    /// signatures the metadata type (e.g. `FILE_ACCESS_RIGHTS` where the
    /// prototype says ACCESS_MASK, which names a flag set to decode with).
    pub meta: Option<&'static str>,
    /// Where name/type/direction come from: `winmd`, `winmd-zw`, `phnt`,
    /// `manual` or `inferred` (see README.md).
    pub basis: &'static str,
}

/// A system call's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// The `Nt` name, e.g. `NtCreateFile`.
    pub name: &'static str,
    /// Almost always `NTSTATUS`.
    pub return_type: &'static str,
    pub params: &'static [Param],
    /// Basis of the signature as a whole (same values as [`Param::basis`]).
    pub basis: &'static str,
}

// Defines `static SIGNATURES: &[Signature]`, sorted by name, names unique.
include!(concat!(env!("OUT_DIR"), "/signatures.rs"));

/// The signature of system call `name`. `Zw*` names resolve to the `Nt*`
/// signature (same system call; the returned `name` is the `Nt` one).
pub fn lookup(name: &str) -> Option<&'static Signature> {
    let find = |n: &str| SIGNATURES.binary_search_by(|s| s.name.cmp(n)).ok().map(|i| &SIGNATURES[i]);
    match name.strip_prefix("Zw") {
        Some(rest) => find(&format!("Nt{rest}")),
        None => find(name),
    }
}

/// Every known signature, sorted by name.
pub fn all() -> &'static [Signature] {
    SIGNATURES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(sig: &Signature, i: usize) -> (&str, &str, Dir, bool) {
        let p = &sig.params[i];
        (p.name, p.ty, p.dir, p.optional)
    }

    #[test]
    fn nt_create_file() {
        let s = lookup("NtCreateFile").expect("NtCreateFile");
        assert_eq!(s.return_type, "NTSTATUS");
        assert_eq!(s.params.len(), 11);
        assert_eq!(param(s, 0), ("FileHandle", "PHANDLE", Dir::Out, false));
        assert_eq!(param(s, 1), ("DesiredAccess", "ACCESS_MASK", Dir::In, false));
        assert_eq!(param(s, 2), ("ObjectAttributes", "POBJECT_ATTRIBUTES", Dir::In, false));
        assert_eq!(param(s, 3), ("IoStatusBlock", "PIO_STATUS_BLOCK", Dir::Out, false));
        assert_eq!(param(s, 4), ("AllocationSize", "PLARGE_INTEGER", Dir::In, true));
        assert_eq!(param(s, 5), ("FileAttributes", "ULONG", Dir::In, false));
        assert_eq!(param(s, 6), ("ShareAccess", "ULONG", Dir::In, false));
        assert_eq!(param(s, 7), ("CreateDisposition", "ULONG", Dir::In, false));
        assert_eq!(param(s, 8), ("CreateOptions", "ULONG", Dir::In, false));
        assert_eq!(param(s, 9), ("EaBuffer", "PVOID", Dir::In, true));
        assert_eq!(param(s, 10), ("EaLength", "ULONG", Dir::In, false));
        // The metadata names the flag set behind DesiredAccess.
        assert_eq!(s.params[1].meta, Some("FILE_ACCESS_RIGHTS"));
        assert_eq!(s.basis, "winmd");
    }

    #[test]
    fn supplement_functions() {
        let s = lookup("NtQueryAttributesFile").expect("NtQueryAttributesFile");
        assert_eq!(s.params.len(), 2);
        assert_eq!(param(s, 0), ("ObjectAttributes", "POBJECT_ATTRIBUTES", Dir::In, false));
        assert_eq!(param(s, 1), ("FileInformation", "PFILE_BASIC_INFORMATION", Dir::Out, false));

        let s = lookup("NtDelayExecution").expect("NtDelayExecution");
        assert_eq!(s.params.len(), 2);
        assert_eq!(param(s, 0), ("Alertable", "BOOLEAN", Dir::In, false));
        assert_eq!(param(s, 1), ("DelayInterval", "PLARGE_INTEGER", Dir::In, false));

        let s = lookup("NtAllocateVirtualMemory").expect("NtAllocateVirtualMemory");
        assert_eq!(param(s, 1), ("BaseAddress", "PVOID*", Dir::InOut, false));
        assert_eq!(param(s, 3), ("RegionSize", "PSIZE_T", Dir::InOut, false));

        let s = lookup("NtYieldExecution").expect("NtYieldExecution");
        assert!(s.params.is_empty());
    }

    #[test]
    fn nt_close_and_zw_alias() {
        let s = lookup("NtClose").expect("NtClose");
        assert_eq!(s.params.len(), 1);
        assert_eq!(param(s, 0), ("Handle", "HANDLE", Dir::In, false));
        assert_eq!(lookup("ZwClose").map(|s| s.name), Some("NtClose"));
        assert!(lookup("NtNoSuchCall").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn table_is_sorted_and_consistent() {
        assert!(all().windows(2).all(|w| w[0].name < w[1].name));
        for s in all() {
            assert!(s.name.starts_with("Nt"), "{}", s.name);
            for p in s.params {
                assert!(!p.name.is_empty() && !p.ty.is_empty(), "{}", s.name);
            }
        }
    }

    /// The checked-in Windows 11 24H2 syscall list: at least 95% must have a
    /// signature (at the time of writing all but NtQueryInformationCpuPartition).
    #[test]
    fn windows_11_coverage() {
        let csv = include_str!("../data/win11-24h2-x64-nt-syscalls.csv");
        let names: Vec<&str> = csv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split(',').nth(1))
            .map(str::trim)
            .collect();
        assert_eq!(names.len(), 489);
        let missing: Vec<&str> = names.iter().copied().filter(|n| lookup(n).is_none()).collect();
        let covered = names.len() - missing.len();
        assert!(
            covered * 100 >= names.len() * 95,
            "only {covered}/{} covered; missing {missing:?}",
            names.len()
        );
    }
}
