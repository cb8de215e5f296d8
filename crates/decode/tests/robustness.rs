//! Every signature, decoded over memory that is empty, random, or made of
//! pointers to itself: no panic, whatever the arguments.

use winstrace_core::memory::{MemoryImage, TargetMemory, Unreadable};
use winstrace_decode::{args_text, decode_call, DecodeOptions};

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Memory where every address is readable and holds pseudo-random bytes
/// derived from the address (so repeated reads agree).
struct Noise;

impl TargetMemory for Noise {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = address.wrapping_add(i as u64);
            let mut r = Rng(a ^ 0x9e37_79b9_7f4a_7c15 | 1);
            *b = r.next() as u8;
        }
        Ok(())
    }
}

const BASE: u64 = 0x10_0000;
const SIZE: usize = 0x4000;

/// Addresses inside the image, small numbers, pseudo-handles, garbage.
fn interesting(rng: &mut Rng) -> u64 {
    match rng.next() % 8 {
        0 => 0,
        1 => BASE + rng.next() % SIZE as u64,
        2 => BASE + (rng.next() % (SIZE as u64 / 8)) * 8,
        3 => rng.next() % 64,
        4 => u64::MAX - rng.next() % 8,
        5 => 0x8000_0005,
        6 => BASE + SIZE as u64 - rng.next() % 16,
        _ => rng.next(),
    }
}

/// An image of random bytes sprinkled with pointers into itself, so that
/// structures point at more structures.
fn random_image(rng: &mut Rng) -> MemoryImage {
    let mut bytes = vec![0u8; SIZE];
    for chunk in bytes.chunks_mut(8) {
        let v = interesting(rng);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    MemoryImage::new().with(BASE, bytes)
}

fn results(rng: &mut Rng) -> Option<u64> {
    match rng.next() % 4 {
        0 => Some(0),
        1 => Some(0x8000_0005),
        2 => None,
        _ => Some(rng.next() & 0xffff_ffff),
    }
}

#[test]
fn every_signature_over_empty_memory() {
    let mem = MemoryImage::new();
    let mut rng = Rng(0x1234_5678);
    for sig in winstrace_signatures::all() {
        for _ in 0..20 {
            let args: Vec<u64> = (0..17).map(|_| interesting(&mut rng)).collect();
            let (decoded, complete) = decode_call(sig.name, &args, Some(0), &mem, &DecodeOptions::default());
            assert!(complete);
            assert_eq!(decoded.len(), sig.params.len(), "{}", sig.name);
            let _ = args_text(&decoded);
        }
    }
}

#[test]
fn every_signature_over_random_memory() {
    let mut rng = Rng(0xdead_beef);
    let opts = [
        DecodeOptions::default(),
        DecodeOptions { string_limit: 0, raw: false },
        DecodeOptions { string_limit: 5000, raw: false },
    ];
    for (round, opt) in opts.iter().enumerate() {
        let mem = random_image(&mut rng);
        for sig in winstrace_signatures::all() {
            for _ in 0..(if round == 0 { 30 } else { 5 }) {
                let args: Vec<u64> = (0..17).map(|_| interesting(&mut rng)).collect();
                let result = results(&mut rng);
                let (decoded, _) = decode_call(sig.name, &args, result, &mem, opt);
                let _ = args_text(&decoded);
            }
        }
    }
}

#[test]
fn every_signature_over_all_readable_noise() {
    let mut rng = Rng(42);
    for sig in winstrace_signatures::all() {
        for _ in 0..3 {
            let args: Vec<u64> = (0..17).map(|_| rng.next()).collect();
            let (decoded, _) = decode_call(sig.name, &args, Some(0), &Noise, &DecodeOptions::default());
            let text = args_text(&decoded);
            // Everything is readable and limits hold: lines stay bounded.
            // Names are shown whole (up to a UNICODE_STRING's 32767
            // units, escaped), so a few noise names make a long line.
            assert!(text.len() < 1024 * 1024, "{}: {} bytes", sig.name, text.len());
        }
    }
}
