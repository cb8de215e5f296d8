//! Helpers to lay out target memory for decoder tests.
#![allow(dead_code)]

use winstrace_core::memory::MemoryImage;
use winstrace_decode::{args_text, decode_call, DecodeOptions};

pub const OK: Option<u64> = Some(0);

/// UTF-16LE bytes of `s` (no terminator).
pub fn w(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// UTF-16LE bytes of `s` plus a NUL, as registry strings are stored.
pub fn wz(s: &str) -> Vec<u8> {
    let mut v = w(s);
    v.extend_from_slice(&[0, 0]);
    v
}

/// An x64 UNICODE_STRING.
pub fn ustr(len: u16, max: u16, buffer: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&max.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&buffer.to_le_bytes());
    v
}

/// An x64 OBJECT_ATTRIBUTES with Length 48 and no security fields.
pub fn oa(root: u64, name: u64, attributes: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&48u32.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&root.to_le_bytes());
    v.extend_from_slice(&name.to_le_bytes());
    v.extend_from_slice(&attributes.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&[0; 16]);
    v
}

/// An IO_STATUS_BLOCK.
pub fn iosb(status: u32, information: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u64::from(status).to_le_bytes());
    v.extend_from_slice(&information.to_le_bytes());
    v
}

/// Little-endian bytes of several integers of mixed widths.
pub enum Le {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    Pad(usize),
    Bytes(Vec<u8>),
}

pub fn le(parts: &[Le]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        match p {
            Le::U8(x) => v.push(*x),
            Le::U16(x) => v.extend_from_slice(&x.to_le_bytes()),
            Le::U32(x) => v.extend_from_slice(&x.to_le_bytes()),
            Le::U64(x) => v.extend_from_slice(&x.to_le_bytes()),
            Le::Pad(n) => v.extend(std::iter::repeat(0).take(*n)),
            Le::Bytes(b) => v.extend_from_slice(b),
        }
    }
    v
}

/// The call's arguments as text, default options.
pub fn call(function: &str, args: &[u64], result: Option<u64>, mem: &MemoryImage) -> String {
    call_with(function, args, result, mem, &DecodeOptions::default())
}

pub fn call_with(
    function: &str,
    args: &[u64],
    result: Option<u64>,
    mem: &MemoryImage,
    opts: &DecodeOptions,
) -> String {
    let (decoded, complete) = decode_call(function, args, result, mem, opts);
    assert!(complete, "{function}: incomplete");
    args_text(&decoded)
}

/// The text of one argument of a call.
pub fn arg(function: &str, args: &[u64], result: Option<u64>, mem: &MemoryImage, name: &str) -> String {
    arg_with(function, args, result, mem, name, &DecodeOptions::default())
}

pub fn arg_with(
    function: &str,
    args: &[u64],
    result: Option<u64>,
    mem: &MemoryImage,
    name: &str,
    opts: &DecodeOptions,
) -> String {
    let (decoded, _) = decode_call(function, args, result, mem, opts);
    let a =
        decoded.iter().find(|a| a.name == Some(name)).unwrap_or_else(|| panic!("{function} has no {name}"));
    a.value.to_text()
}
