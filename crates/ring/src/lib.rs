//! A shared-memory ring buffer for the in-process engine.
//!
//! The agent injected into the traced process writes one record per traced
//! call; the tracer reads them. Both sides work over the same region of
//! `u64` words (a file mapping on Windows, a `Box<[AtomicU64]>` in tests):
//! a fixed header followed by the data area. Everything in the region is an
//! offset or a count, never a pointer, so each process may map it at a
//! different address.
//!
//! - Producers ([`RingRef::write`]) are lock-free: they reserve space by a
//!   compare-exchange on the write cursor, fill it, then publish the record
//!   by storing its header word with `Release`. When the ring is full they
//!   wait (spin, then a caller-supplied callback) and drop nothing, unless
//!   the consumer is gone: then they count the record in the header's
//!   `lost` counter and return an error.
//! - The single consumer ([`Reader`]) treats every byte of the region as
//!   hostile, since the traced process can scribble over it: every cursor
//!   and length is checked, and garbage gives a [`RingError`], never a
//!   panic, an out-of-bounds access or an endless loop.
//!
//! See README.md for the layout and the protocol. The crate has no
//! `unsafe`: the region is only ever accessed through atomics.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// "wsRING" plus two zero bytes, read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"wsRING\0\0");
/// Version of the layout and protocol; bumped on any incompatible change.
pub const VERSION: u32 = 1;
/// Size of the header in bytes: three 64-byte cache lines, so that the
/// producers' write cursor and the consumer's read cursor do not share a
/// line with each other or with the mostly-read fields.
pub const HEADER_BYTES: usize = 192;
/// Size of the header in `u64` words.
pub const HEADER_WORDS: usize = HEADER_BYTES / 8;
/// Smallest data area: one record header plus one payload word.
pub const MIN_CAPACITY: u64 = 16;
/// Largest payload one record can carry (the record header has 31 bits for
/// it); the capacity may limit it further, see [`RingRef::max_payload`].
pub const MAX_PAYLOAD: usize = (1 << 31) - 1;

// Word indexes of the header fields (see README.md).
const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_ALIVE: usize = 3;
const W_LOST: usize = 4;
const W_WRITE: usize = 8;
const W_READ: usize = 16;

/// Value of the `consumer_alive` word while the tracer reads the ring;
/// anything else means the consumer is gone.
const ALIVE: u64 = 1;

/// Bit 63 of a record header: the record is complete. A header slot that a
/// producer has reserved but not yet published holds 0 (the consumer zeroes
/// everything it consumes), so a non-zero word without this bit is garbage.
const COMMITTED: u64 = 1 << 63;
const LEN_SHIFT: u32 = 32;
const LEN_MASK: u64 = (1 << 31) - 1;

/// Spins before each call to the caller's wait callback starts.
const SPINS_BEFORE_WAIT: u32 = 64;

/// Errors of [`Ring::init`], [`Ring::attach`] and [`Reader::next`]: a region
/// or a record that does not follow the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// The region is shorter than the header plus the data area.
    RegionTooSmall { words_needed: u64, words_available: usize },
    /// The capacity is not a multiple of 8 or is below [`MIN_CAPACITY`].
    BadCapacity(u64),
    /// The header does not start with [`MAGIC`].
    BadMagic(u64),
    /// The version word is not ours (layout version and header size).
    BadVersion(u64),
    /// The cursors contradict each other or the capacity: the read cursor
    /// is past the write cursor, more than `capacity` bytes are in flight,
    /// a cursor is not 8-byte aligned, or the consumer's cursor was moved
    /// behind its back.
    BadCursors { read: u64, write: u64 },
    /// A record header is neither 0 (not yet published) nor committed.
    BadRecordHeader { position: u64, header: u64 },
    /// A record claims more bytes than have been reserved after it.
    RecordTooLong { position: u64, payload_len: u64, reserved: u64 },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::RegionTooSmall { words_needed, words_available } => {
                write!(f, "ring region too small: {words_needed} words needed, {words_available} available")
            }
            RingError::BadCapacity(c) => {
                write!(f, "bad ring capacity {c}: must be a multiple of 8 and at least {MIN_CAPACITY}")
            }
            RingError::BadMagic(m) => write!(f, "not a winstrace ring (magic {m:#018x})"),
            RingError::BadVersion(v) => write!(f, "unsupported ring version word {v:#x}"),
            RingError::BadCursors { read, write } => {
                write!(f, "inconsistent ring cursors: read {read}, write {write}")
            }
            RingError::BadRecordHeader { position, header } => {
                write!(f, "bad record header {header:#018x} at ring position {position}")
            }
            RingError::RecordTooLong { position, payload_len, reserved } => write!(
                f,
                "record at ring position {position} claims {payload_len} payload bytes \
                 but only {reserved} bytes are reserved"
            ),
        }
    }
}

impl std::error::Error for RingError {}

/// Errors of [`RingRef::write`]. Every one of them means the record was not
/// written, and every one has been counted in the ring's `lost` counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The payload can never fit: it is longer than [`RingRef::max_payload`].
    TooLarge { len: usize, max: usize },
    /// The ring was full and the consumer has declared itself gone.
    ConsumerGone,
    /// The header's cursors are inconsistent (someone overwrote them).
    Corrupt { read: u64, write: u64 },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::TooLarge { len, max } => {
                write!(f, "record payload of {len} bytes exceeds the ring's maximum of {max}")
            }
            WriteError::ConsumerGone => write!(f, "ring full and its consumer is gone"),
            WriteError::Corrupt { read, write } => {
                write!(f, "ring cursors corrupt: read {read}, write {write}")
            }
        }
    }
}

impl std::error::Error for WriteError {}

/// Creating and attaching rings; all state lives in the region itself.
pub struct Ring;

impl Ring {
    /// Words a region needs for a data area of `capacity_bytes` (header
    /// included), or `None` if that does not fit in `usize`.
    pub fn region_words(capacity_bytes: u64) -> Option<usize> {
        usize::try_from(capacity_bytes / 8).ok()?.checked_add(HEADER_WORDS)
    }

    /// A zeroed, heap-allocated region for `capacity_bytes` (for tests and
    /// for same-process use; the engine maps a file instead). `None` if the
    /// size does not fit in `usize`.
    pub fn alloc_region(capacity_bytes: u64) -> Option<Box<[AtomicU64]>> {
        let words = Ring::region_words(capacity_bytes)?;
        Some((0..words).map(|_| AtomicU64::new(0)).collect())
    }

    /// Formats `region` as an empty ring with a data area of
    /// `capacity_bytes` (a multiple of 8, at least [`MIN_CAPACITY`]) and
    /// marks the consumer alive: the tracer creates the ring and is its
    /// consumer. Words past the data area are left alone.
    ///
    /// Call this before any producer can see the region: it is not safe
    /// against concurrent writers (it resets the cursors).
    pub fn init(region: &[AtomicU64], capacity_bytes: u64) -> Result<RingRef<'_>, RingError> {
        if capacity_bytes % 8 != 0 || capacity_bytes < MIN_CAPACITY {
            return Err(RingError::BadCapacity(capacity_bytes));
        }
        let words = Ring::region_words(capacity_bytes).filter(|&w| w <= region.len()).ok_or(
            RingError::RegionTooSmall {
                words_needed: capacity_bytes / 8 + HEADER_WORDS as u64,
                words_available: region.len(),
            },
        )?;
        // Zero the magic first so that a concurrent attach cannot accept a
        // half-initialised header, then everything else.
        region[W_MAGIC].store(0, Ordering::Relaxed);
        for w in &region[1..words] {
            w.store(0, Ordering::Relaxed);
        }
        region[W_VERSION].store(version_word(), Ordering::Relaxed);
        region[W_CAPACITY].store(capacity_bytes, Ordering::Relaxed);
        region[W_ALIVE].store(ALIVE, Ordering::Relaxed);
        // Release: whoever reads the magic with Acquire sees all the above.
        region[W_MAGIC].store(MAGIC, Ordering::Release);
        Ring::attach(region)
    }

    /// Validates the header of an initialised region and returns a handle
    /// on it. The capacity is read once here; later changes to the header's
    /// capacity word are ignored, so it cannot be used to push accesses
    /// out of the region.
    pub fn attach(region: &[AtomicU64]) -> Result<RingRef<'_>, RingError> {
        if region.len() < HEADER_WORDS {
            return Err(RingError::RegionTooSmall {
                words_needed: HEADER_WORDS as u64,
                words_available: region.len(),
            });
        }
        let magic = region[W_MAGIC].load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(RingError::BadMagic(magic));
        }
        let version = region[W_VERSION].load(Ordering::Relaxed);
        if version != version_word() {
            return Err(RingError::BadVersion(version));
        }
        let capacity = region[W_CAPACITY].load(Ordering::Relaxed);
        if capacity % 8 != 0 || capacity < MIN_CAPACITY {
            return Err(RingError::BadCapacity(capacity));
        }
        let words =
            Ring::region_words(capacity).filter(|&w| w <= region.len()).ok_or(RingError::RegionTooSmall {
                words_needed: (capacity / 8).saturating_add(HEADER_WORDS as u64),
                words_available: region.len(),
            })?;
        Ok(RingRef { header: &region[..HEADER_WORDS], data: &region[HEADER_WORDS..words], capacity })
    }
}

/// The version word: layout version in the low half, header size in the
/// high half, so that a layout change that forgets the version bump but
/// moves the data area is still caught.
fn version_word() -> u64 {
    u64::from(VERSION) | (HEADER_BYTES as u64) << 32
}

/// Bytes a record with `payload_len` payload bytes occupies: the header
/// word plus the payload rounded up to whole words.
fn record_bytes(payload_len: u64) -> Option<u64> {
    payload_len.div_ceil(8).checked_mul(8)?.checked_add(8)
}

/// A handle on an attached ring: cheap to copy, shareable between threads
/// (everything goes through atomics).
#[derive(Clone, Copy)]
pub struct RingRef<'a> {
    header: &'a [AtomicU64],
    /// Exactly `capacity / 8` words.
    data: &'a [AtomicU64],
    capacity: u64,
}

impl fmt::Debug for RingRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingRef")
            .field("capacity", &self.capacity)
            .field("write", &self.write_position())
            .field("read", &self.read_position())
            .field("lost", &self.lost_records())
            .field("consumer_alive", &self.consumer_alive())
            .finish()
    }
}

impl<'a> RingRef<'a> {
    /// Size of the data area in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Largest payload [`write`](Self::write) accepts: the whole data area
    /// minus the record header, capped at [`MAX_PAYLOAD`].
    pub fn max_payload(&self) -> usize {
        usize::try_from(self.capacity - 8).unwrap_or(usize::MAX).min(MAX_PAYLOAD)
    }

    /// Records producers gave up on (too large, consumer gone, corrupt
    /// header), as counted in the header. Untrusted like the rest of the
    /// region, but a plain number.
    pub fn lost_records(&self) -> u64 {
        self.header[W_LOST].load(Ordering::Relaxed)
    }

    /// Whether the consumer has declared itself alive.
    pub fn consumer_alive(&self) -> bool {
        self.header[W_ALIVE].load(Ordering::Acquire) == ALIVE
    }

    /// Declares the consumer alive or gone. The tracer clears it when it
    /// stops reading (detach, shutdown) so that producers blocked on a full
    /// ring give up instead of waiting forever. `Release` so that a
    /// producer seeing "gone" also sees what the consumer did before.
    pub fn set_consumer_alive(&self, alive: bool) {
        self.header[W_ALIVE].store(if alive { ALIVE } else { 0 }, Ordering::Release);
    }

    /// Bytes reserved by producers since the ring was created (write cursor).
    pub fn write_position(&self) -> u64 {
        self.header[W_WRITE].load(Ordering::Relaxed)
    }

    /// Bytes consumed since the ring was created (read cursor).
    pub fn read_position(&self) -> u64 {
        self.header[W_READ].load(Ordering::Relaxed)
    }

    fn count_lost(&self) {
        self.header[W_LOST].fetch_add(1, Ordering::Relaxed);
    }

    /// Index in `data` of the word at byte position `pos` (a multiple of 8).
    fn word_index(&self, pos: u64) -> usize {
        // The remainder is below capacity / 8 == data.len(), so it fits.
        ((pos / 8) % (self.capacity / 8)) as usize
    }

    /// Appends one record. Lock-free and allocation-free: safe to call from
    /// any number of threads (and processes) at once.
    ///
    /// If the ring is full this waits until the consumer frees space:
    /// `std::hint::spin_loop` for a short while, then `wait()` between
    /// retries (sleep, yield, or anything the agent deems fit; it may also
    /// call [`set_consumer_alive(false)`](Self::set_consumer_alive) to give
    /// up, e.g. after a timeout). It only gives up when the consumer is
    /// gone; every record not written is counted in
    /// [`lost_records`](Self::lost_records).
    pub fn write(&self, kind: u32, payload: &[u8], wait: &mut dyn FnMut()) -> Result<(), WriteError> {
        let max = self.max_payload();
        if payload.len() > max {
            self.count_lost();
            return Err(WriteError::TooLarge { len: payload.len(), max });
        }
        // Cannot fail: payload.len() <= capacity - 8.
        let need = record_bytes(payload.len() as u64).unwrap_or(u64::MAX);
        let write_cur = &self.header[W_WRITE];
        let read_cur = &self.header[W_READ];
        let mut spins = 0u32;
        let start = loop {
            // The read cursor first, with Acquire: the space it frees was
            // zeroed by the consumer before it moved the cursor (Release),
            // and those zeroes must not land after our own stores. Loading
            // it before the write cursor also guarantees read <= write for
            // honest parties (the consumer never passes a write cursor it
            // has seen).
            let read = read_cur.load(Ordering::Acquire);
            let write = write_cur.load(Ordering::Relaxed);
            let corrupt = WriteError::Corrupt { read, write };
            let Some(used) = write.checked_sub(read).filter(|_| read % 8 == 0 && write % 8 == 0) else {
                self.count_lost();
                return Err(corrupt);
            };
            if used > self.capacity {
                // Honest parties never have more than `capacity` bytes in
                // flight, but the consumer may have advanced between our
                // two loads. If it has not, the cursors are garbage.
                if read_cur.load(Ordering::Acquire) == read {
                    self.count_lost();
                    return Err(corrupt);
                }
                continue;
            }
            if self.capacity - used >= need {
                let Some(end) = write.checked_add(need) else {
                    self.count_lost();
                    return Err(corrupt);
                };
                // Relaxed: the reservation publishes nothing; the record's
                // content is published by its header store below.
                match write_cur.compare_exchange_weak(write, end, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => break write,
                    Err(_) => continue,
                }
            }
            // Full: wait for the consumer, unless it is gone.
            if !self.consumer_alive() {
                self.count_lost();
                return Err(WriteError::ConsumerGone);
            }
            if spins < SPINS_BEFORE_WAIT {
                spins += 1;
                std::hint::spin_loop();
            } else {
                wait();
            }
        };

        // [start, start + need) is ours. Payload first (Relaxed: nobody
        // reads it before the header says so), little-endian words, the
        // last one zero-padded; the record may wrap past the end.
        let first = self.word_index(start);
        let mut idx = first;
        let mut chunks = payload.chunks_exact(8);
        for chunk in &mut chunks {
            idx = self.next_index(idx);
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            self.data[idx].store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            idx = self.next_index(idx);
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.data[idx].store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        // Publish: Release makes the payload visible to the consumer's
        // Acquire load of this header.
        let header = COMMITTED | (payload.len() as u64) << LEN_SHIFT | u64::from(kind);
        self.data[first].store(header, Ordering::Release);
        Ok(())
    }

    fn next_index(&self, idx: usize) -> usize {
        if idx + 1 == self.data.len() {
            0
        } else {
            idx + 1
        }
    }

    /// The consumer side. There must be at most one reader at a time (the
    /// tracer's); it resumes at the shared read cursor, which must be
    /// consistent with the write cursor.
    pub fn reader(&self) -> Result<Reader<'a>, RingError> {
        // Acquire: a previous reader (perhaps in another process) zeroed
        // what it consumed before moving the cursor; we rely on those zeroes.
        let read = self.header[W_READ].load(Ordering::Acquire);
        let write = self.header[W_WRITE].load(Ordering::Acquire);
        check_cursors(read, write, self.capacity)?;
        Ok(Reader { ring: *self, pos: read, scratch: Vec::new() })
    }
}

fn check_cursors(read: u64, write: u64, capacity: u64) -> Result<u64, RingError> {
    write
        .checked_sub(read)
        .filter(|&used| used <= capacity && read % 8 == 0 && write % 8 == 0)
        .ok_or(RingError::BadCursors { read, write })
}

/// One record, copied out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'r> {
    /// Byte position of the record in the stream (its read cursor value).
    pub position: u64,
    /// The producer's record kind.
    pub kind: u32,
    /// The payload, exactly as long as the producer wrote it.
    pub payload: &'r [u8],
}

/// The consumer: reads records in reservation order, copying each payload
/// into its own buffer before releasing the space to the producers.
pub struct Reader<'a> {
    ring: RingRef<'a>,
    /// Our read cursor. Only we move the shared one, so we keep our own
    /// copy and do not trust the shared word after `reader()` checked it.
    pos: u64,
    scratch: Vec<u8>,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").field("ring", &self.ring).field("pos", &self.pos).finish()
    }
}

impl<'a> Reader<'a> {
    /// The ring this reader consumes.
    pub fn ring(&self) -> RingRef<'a> {
        self.ring
    }

    /// Records lost by producers so far (see [`RingRef::lost_records`]).
    pub fn lost_records(&self) -> u64 {
        self.ring.lost_records()
    }

    /// The next record, `Ok(None)` if none is complete yet (the ring is
    /// empty, or the oldest reservation is still being written), or an
    /// error if the region breaks the protocol. Never blocks. After an
    /// error the reader stays where it was: calling again gives the same
    /// error until the bytes change.
    // Not an `Iterator`: the record borrows the reader's buffer, which an
    // iterator's items cannot do, and errors are not the end of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, RingError> {
        let ring = self.ring;
        let pos = self.pos;
        // Acquire pairs with nothing in particular (record contents are
        // published by their headers), but keeps this load before the
        // header load below.
        let write = ring.header[W_WRITE].load(Ordering::Acquire);
        let reserved = check_cursors(pos, write, ring.capacity)?;
        if reserved == 0 {
            return Ok(None);
        }
        let first = ring.word_index(pos);
        // Acquire pairs with the producer's Release store of the header:
        // the payload words are visible after it.
        let header = ring.data[first].load(Ordering::Acquire);
        if header == 0 {
            // Reserved, not yet published.
            return Ok(None);
        }
        if header & COMMITTED == 0 {
            return Err(RingError::BadRecordHeader { position: pos, header });
        }
        let payload_len = (header >> LEN_SHIFT) & LEN_MASK;
        // `reserved <= capacity`, so `need <= reserved` bounds every access
        // below by the data area (modulo its length) and the zeroing by
        // `capacity` bytes.
        let need = record_bytes(payload_len).filter(|&n| n <= reserved).ok_or(RingError::RecordTooLong {
            position: pos,
            payload_len,
            reserved,
        })?;
        // Fits: payload_len < need <= capacity, which indexes the region.
        let len = payload_len as usize;
        self.scratch.clear();
        self.scratch.reserve(len);
        let mut idx = first;
        let mut left = len;
        while left > 0 {
            idx = ring.next_index(idx);
            let bytes = ring.data[idx].load(Ordering::Relaxed).to_le_bytes();
            let take = left.min(8);
            self.scratch.extend_from_slice(&bytes[..take]);
            left -= take;
        }
        // Zero the whole record so that a later reservation over this space
        // finds 0 in its header slot until its producer publishes, then
        // release the space. Release: producers load the read cursor with
        // Acquire before writing here, so our zeroes come first.
        let mut idx = first;
        for _ in 0..need / 8 {
            ring.data[idx].store(0, Ordering::Relaxed);
            idx = ring.next_index(idx);
        }
        self.pos = pos + need;
        ring.header[W_READ].store(self.pos, Ordering::Release);
        Ok(Some(Record { position: pos, kind: header as u32, payload: &self.scratch }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_stable() {
        let region = Ring::alloc_region(64).unwrap();
        assert_eq!(region.len(), HEADER_WORDS + 8);
        Ring::init(&region, 64).unwrap();
        assert_eq!(region[0].load(Ordering::Relaxed), MAGIC);
        assert_eq!(region[1].load(Ordering::Relaxed), 1 | 192 << 32);
        assert_eq!(region[2].load(Ordering::Relaxed), 64);
        assert_eq!(region[3].load(Ordering::Relaxed), 1);
        assert_eq!(&MAGIC.to_le_bytes(), b"wsRING\0\0");
    }

    #[test]
    fn record_encoding() {
        let region = Ring::alloc_region(64).unwrap();
        let ring = Ring::init(&region, 64).unwrap();
        ring.write(0xdead_beef, &[1, 2, 3, 4, 5, 6, 7, 8, 9], &mut || {}).unwrap();
        let d = &region[HEADER_WORDS..];
        assert_eq!(d[0].load(Ordering::Relaxed), 1 << 63 | 9 << 32 | 0xdead_beef);
        assert_eq!(d[1].load(Ordering::Relaxed), u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(d[2].load(Ordering::Relaxed), 9);
        assert_eq!(ring.write_position(), 24);
        let mut r = ring.reader().unwrap();
        let rec = r.next().unwrap().unwrap();
        assert_eq!((rec.position, rec.kind, rec.payload), (0, 0xdead_beef, &[1, 2, 3, 4, 5, 6, 7, 8, 9][..]));
        // Consumed space is zeroed.
        assert!(d.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        assert_eq!(ring.read_position(), 24);
    }

    #[test]
    fn init_rejects_bad_sizes() {
        let region = Ring::alloc_region(64).unwrap();
        assert_eq!(Ring::init(&region, 12).unwrap_err(), RingError::BadCapacity(12));
        assert_eq!(Ring::init(&region, 8).unwrap_err(), RingError::BadCapacity(8));
        assert!(matches!(Ring::init(&region, 72), Err(RingError::RegionTooSmall { .. })));
        assert!(Ring::init(&region, 16).is_ok());
    }
}
