//! The ring record the agent writes for each traced call.
//!
//! Version 1, little-endian, [`RECORD_BYTES`] = 176 bytes, ring record kind
//! [`RECORD_KIND_CALL`]:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | version, 1 |
//! | 2 | 2 | flags: bit 0 = no return (written before the call; status and return TSC are 0); other bits 0 |
//! | 4 | 4 | function: index into the agent's list of hooked functions |
//! | 8 | 4 | thread id |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | status: RAX after the call (the NTSTATUS in the low 32 bits) |
//! | 24 | 8 | TSC at entry |
//! | 32 | 8 | TSC after the return |
//! | 40 | 136 | 17 arguments, 8 bytes each: RCX, RDX, R8, R9, then the stack slots |
//!
//! The payload comes from the traced process, so [`CallRecord::decode`]
//! checks length, version and flags and never panics.

use std::fmt;

/// The ring record kind of a call record.
pub const RECORD_KIND_CALL: u32 = 1;
/// The layout version this module writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Arguments per record: the most any Nt* function takes.
pub const RECORD_ARGS: usize = 17;
/// Payload bytes of a version-1 record.
pub const RECORD_BYTES: usize = 40 + 8 * RECORD_ARGS;
/// Flag bit: the record was written before a call that does not return.
pub const FLAG_NO_RETURN: u16 = 1;

/// One traced call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    pub function: u32,
    pub thread_id: u32,
    pub status: u64,
    pub no_return: bool,
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
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length(n) => write!(f, "call record of {n} bytes, expected {RECORD_BYTES}"),
            DecodeError::Version(v) => write!(f, "call record version {v}, expected {RECORD_VERSION}"),
            DecodeError::Flags(x) => write!(f, "call record with unknown flags {x:#x}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl CallRecord {
    /// The record's bytes. Plain stores into a stack array: no heap, so the
    /// agent can call it from inside a hook.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..2].copy_from_slice(&RECORD_VERSION.to_le_bytes());
        let flags = if self.no_return { FLAG_NO_RETURN } else { 0 };
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.function.to_le_bytes());
        b[8..12].copy_from_slice(&self.thread_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.status.to_le_bytes());
        b[24..32].copy_from_slice(&self.entry_tsc.to_le_bytes());
        b[32..40].copy_from_slice(&self.return_tsc.to_le_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            b[40 + 8 * i..48 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        b
    }

    /// Parses a payload written by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Result<CallRecord, DecodeError> {
        let b: &[u8; RECORD_BYTES] = bytes.try_into().map_err(|_| DecodeError::Length(bytes.len()))?;
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut q = [0u8; 8];
            q.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(q)
        };
        let version = u16_at(0);
        if version != RECORD_VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = u16_at(2);
        if flags & !FLAG_NO_RETURN != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let mut args = [0u64; RECORD_ARGS];
        for (i, arg) in args.iter_mut().enumerate() {
            *arg = u64_at(40 + 8 * i);
        }
        Ok(CallRecord {
            function: u32_at(4),
            thread_id: u32_at(8),
            status: u64_at(16),
            no_return: flags & FLAG_NO_RETURN != 0,
            entry_tsc: u64_at(24),
            return_tsc: u64_at(32),
            args,
        })
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
    }

    #[test]
    fn layout_is_little_endian_at_documented_offsets() {
        let b = sample().encode();
        assert_eq!(RECORD_BYTES, 176);
        assert_eq!(&b[0..4], &[1, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0x23, 0x01, 0, 0]);
        assert_eq!(&b[8..12], &[0x67, 0x45, 0, 0]);
        assert_eq!(&b[12..16], &[0; 4]);
        assert_eq!(&b[16..24], &[0x34, 0, 0, 0xc0, 0, 0, 0, 0]);
        assert_eq!(&b[24..26], &[0xe8, 0x03]);
        assert_eq!(&b[40..48], &[0; 8]);
        assert_eq!(&b[48..56], &[1, 0, 0, 0, 0, 0, 0x11, 0x11]);
        assert_eq!(b[RECORD_BYTES - 8], 16);
        let nr = CallRecord { no_return: true, ..sample() }.encode();
        assert_eq!(&nr[2..4], &[1, 0]);
    }

    #[test]
    fn decode_refuses_bad_length_version_and_flags() {
        let b = sample().encode();
        assert_eq!(CallRecord::decode(&b[..RECORD_BYTES - 1]), Err(DecodeError::Length(RECORD_BYTES - 1)));
        assert_eq!(CallRecord::decode(&[]), Err(DecodeError::Length(0)));
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(CallRecord::decode(&long), Err(DecodeError::Length(RECORD_BYTES + 1)));
        let mut v = b;
        v[0] = 2;
        assert_eq!(CallRecord::decode(&v), Err(DecodeError::Version(2)));
        let mut f = b;
        f[2] = 3;
        assert_eq!(CallRecord::decode(&f), Err(DecodeError::Flags(3)));
    }

    #[test]
    fn arbitrary_payloads_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 175, 176, 177, 400] {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = CallRecord::decode(&bytes);
            }
        }
    }
}
