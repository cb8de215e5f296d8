//! Decoding from a capture equals decoding from the memory it was taken
//! from: for every signature, over synthetic memories full of pointers,
//! lengths, strings and holes.

use super::*;
use crate::{args_text, decode_call};

/// Memory readable in [LOW, HIGH) except one hole page, with content made up
/// from the address: aligned quadwords are often pointers into the readable
/// range (sometimes just before the hole), small numbers or zero, so that
/// walks go deep.
struct Synthetic {
    seed: u64,
}

const LOW: u64 = 0x10000;
const HIGH: u64 = 0x90000;
const HOLE: u64 = 0x40000;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Synthetic {
    fn quad(&self, aligned: u64) -> u64 {
        let h = mix(aligned ^ self.seed);
        match h % 16 {
            0..=4 => (LOW + (h >> 8) % (HIGH - LOW)) & !1,
            5 => HOLE - 8 * ((h >> 8) % 4),
            6..=8 => (h >> 8) % 120,
            9..=11 => 0,
            12 => 0x0041_0042_0043_0044, // "DCBA" in UTF-16, no terminator
            _ => h,
        }
    }
}

impl TargetMemory for Synthetic {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = address.checked_add(i as u64).ok_or(Unreadable { address })?;
            if !(LOW..HIGH).contains(&a) || (HOLE..HOLE + 0x1000).contains(&a) {
                return Err(Unreadable { address });
            }
            *b = self.quad(a & !7).to_le_bytes()[(a % 8) as usize];
        }
        Ok(())
    }
}

fn image_of(pieces: &[(u64, Vec<u8>)]) -> CapturedMemory {
    let mut image = CapturedMemory::new();
    for (address, bytes) in pieces {
        image.add(*address, bytes);
    }
    image
}

#[test]
fn decoding_the_capture_equals_decoding_the_memory_for_every_signature() {
    let mut compared = 0;
    let mut captured_bytes = 0usize;
    for sig in winstrace_signatures::all() {
        let plan = capture_plan(sig.name).expect("every signature has a plan");
        for seed in 0..24u64 {
            let mem = Synthetic { seed: mix(seed + 1) };
            let args: Vec<u64> = (0..17u64).map(|i| mem.quad(LOW + 0x1000 * (seed + 1) + 8 * i)).collect();
            for result in [Some(0), Some(0xc000_0034), Some(0x8000_0005), None] {
                for limit in [32, 3] {
                    let opts = DecodeOptions { string_limit: limit, raw: false };
                    let mut capture = MemoryCapture::new(&mem, 1 << 22);
                    plan.capture(&args, result, &opts, &mut capture);
                    captured_bytes += capture.pieces().iter().map(|(_, b)| b.len()).sum::<usize>();
                    let image = image_of(capture.pieces());
                    let live = decode_call(sig.name, &args, result, &mem, &opts);
                    let replay = decode_call(sig.name, &args, result, &image, &opts);
                    if live != replay {
                        let cut = |s: String| s.chars().take(600).collect::<String>();
                        panic!(
                            "{}(seed {seed}, {result:?}, -s {limit}) decodes differently from its capture:\n live:   {}\n replay: {}",
                            sig.name,
                            cut(args_text(&live.0)),
                            cut(args_text(&replay.0))
                        );
                    }
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 80_000, "{compared}");
    // The memories really were followed (not everything unreadable).
    assert!(captured_bytes > 200_000, "{captured_bytes}");
}

/// The in-process engine captures a returning call twice: at entry without
/// a result (the in-parameters) and at the return the out- and in-out
/// parameters only. Its out-parameters decode from both captures (the
/// return's over the entry's) as they decode from the memory.
#[test]
fn out_parameters_decode_from_the_return_capture_over_the_entry_capture() {
    let mut compared = 0;
    for sig in winstrace_signatures::all() {
        let plan = capture_plan(sig.name).expect("every signature has a plan");
        for seed in 0..8u64 {
            let mem = Synthetic { seed: mix(seed + 101) };
            let args: Vec<u64> = (0..17u64).map(|i| mem.quad(LOW + 0x1000 * (seed + 1) + 8 * i)).collect();
            for result in [Some(0), Some(0xc000_0034), Some(0x8000_0005)] {
                let opts = DecodeOptions { string_limit: 32, raw: false };
                let mut entry = MemoryCapture::new(&mem, 1 << 22);
                plan.capture(&args, None, &opts, &mut entry);
                let mut outs = MemoryCapture::new(&mem, 1 << 22);
                plan.capture_outs(&args, result, &opts, &mut outs);
                let both: Vec<(u64, Vec<u8>)> = entry.pieces().iter().chain(outs.pieces()).cloned().collect();
                let (live, _) = decode_call(sig.name, &args, result, &mem, &opts);
                let (replay, _) = decode_call(sig.name, &args, result, &image_of(&both), &opts);
                for (l, r) in live.iter().zip(&replay).filter(|(l, _)| l.out) {
                    assert_eq!(l, r, "{}(seed {seed}, {result:?}): {}", sig.name, args_text(&replay));
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 5_000, "{compared}");
}

#[test]
fn raw_mode_and_functions_without_a_signature_capture_nothing() {
    let mem = Synthetic { seed: 5 };
    let plan = capture_plan("NtCreateFile").unwrap();
    let mut capture = MemoryCapture::new(&mem, 1 << 20);
    plan.capture(&[LOW; 11], Some(0), &DecodeOptions { string_limit: 32, raw: true }, &mut capture);
    assert!(capture.pieces().is_empty());
    assert!(capture_plan("NtNoSuchFunction").is_none());
    // Zw names have the Nt plan.
    assert!(capture_plan("ZwCreateFile").is_some());
}

/// A plain memory with one OBJECT_ATTRIBUTES naming a path, as a real
/// NtOpenFile would pass it.
#[test]
fn an_object_attributes_capture_is_its_structure_and_its_name() {
    let path: Vec<u8> = "\\??\\C:\\x.txt".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut attributes = vec![0u8; 48];
    attributes[0..4].copy_from_slice(&48u32.to_le_bytes());
    attributes[16..24].copy_from_slice(&0x3000u64.to_le_bytes());
    attributes[24..28].copy_from_slice(&0x40u32.to_le_bytes());
    let mut name = vec![0u8; 16];
    name[0..2].copy_from_slice(&(path.len() as u16).to_le_bytes());
    name[2..4].copy_from_slice(&(path.len() as u16).to_le_bytes());
    name[8..16].copy_from_slice(&0x4000u64.to_le_bytes());
    let mem = winstrace_core::memory::MemoryImage::new()
        .with(0x2000, attributes.clone())
        .with(0x3000, name.clone())
        .with(0x4000, path.clone());
    let plan = capture_plan("NtQueryAttributesFile").unwrap();
    let mut capture = MemoryCapture::new(&mem, 4096);
    // Failed: the out-parameter (FILE_BASIC_INFORMATION) is not read.
    plan.capture(&[0x2000, 0x5000], Some(0xc000_0034), &DecodeOptions::default(), &mut capture);
    let pieces: Vec<(u64, usize)> = capture.pieces().iter().map(|(a, b)| (*a, b.len())).collect();
    assert_eq!(pieces, vec![(0x2000, 48), (0x3000, 16), (0x4000, path.len())]);
    let image = image_of(capture.pieces());
    let (args, _) = decode_call(
        "NtQueryAttributesFile",
        &[0x2000, 0x5000],
        Some(0xc000_0034),
        &image,
        &DecodeOptions::default(),
    );
    assert_eq!(
        args_text(&args),
        r#"ObjectAttributes={Name="\\??\\C:\\x.txt", Attributes=OBJ_CASE_INSENSITIVE}, FileInformation=0x5000"#
    );
}

#[test]
fn a_capture_that_runs_out_of_room_stops_short() {
    let mem = Synthetic { seed: 9 };
    let mut capture = MemoryCapture::new(&mem, 10);
    assert_eq!(capture.capture(LOW, 8), 8);
    assert_eq!(capture.capture(LOW, 8), 8, "already held: costs nothing");
    assert_eq!(capture.capture(LOW + 0x100, 8), 2);
    assert_eq!(capture.capture(LOW + 0x200, 8), 0);
    // Unreadable memory: nothing held.
    let mut capture = MemoryCapture::new(&mem, 100);
    assert_eq!(capture.capture(HOLE - 4, 8), 4);
    assert_eq!(capture.capture(1, 8), 0);
}

#[test]
fn captured_memory_merges_overlapping_pieces() {
    let mut m = CapturedMemory::new();
    m.add(0x100, &[1, 2, 3, 4]);
    m.add(0x108, &[9, 9]);
    m.add(0x102, &[7, 7, 7, 7, 7, 7]); // joins both
    m.add(0x200, &[5]);
    m.add(0x1ff, &[]);
    assert_eq!(m.len(), 11);
    let mut b = [0u8; 10];
    m.read_exact(0x100, &mut b).unwrap();
    assert_eq!(b, [1, 2, 7, 7, 7, 7, 7, 7, 9, 9]);
    assert!(m.read_exact(0x109, &mut [0u8; 2]).is_err());
    assert!(m.read_exact(0xff, &mut [0u8; 1]).is_err());
    assert_eq!(m.read_u16(0x1ff).ok(), None);
    m.add(0x1ff, &[4, 5, 6]);
    assert_eq!(m.read_u16(0x1ff).ok(), Some(0x0504));
    m.add(u64::MAX - 1, &[1, 2, 3]); // would wrap: ignored
    assert!(m.read_exact(u64::MAX, &mut [0u8; 1]).is_err());
}
