//! Capture: copying, at call time, exactly the target memory that decoding
//! the call will read.
//!
//! The in-process engine's agent runs inside the traced process. When a call
//! returns it must copy the memory the tracer's decoders will later want,
//! because by the time the tracer decodes, the target has moved on. What to
//! copy is not a second description of the calls: [`CapturePlan::capture`]
//! walks the same signature, data rules and specs as [`crate::decode_call`]
//! and makes the same reads, through a [`CaptureSink`] instead of a
//! [`TargetMemory`], without decoding anything. The tracer then decodes the
//! copied bytes ([`CapturedMemory`]) and gets what it would have got from
//! the live process. The unit tests check that claim for every signature
//! over synthetic memories: decoding from the capture equals decoding from
//! the memory itself.
//!
//! The walk runs inside someone else's system call, so it allocates
//! nothing and takes no lock: the plans and data rules are built before
//! (see [`warm_up`]), and reads land in the sink's own buffer.

use winstrace_core::memory::{TargetMemory, Unreadable};
use winstrace_signatures::Signature;

use crate::data::{self, Content, StructDef};
use crate::printers::{self, uint_with, Src, MAX_READ};
use crate::spec::Spec;
use crate::{outs_valid, signature_and_plan, CallCx, DecodeOptions, Plan};

/// Where a capture walk copies target memory to.
pub trait CaptureSink {
    /// Makes sure the capture holds the bytes `address..address + len`,
    /// copying them from the target if needed, as far as they are readable
    /// (and fit). Returns how many bytes from `address` on it now holds:
    /// `len` when all of them, fewer when the target's memory (or the
    /// capture's room) ends first.
    fn capture(&mut self, address: u64, len: usize) -> usize;

    /// Copies captured bytes into `buf`; false if they were not all captured.
    fn read_captured(&self, address: u64, buf: &mut [u8]) -> bool;
}

/// For sinks that keep pieces (address, bytes): how many bytes from
/// `address` on the pieces hold (the longest run in one piece).
pub fn held_in<'p>(pieces: impl Iterator<Item = (u64, &'p [u8])>, address: u64) -> usize {
    pieces
        .filter(|(start, bytes)| *start <= address && address - start < bytes.len() as u64)
        .map(|(start, bytes)| bytes.len() - (address - start) as usize)
        .max()
        .unwrap_or(0)
}

/// For sinks that keep pieces: fills `buf` from the first piece that holds
/// all of it; false if none does.
pub fn copy_from_pieces<'p>(
    pieces: impl Iterator<Item = (u64, &'p [u8])>,
    address: u64,
    buf: &mut [u8],
) -> bool {
    for (start, bytes) in pieces {
        if start <= address {
            let offset = (address - start) as usize;
            if let Some(src) = bytes.get(offset..offset.saturating_add(buf.len())) {
                buf.copy_from_slice(src);
                return true;
            }
        }
    }
    false
}

/// Builds the signature table, the per-function plans and the data rules
/// now, so that no later [`capture_plan`] or capture allocates.
pub fn warm_up() {
    let _ = signature_and_plan("NtClose");
    let _ = data::structure("");
    let _ = data::class_spec("", 0);
}

/// How to capture one function's calls; `None` for a function without a
/// signature (nothing of its memory is decoded, so nothing is captured).
pub fn capture_plan(function: &str) -> Option<CapturePlan> {
    let (sig, plan) = signature_and_plan(function)?;
    Some(CapturePlan { sig, plan })
}

/// A function's capture plan: its signature and decoding plan, resolved once.
#[derive(Clone, Copy)]
pub struct CapturePlan {
    sig: &'static Signature,
    plan: &'static Plan,
}

impl CapturePlan {
    /// Captures what [`crate::decode_call`] will read for this call, given
    /// the same raw arguments, result and options.
    pub fn capture(
        &self,
        raw_args: &[u64],
        result: Option<u64>,
        opts: &DecodeOptions,
        sink: &mut dyn CaptureSink,
    ) {
        self.capture_params(raw_args, result, opts, sink, false);
    }

    /// [`CapturePlan::capture`] for the out- and in-out parameters only:
    /// what a call's return adds to what its entry captured (the entry's
    /// capture, without a result, is the in-parameters').
    pub fn capture_outs(
        &self,
        raw_args: &[u64],
        result: Option<u64>,
        opts: &DecodeOptions,
        sink: &mut dyn CaptureSink,
    ) {
        self.capture_params(raw_args, result, opts, sink, true);
    }

    fn capture_params(
        &self,
        raw_args: &[u64],
        result: Option<u64>,
        opts: &DecodeOptions,
        sink: &mut dyn CaptureSink,
        outs_only: bool,
    ) {
        if opts.raw {
            return;
        }
        let call = CallCx { sig: self.sig, plan: self.plan, raw_args };
        let outs_ok = result.is_some_and(|r| outs_valid(r as u32));
        let mut walk = Walk { sink, limit: opts.string_limit };
        for (i, param) in self.plan.params.iter().enumerate() {
            let Some(&raw) = raw_args.get(i) else { return };
            if (param.out && !outs_ok) || (outs_only && !param.out) {
                continue;
            }
            walk.param(&call, i, raw);
        }
    }
}

/// One walk: the sink and the string limit.
struct Walk<'s> {
    sink: &'s mut dyn CaptureSink,
    limit: usize,
}

impl Walk<'_> {
    /// Reads `buf.len()` bytes, capturing them.
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        if self.sink.capture(address, buf.len()) >= buf.len() && self.sink.read_captured(address, buf) {
            Ok(())
        } else {
            Err(Unreadable { address })
        }
    }

    /// `printers::read_uint`, capturing.
    fn uint(&mut self, at: Src, width: u64) -> Result<u64, Unreadable> {
        uint_with(at, width, |address, buf| self.read(address, buf))
    }

    /// `TargetMemory::read_partial` as the decoders use it: as much of
    /// `len` bytes as is readable.
    fn partial(&mut self, address: u64, len: u64) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > 0 {
            self.sink.capture(address, len);
        }
    }

    /// As `CallCx::decode_param`.
    fn param(&mut self, call: &CallCx, index: usize, raw: u64) {
        let plan = &call.plan.params[index];
        let Some(rule) = plan.buffer else {
            self.value(&plan.spec, Src::Reg(raw), 0);
            return;
        };
        if raw == 0 {
            return;
        }
        let len = call.length_with(rule.length, &mut |src, width| self.uint(src, width));
        let max = call.length_with(rule.max, &mut |src, width| self.uint(src, width));
        let Some(len) = (match (len, max) {
            (Some(l), Some(m)) => Some(l.min(m)),
            (l, m) => l.or(m),
        }) else {
            return;
        };
        match rule.content {
            Content::Bytes => self.bytes(raw, len),
            Content::RegData(ty) => match call.param_uint(ty) {
                Some(t) => self.regdata(t, raw, len, 0),
                None => self.bytes(raw, len),
            },
            Content::Class(class) => match call.param(class) {
                Some((cp, _)) => {
                    let value = call.param_uint(class).unwrap_or(0);
                    self.class_buffer(cp.ty, value, raw, len);
                }
                None => self.bytes(raw, len),
            },
        }
    }

    /// As `printers::decode`. `depth` stops a walk through structures that
    /// point at each other (the data files have none; a bound costs nothing).
    fn value(&mut self, spec: &Spec, at: Src, depth: u32) {
        if depth > 16 {
            return;
        }
        match spec {
            Spec::Ptr(inner) => {
                if let Ok(p) = self.uint(at, 8) {
                    if p != 0 {
                        self.value(inner, Src::Mem(p), depth + 1);
                    }
                }
            }
            Spec::UStr
            | Spec::WSz
            | Spec::Struct(_)
            | Spec::WChars(_)
            | Spec::Bytes(_)
            | Spec::RegData { .. } => {
                let Src::Mem(address) = at else { return };
                match spec {
                    Spec::UStr => self.unicode_string(address),
                    Spec::WSz => {
                        let units = self.limit.saturating_add(1).min(MAX_READ as usize / 2);
                        self.partial(address, units as u64 * 2);
                    }
                    Spec::Struct(name) => {
                        if let Some(def) = data::structure(name) {
                            self.structure(def, address, None, depth);
                        }
                    }
                    _ => {}
                }
            }
            // Numbers, handles, flags: one read of their width.
            scalar => {
                let _ = self.uint(at, scalar.width());
            }
        }
    }

    /// As `printers::unicode_string`.
    fn unicode_string(&mut self, address: u64) {
        // The header is read field by field; capture it whole first so that
        // it is one piece of the capture, not three.
        self.sink.capture(address, 16);
        let header = (|| {
            let len = self.uint(Src::Mem(address), 2)?;
            self.uint(Src::Mem(address.wrapping_add(2)), 2)?;
            let buf = self.uint(Src::Mem(address.wrapping_add(8)), 8)?;
            Ok::<_, Unreadable>((len, buf))
        })();
        if let Ok((len, buf)) = header {
            if buf != 0 {
                // Shown whole, whatever -s says (see `printers::unicode_string`).
                self.partial(buf, (len / 2).min(u64::from(u16::MAX) / 2) * 2);
            }
        }
    }

    /// As `printers::bytes`.
    fn bytes(&mut self, address: u64, len: u64) {
        self.partial(address, len.min(self.limit as u64));
    }

    /// As `printers::regdata`.
    fn regdata(&mut self, ty: u64, address: u64, len: u64, depth: u32) {
        use printers::reg::{DWORD, DWORD_BIG_ENDIAN, EXPAND_SZ, LINK, MULTI_SZ, QWORD, SZ};
        match ty {
            SZ | EXPAND_SZ | LINK => {
                let units = len / 2;
                self.partial(address, units.min(self.limit.saturating_add(1) as u64) * 2);
            }
            MULTI_SZ => self.partial(address, len),
            DWORD | DWORD_BIG_ENDIAN if len == 4 => self.value(&Spec::Unsigned(4), Src::Mem(address), depth),
            QWORD if len == 8 => self.value(&Spec::Unsigned(8), Src::Mem(address), depth),
            _ => self.bytes(address, len),
        }
    }

    /// As `printers::structure`.
    fn structure(&mut self, def: &StructDef, address: u64, avail: Option<u64>, depth: u32) {
        // One piece for the fixed part; the fields are then read from it.
        self.sink.capture(address, def.size.min(MAX_READ) as usize);
        if self.read(address, &mut [0u8; 1]).is_err() {
            return;
        }
        for f in &def.fields {
            let at = address.wrapping_add(f.offset);
            match &f.spec {
                Spec::WChars(len) | Spec::Bytes(len) | Spec::RegData { len, .. } => {
                    let Ok(total) = self.field_uint(def, address, len) else { continue };
                    let take = match avail {
                        Some(a) => total.min(a.saturating_sub(f.offset)),
                        None => total,
                    };
                    match &f.spec {
                        Spec::WChars(_) => self.partial(at, (take / 2).min(self.limit as u64) * 2),
                        Spec::Bytes(_) => self.bytes(at, take),
                        Spec::RegData { ty, .. } => {
                            if let Ok(t) = self.field_uint(def, address, ty) {
                                self.regdata(t, at, take, depth);
                            }
                        }
                        _ => {}
                    }
                }
                spec => {
                    let width = spec.width();
                    if let (Some(omit), 1 | 2 | 4 | 8) = (f.omit, width) {
                        if self.uint(Src::Mem(at), width) == Ok(omit) {
                            continue;
                        }
                    }
                    self.value(spec, Src::Mem(at), depth + 1);
                }
            }
        }
    }

    /// As `printers::field_uint`.
    fn field_uint(&mut self, def: &StructDef, address: u64, name: &str) -> Result<u64, ()> {
        let f = def.field(name).ok_or(())?;
        self.uint(Src::Mem(address.wrapping_add(f.offset)), f.spec.width()).map_err(|_| ())
    }

    /// As `printers::class_buffer`.
    fn class_buffer(&mut self, class_type: &str, value: u64, address: u64, len: u64) {
        match data::class_spec(class_type, value) {
            Some(Spec::Struct(name)) => match data::structure(name) {
                Some(def) if len >= def.size => self.structure(def, address, Some(len), 0),
                _ => self.bytes(address, len),
            },
            Some(spec) if spec.width() > 0 && len >= spec.width() => self.value(spec, Src::Mem(address), 0),
            _ => self.bytes(address, len),
        }
    }
}

/// A [`CaptureSink`] over a [`TargetMemory`] that keeps what it copied as
/// pieces: how the tests (and anything that captures out of process) use
/// capture plans. `budget` bounds the bytes it copies, as an agent's record
/// buffer does.
pub struct MemoryCapture<'m> {
    memory: &'m dyn TargetMemory,
    pieces: Vec<(u64, Vec<u8>)>,
    budget: usize,
}

impl<'m> MemoryCapture<'m> {
    pub fn new(memory: &'m dyn TargetMemory, budget: usize) -> MemoryCapture<'m> {
        MemoryCapture { memory, pieces: Vec::new(), budget }
    }

    /// The pieces copied, in the order they were.
    pub fn pieces(&self) -> &[(u64, Vec<u8>)] {
        &self.pieces
    }

    fn pieces_iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pieces.iter().map(|(start, bytes)| (*start, bytes.as_slice()))
    }
}

impl CaptureSink for MemoryCapture<'_> {
    fn capture(&mut self, address: u64, len: usize) -> usize {
        let held = held_in(self.pieces_iter(), address);
        if held >= len {
            return len;
        }
        let want = len.min(self.budget);
        let mut bytes = vec![0u8; want];
        let got = self.memory.read_partial(address, &mut bytes);
        bytes.truncate(got);
        self.budget -= got;
        if got > held {
            self.pieces.push((address, bytes));
        }
        got.max(held)
    }

    fn read_captured(&self, address: u64, buf: &mut [u8]) -> bool {
        copy_from_pieces(self.pieces_iter(), address, buf)
    }
}

/// Target memory made of captured pieces, which may overlap or repeat (a
/// capture copies a structure whole, then a string it points into, ...):
/// a byte is readable if some piece holds it. Decoders read a call's
/// capture through this.
#[derive(Debug, Default, Clone)]
pub struct CapturedMemory {
    /// Disjoint, sorted, not adjacent.
    regions: Vec<(u64, Vec<u8>)>,
}

impl CapturedMemory {
    pub fn new() -> CapturedMemory {
        CapturedMemory::default()
    }

    /// Adds a piece; where it overlaps what is there, the piece wins (a
    /// later copy is the newer one).
    pub fn add(&mut self, address: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(end) = address.checked_add(bytes.len() as u64) else { return };
        // The regions touching [address, end]: merge them and the piece.
        let first = self.regions.partition_point(|(s, b)| s + (b.len() as u64) < address);
        let last = self.regions.partition_point(|(s, _)| *s <= end);
        if first >= last {
            self.regions.insert(first, (address, bytes.to_vec()));
            return;
        }
        let start = self.regions[first].0.min(address);
        let (last_start, last_bytes) = &self.regions[last - 1];
        let stop = (last_start + last_bytes.len() as u64).max(end);
        let mut merged = vec![0u8; (stop - start) as usize];
        for (s, b) in &self.regions[first..last] {
            let at = (s - start) as usize;
            merged[at..at + b.len()].copy_from_slice(b);
        }
        let at = (address - start) as usize;
        merged[at..at + bytes.len()].copy_from_slice(bytes);
        self.regions.splice(first..last, [(start, merged)]);
    }

    /// Bytes held, all regions together.
    pub fn len(&self) -> usize {
        self.regions.iter().map(|(_, b)| b.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

impl TargetMemory for CapturedMemory {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let unreadable = Unreadable { address };
        let i = self.regions.partition_point(|(s, _)| *s <= address).checked_sub(1).ok_or(unreadable)?;
        let (start, bytes) = &self.regions[i];
        let offset = (address - start) as usize;
        let src = bytes.get(offset..offset.checked_add(buf.len()).ok_or(unreadable)?).ok_or(unreadable)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
