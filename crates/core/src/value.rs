//! Decoded argument values and their text form.
//!
//! Decoders (crate `winstrace-decode`) build [`Value`]s from target memory;
//! sinks render them. The text form follows strace: strings quoted and
//! escaped, flags joined by `|`, structures in braces, pointed-to values in
//! brackets. See README.md ("Reading the output").

use std::fmt::Write as _;

use crate::ntstatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number best read in hex (pointers, masks without names): `0x1f`.
    Hex(u64),
    /// A pointer that could not be read: `0x1234 (unreadable)`.
    Unreadable(u64),
    /// An NTSTATUS: `0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND`.
    Status(u32),
}

/// A named member of a decoded structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
}

impl Value {
    /// Appends the text form of the value to `out`.
    pub fn write_text(&self, out: &mut String) {
        match self {
            Value::Hex(v) => {
                let _ = write!(out, "{v:#x}");
            }
            Value::Unreadable(address) => {
                let _ = write!(out, "{address:#x} (unreadable)");
            }
            Value::Status(code) => {
                let _ = write!(out, "{code:#x}");
                if let Some(name) = ntstatus::name(*code) {
                    out.push(' ');
                    out.push_str(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value) -> String {
        let mut s = String::new();
        v.write_text(&mut s);
        s
    }

    #[test]
    fn basic_values() {
        assert_eq!(text(&Value::Hex(0x1f)), "0x1f");
        assert_eq!(text(&Value::Unreadable(0x1234)), "0x1234 (unreadable)");
        assert_eq!(text(&Value::Status(0xc000_0034)), "0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND");
        assert_eq!(text(&Value::Status(0x1234_5678)), "0x12345678");
    }
}
