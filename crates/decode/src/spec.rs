//! Decoder specs: what a value is, as a small term the data files can spell
//! (`u32`, `ptr:handle`, `xlat:share`, `struct:IO_STATUS_BLOCK`), and the
//! table from C type names to specs.
//!
//! A spec describes a value *in place*: for a parameter, the place is its
//! register or stack slot (8 bytes); for a structure field, its bytes at an
//! offset. So `PHANDLE` is `ptr:handle` (a pointer, in place, to a handle)
//! and an embedded `UNICODE_STRING` is `ustr` while `PUNICODE_STRING` is
//! `ptr:ustr`.
//!
//! | spec | in place | prints as |
//! | --- | --- | --- |
//! | `u8` `u16` `u32` `u64` | unsigned integer of that width | decimal |
//! | `i32` `i64` | signed integer | decimal |
//! | `hex32` `hex64` | integer | hex |
//! | `addr` | pointer | `NULL` or hex, not followed |
//! | `bool` | BOOLEAN (1 byte) | `TRUE`/`FALSE` |
//! | `handle` | HANDLE | see `Value::Handle` |
//! | `status` | NTSTATUS (4 bytes) | hex and name |
//! | `time` | LARGE_INTEGER time (8 bytes) | see `Value::Time` |
//! | `xlat:TABLE` | 4-byte enum or flag set, named by xlat table TABLE | names |
//! | `access`, `access:TABLE` | ACCESS_MASK: object rights (xlat access TABLE, or the one `data/access.tsv` gives for the call), standard and generic rights | names |
//! | `ptr:SPEC` | pointer to a SPEC | `NULL`, `[value]` for numbers, the value itself for strings and structures |
//! | `ustr` | UNICODE_STRING (16 bytes) | quoted string |
//! | `wsz` | NUL-terminated UTF-16 string | quoted string |
//! | `struct:NAME` | structure from `data/structs.txt` | `{Field=value, ...}` |
//! | `wchars:F` `bytes:F` `regdata:T:F` | variable-length structure tails (structs.txt only) | string, bytes, registry data |

use crate::{data, xlat};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// Unsigned integer of this many bytes, decimal.
    Unsigned(u8),
    /// Signed integer of this many bytes, decimal.
    Signed(u8),
    /// Integer of this many bytes, hex.
    Hex(u8),
    /// A pointer that is shown, not followed.
    Addr,
    Bool,
    Handle,
    Status,
    Time,
    /// A 4-byte value named by an xlat table.
    Xlat {
        table: &'static str,
        flags: bool,
    },
    /// An ACCESS_MASK; the xlat access table of the object type if fixed,
    /// else the one `data/access.tsv` gives for the call.
    Access(Option<&'static str>),
    Ptr(Box<Spec>),
    UStr,
    WSz,
    Struct(&'static str),
    /// Variable-length tails of structures; the names are fields of the
    /// same structure.
    WChars(&'static str),
    Bytes(&'static str),
    RegData {
        ty: &'static str,
        len: &'static str,
    },
}

impl Spec {
    /// Bytes the value occupies in place (0 for tails and `wsz`, which
    /// extend as far as their data goes).
    pub(crate) fn width(&self) -> u64 {
        match self {
            Spec::Unsigned(n) | Spec::Signed(n) | Spec::Hex(n) => u64::from(*n),
            Spec::Addr | Spec::Handle | Spec::Time | Spec::Ptr(_) => 8,
            Spec::Bool => 1,
            Spec::Status | Spec::Xlat { .. } | Spec::Access(_) => 4,
            Spec::UStr => 16,
            Spec::Struct(name) => data::structure(name).map_or(0, |s| s.size),
            Spec::WSz | Spec::WChars(_) | Spec::Bytes(_) | Spec::RegData { .. } => 0,
        }
    }

    /// True for values printed bare (not in brackets) behind a pointer:
    /// strings and structures, as strace prints them.
    pub(crate) fn is_aggregate(&self) -> bool {
        matches!(self, Spec::UStr | Spec::WSz | Spec::Struct(_))
    }

    /// Parses a spec as the data files write it. `text` must live as long
    /// as the program (the data files are compiled in).
    pub(crate) fn parse(text: &'static str) -> Result<Spec, String> {
        let (head, arg) = match text.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (text, None),
        };
        let need =
            |what: &str| arg.filter(|a| !a.is_empty()).ok_or_else(|| format!("`{text}`: {what} missing"));
        let spec = match (head, arg) {
            ("u8", None) => Spec::Unsigned(1),
            ("u16", None) => Spec::Unsigned(2),
            ("u32", None) => Spec::Unsigned(4),
            ("u64", None) => Spec::Unsigned(8),
            ("i32", None) => Spec::Signed(4),
            ("i64", None) => Spec::Signed(8),
            ("hex32", None) => Spec::Hex(4),
            ("hex64", None) => Spec::Hex(8),
            ("addr", None) => Spec::Addr,
            ("bool", None) => Spec::Bool,
            ("handle", None) => Spec::Handle,
            ("status", None) => Spec::Status,
            ("time", None) => Spec::Time,
            ("ustr", None) => Spec::UStr,
            ("wsz", None) => Spec::WSz,
            ("access", None) => Spec::Access(None),
            ("access", Some(_)) => Spec::Access(Some(need("table")?)),
            ("xlat", Some(_)) => {
                let table = need("table")?;
                Spec::Xlat { table, flags: xlat::is_flags(table) }
            }
            ("ptr", Some(_)) => Spec::Ptr(Box::new(Spec::parse(need("target")?)?)),
            ("struct", Some(_)) => Spec::Struct(need("name")?),
            ("wchars", Some(_)) => Spec::WChars(need("length field")?),
            ("bytes", Some(_)) => Spec::Bytes(need("length field")?),
            ("regdata", Some(_)) => {
                let (ty, len) = need("fields")?
                    .split_once(':')
                    .ok_or_else(|| format!("`{text}`: want regdata:TYPE:LEN"))?;
                Spec::RegData { ty, len }
            }
            _ => return Err(format!("unknown decoder spec `{text}`")),
        };
        Ok(spec)
    }
}

/// The decoder for a parameter of C type `ty` when nothing more specific
/// (data/params.tsv, the signature's meta type) applies. This is the type
/// table, strace's printers: one arm per type family.
pub(crate) fn for_type(ty: &'static str) -> Spec {
    let ptr = |s: Spec| Spec::Ptr(Box::new(s));
    match ty {
        "HANDLE" | "ALPC_HANDLE" => Spec::Handle,
        "PHANDLE" | "PALPC_HANDLE" => ptr(Spec::Handle),
        "ULONG" | "DWORD" | "UINT" | "LOGICAL" | "WNF_CHANGE_STAMP" => Spec::Unsigned(4),
        "SECURITY_INFORMATION" | "NOTIFICATION_MASK" | "EXECUTION_STATE" | "LCID" => Spec::Hex(4),
        "USHORT" | "WORD" | "LANGID" | "RTL_ATOM" => Spec::Unsigned(2),
        "UCHAR" | "CHAR" | "CCHAR" => Spec::Unsigned(1),
        "LONG" | "KPRIORITY" => Spec::Signed(4),
        "ULONG64" | "ULONGLONG" | "SIZE_T" | "ULONG_PTR" => Spec::Unsigned(8),
        "LONG64" | "LONGLONG" | "LONG_PTR" => Spec::Signed(8),
        "KAFFINITY" => Spec::Hex(8),
        "BOOLEAN" => Spec::Bool,
        "NTSTATUS" => Spec::Status,
        "ACCESS_MASK" => Spec::Access(None),
        "PULONG" | "ULONG*" | "PDWORD" | "PWNF_CHANGE_STAMP" => ptr(Spec::Unsigned(4)),
        "PUSHORT" | "LANGID*" | "PRTL_ATOM" => ptr(Spec::Unsigned(2)),
        "PLONG" | "LONG*" | "volatile LONG*" => ptr(Spec::Signed(4)),
        "PULONG64" | "PULONGLONG" | "ULONG64*" | "PSIZE_T" | "PULONG_PTR" | "PULARGE_INTEGER" => {
            ptr(Spec::Unsigned(8))
        }
        "PLARGE_INTEGER" => ptr(Spec::Signed(8)),
        "PBOOLEAN" => ptr(Spec::Bool),
        "PNTSTATUS" => ptr(Spec::Status),
        "PACCESS_MASK" | "EXECUTION_STATE*" => ptr(Spec::Hex(4)),
        "PVOID*" => ptr(Spec::Addr),
        "PUNICODE_STRING" | "PCUNICODE_STRING" => ptr(Spec::UStr),
        "PCWSTR" | "PWSTR" => ptr(Spec::WSz),
        "POBJECT_ATTRIBUTES" | "PCOBJECT_ATTRIBUTES" | "OBJECT_ATTRIBUTES*" => {
            ptr(Spec::Struct("OBJECT_ATTRIBUTES"))
        }
        "PIO_STATUS_BLOCK" => ptr(Spec::Struct("IO_STATUS_BLOCK")),
        "PCLIENT_ID" => ptr(Spec::Struct("CLIENT_ID")),
        "PFILE_BASIC_INFORMATION" => ptr(Spec::Struct("FILE_BASIC_INFORMATION")),
        "PFILE_NETWORK_OPEN_INFORMATION" => ptr(Spec::Struct("FILE_NETWORK_OPEN_INFORMATION")),
        // Enumerations passed by value: information classes and the types
        // that name an xlat table (EVENT_TYPE, SECTION_INHERIT, ...).
        t if t.ends_with("CLASS") || xlat::has_table(t) => Spec::Xlat { table: t, flags: xlat::is_flags(t) },
        // Everything else is a pointer (P..., LP..., ...*) or an opaque
        // value: shown, not followed.
        _ => Spec::Addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round() {
        assert_eq!(Spec::parse("u32"), Ok(Spec::Unsigned(4)));
        assert_eq!(Spec::parse("ptr:ptr:handle"), Ok(Spec::Ptr(Box::new(Spec::Ptr(Box::new(Spec::Handle))))));
        assert_eq!(
            Spec::parse("regdata:Type:DataLength"),
            Ok(Spec::RegData { ty: "Type", len: "DataLength" })
        );
        assert_eq!(Spec::parse("xlat:X"), Ok(Spec::Xlat { table: "X", flags: false }));
        assert_eq!(
            Spec::parse("xlat:FILE_SHARE_MODE"),
            Ok(Spec::Xlat { table: "FILE_SHARE_MODE", flags: true })
        );
        assert!(Spec::parse("ptr:").is_err());
        assert!(Spec::parse("xlat:").is_err());
        assert!(Spec::parse("u31").is_err());
        assert!(Spec::parse("regdata:Type").is_err());
    }

    #[test]
    fn types() {
        assert_eq!(for_type("PHANDLE"), Spec::Ptr(Box::new(Spec::Handle)));
        assert_eq!(for_type("PROCESSINFOCLASS"), Spec::Xlat { table: "PROCESSINFOCLASS", flags: false });
        assert_eq!(for_type("PPORT_MESSAGE"), Spec::Addr);
        assert_eq!(for_type("PVOID"), Spec::Addr);
    }
}
