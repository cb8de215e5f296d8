//! Reading the target's memory: the one door decoders go through.
//!
//! The debugger engine implements [`TargetMemory`] over the live, stopped
//! process (ReadProcessMemory). An in-process engine implements it over the
//! bytes its agent captured at call time. Tests implement it over byte
//! images ([`MemoryImage`]). Decoders never learn which one they read.

use std::fmt;

/// Why a read failed. Reads of target memory fail routinely (bad pointers
/// are part of what a tracer shows), so this is a value, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable {
    pub address: u64,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} (unreadable)", self.address)
    }
}

impl std::error::Error for Unreadable {}

pub trait TargetMemory {
    /// Fills `buf` from `address` onward. Either all of `buf` is read or
    /// nothing is promised about its content and the call fails.
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable>;

    /// Reads up to `buf.len()` bytes, stopping at the first unreadable byte;
    /// returns how many were read. The default reads in page-bounded pieces.
    fn read_partial(&self, address: u64, buf: &mut [u8]) -> usize {
        const PAGE: u64 = 0x1000;
        let mut done = 0usize;
        while done < buf.len() {
            let here = address.wrapping_add(done as u64);
            let to_page_end = (PAGE - (here % PAGE)) as usize;
            let n = to_page_end.min(buf.len() - done);
            if self.read_exact(here, &mut buf[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    fn read_u16(&self, address: u64) -> Result<u16, Unreadable> {
        let mut b = [0u8; 2];
        self.read_exact(address, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn read_u32(&self, address: u64) -> Result<u32, Unreadable> {
        let mut b = [0u8; 4];
        self.read_exact(address, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_u64(&self, address: u64) -> Result<u64, Unreadable> {
        let mut b = [0u8; 8];
        self.read_exact(address, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a UTF-16 string of `chars` code units (no terminator needed).
    fn read_utf16(&self, address: u64, chars: usize) -> Result<String, Unreadable> {
        let mut bytes = vec![0u8; chars * 2];
        self.read_exact(address, &mut bytes)?;
        let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        Ok(String::from_utf16_lossy(&units))
    }
}

/// Reads another [`TargetMemory`] a whole page at a time and keeps the
/// pages. Across a process boundary each read costs a round trip (under
/// Wine, one to wineserver) whatever its size, and decoding one call makes
/// many small reads of the same stack and heap pages; a cache that lives for
/// one stop of the target turns them into a read per page. A page is the
/// unit of protection, so it is readable whole or not at all.
pub struct PageCache<'a> {
    inner: &'a dyn TargetMemory,
    pages: std::cell::RefCell<Vec<(u64, Option<Box<[u8]>>)>>,
}

impl<'a> PageCache<'a> {
    const PAGE: u64 = 0x1000;

    /// A cache over `inner`; drop it when the target runs again.
    pub fn new(inner: &'a dyn TargetMemory) -> PageCache<'a> {
        PageCache { inner, pages: std::cell::RefCell::new(Vec::new()) }
    }

    /// Copies from the page at `page` into `out`, loading it if needed.
    fn copy_from_page(&self, page: u64, offset: usize, out: &mut [u8]) -> bool {
        let mut pages = self.pages.borrow_mut();
        let index = match pages.iter().position(|(p, _)| *p == page) {
            Some(i) => i,
            None => {
                let mut bytes = vec![0u8; Self::PAGE as usize].into_boxed_slice();
                let loaded = self.inner.read_exact(page, &mut bytes).is_ok().then_some(bytes);
                pages.push((page, loaded));
                pages.len() - 1
            }
        };
        match &pages[index].1 {
            Some(bytes) => {
                out.copy_from_slice(&bytes[offset..offset + out.len()]);
                true
            }
            None => false,
        }
    }
}

impl TargetMemory for PageCache<'_> {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let mut done = 0usize;
        while done < buf.len() {
            let here = address.checked_add(done as u64).ok_or(Unreadable { address })?;
            let page = here & !(Self::PAGE - 1);
            let offset = (here - page) as usize;
            let n = (Self::PAGE as usize - offset).min(buf.len() - done);
            if !self.copy_from_page(page, offset, &mut buf[done..done + n]) {
                return Err(Unreadable { address });
            }
            done += n;
        }
        Ok(())
    }
}

/// Target memory made of byte regions at given addresses: for tests, and for
/// engines that captured memory ahead of decoding.
#[derive(Debug, Default, Clone)]
pub struct MemoryImage {
    regions: Vec<(u64, Vec<u8>)>,
}

impl MemoryImage {
    pub fn new() -> MemoryImage {
        MemoryImage::default()
    }

    /// Adds bytes at `address`. Regions may not overlap.
    pub fn with(mut self, address: u64, bytes: impl Into<Vec<u8>>) -> MemoryImage {
        // Kept sorted by address, so a read finds its region by binary search.
        let at = self.regions.partition_point(|(start, _)| *start < address);
        self.regions.insert(at, (address, bytes.into()));
        self
    }
}

impl TargetMemory for MemoryImage {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let unreadable = Unreadable { address };
        let end = address.checked_add(buf.len() as u64).ok_or(unreadable)?;
        // The last region starting at or before `address` is the only one
        // that can hold it.
        let candidate = self.regions.partition_point(|(start, _)| *start <= address).checked_sub(1);
        let (start, bytes) = candidate.map(|i| &self.regions[i]).ok_or(unreadable)?;
        if end > start + bytes.len() as u64 {
            return Err(unreadable);
        }
        let offset = (address - start) as usize;
        buf.copy_from_slice(&bytes[offset..offset + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_reads_inside_a_region_and_refuses_outside() {
        let mem = MemoryImage::new().with(0x1000, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(mem.read_u32(0x1000), Ok(0x0403_0201));
        assert_eq!(mem.read_u64(0x1000), Ok(0x0807_0605_0403_0201));
        assert_eq!(mem.read_u32(0x1006), Err(Unreadable { address: 0x1006 }));
        assert_eq!(mem.read_u16(0xfff), Err(Unreadable { address: 0xfff }));
        assert_eq!(mem.read_u64(u64::MAX - 2), Err(Unreadable { address: u64::MAX - 2 }));
    }

    #[test]
    fn partial_read_stops_at_the_first_gap() {
        // Two pages, the second one missing: a read across them gets the first.
        let mem = MemoryImage::new().with(0x2000, vec![0xaa; 0x1000]);
        let mut buf = [0u8; 0x20];
        assert_eq!(mem.read_partial(0x2ff0, &mut buf), 0x10);
        assert_eq!(&buf[..0x10], &[0xaa; 0x10]);
        assert_eq!(mem.read_partial(0x5000, &mut buf), 0);
    }

    /// Counts the reads that reach the memory behind a cache.
    struct Counting<'a>(&'a MemoryImage, std::cell::Cell<usize>);

    impl TargetMemory for Counting<'_> {
        fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
            self.1.set(self.1.get() + 1);
            self.0.read_exact(address, buf)
        }
    }

    #[test]
    fn page_cache_reads_each_page_once_and_fails_like_the_memory_behind_it() {
        let bytes: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
        let image = MemoryImage::new().with(0x10000, bytes.clone());
        let counting = Counting(&image, std::cell::Cell::new(0));
        let cache = PageCache::new(&counting);
        assert_eq!(cache.read_u64(0x10008), Ok(u64::from_le_bytes(bytes[8..16].try_into().unwrap())));
        assert_eq!(cache.read_u32(0x10ff0), Ok(u32::from_le_bytes(bytes[0xff0..0xff4].try_into().unwrap())));
        assert_eq!(counting.1.get(), 1, "both reads from the first page");
        // A read across the page boundary loads the second page.
        let mut across = [0u8; 16];
        cache.read_exact(0x10ff8, &mut across).unwrap();
        assert_eq!(&across[..], &bytes[0xff8..0x1008]);
        assert_eq!(counting.1.get(), 2);
        // Unreadable pages stay unreadable (and are asked for once).
        assert_eq!(cache.read_u16(0x12000), Err(Unreadable { address: 0x12000 }));
        assert_eq!(cache.read_u16(0x12002), Err(Unreadable { address: 0x12002 }));
        assert_eq!(counting.1.get(), 3);
        let mut tail = [0u8; 8];
        assert!(cache.read_exact(0x11ffc, &mut tail).is_err(), "runs into the unreadable page");
        assert_eq!(cache.read_partial(0x11ffc, &mut tail), 4);
        assert!(cache.read_u64(u64::MAX - 2).is_err());
    }

    #[test]
    fn utf16_strings_decode_and_bad_surrogates_do_not_panic() {
        let mut bytes = Vec::new();
        for u in "C:\\x".encode_utf16().chain([0xd800u16]) {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let mem = MemoryImage::new().with(0x10, bytes);
        assert_eq!(mem.read_utf16(0x10, 4).unwrap(), "C:\\x");
        assert_eq!(mem.read_utf16(0x10, 5).unwrap(), "C:\\x\u{fffd}");
        assert!(mem.read_utf16(0x10, 6).is_err());
    }
}
