//! Symbolic names for enum values and flag bits ("xlat" tables, as strace
//! calls them), generated from Microsoft's metadata into `data/xlat/`.
//!
//! INTERFACE (agreed between the decoders and the table generator):
//! - `enum_name(table, value)`: the name of `value` in enum `table`.
//! - `flag_names(table, value)`: the flag names whose bits make up `value`,
//!   largest masks first, plus the bits no name covers.
//! Table names are the metadata's type names, e.g. `FILE_INFORMATION_CLASS`,
//! `FILE_SHARE_MODE`, `PAGE_PROTECTION_FLAGS`, `REG_VALUE_TYPE`.

/// The name of `value` in the enum `table`, if the table has one.
pub fn enum_name(table: &str, value: u64) -> Option<&'static str> {
    let _ = (table, value);
    None
}

/// Decomposes `value` into the flag names of `table`; returns the names and
/// the leftover bits that no name covers.
pub fn flag_names(table: &str, value: u64) -> (Vec<&'static str>, u64) {
    let _ = table;
    (Vec::new(), value)
}
