//! Exports and size of a PE image mapped in a target, read through
//! [`TargetMemory`].

use std::fmt;

use winstrace_core::memory::{TargetMemory, Unreadable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeError {
    Unreadable(Unreadable),
    NotPe(&'static str),
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeError::Unreadable(u) => write!(f, "module headers unreadable at {u}"),
            PeError::NotPe(why) => write!(f, "not a PE image: {why}"),
        }
    }
}

impl std::error::Error for PeError {}

impl From<Unreadable> for PeError {
    fn from(u: Unreadable) -> PeError {
        PeError::Unreadable(u)
    }
}

/// A named export that is code in the module itself (not a forwarder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub address: u64,
}

/// Sanity bounds: a real ntdll has ~2,500 named exports. A corrupt or hostile
/// header must not make us allocate or loop without end.
const MAX_EXPORTS: u32 = 65_536;
const MAX_NAME: usize = 256;

/// The address of the optional header of the PE image mapped at `base`,
/// once its MZ and PE signatures are checked.
fn optional_header(mem: &dyn TargetMemory, base: u64) -> Result<u64, PeError> {
    if mem.read_u16(base)? != 0x5a4d {
        return Err(PeError::NotPe("no MZ signature"));
    }
    let nt = base + u64::from(mem.read_u32(base + 0x3c)?);
    if mem.read_u32(nt)? != 0x4550 {
        return Err(PeError::NotPe("no PE signature"));
    }
    // Past the signature and the 20-byte file header.
    Ok(nt + 4 + 20)
}

/// SizeOfImage: how many bytes from `base` the image mapped there spans
/// (at the same offset in PE32 and PE32+ optional headers).
pub fn image_size(mem: &dyn TargetMemory, base: u64) -> Result<u64, PeError> {
    let optional = optional_header(mem, base)?;
    Ok(u64::from(mem.read_u32(optional + 56)?))
}

/// Lists the named code exports of the PE image mapped at `base`.
pub fn exports(mem: &dyn TargetMemory, base: u64) -> Result<Vec<Export>, PeError> {
    let optional = optional_header(mem, base)?;
    let magic = mem.read_u16(optional)?;
    // The data directories start at a different offset in PE32 and PE32+.
    let directories = match magic {
        0x20b => optional + 112,
        0x10b => optional + 96,
        _ => return Err(PeError::NotPe("unknown optional header magic")),
    };
    let export_rva = u64::from(mem.read_u32(directories)?);
    let export_size = u64::from(mem.read_u32(directories + 4)?);
    if export_rva == 0 {
        return Ok(Vec::new());
    }
    let dir = base + export_rva;
    let function_count = mem.read_u32(dir + 20)?;
    let name_count = mem.read_u32(dir + 24)?;
    if function_count > MAX_EXPORTS || name_count > MAX_EXPORTS {
        return Err(PeError::NotPe("implausible export count"));
    }
    let functions = base + u64::from(mem.read_u32(dir + 28)?);
    let names = base + u64::from(mem.read_u32(dir + 32)?);
    let ordinals = base + u64::from(mem.read_u32(dir + 36)?);

    let name_rvas = read_u32_array(mem, names, name_count as usize)?;
    let mut ordinal_bytes = vec![0u8; name_count as usize * 2];
    mem.read_exact(ordinals, &mut ordinal_bytes)?;
    let function_rvas = read_u32_array(mem, functions, function_count as usize)?;

    let mut out = Vec::with_capacity(name_count as usize);
    for (i, name_rva) in name_rvas.iter().enumerate() {
        let ordinal = u16::from_le_bytes([ordinal_bytes[2 * i], ordinal_bytes[2 * i + 1]]) as usize;
        let Some(&rva) = function_rvas.get(ordinal) else { continue };
        let rva = u64::from(rva);
        // An RVA inside the export directory is a forwarder string, not code.
        if rva >= export_rva && rva < export_rva + export_size {
            continue;
        }
        let name = read_c_string(mem, base + u64::from(*name_rva))?;
        out.push(Export { name, address: base + rva });
    }
    Ok(out)
}

fn read_u32_array(mem: &dyn TargetMemory, at: u64, count: usize) -> Result<Vec<u32>, Unreadable> {
    let mut bytes = vec![0u8; count * 4];
    mem.read_exact(at, &mut bytes)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn read_c_string(mem: &dyn TargetMemory, at: u64) -> Result<String, Unreadable> {
    let mut buf = [0u8; MAX_NAME];
    let n = mem.read_partial(at, &mut buf);
    if n == 0 {
        return Err(Unreadable { address: at });
    }
    let len = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use winstrace_core::memory::MemoryImage;

    /// Builds a minimal PE32+ image with the given exports (name, rva), plus
    /// one forwarder `Fwd` to check it is skipped. Returns the image bytes.
    pub(crate) fn tiny_pe(exports: &[(&str, u32)], code: &[(u32, &[u8])]) -> Vec<u8> {
        let mut img = vec![0u8; 0x4000];
        img[0..2].copy_from_slice(b"MZ");
        img[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        img[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        img[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        let dirs = opt + 112;
        let export_dir = 0x1000u32;
        img[dirs..dirs + 4].copy_from_slice(&export_dir.to_le_bytes());
        img[dirs + 4..dirs + 8].copy_from_slice(&0x800u32.to_le_bytes());
        let n = exports.len() as u32 + 1;
        let put = |img: &mut Vec<u8>, at: u32, v: u32| {
            img[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes())
        };
        let (functions, names, ordinals, strings) = (0x1100u32, 0x1200u32, 0x1300u32, 0x1400u32);
        put(&mut img, export_dir + 20, n);
        put(&mut img, export_dir + 24, n);
        put(&mut img, export_dir + 28, functions);
        put(&mut img, export_dir + 32, names);
        put(&mut img, export_dir + 36, ordinals);
        let mut str_at = strings;
        let all: Vec<(&str, u32)> = exports.iter().copied().chain([("Fwd", export_dir + 0x700)]).collect();
        for (i, (name, rva)) in all.iter().enumerate() {
            put(&mut img, functions + 4 * i as u32, *rva);
            put(&mut img, names + 4 * i as u32, str_at);
            let o = (ordinals + 2 * i as u32) as usize;
            img[o..o + 2].copy_from_slice(&(i as u16).to_le_bytes());
            img[str_at as usize..str_at as usize + name.len()].copy_from_slice(name.as_bytes());
            str_at += name.len() as u32 + 1;
        }
        for (rva, bytes) in code {
            img[*rva as usize..*rva as usize + bytes.len()].copy_from_slice(bytes);
        }
        img
    }

    #[test]
    fn lists_named_code_exports_and_skips_forwarders() {
        let img = tiny_pe(&[("NtClose", 0x2000), ("RtlFoo", 0x2040)], &[]);
        let mem = MemoryImage::new().with(0x7000_0000, img);
        let ex = exports(&mem, 0x7000_0000).unwrap();
        assert_eq!(
            ex,
            vec![
                Export { name: "NtClose".into(), address: 0x7000_2000 },
                Export { name: "RtlFoo".into(), address: 0x7000_2040 },
            ]
        );
    }

    #[test]
    fn image_size_is_read_from_the_optional_header() {
        let mut img = tiny_pe(&[], &[]);
        img[0x80 + 24 + 56..0x80 + 24 + 60].copy_from_slice(&0x4000u32.to_le_bytes());
        let mem = MemoryImage::new().with(0x7000_0000, img);
        assert_eq!(image_size(&mem, 0x7000_0000), Ok(0x4000));
        let mem = MemoryImage::new().with(0x1000, vec![0u8; 0x100]);
        assert_eq!(image_size(&mem, 0x1000), Err(PeError::NotPe("no MZ signature")));
    }

    #[test]
    fn garbage_headers_are_errors_not_panics() {
        let mem = MemoryImage::new().with(0x1000, vec![0u8; 0x100]);
        assert_eq!(exports(&mem, 0x1000), Err(PeError::NotPe("no MZ signature")));
        assert!(matches!(exports(&mem, 0x9000), Err(PeError::Unreadable(_))));
        let mut img = tiny_pe(&[("NtClose", 0x2000)], &[]);
        img[0x1000 + 20..0x1000 + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        let mem = MemoryImage::new().with(0x1000, img);
        assert_eq!(exports(&mem, 0x1000), Err(PeError::NotPe("implausible export count")));
    }
}
