//! The generic decoders ("printers" in strace's terms): each turns one kind
//! of value, in a register or in target memory, into a [`Value`]. They know
//! nothing about particular calls; `crate::call` feeds them.
//!
//! Every read goes through [`TargetMemory`] and every failed read becomes a
//! [`Value::Unreadable`] for the value or field concerned. Lengths and
//! counts come from the target and may be anything: no allocation is sized
//! by them beyond the string limit or [`MAX_READ`].

use winstrace_core::memory::{TargetMemory, Unreadable};
use winstrace_core::value::{Field, Value};

use crate::data::{self, StructDef};
use crate::spec::Spec;
use crate::xlat;

/// The most bytes read for one value whose size the target chooses and that
/// must be read whole to be shown (a REG_MULTI_SZ list).
pub(crate) const MAX_READ: u64 = 0x10000;

/// What the decoders need besides the spec.
pub(crate) struct Cx<'a> {
    pub mem: &'a dyn TargetMemory,
    /// Strings: at most this many UTF-16 units; buffers: this many bytes;
    /// string lists: this many strings (`-s`).
    pub limit: usize,
    /// For `access` specs without an object: the call's object type key.
    pub access_object: Option<&'static str>,
}

/// Where a value is: in a register (or stack slot) or in target memory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src {
    Reg(u64),
    Mem(u64),
}

/// Reads an unsigned little-endian integer of `width` bytes (1, 2, 4, 8).
/// From a register, the low `width` bytes: the upper bits of a register that
/// carries a 32-bit argument are not part of the argument.
pub(crate) fn read_uint(cx: &Cx, src: Src, width: u64) -> Result<u64, Unreadable> {
    uint_with(src, width, |address, buf| cx.mem.read_exact(address, buf))
}

/// [`read_uint`] with the memory read done by `read` (which fills the
/// buffer or fails): the capture walk reads the same way, through its sink.
pub(crate) fn uint_with(
    src: Src,
    width: u64,
    read: impl FnOnce(u64, &mut [u8]) -> Result<(), Unreadable>,
) -> Result<u64, Unreadable> {
    let mask = if width >= 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
    match src {
        Src::Reg(v) => Ok(v & mask),
        Src::Mem(addr) => {
            let mut b = [0u8; 8];
            let n = width.clamp(1, 8) as usize;
            read(addr, &mut b[..n])?;
            Ok(u64::from_le_bytes(b) & mask)
        }
    }
}

fn sign_extend(v: u64, width: u64) -> i64 {
    if width >= 8 {
        return v as i64;
    }
    let shift = 64 - 8 * width;
    ((v << shift) as i64) >> shift
}

/// Decodes the value `spec` describes at `src`.
pub(crate) fn decode(cx: &Cx, spec: &Spec, src: Src) -> Value {
    let int = |width: u64| read_uint(cx, src, width);
    let scalar = |width: u64, f: &dyn Fn(u64) -> Value| match int(width) {
        Ok(v) => f(v),
        Err(e) => Value::Unreadable(e.address),
    };
    match spec {
        Spec::Unsigned(w) => scalar(u64::from(*w), &Value::Unsigned),
        Spec::Signed(w) => scalar(u64::from(*w), &|v| Value::Signed(sign_extend(v, u64::from(*w)))),
        Spec::Hex(w) => scalar(u64::from(*w), &Value::Hex),
        Spec::Addr => scalar(8, &|v| if v == 0 { Value::Null } else { Value::Hex(v) }),
        Spec::Bool => scalar(1, &|v| Value::Bool(v as u8)),
        Spec::Handle => scalar(8, &Value::Handle),
        Spec::Status => scalar(4, &|v| Value::Status(v as u32)),
        Spec::Time => scalar(8, &|v| Value::Time(v as i64)),
        Spec::Xlat { table, flags } => scalar(4, &|v| xlat_value(table, *flags, v)),
        Spec::Access(object) => scalar(4, &|v| access_value(object.or(cx.access_object), v)),
        Spec::Ptr(inner) => match int(8) {
            Err(e) => Value::Unreadable(e.address),
            Ok(0) => Value::Null,
            Ok(p) => {
                let v = decode(cx, inner, Src::Mem(p));
                if inner.is_aggregate() || matches!(v, Value::Unreadable(_)) {
                    v
                } else {
                    Value::Pointer(Box::new(v))
                }
            }
        },
        Spec::UStr
        | Spec::WSz
        | Spec::Struct(_)
        | Spec::WChars(_)
        | Spec::Bytes(_)
        | Spec::RegData { .. } => {
            match src {
                // These live in memory; a register can only hold their address.
                Src::Reg(v) => Value::Hex(v),
                Src::Mem(addr) => match spec {
                    Spec::UStr => unicode_string(cx, addr),
                    Spec::WSz => wsz(cx, addr),
                    Spec::Struct(name) => match data::structure(name) {
                        Some(def) => structure(cx, def, addr, None),
                        None => Value::Hex(addr),
                    },
                    // Tails are decoded by `structure`, which knows their length.
                    _ => Value::Hex(addr),
                },
            }
        }
    }
}

/// A 4-byte value named by xlat table `table`.
pub(crate) fn xlat_value(table: &str, flags: bool, v: u64) -> Value {
    if flags {
        let (names, rest) = xlat::flag_names(table, v);
        Value::Flags { raw: v, names, rest }
    } else {
        Value::Enum { raw: v, name: xlat::enum_name(table, v) }
    }
}

/// An ACCESS_MASK: the rights of the object type's xlat access table
/// (`file_access`, ...), then standard and generic rights; bits nothing
/// names stay in hex. Without an object type, standard and generic only.
/// A mask that is exactly one of the object's combined rights (KEY_READ,
/// FILE_ALL_ACCESS) prints as that name: it is what the caller wrote.
pub(crate) fn access_value(object: Option<&str>, v: u64) -> Value {
    if let Some(name) = object.filter(|_| v != 0).and_then(|t| xlat::enum_name(t, v)) {
        return Value::Flags { raw: v, names: vec![name], rest: 0 };
    }
    let (names, rest) = xlat::access_names(object.unwrap_or(""), v);
    Value::Flags { raw: v, names, rest }
}

/// Reads `units` UTF-16 code units at `addr`, at most `limit`.
/// Nothing readable: `Unreadable`; part: the part, noted.
fn wide_string(cx: &Cx, addr: u64, units: usize, limit: usize, mut notes: Vec<&'static str>) -> Value {
    let want = units.min(limit);
    let mut bytes = vec![0u8; want * 2];
    let got = cx.mem.read_partial(addr, &mut bytes) / 2;
    if got < want {
        if got == 0 {
            return Value::Unreadable(addr);
        }
        notes.push("partly unreadable");
    }
    Value::Str { text: utf16(&bytes[..got * 2]), truncated: units > want, notes }
}

fn utf16(bytes: &[u8]) -> String {
    // Paths and names are nearly always ASCII: copy those straight over.
    if bytes.chunks_exact(2).all(|c| c[1] == 0 && c[0] < 0x80) {
        return bytes.chunks_exact(2).map(|c| char::from(c[0])).collect();
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

/// A UNICODE_STRING (x64: Length u16 @0, MaximumLength u16 @2, Buffer @8)
/// at `addr`. Length counts bytes; it should be even and at most
/// MaximumLength. When it is not, what Length says is read anyway (that is
/// what the callee will look at) and a note says what is wrong.
pub(crate) fn unicode_string(cx: &Cx, addr: u64) -> Value {
    let header = (|| {
        let len = read_uint(cx, Src::Mem(addr), 2)?;
        let max = read_uint(cx, Src::Mem(addr.wrapping_add(2)), 2)?;
        let buf = read_uint(cx, Src::Mem(addr.wrapping_add(8)), 8)?;
        Ok::<_, Unreadable>((len, max, buf))
    })();
    let (len, max, buf) = match header {
        Ok(h) => h,
        Err(e) => return Value::Unreadable(e.address),
    };
    let mut notes = Vec::new();
    if len % 2 == 1 {
        notes.push("odd length");
    }
    if len > max {
        notes.push("length > maximum");
    }
    let units = (len / 2) as usize;
    if buf == 0 {
        if len > 0 {
            notes.push("NULL buffer");
        }
        return Value::Str { text: String::new(), truncated: false, notes };
    }
    // Names and paths are shown whole, as strace shows file names whatever
    // -s says; a UNICODE_STRING holds at most 0xFFFE bytes anyway.
    wide_string(cx, buf, units, usize::from(u16::MAX) / 2, notes)
}

/// A NUL-terminated UTF-16 string at `addr`.
fn wsz(cx: &Cx, addr: u64) -> Value {
    // One unit more than the limit tells a string of exactly `limit` units
    // from a longer one.
    let want = cx.limit.saturating_add(1).min(MAX_READ as usize / 2);
    let mut bytes = vec![0u8; want * 2];
    let got = cx.mem.read_partial(addr, &mut bytes) / 2;
    if got == 0 {
        return Value::Unreadable(addr);
    }
    let units: Vec<u16> =
        bytes[..got * 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    match units.iter().position(|&u| u == 0) {
        Some(end) if end <= cx.limit => {
            Value::Str { text: String::from_utf16_lossy(&units[..end]), truncated: false, notes: Vec::new() }
        }
        _ => {
            let shown = got.min(cx.limit);
            let notes =
                if got < want && !units.contains(&0) { vec!["partly unreadable"] } else { Vec::new() };
            Value::Str { text: String::from_utf16_lossy(&units[..shown]), truncated: got > shown, notes }
        }
    }
}

/// `len` bytes at `addr`, cut at the string limit.
pub(crate) fn bytes(cx: &Cx, addr: u64, len: u64) -> Value {
    let want = len.min(cx.limit as u64) as usize;
    let mut buf = vec![0u8; want];
    let got = cx.mem.read_partial(addr, &mut buf);
    if got == 0 && want > 0 {
        return Value::Unreadable(addr);
    }
    buf.truncate(got);
    // A partly unreadable buffer is shown as cut: its bytes go on, unseen.
    Value::Bytes { bytes: buf, truncated: len > got as u64 }
}

/// REG_* type numbers (winnt.h).
pub(crate) mod reg {
    pub const SZ: u64 = 1;
    pub const EXPAND_SZ: u64 = 2;
    pub const DWORD: u64 = 4;
    pub const DWORD_BIG_ENDIAN: u64 = 5;
    pub const LINK: u64 = 6;
    pub const MULTI_SZ: u64 = 7;
    pub const QWORD: u64 = 11;
}

/// Registry data of REG_* type `ty`: `len` bytes at `addr`.
pub(crate) fn regdata(cx: &Cx, ty: u64, addr: u64, len: u64) -> Value {
    match ty {
        reg::SZ | reg::EXPAND_SZ | reg::LINK => reg_string(cx, addr, len),
        reg::MULTI_SZ => multi_sz(cx, addr, len),
        reg::DWORD if len == 4 => decode(cx, &Spec::Unsigned(4), Src::Mem(addr)),
        reg::DWORD_BIG_ENDIAN if len == 4 => match read_uint(cx, Src::Mem(addr), 4) {
            Ok(v) => Value::Unsigned(u64::from((v as u32).swap_bytes())),
            Err(e) => Value::Unreadable(e.address),
        },
        reg::QWORD if len == 8 => decode(cx, &Spec::Unsigned(8), Src::Mem(addr)),
        // REG_BINARY, REG_NONE, resource lists, numbers of the wrong size.
        _ => bytes(cx, addr, len),
    }
}

/// A REG_SZ-like string: UTF-16, normally ending in one NUL that is not
/// shown.
fn reg_string(cx: &Cx, addr: u64, len: u64) -> Value {
    let mut notes = Vec::new();
    if len % 2 == 1 {
        notes.push("odd length");
    }
    let units = (len / 2).min(usize::MAX as u64) as usize;
    let want = units.min(cx.limit.saturating_add(1));
    let mut buf = vec![0u8; want * 2];
    let got = cx.mem.read_partial(addr, &mut buf) / 2;
    if got == 0 && want > 0 {
        return Value::Unreadable(addr);
    }
    if got < want {
        notes.push("partly unreadable");
    }
    let mut u: Vec<u16> = buf[..got * 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    // Drop the terminator only when the data's real end was read.
    if got == units && u.last() == Some(&0) {
        u.pop();
    }
    let truncated = u.len() > cx.limit || (got == want && want < units);
    u.truncate(cx.limit);
    Value::Str { text: String::from_utf16_lossy(&u), truncated, notes }
}

/// A REG_MULTI_SZ list: NUL-terminated strings, ended by an empty one.
fn multi_sz(cx: &Cx, addr: u64, len: u64) -> Value {
    let cap = len.min(MAX_READ) as usize;
    let mut buf = vec![0u8; cap];
    let got = cx.mem.read_partial(addr, &mut buf);
    if got == 0 && cap > 0 {
        return Value::Unreadable(addr);
    }
    let units: Vec<u16> =
        buf[..got - got % 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let mut items = Vec::new();
    let mut truncated = (got as u64) < len;
    for s in units.split(|&u| u == 0) {
        if s.is_empty() {
            // The empty string that ends the list (or the end of the data).
            break;
        }
        if items.len() >= cx.limit {
            truncated = true;
            break;
        }
        let shown = s.len().min(cx.limit);
        items.push(Value::Str {
            text: String::from_utf16_lossy(&s[..shown]),
            truncated: s.len() > shown,
            notes: Vec::new(),
        });
    }
    Value::Array { items, truncated }
}

/// The structure `def` at `addr`. `avail`: how many bytes there are valid,
/// when the call says (variable-length tails are cut there).
pub(crate) fn structure(cx: &Cx, def: &StructDef, addr: u64, avail: Option<u64>) -> Value {
    // A structure with no readable first byte is one unreadable pointer,
    // not a list of unreadable fields.
    if cx.mem.read_exact(addr, &mut [0u8; 1]).is_err() {
        return Value::Unreadable(addr);
    }
    let mut fields = Vec::with_capacity(def.fields.len());
    for f in &def.fields {
        let at = addr.wrapping_add(f.offset);
        let value = match &f.spec {
            Spec::WChars(len) | Spec::Bytes(len) | Spec::RegData { len, .. } => {
                let (total, take) = match tail_len(cx, def, addr, len, f.offset, avail) {
                    Ok(l) => l,
                    Err(v) => {
                        fields.push(Field { name: f.name, value: v });
                        continue;
                    }
                };
                let mut v = match &f.spec {
                    Spec::WChars(_) => {
                        let notes = if total % 2 == 1 { vec!["odd length"] } else { Vec::new() };
                        wide_string(cx, at, (take / 2) as usize, cx.limit, notes)
                    }
                    Spec::Bytes(_) => bytes(cx, at, take),
                    Spec::RegData { ty, .. } => match field_uint(cx, def, addr, ty) {
                        Ok(t) => regdata(cx, t, at, take),
                        Err(v) => v,
                    },
                    _ => unreachable!("matched above"),
                };
                if take < total {
                    mark_truncated(&mut v);
                }
                v
            }
            spec => {
                let width = spec.width();
                if let (Some(omit), 1 | 2 | 4 | 8) = (f.omit, width) {
                    if read_uint(cx, Src::Mem(at), width) == Ok(omit) {
                        continue;
                    }
                }
                decode(cx, spec, Src::Mem(at))
            }
        };
        fields.push(Field { name: f.name, value });
    }
    Value::Struct(fields)
}

/// The integer field `name` of the structure at `addr`.
fn field_uint(cx: &Cx, def: &StructDef, addr: u64, name: &str) -> Result<u64, Value> {
    let Some(f) = def.field(name) else { return Err(Value::Hex(addr)) };
    read_uint(cx, Src::Mem(addr.wrapping_add(f.offset)), f.spec.width())
        .map_err(|e| Value::Unreadable(e.address))
}

/// (length the structure claims, length there is) of a tail at `offset`
/// whose length is field `len`.
fn tail_len(
    cx: &Cx,
    def: &StructDef,
    addr: u64,
    len: &str,
    offset: u64,
    avail: Option<u64>,
) -> Result<(u64, u64), Value> {
    let total = field_uint(cx, def, addr, len)?;
    let take = match avail {
        Some(a) => total.min(a.saturating_sub(offset)),
        None => total,
    };
    Ok((total, take))
}

/// Marks a string or byte value as cut (data the call did not return).
fn mark_truncated(v: &mut Value) {
    match v {
        Value::Str { truncated, .. } | Value::Bytes { truncated, .. } | Value::Array { truncated, .. } => {
            *truncated = true
        }
        _ => {}
    }
}

/// An information buffer of `len` valid bytes at `addr`, laid out as class
/// `value` of enum type `class_type` says (data/classes.tsv); raw bytes for
/// classes without a known layout or too short for theirs.
pub(crate) fn class_buffer(cx: &Cx, class_type: &str, value: u64, addr: u64, len: u64) -> Value {
    match data::class_spec(class_type, value) {
        Some(Spec::Struct(name)) => match data::structure(name) {
            Some(def) if len >= def.size => structure(cx, def, addr, Some(len)),
            _ => bytes(cx, addr, len),
        },
        Some(spec) if spec.width() > 0 && len >= spec.width() => decode(cx, spec, Src::Mem(addr)),
        _ => bytes(cx, addr, len),
    }
}
