//! Fuzzes what the tracer reads of the agent's shared memory, apart from
//! the ring itself (its own target): the mapping's header, config and name
//! table, and the call records with their captured memory, decoded all the
//! way to call lines. Whatever the bytes, nothing may panic, overflow
//! (debug assertions are on), read out of bounds or loop forever.
//!
//! Input layout:
//! - byte 0: selects the part. Even: a mapping (the rest of the input as
//!   little-endian u64 words; bit 1 writes a valid magic so that the layout
//!   checks are reached). Odd: a call record (the rest of the input, with
//!   bytes 0-3 repaired to version 2 and known flags when bit 1 is set);
//!   bits 2-7 choose the function by index into the signature table.
#![no_main]

use std::sync::atomic::AtomicU64;

use libfuzzer_sys::fuzz_target;
use winstrace_agent::mapping::{self, MAGIC};
use winstrace_agent::record::{pieces, CallRecord};
use winstrace_decode::capture::CapturedMemory;
use winstrace_decode::{args_text, decode_call, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector & 1 == 0 {
        let words: Vec<AtomicU64> = rest
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(w))
            })
            .collect();
        if selector & 2 != 0 {
            if let Some(first) = words.first() {
                first.store(MAGIC, std::sync::atomic::Ordering::Relaxed);
            }
        }
        mapping::fuzz_mapping(&words);
        return;
    }
    let mut payload = rest.to_vec();
    if selector & 2 != 0 && payload.len() >= 4 {
        payload[0] = 2;
        payload[1] = 0;
        payload[2] &= 3;
        payload[3] = 0;
    }
    let count = pieces(&payload).count();
    let Ok(record) = CallRecord::decode(&payload) else { return };
    let mut memory = CapturedMemory::new();
    for (address, bytes) in pieces(&payload) {
        memory.add(address, bytes);
    }
    assert_eq!(pieces(&payload).count(), count);
    let signatures = winstrace_signatures::all();
    let sig = &signatures[(selector >> 2) as usize % signatures.len()];
    let status = (!record.no_return).then_some(record.status & 0xffff_ffff);
    let (args, _) = decode_call(sig.name, &record.args, status, &memory, &DecodeOptions::default());
    let _ = args_text(&args);
});
