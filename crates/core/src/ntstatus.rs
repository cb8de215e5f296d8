//! NTSTATUS codes: names and severity.
//!
//! The name table comes from Microsoft's Win32 metadata (see
//! `data/ntstatus.tsv`, regenerated with `cargo run -p xtask -- gen-ntstatus`);
//! `build.rs` reduces it to one preferred name per code. Where several names
//! share a code, a `STATUS_` name wins over a `DBG_` name, which wins over any
//! other (EXCEPTION_*, IO_*, ...), and ties go to the first name in byte order
//! (so 0 is STATUS_SUCCESS, not STATUS_WAIT_0).

// Defines `static TABLE: &[(u32, &str)]`, sorted by code, codes unique.
include!(concat!(env!("OUT_DIR"), "/ntstatus_table.rs"));

/// The symbolic name of `code`, e.g. `STATUS_OBJECT_NAME_NOT_FOUND` for
/// 0xC0000034, or `None` if the metadata doesn't know the code.
pub fn name(code: u32) -> Option<&'static str> {
    TABLE.binary_search_by_key(&code, |&(c, _)| c).ok().map(|i| TABLE[i].1)
}

/// Number of distinct codes that have a name.
pub fn count() -> usize {
    TABLE.len()
}

/// The severity field of an NTSTATUS (its top two bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// 0b00: 0x0000_0000..=0x3FFF_FFFF.
    Success,
    /// 0b01: 0x4000_0000..=0x7FFF_FFFF.
    Informational,
    /// 0b10: 0x8000_0000..=0xBFFF_FFFF.
    Warning,
    /// 0b11: 0xC000_0000..=0xFFFF_FFFF.
    Error,
}

/// The severity encoded in the top two bits of `code`.
pub fn severity(code: u32) -> Severity {
    match code >> 30 {
        0 => Severity::Success,
        1 => Severity::Informational,
        2 => Severity::Warning,
        _ => Severity::Error,
    }
}

/// Whether `code` reports a failure: severity warning or error. This is the
/// NT_SUCCESS test inverted (NT_SUCCESS is "the value is non-negative").
pub fn is_failure(code: u32) -> bool {
    matches!(severity(code), Severity::Warning | Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_names() {
        assert_eq!(name(0), Some("STATUS_SUCCESS"));
        assert_eq!(name(0xC000_0034), Some("STATUS_OBJECT_NAME_NOT_FOUND"));
        assert_eq!(name(0x8000_0005), Some("STATUS_BUFFER_OVERFLOW"));
        assert_eq!(name(0xC000_0005), Some("STATUS_ACCESS_VIOLATION"));
        assert_eq!(name(0x8000_0003), Some("STATUS_BREAKPOINT"));
        assert_eq!(name(0x103), Some("STATUS_PENDING"));
        assert_eq!(name(0x4001_0006), Some("DBG_PRINTEXCEPTION_C"));
        assert_eq!(name(0xC000_0008), Some("STATUS_INVALID_HANDLE"));
        assert_eq!(name(0xC000_0022), Some("STATUS_ACCESS_DENIED"));
        assert_eq!(name(0xC000_013A), Some("STATUS_CONTROL_C_EXIT"));
    }

    #[test]
    fn alias_rule() {
        // STATUS_ABANDONED_WAIT_0 shares 0x80; byte order picks the shorter.
        assert_eq!(name(0x80), Some("STATUS_ABANDONED"));
        // EXCEPTION_GUARD_PAGE shares the code; STATUS_ wins.
        assert_eq!(name(0x8000_0001), Some("STATUS_GUARD_PAGE_VIOLATION"));
        // Codes with only non-STATUS_ names still resolve.
        assert_eq!(name(0x0001_0001), Some("DBG_EXCEPTION_HANDLED"));
    }

    #[test]
    fn unknown_codes() {
        assert_eq!(name(0xDEAD_BEEF), None);
        assert_eq!(name(0xFFFF_FFFF), None);
        assert_eq!(name(0x0000_0042), None);
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
        // Windows.Win32.winmd from windows-bindgen 0.65.0 has 3051 NTSTATUS
        // constants with 3020 distinct values.
        assert_eq!(count(), 3020);
        assert!(count() > 2000);
    }

    #[test]
    fn severities() {
        assert_eq!(severity(0), Severity::Success);
        assert_eq!(severity(0x103), Severity::Success);
        assert_eq!(severity(0x4001_0006), Severity::Informational);
        assert_eq!(severity(0x8000_0005), Severity::Warning);
        assert_eq!(severity(0xC000_0034), Severity::Error);
        assert_eq!(severity(0xFFFF_FFFF), Severity::Error);
        assert!(!is_failure(0));
        assert!(!is_failure(0x103));
        assert!(!is_failure(0x4000_0000));
        assert!(is_failure(0x8000_0005));
        assert!(is_failure(0xC000_0005));
    }
}
