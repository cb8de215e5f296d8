//! Decoded argument values and their text form.
//!
//! Decoders (crate `winstrace-decode`) build [`Value`]s from target memory;
//! sinks render them. The text form follows strace wherever strace has an
//! equivalent, so that a reader of strace output can read this one:
//!
//! | value | text | notes |
//! | --- | --- | --- |
//! | [`Value::Hex`] | `0x1f` | pointers, masks and codes without names |
//! | [`Value::Unreadable`] | `0x1234 (unreadable)` | a pointer whose target could not be read |
//! | [`Value::Status`] | `0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND` | name only when known |
//! | [`Value::Null`] | `NULL` | a null pointer or handle |
//! | [`Value::Unsigned`], [`Value::Signed`] | `42`, `-1` | sizes, counts, lengths: decimal |
//! | [`Value::Bool`] | `TRUE`, `FALSE` | any other byte prints in decimal |
//! | [`Value::Handle`] | `0x24`, `NULL`, `NtCurrentProcess()` | pseudo-handles by their phnt macro name (below) |
//! | [`Value::NamedHandle`] | `0x24<C:\x.txt>`, `0x30<HKCU\Software>`, `0x44<pid 12>` | with `-y`: what the handle refers to |
//! | [`Value::Enum`] | `FileBasicInformation` | unknown values in hex: `0x63` |
//! | [`Value::Flags`] | `FILE_SHARE_READ\|FILE_SHARE_WRITE\|0x100` | leftover bits last, in hex; `0` when no bit is set |
//! | [`Value::Str`] | `"C:\\x"... (odd length)` | see below |
//! | [`Value::Bytes`] | `"hello\n"` or `"\x01\x02"` | see below |
//! | [`Value::Struct`] | `{Status=0x0 STATUS_SUCCESS, Information=5}` | fields in declaration order |
//! | [`Value::Pointer`] | `[0x24]` | a number read through a pointer, as strace prints `[value]` |
//! | [`Value::Time`] | `-0.010000s`, `2024-05-01T12:00:00.000000Z`, `0` | see below |
//! | [`Value::Array`] | `["a", "b", ...]` | `...` when elements were left out |
//!
//! Strings ([`Value::Str`]) are double-quoted with C escapes (`\"`, `\\`,
//! `\n`, `\r`, `\t`, `\xNN` for other control characters; see
//! [`crate::text::push_quoted`]). A string cut at the string limit (`-s`) has
//! `...` right after the closing quote, as in strace. Notes about malformed
//! data follow in parentheses, each after a space: `(odd length)`,
//! `(length > maximum)`, `(partly unreadable)`, `(NULL buffer)`.
//!
//! Byte buffers ([`Value::Bytes`]) print as a quoted string too: when at least
//! three quarters of the bytes are printable ASCII or `\t\n\r`, printable
//! bytes print as themselves and the others as escapes (`\0` for NUL,
//! `\xNN` otherwise); otherwise every byte prints as `\xNN`, like strace's
//! `-x`. Cut buffers end in `...` after the quote.
//!
//! Handles: 0 is `NULL`; the pseudo-handles print as the phnt macros that
//! produce them: -1 `NtCurrentProcess()`, -2 `NtCurrentThread()`, -3
//! `NtCurrentSession()`, -4 `NtCurrentProcessToken()`, -5
//! `NtCurrentThreadToken()`, -6 `NtCurrentThreadEffectiveToken()`; any other
//! handle in hex.
//!
//! Times ([`Value::Time`]) hold an NT `LARGE_INTEGER` time in 100 ns units,
//! read the way the kernel reads timeouts: negative is an interval relative
//! to now, printed in seconds with a sign (`-0.010000s`, with a seventh
//! decimal only when the value needs it); positive is an absolute FILETIME
//! (100 ns since 1601-01-01 UTC), printed as an ISO 8601 UTC date with the
//! same fraction (`2024-05-01T12:00:00.000000Z`); zero is `0`.

use std::fmt::Write as _;

use crate::ntstatus;
use crate::text::push_quoted;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number best read in hex (pointers, masks without names): `0x1f`.
    Hex(u64),
    /// A pointer that could not be read: `0x1234 (unreadable)`.
    Unreadable(u64),
    /// An NTSTATUS: `0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND`.
    Status(u32),
    /// A null pointer: `NULL`.
    Null,
    /// A size, count or other unsigned number, in decimal.
    Unsigned(u64),
    /// A signed number in decimal.
    Signed(i64),
    /// A BOOLEAN (one byte): `TRUE`/`FALSE`, other values in decimal.
    Bool(u8),
    /// A handle: `NULL`, a pseudo-handle name, or hex.
    Handle(u64),
    /// A handle with what it refers to (`-y`): `0x24<C:\x.txt>`.
    NamedHandle { raw: u64, name: String },
    /// A value of an enumeration: its name, or hex when the value has none.
    Enum { raw: u64, name: Option<&'static str> },
    /// A flag set: the names of the set bits, then the bits without a name
    /// (`rest`) in hex. `raw` is the whole value.
    Flags { raw: u64, names: Vec<&'static str>, rest: u64 },
    /// A string. `truncated`: cut at the string limit. `notes`: what was
    /// wrong with the data, e.g. `odd length` (printed in parentheses).
    Str { text: String, truncated: bool, notes: Vec<&'static str> },
    /// Raw bytes; `truncated`: cut at the string limit.
    Bytes { bytes: Vec<u8>, truncated: bool },
    /// A structure: named members, in order.
    Struct(Vec<Field>),
    /// A value read through a pointer, printed in brackets: `[0x24]`.
    Pointer(Box<Value>),
    /// An NT time or interval in 100 ns units (see the module docs).
    Time(i64),
    /// A list of values; `truncated`: elements were left out.
    Array { items: Vec<Value>, truncated: bool },
}

/// Appends `v` as `0x...` in lower-case hex, as `{:#x}` would. Decoding and
/// formatting run once per traced call, and `core::fmt` was a fifth of
/// that time.
pub fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 18];
    let mut at = buf.len();
    let mut rest = v;
    loop {
        at -= 1;
        buf[at] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.push_str("0x");
    out.extend(buf[at..].iter().map(|&digit| char::from(digit)));
}

/// Appends `v` in decimal, as `{}` would, without `core::fmt`.
fn push_decimal(out: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = v;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(buf[at..].iter().map(|&digit| char::from(digit)));
}

/// Appends `\xNN` for one byte.
fn push_byte_escape(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(DIGITS[usize::from(b >> 4)]));
    out.push(char::from(DIGITS[usize::from(b & 0xf)]));
}

/// A named member of a decoded structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
}

/// Names of the pseudo-handles -1 ..= -6, as phnt's macros name them.
const PSEUDO_HANDLES: [&str; 6] = [
    "NtCurrentProcess()",
    "NtCurrentThread()",
    "NtCurrentSession()",
    "NtCurrentProcessToken()",
    "NtCurrentThreadToken()",
    "NtCurrentThreadEffectiveToken()",
];

impl Value {
    /// Appends the text form of the value to `out`.
    pub fn write_text(&self, out: &mut String) {
        match self {
            Value::Hex(v) => {
                push_hex(out, *v);
            }
            Value::Unreadable(address) => {
                push_hex(out, *address);
                out.push_str(" (unreadable)");
            }
            Value::Status(code) => {
                push_hex(out, u64::from(*code));
                if let Some(name) = ntstatus::name(*code) {
                    out.push(' ');
                    out.push_str(name);
                }
            }
            Value::Null => out.push_str("NULL"),
            Value::Unsigned(v) => push_decimal(out, *v),
            Value::Signed(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Bool(b) => match b {
                0 => out.push_str("FALSE"),
                1 => out.push_str("TRUE"),
                other => {
                    let _ = write!(out, "{other}");
                }
            },
            Value::Handle(h) => write_handle(out, *h),
            Value::NamedHandle { raw, name } => {
                write_handle(out, *raw);
                out.push('<');
                out.push_str(name);
                out.push('>');
            }
            Value::Enum { raw, name } => match name {
                Some(name) => out.push_str(name),
                None => {
                    push_hex(out, *raw);
                }
            },
            Value::Flags { raw, names, rest } => write_flags(out, *raw, names, *rest),
            Value::Str { text, truncated, notes } => {
                push_quoted(out, text);
                if *truncated {
                    out.push_str("...");
                }
                for note in notes {
                    let _ = write!(out, " ({note})");
                }
            }
            Value::Bytes { bytes, truncated } => {
                push_quoted_bytes(out, bytes);
                if *truncated {
                    out.push_str("...");
                }
            }
            Value::Struct(fields) => {
                out.push('{');
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(field.name);
                    out.push('=');
                    field.value.write_text(out);
                }
                out.push('}');
            }
            Value::Pointer(inner) => {
                out.push('[');
                inner.write_text(out);
                out.push(']');
            }
            Value::Time(t) => write_time(out, *t),
            Value::Array { items, truncated } => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_text(out);
                }
                if *truncated {
                    out.push_str(if items.is_empty() { "..." } else { ", ..." });
                }
                out.push(']');
            }
        }
    }

    /// The text form as a new string.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }
}

fn write_handle(out: &mut String, h: u64) {
    if h == 0 {
        out.push_str("NULL");
        return;
    }
    // Pseudo-handles are small negative numbers: -1 is u64::MAX.
    let negated = h.wrapping_neg();
    if (1..=PSEUDO_HANDLES.len() as u64).contains(&negated) {
        out.push_str(PSEUDO_HANDLES[negated as usize - 1]);
    } else {
        push_hex(out, h);
    }
}

fn write_flags(out: &mut String, raw: u64, names: &[&str], rest: u64) {
    if names.is_empty() {
        // No name applies: the number itself, `0` for an empty set.
        if raw == 0 && rest == 0 {
            out.push('0');
        } else {
            push_hex(out, if rest != 0 { rest } else { raw });
        }
        return;
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        out.push_str(name);
    }
    if rest != 0 {
        out.push('|');
        push_hex(out, rest);
    }
}

/// Whether a byte prints as itself (or as a short escape) in text mode.
fn is_texty(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r')
}

/// Appends `bytes` quoted: as text with escapes when mostly text, otherwise
/// every byte as `\xNN` (see the module docs).
fn push_quoted_bytes(out: &mut String, bytes: &[u8]) {
    let texty = bytes.iter().filter(|&&b| is_texty(b)).count();
    let as_text = texty * 4 >= bytes.len() * 3;
    out.push('"');
    for &b in bytes {
        if !as_text {
            push_byte_escape(out, b);
            continue;
        }
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b if is_texty(b) => out.push(b as char),
            b => push_byte_escape(out, b),
        }
    }
    out.push('"');
}

/// 100 ns ticks per second.
const TICKS_PER_SECOND: u64 = 10_000_000;
/// Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
const FILETIME_TO_UNIX_SECONDS: i64 = 11_644_473_600;

/// Appends `.ffffff` (or seven digits when the last one is not zero).
fn write_fraction(out: &mut String, ticks: u64) {
    if ticks % 10 == 0 {
        let _ = write!(out, ".{:06}", ticks / 10);
    } else {
        let _ = write!(out, ".{ticks:07}");
    }
}

fn write_time(out: &mut String, t: i64) {
    if t == 0 {
        out.push('0');
        return;
    }
    if t < 0 {
        let ticks = t.unsigned_abs();
        let _ = write!(out, "-{}", ticks / TICKS_PER_SECOND);
        write_fraction(out, ticks % TICKS_PER_SECOND);
        out.push('s');
        return;
    }
    let ticks = t as u64;
    let secs = (ticks / TICKS_PER_SECOND) as i64 - FILETIME_TO_UNIX_SECONDS;
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_unix_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    );
    write_fraction(out, ticks % TICKS_PER_SECOND);
    out.push('Z');
}

/// The proleptic Gregorian date of `days` since 1970-01-01.
fn civil_from_unix_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so that the leap day ends each 4/100/400-year
    // cycle; a cycle of 400 years has 146097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value) -> String {
        v.to_text()
    }

    fn s(text: &str, truncated: bool, notes: &[&'static str]) -> Value {
        Value::Str { text: text.into(), truncated, notes: notes.to_vec() }
    }

    #[test]
    fn decimal_and_byte_escapes_match_the_standard_formatter() {
        for v in [0, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        for b in [0u8, 0x0f, 0x10, 0xab, 0xff] {
            let mut s = String::new();
            push_byte_escape(&mut s, b);
            assert_eq!(s, format!("\\x{b:02x}"));
        }
    }

    #[test]
    fn hex_matches_the_standard_formatter() {
        for v in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX, 1 << 63, 0x1234_5678_9abc_def0] {
            let mut s = String::new();
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v:#x}"));
        }
    }

    #[test]
    fn named_handles() {
        let v = Value::NamedHandle { raw: 0x24, name: "C:\\x.txt".into() };
        assert_eq!(text(&v), "0x24<C:\\x.txt>");
    }

    #[test]
    fn basic_values() {
        assert_eq!(text(&Value::Hex(0x1f)), "0x1f");
        assert_eq!(text(&Value::Hex(0)), "0x0");
        assert_eq!(text(&Value::Unreadable(0x1234)), "0x1234 (unreadable)");
        assert_eq!(text(&Value::Status(0xc000_0034)), "0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND");
        assert_eq!(text(&Value::Status(0x1234_5678)), "0x12345678");
        assert_eq!(text(&Value::Null), "NULL");
        assert_eq!(text(&Value::Unsigned(42)), "42");
        assert_eq!(text(&Value::Unsigned(u64::MAX)), "18446744073709551615");
        assert_eq!(text(&Value::Signed(-7)), "-7");
    }

    #[test]
    fn booleans() {
        assert_eq!(text(&Value::Bool(0)), "FALSE");
        assert_eq!(text(&Value::Bool(1)), "TRUE");
        assert_eq!(text(&Value::Bool(0x53)), "83");
    }

    #[test]
    fn handles_and_pseudo_handles() {
        assert_eq!(text(&Value::Handle(0)), "NULL");
        assert_eq!(text(&Value::Handle(0x24)), "0x24");
        assert_eq!(text(&Value::Handle(u64::MAX)), "NtCurrentProcess()");
        assert_eq!(text(&Value::Handle(-2i64 as u64)), "NtCurrentThread()");
        assert_eq!(text(&Value::Handle(-3i64 as u64)), "NtCurrentSession()");
        assert_eq!(text(&Value::Handle(-4i64 as u64)), "NtCurrentProcessToken()");
        assert_eq!(text(&Value::Handle(-5i64 as u64)), "NtCurrentThreadToken()");
        assert_eq!(text(&Value::Handle(-6i64 as u64)), "NtCurrentThreadEffectiveToken()");
        assert_eq!(text(&Value::Handle(-7i64 as u64)), "0xfffffffffffffff9");
    }

    #[test]
    fn enums() {
        assert_eq!(text(&Value::Enum { raw: 4, name: Some("FileBasicInformation") }), "FileBasicInformation");
        assert_eq!(text(&Value::Enum { raw: 0x63, name: None }), "0x63");
    }

    #[test]
    fn flags() {
        let f = |raw, names: &[&'static str], rest| Value::Flags { raw, names: names.to_vec(), rest };
        assert_eq!(
            text(&f(3, &["FILE_SHARE_READ", "FILE_SHARE_WRITE"], 0)),
            "FILE_SHARE_READ|FILE_SHARE_WRITE"
        );
        assert_eq!(text(&f(0x101, &["FILE_SHARE_READ"], 0x100)), "FILE_SHARE_READ|0x100");
        assert_eq!(text(&f(0x100, &[], 0x100)), "0x100");
        assert_eq!(text(&f(0, &[], 0)), "0");
        // A name for the value 0 itself (e.g. an "all clear" constant).
        assert_eq!(text(&f(0, &["PAGE_NONE_ZERO"], 0)), "PAGE_NONE_ZERO");
    }

    #[test]
    fn strings_quote_escape_truncate_and_note() {
        assert_eq!(text(&s("\\??\\C:\\x", false, &[])), r#""\\??\\C:\\x""#);
        assert_eq!(text(&s("a\"b\n", false, &[])), r#""a\"b\n""#);
        assert_eq!(text(&s("abc", true, &[])), r#""abc"..."#);
        assert_eq!(text(&s("ab", false, &["odd length"])), r#""ab" (odd length)"#);
        assert_eq!(
            text(&s("ab", true, &["length > maximum", "partly unreadable"])),
            r#""ab"... (length > maximum) (partly unreadable)"#
        );
        assert_eq!(text(&s("", false, &[])), r#""""#);
        assert_eq!(text(&s("\u{e9}t\u{e9}", false, &[])), "\"\u{e9}t\u{e9}\"");
    }

    #[test]
    fn bytes_print_as_text_or_hex() {
        let b = |bytes: &[u8], truncated| Value::Bytes { bytes: bytes.to_vec(), truncated };
        assert_eq!(text(&b(b"hello", false)), r#""hello""#);
        assert_eq!(text(&b(b"hi\r\n\"\\\0", false)), r#""hi\r\n\"\\\0""#);
        assert_eq!(text(&b(b"hello world\x01", true)), r#""hello world\x01"..."#);
        assert_eq!(text(&b(&[1, 2, 0xff], false)), r#""\x01\x02\xff""#);
        assert_eq!(text(&b(&[0x41, 0, 0, 0], false)), r#""\x41\x00\x00\x00""#);
        assert_eq!(text(&b(&[], false)), r#""""#);
        assert_eq!(text(&b(&[], true)), r#"""..."#);
    }

    #[test]
    fn structs_pointers_arrays() {
        let st = Value::Struct(vec![
            Field { name: "Status", value: Value::Status(0) },
            Field { name: "Information", value: Value::Unsigned(5) },
        ]);
        assert_eq!(text(&st), "{Status=0x0 STATUS_SUCCESS, Information=5}");
        assert_eq!(text(&Value::Struct(vec![])), "{}");
        assert_eq!(text(&Value::Pointer(Box::new(Value::Handle(0x24)))), "[0x24]");
        assert_eq!(text(&Value::Pointer(Box::new(Value::Unsigned(7)))), "[7]");
        let arr = |items: Vec<Value>, truncated| Value::Array { items, truncated };
        assert_eq!(text(&arr(vec![s("a", false, &[]), s("b", false, &[])], false)), r#"["a", "b"]"#);
        assert_eq!(text(&arr(vec![s("a", false, &[])], true)), r#"["a", ...]"#);
        assert_eq!(text(&arr(vec![], false)), "[]");
        assert_eq!(text(&arr(vec![], true)), "[...]");
    }

    #[test]
    fn times() {
        assert_eq!(text(&Value::Time(0)), "0");
        // 10 ms relative, as Sleep(10) passes it.
        assert_eq!(text(&Value::Time(-100_000)), "-0.010000s");
        assert_eq!(text(&Value::Time(-1)), "-0.0000001s");
        assert_eq!(text(&Value::Time(-25_000_000)), "-2.500000s");
        assert_eq!(text(&Value::Time(i64::MIN)), "-922337203685.4775808s");
        // 1970-01-01 and 2024-02-29 12:34:56.789 UTC as FILETIMEs.
        assert_eq!(text(&Value::Time(116_444_736_000_000_000)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(text(&Value::Time(133_536_836_967_890_000)), "2024-02-29T12:34:56.789000Z");
        assert_eq!(text(&Value::Time(1)), "1601-01-01T00:00:00.0000001Z");
        assert_eq!(text(&Value::Time(i64::MAX)), "30828-09-14T02:48:05.4775807Z");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix_days(0), (1970, 1, 1));
        assert_eq!(civil_from_unix_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_unix_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_unix_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_unix_days(-134_774), (1601, 1, 1));
    }
}
