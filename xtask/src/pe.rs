//! Just enough PE parsing to list a DLL's named exports and look at the first
//! bytes of each exported function (to recognise syscall stubs).

pub struct Export {
    pub name: String,
    /// Up to 16 bytes at the function's start; empty for forwarders or
    /// addresses outside the file's sections.
    pub code: Vec<u8>,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, String> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated PE at {off:#x}"))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated PE at {off:#x}"))
}

struct Section {
    rva: u32,
    size: u32,
    raw: u32,
}

fn rva_to_offset(sections: &[Section], rva: u32) -> Option<usize> {
    sections.iter().find(|s| rva >= s.rva && rva < s.rva + s.size).map(|s| (rva - s.rva + s.raw) as usize)
}

fn c_string(b: &[u8], off: usize) -> Result<String, String> {
    let tail = b.get(off..).ok_or("name outside file")?;
    let end = tail.iter().position(|&c| c == 0).ok_or("unterminated name")?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

/// Named exports of a PE image held in `b`.
pub fn exports(b: &[u8]) -> Result<Vec<Export>, String> {
    if b.get(..2) != Some(b"MZ") {
        return Err("not an MZ file".into());
    }
    let pe = u32_at(b, 0x3C)? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err("no PE signature".into());
    }
    let coff = pe + 4;
    let nsections = u16_at(b, coff + 2)? as usize;
    let opt_size = u16_at(b, coff + 16)? as usize;
    let opt = coff + 20;
    // The data directories start after the fixed part of the optional header,
    // which is 16 bytes longer in PE32+ (64-bit fields).
    let dirs = match u16_at(b, opt)? {
        0x10B => opt + 96,
        0x20B => opt + 112,
        m => return Err(format!("unknown optional header magic {m:#x}")),
    };
    let export_rva = u32_at(b, dirs)?;
    let export_size = u32_at(b, dirs + 4)?;

    let mut sections = Vec::with_capacity(nsections);
    let table = opt + opt_size;
    for i in 0..nsections {
        let s = table + i * 40;
        let vsize = u32_at(b, s + 8)?;
        let raw_size = u32_at(b, s + 16)?;
        sections.push(Section {
            rva: u32_at(b, s + 12)?,
            size: vsize.max(raw_size),
            raw: u32_at(b, s + 20)?,
        });
    }
    if export_rva == 0 {
        return Ok(Vec::new());
    }
    let ed = rva_to_offset(&sections, export_rva).ok_or("export directory outside sections")?;
    let nnames = u32_at(b, ed + 24)? as usize;
    let functions = rva_to_offset(&sections, u32_at(b, ed + 28)?).ok_or("bad AddressOfFunctions")?;
    let names = rva_to_offset(&sections, u32_at(b, ed + 32)?).ok_or("bad AddressOfNames")?;
    let ordinals = rva_to_offset(&sections, u32_at(b, ed + 36)?).ok_or("bad AddressOfNameOrdinals")?;

    let mut out = Vec::with_capacity(nnames);
    for i in 0..nnames {
        let name_off = rva_to_offset(&sections, u32_at(b, names + 4 * i)?).ok_or("bad name RVA")?;
        let name = c_string(b, name_off)?;
        let ordinal = u16_at(b, ordinals + 2 * i)? as usize;
        let func_rva = u32_at(b, functions + 4 * ordinal)?;
        // An RVA inside the export directory is a forwarder string, not code.
        let forwarder = func_rva >= export_rva && func_rva < export_rva + export_size;
        let code = match rva_to_offset(&sections, func_rva) {
            Some(off) if !forwarder => b[off..b.len().min(off + 16)].to_vec(),
            _ => Vec::new(),
        };
        out.push(Export { name, code });
    }
    Ok(out)
}

/// `mov r10, rcx; mov eax, imm32`: how every x64 syscall stub begins.
pub fn is_syscall_stub(code: &[u8]) -> bool {
    code.starts_with(&[0x4C, 0x8B, 0xD1, 0xB8])
}
