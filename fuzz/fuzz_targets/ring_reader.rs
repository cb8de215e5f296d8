//! Fuzzes the ring's consumer (and, on the same bytes, its producer): the
//! input is the shared region the traced process could have scribbled on.
//! Attaching, reading and writing must never panic, overflow (debug
//! assertions are on), read out of bounds or loop forever, whatever the
//! bytes.
//!
//! Input layout:
//! - byte 0: flags. Random bytes almost never pass the header checks, so
//!   some bits repair parts of the header to reach the record parser:
//!   bit 0 writes a valid magic and version, bit 1 a capacity matching the
//!   region, bit 2 makes the cursors consistent (aligned, read <= write,
//!   at most `capacity` apart), bit 3 does producer writes after reading.
//! - byte 1: lengths of the producer writes, 4 bits each (times 9).
//! - the rest: the region, as little-endian u64 words (the last one
//!   zero-padded).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use winstrace_ring::{Ring, HEADER_WORDS, MAGIC, VERSION};

const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_WRITE: usize = 8;
const W_READ: usize = 16;

/// Reads until nothing is ready or an error. Each record consumes at least
/// 8 bytes and the reader zeroes what it consumed, so more than
/// `capacity / 8` records in one go means it is looping.
fn drain(region: &[AtomicU64]) {
    let Ok(ring) = Ring::attach(region) else { return };
    let Ok(mut reader) = ring.reader() else { return };
    let mut records = 0u64;
    loop {
        match reader.next() {
            Ok(Some(rec)) => {
                assert!(rec.payload.len() as u64 + 8 <= ring.capacity());
                records += 1;
                assert!(records <= ring.capacity() / 8, "reader loops");
            }
            Ok(None) => return,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (flags, lens) = (data[0], data[1]);
    let mut words: Vec<u64> = data[2..]
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    if flags & 7 != 0 && words.len() < HEADER_WORDS + 2 {
        words.resize(HEADER_WORDS + 2, 0);
    }
    let region: Vec<AtomicU64> = words.into_iter().map(AtomicU64::new).collect();
    let set = |w: usize, v: u64| region[w].store(v, Ordering::Relaxed);
    let get = |w: usize| region[w].load(Ordering::Relaxed);
    if flags & 1 != 0 {
        set(0, MAGIC);
        set(W_VERSION, u64::from(VERSION) | (HEADER_WORDS as u64 * 8) << 32);
    }
    let cap = (region.len().saturating_sub(HEADER_WORDS) * 8) as u64;
    if flags & 2 != 0 {
        set(W_CAPACITY, cap);
    }
    if flags & 4 != 0 && cap > 0 {
        let read = get(W_READ) / 8 * 8;
        set(W_READ, read);
        set(W_WRITE, read.saturating_add(get(W_WRITE) % (cap + 8) / 8 * 8));
    }
    drain(&region);
    if flags & 8 != 0 {
        if let Ok(ring) = Ring::attach(&region) {
            for len in [lens & 15, lens >> 4] {
                let payload = vec![0x5a; usize::from(len) * 9];
                // Waiting is allowed, but only until the (simulated)
                // consumer gives up, so a full ring ends in an error.
                let _ = ring.write(u32::from(len), &payload, &mut || ring.set_consumer_alive(false));
            }
        }
        drain(&region);
    }
});
