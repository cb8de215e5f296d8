//! Fuzzes `decode_call`: the input picks a function, the result, the options
//! and the arguments, and is itself the target memory the arguments point
//! into. Decoding and rendering must never panic, whatever the bytes.
//!
//! Input layout:
//! - bytes 0..2: function index (into `winstrace_signatures::all()`)
//! - byte 2: bits 0-1 result (success, STATUS_BUFFER_OVERFLOW, no return,
//!   error), bits 2-3 string limit (32, 0, 1, 4096), bit 4-5 both set: raw
//! - bytes 3..37: 17 arguments, two bytes each (see `arg`)
//! - the rest: target memory, mapped twice: at `LOW` (page-aligned start)
//!   and ending at `HIGH_END` (a page boundary, so partial reads succeed up
//!   to the end and fail right after it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use winstrace_core::memory::MemoryImage;
use winstrace_decode::{args_text, decode_call, DecodeOptions};

const LOW: u64 = 0x10_0000;
const HIGH_END: u64 = 0x40_0000;
const HEADER: usize = 3 + 17 * 2;

/// An argument from two input bytes: mostly pointers into one of the two
/// copies of the memory, sometimes a value pointers cannot produce.
fn arg(v: u16, mem: &[u8]) -> u64 {
    let len = mem.len() as u64;
    match v >> 14 {
        0 => LOW + u64::from(v & 0x3fff) % (len + 16),
        1 => HIGH_END - len + u64::from(v & 0x3fff) % (len + 16),
        2 => match v & 0xf {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - 1,
            3 => 1 << 40,
            4 => 0xffff_ffff,
            _ => u64::from(v & 0x3ff),
        },
        // A value read from the memory itself (a length, a class, ...).
        _ => {
            let at = usize::from(v & 0x3fff);
            let mut b = [0u8; 8];
            for (i, x) in b.iter_mut().enumerate() {
                *x = mem.get(at + i).copied().unwrap_or(0);
            }
            u64::from_le_bytes(b)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (head, mem_bytes) = data.split_at(HEADER);
    let sigs = winstrace_signatures::all();
    let function = sigs[usize::from(u16::from_le_bytes([head[0], head[1]])) % sigs.len()].name;
    let flags = head[2];
    let result = match flags & 3 {
        0 => Some(0),
        1 => Some(0x8000_0005),
        2 => None,
        _ => Some(0xc000_0001),
    };
    let string_limit = [32, 0, 1, 4096][usize::from((flags >> 2) & 3)];
    let opts = DecodeOptions { string_limit, raw: flags & 0x30 == 0x30 };
    let args: Vec<u64> =
        head[3..].chunks_exact(2).map(|c| arg(u16::from_le_bytes([c[0], c[1]]), mem_bytes)).collect();
    let mut mem = MemoryImage::new();
    if !mem_bytes.is_empty() {
        mem = mem.with(LOW, mem_bytes.to_vec()).with(HIGH_END - mem_bytes.len() as u64, mem_bytes.to_vec());
    }
    let (decoded, _) = decode_call(function, &args, result, &mem, &opts);
    let _ = args_text(&decoded);
});
