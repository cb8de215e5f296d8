//! The ring record the agent writes for each traced call.
//!
//! Version 2, little-endian, ring record kind [`RECORD_KIND_CALL`]: a
//! [`HEADER_BYTES`] = 176-byte header, then the memory captured for the
//! call (see `winstrace_decode::capture`), as pieces.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | version, 2 |
//! | 2 | 2 | flags: bit 0 = no return (written before the call; status and return TSC are 0); bit 1 = the capture ran out of room; other bits 0 |
//! | 4 | 4 | function: index into the agent's list of hooked functions |
//! | 8 | 4 | thread id |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | status: RAX after the call (the NTSTATUS in the low 32 bits) |
//! | 24 | 8 | TSC at entry |
//! | 32 | 8 | TSC after the return |
//! | 40 | 136 | 17 arguments, 8 bytes each: RCX, RDX, R8, R9, then the stack slots |
//! | 176 | ... | pieces, to the end of the record |
//!
//! A piece is 16 bytes of header, address (8) and length (4, then 4
//! reserved bytes, 0), followed by that many bytes of target memory and
//! zero padding to a multiple of 8. Pieces may overlap.
//!
//! The payload comes from the traced process, so [`CallRecord::decode`]
//! checks length, version, flags and every piece, and never panics.

use std::fmt;
use std::mem::MaybeUninit;

use winstrace_decode::capture::{copy_from_pieces, held_in, CaptureSink};

/// The ring record kind of a call record: a call that returned (or, with
/// the no-return flag, one about to leave for good).
pub const RECORD_KIND_CALL: u32 = 1;
/// The ring record kind of a call's *entry* record: same layout, written
/// before the system call with the memory its in-parameters point to at
/// that time (no status, return TSC 0), for every returning call unless
/// nothing is captured (`-X raw`). The call's `RECORD_KIND_CALL` record
/// (same thread, same entry TSC) follows when it returns, with the memory
/// of its out- and in-out parameters only. The tracer skips any other kind.
pub const RECORD_KIND_ENTRY: u32 = 2;

/// The layout version this module writes and reads.
pub const RECORD_VERSION: u16 = 2;
/// Arguments per record: the most any Nt* function takes.
pub const RECORD_ARGS: usize = 17;
/// Bytes of a record's header, before its pieces.
pub const HEADER_BYTES: usize = 40 + 8 * RECORD_ARGS;
/// Bytes of a piece's header.
pub const PIECE_HEADER_BYTES: usize = 16;
/// Flag bit: the record was written before a call that does not return.
pub const FLAG_NO_RETURN: u16 = 1;
/// Flag bit: the capture ran out of room; some memory the decoders read
/// is missing and will show as unreadable.
pub const FLAG_CAPTURE_FULL: u16 = 2;

/// One traced call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    pub function: u32,
    pub thread_id: u32,
    pub status: u64,
    pub no_return: bool,
    pub capture_full: bool,
    pub entry_tsc: u64,
    pub return_tsc: u64,
    pub args: [u64; RECORD_ARGS],
}

/// Why a payload is not a call record this version understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Length(usize),
    Version(u16),
    Flags(u16),
    /// The piece at this offset runs past the record or is misaligned.
    Piece(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length(n) => write!(f, "call record of {n} bytes, shorter than its header"),
            DecodeError::Version(v) => write!(f, "call record version {v}, expected {RECORD_VERSION}"),
            DecodeError::Flags(x) => write!(f, "call record with unknown flags {x:#x}"),
            DecodeError::Piece(at) => write!(f, "call record with a malformed piece at offset {at}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut q = [0u8; 8];
    q.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(q)
}

/// Bytes a piece of `len` bytes of memory takes in a record.
fn piece_bytes(len: usize) -> usize {
    PIECE_HEADER_BYTES + len.div_ceil(8) * 8
}

impl CallRecord {
    /// Writes the record's header. Plain stores: no heap, so the agent can
    /// call it from inside a hook.
    pub fn encode_header(&self, b: &mut [u8; HEADER_BYTES]) {
        b.fill(0);
        b[0..2].copy_from_slice(&RECORD_VERSION.to_le_bytes());
        let flags = if self.no_return { FLAG_NO_RETURN } else { 0 }
            | if self.capture_full { FLAG_CAPTURE_FULL } else { 0 };
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.function.to_le_bytes());
        b[8..12].copy_from_slice(&self.thread_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.status.to_le_bytes());
        b[24..32].copy_from_slice(&self.entry_tsc.to_le_bytes());
        b[32..40].copy_from_slice(&self.return_tsc.to_le_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            b[40 + 8 * i..48 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
    }

    /// A record with no pieces.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        self.encode_header(&mut b);
        b
    }

    /// Parses a record's header and checks its pieces (see [`pieces`]).
    pub fn decode(bytes: &[u8]) -> Result<CallRecord, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::Length(bytes.len()));
        }
        let version = u16::from_le_bytes([bytes[0], bytes[1]]);
        if version != RECORD_VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = u16::from_le_bytes([bytes[2], bytes[3]]);
        if flags & !(FLAG_NO_RETURN | FLAG_CAPTURE_FULL) != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let mut at = HEADER_BYTES;
        while at < bytes.len() {
            let fits = bytes.len() - at >= PIECE_HEADER_BYTES
                && bytes.len() - at >= piece_bytes(u32_at(bytes, at + 8) as usize);
            if !fits {
                return Err(DecodeError::Piece(at));
            }
            at += piece_bytes(u32_at(bytes, at + 8) as usize);
        }
        let mut args = [0u64; RECORD_ARGS];
        for (i, arg) in args.iter_mut().enumerate() {
            *arg = u64_at(bytes, 40 + 8 * i);
        }
        Ok(CallRecord {
            function: u32_at(bytes, 4),
            thread_id: u32_at(bytes, 8),
            status: u64_at(bytes, 16),
            no_return: flags & FLAG_NO_RETURN != 0,
            capture_full: flags & FLAG_CAPTURE_FULL != 0,
            entry_tsc: u64_at(bytes, 24),
            return_tsc: u64_at(bytes, 32),
            args,
        })
    }
}

/// The pieces of a record (address, bytes), in the order they were
/// captured; stops at the first malformed one ([`CallRecord::decode`]
/// refuses records that have one).
pub fn pieces(record: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut at = HEADER_BYTES.min(record.len());
    std::iter::from_fn(move || {
        let rest = record.len() - at;
        if rest < PIECE_HEADER_BYTES {
            return None;
        }
        let len = u32_at(record, at + 8) as usize;
        if rest < piece_bytes(len) {
            return None;
        }
        let piece = (u64_at(record, at), &record[at + PIECE_HEADER_BYTES..at + PIECE_HEADER_BYTES + len]);
        at += piece_bytes(len);
        Some(piece)
    })
}

/// Builds a record in a caller's buffer (on the agent's stack): the memory
/// a capture plan asks for goes in as pieces, read by `read` (which copies
/// the readable start of a range and says how many bytes it copied), then
/// [`finish`](Self::finish) writes the header. Allocates nothing.
///
/// The buffer may start uninitialised: the agent builds two records per
/// call in an 8 KiB buffer, and zeroing it whole each time was a visible
/// share of a call's cost. The writer initialises the header and each
/// piece as it goes, and only ever reads what it has written.
pub struct RecordWriter<'b, R: FnMut(u64, &mut [u8]) -> usize> {
    buf: &'b mut [MaybeUninit<u8>],
    /// Bytes written: `buf[..len]` is initialised.
    len: usize,
    read: R,
    full: bool,
    /// The first pieces, as (address, offset of their bytes, length): the
    /// capture walk looks into them several times per record, and this
    /// spares it parsing the pieces again each time.
    index: [(u64, u32, u32); INDEXED_PIECES],
    /// Pieces written (those past [`INDEXED_PIECES`] are not indexed).
    pieces: usize,
}

/// Pieces a [`RecordWriter`] indexes; a record with more is searched by
/// parsing its pieces.
const INDEXED_PIECES: usize = 16;

impl<'b, R: FnMut(u64, &mut [u8]) -> usize> RecordWriter<'b, R> {
    /// A writer over `buf`, which must hold at least a header.
    pub fn new(buf: &'b mut [MaybeUninit<u8>], read: R) -> Option<RecordWriter<'b, R>> {
        if buf.len() < HEADER_BYTES {
            return None;
        }
        let mut writer =
            RecordWriter { buf, len: 0, read, full: false, index: [(0, 0, 0); INDEXED_PIECES], pieces: 0 };
        writer.zero(HEADER_BYTES);
        Some(writer)
    }

    /// Appends `n` zero bytes.
    fn zero(&mut self, n: usize) {
        for byte in &mut self.buf[self.len..self.len + n] {
            byte.write(0);
        }
        self.len += n;
    }

    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) {
        for (slot, &byte) in self.buf[self.len..self.len + bytes.len()].iter_mut().zip(bytes) {
            slot.write(byte);
        }
        self.len += bytes.len();
    }

    /// The bytes written so far.
    fn written(&self) -> &[u8] {
        // SAFETY: `buf[..len]` has been written (`new`, `zero`, `put`,
        // `capture`), and `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    /// Writes the header of `call` (with the capture-full flag if the
    /// pieces did not all fit) and returns the whole record.
    pub fn finish(self, call: &CallRecord) -> &'b [u8] {
        let call = CallRecord { capture_full: self.full, ..*call };
        let len = self.len;
        // SAFETY: as in `written`; the reference takes over the writer's
        // borrow of the buffer for `'b`.
        let record = unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), len) };
        let header: &mut [u8; HEADER_BYTES] =
            (&mut record[..HEADER_BYTES]).try_into().expect("checked in new");
        call.encode_header(header);
        record
    }

    /// The pieces written so far, from the index.
    fn indexed(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let written = self.written();
        self.index[..self.pieces.min(INDEXED_PIECES)]
            .iter()
            .map(move |&(address, at, len)| (address, &written[at as usize..at as usize + len as usize]))
    }

    /// How many bytes from `address` on the pieces so far hold.
    fn held(&self, address: u64) -> usize {
        if self.pieces <= INDEXED_PIECES {
            held_in(self.indexed(), address)
        } else {
            held_in(pieces(self.written()), address)
        }
    }
}

impl<R: FnMut(u64, &mut [u8]) -> usize> CaptureSink for RecordWriter<'_, R> {
    fn capture(&mut self, address: u64, len: usize) -> usize {
        let held = self.held(address);
        if held >= len {
            return len;
        }
        let room = (self.buf.len() - self.len).saturating_sub(PIECE_HEADER_BYTES) / 8 * 8;
        let want = len.min(room).min(u32::MAX as usize);
        if want < len {
            self.full = true;
        }
        if want <= held {
            return held;
        }
        let data = self.len + PIECE_HEADER_BYTES;
        // Only the bytes the read may fill are zeroed first, not the buffer.
        let target = &mut self.buf[data..data + want];
        for byte in target.iter_mut() {
            byte.write(0);
        }
        // SAFETY: just initialised, and `MaybeUninit<u8>` has the layout
        // of `u8`.
        let target = unsafe { std::slice::from_raw_parts_mut(target.as_mut_ptr().cast::<u8>(), want) };
        let got = (self.read)(address, target).min(want);
        if got <= held {
            return held;
        }
        self.put(&address.to_le_bytes());
        self.put(&(got as u32).to_le_bytes());
        self.zero(4);
        // The piece's bytes are in place; pad them to a multiple of 8.
        if let Some(entry) = self.index.get_mut(self.pieces) {
            *entry = (address, data as u32, got as u32);
        }
        self.pieces += 1;
        self.len += got;
        self.zero(piece_bytes(got) - PIECE_HEADER_BYTES - got);
        got
    }

    fn read_captured(&self, address: u64, buf: &mut [u8]) -> bool {
        if self.pieces <= INDEXED_PIECES {
            copy_from_pieces(self.indexed(), address, buf)
        } else {
            copy_from_pieces(pieces(self.written()), address, buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CallRecord {
        let mut args = [0u64; RECORD_ARGS];
        for (i, a) in args.iter_mut().enumerate() {
            *a = 0x1111_0000_0000_0000 * (i as u64 % 3) + i as u64;
        }
        CallRecord {
            function: 0x123,
            thread_id: 0x4567,
            status: 0xc000_0034,
            no_return: false,
            capture_full: false,
            entry_tsc: 1_000,
            return_tsc: 2_500,
            args,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(CallRecord::decode(&r.encode()), Ok(r));
        let nr = CallRecord { no_return: true, status: 0, return_tsc: 0, ..r };
        assert_eq!(CallRecord::decode(&nr.encode()), Ok(nr));
        let full = CallRecord { capture_full: true, ..r };
        assert_eq!(CallRecord::decode(&full.encode()), Ok(full));
    }

    #[test]
    fn layout_is_little_endian_at_documented_offsets() {
        let b = sample().encode();
        assert_eq!(HEADER_BYTES, 176);
        assert_eq!(&b[0..4], &[2, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0x23, 0x01, 0, 0]);
        assert_eq!(&b[8..12], &[0x67, 0x45, 0, 0]);
        assert_eq!(&b[12..16], &[0; 4]);
        assert_eq!(&b[16..24], &[0x34, 0, 0, 0xc0, 0, 0, 0, 0]);
        assert_eq!(&b[24..26], &[0xe8, 0x03]);
        assert_eq!(&b[40..48], &[0; 8]);
        assert_eq!(&b[48..56], &[1, 0, 0, 0, 0, 0, 0x11, 0x11]);
        assert_eq!(b[HEADER_BYTES - 8], 16);
        let nr = CallRecord { no_return: true, capture_full: true, ..sample() }.encode();
        assert_eq!(&nr[2..4], &[3, 0]);
    }

    /// Memory readable at [0x1000, 0x2000): byte = low byte of its address.
    fn fake_read(address: u64, out: &mut [u8]) -> usize {
        let mut n = 0;
        for (i, b) in out.iter_mut().enumerate() {
            let a = address + i as u64;
            if !(0x1000..0x2000).contains(&a) {
                break;
            }
            *b = a as u8;
            n += 1;
        }
        n
    }

    #[test]
    fn a_writer_captures_pieces_once_and_stops_at_unreadable_memory() {
        let mut buf = [MaybeUninit::new(0xeeu8); 512];
        let mut w = RecordWriter::new(&mut buf, fake_read).unwrap();
        assert_eq!(w.capture(0x1010, 5), 5);
        assert_eq!(w.capture(0x1011, 3), 3, "held already");
        let mut b = [0u8; 3];
        assert!(w.read_captured(0x1012, &mut b));
        assert_eq!(b, [0x12, 0x13, 0x14]);
        assert!(!w.read_captured(0x1013, &mut [0u8; 3]));
        assert_eq!(w.capture(0x1ffc, 16), 4, "up to the end of readable memory");
        assert_eq!(w.capture(0x3000, 8), 0);
        let record = w.finish(&sample());
        assert_eq!(record.len(), HEADER_BYTES + 2 * (PIECE_HEADER_BYTES + 8));
        let decoded = CallRecord::decode(record).unwrap();
        assert!(!decoded.capture_full);
        let got: Vec<(u64, Vec<u8>)> = pieces(record).map(|(a, b)| (a, b.to_vec())).collect();
        assert_eq!(
            got,
            vec![(0x1010, vec![0x10, 0x11, 0x12, 0x13, 0x14]), (0x1ffc, vec![0xfc, 0xfd, 0xfe, 0xff])]
        );
    }

    #[test]
    fn pieces_past_the_index_are_found_too() {
        let mut buf = [MaybeUninit::uninit(); 2048];
        let mut w = RecordWriter::new(&mut buf, fake_read).unwrap();
        let count = INDEXED_PIECES as u64 + 4;
        for i in 0..count {
            assert_eq!(w.capture(0x1000 + 0x20 * i, 4), 4);
        }
        for i in [0, INDEXED_PIECES as u64 - 1, INDEXED_PIECES as u64, count - 1] {
            let at = 0x1000 + 0x20 * i;
            assert_eq!(w.capture(at + 1, 3), 3, "piece {i} held already");
            let mut b = [0u8; 2];
            assert!(w.read_captured(at + 2, &mut b), "piece {i}");
            assert_eq!(b, [(at + 2) as u8, (at + 3) as u8]);
            assert!(!w.read_captured(at + 3, &mut b), "piece {i} ends at 4 bytes");
        }
        let record = w.finish(&sample());
        assert_eq!(pieces(record).count() as u64, count);
    }

    #[test]
    fn a_full_writer_says_so() {
        let mut buf = [MaybeUninit::uninit(); HEADER_BYTES + 40];
        let mut w = RecordWriter::new(&mut buf, fake_read).unwrap();
        assert_eq!(w.capture(0x1000, 100), 24);
        assert_eq!(w.capture(0x1100, 1), 0);
        let record = w.finish(&sample());
        assert_eq!(record.len(), HEADER_BYTES + 40);
        assert!(CallRecord::decode(record).unwrap().capture_full);
        assert!(RecordWriter::new(&mut [MaybeUninit::uninit(); 10], fake_read).is_none());
    }

    #[test]
    fn decode_refuses_bad_length_version_flags_and_pieces() {
        let b = sample().encode();
        assert_eq!(CallRecord::decode(&b[..HEADER_BYTES - 1]), Err(DecodeError::Length(HEADER_BYTES - 1)));
        assert_eq!(CallRecord::decode(&[]), Err(DecodeError::Length(0)));
        let mut v = b;
        v[0] = 1;
        assert_eq!(CallRecord::decode(&v), Err(DecodeError::Version(1)));
        let mut f = b;
        f[2] = 7;
        assert_eq!(CallRecord::decode(&f), Err(DecodeError::Flags(7)));
        // A piece header cut short, and a piece longer than the record.
        let mut long = b.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert_eq!(CallRecord::decode(&long), Err(DecodeError::Piece(HEADER_BYTES)));
        let mut lying = b.to_vec();
        lying.extend_from_slice(&0x1000u64.to_le_bytes());
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        lying.extend_from_slice(&[0; 12]);
        assert_eq!(CallRecord::decode(&lying), Err(DecodeError::Piece(HEADER_BYTES)));
        assert_eq!(pieces(&lying).count(), 0);
    }

    #[test]
    fn arbitrary_payloads_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 175, 176, 177, 192, 200, 400] {
            for _ in 0..500 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if bytes.len() >= 4 {
                    bytes[0] = 2;
                    bytes[1] = 0;
                    bytes[2] &= 3;
                    bytes[3] = 0;
                }
                let _ = CallRecord::decode(&bytes);
                let _ = pieces(&bytes).count();
            }
        }
    }
}
