//! Argument decoders: turn the raw arguments of an `Nt*` call into named,
//! typed [`Value`]s, reading the target only through
//! [`winstrace_core::memory::TargetMemory`].
//!
//! The entry point is [`decode_call`]. It is built in layers, as strace is
//! (printers vs. its syscall table):
//!
//! - generic decoders, one per kind of value (`printers`): numbers, handles,
//!   UNICODE_STRING, structures, byte buffers, registry data, access masks;
//! - decoder specs (`spec`): a small language naming a decoder
//!   (`ptr:handle`, `xlat:share`), and the table from C types to specs;
//! - data (`data/` beside this crate, compiled in): per-parameter rules
//!   (`params.tsv`), which buffer is how long and holds what
//!   (`buffers.tsv`), information classes (`classes.tsv`), structure
//!   layouts (`structs.txt`) and the object type of each access mask
//!   (`access.tsv`);
//! - names of enum values and flags: [`xlat`], generated from Microsoft's
//!   metadata. Data files name its tables directly (`xlat:FILE_SHARE_MODE`).
//!
//! # What the decoded arguments look like
//!
//! The text forms of the values are documented in
//! [`winstrace_core::value`]. On top of those, the decoders choose:
//!
//! - `OBJECT_ATTRIBUTES`: only what is set, `{Root=0x10,
//!   Name="\\Registry\\Machine\\X", Attributes=OBJ_CASE_INSENSITIVE}`: Root,
//!   Attributes, SecurityDescriptor and SecurityQualityOfService are left out
//!   when 0, Length when it is the normal 48.
//! - `UNICODE_STRING`: the string, with notes for malformed ones
//!   (`"ab" (odd length)`); `PHANDLE` and other pointers to numbers: `[0x24]`.
//! - `ACCESS_MASK`: object rights (per function: `data/access.tsv`), then
//!   standard, then generic rights, e.g.
//!   `FILE_READ_ATTRIBUTES|SYNCHRONIZE|GENERIC_WRITE`; a mask that is
//!   exactly one combined right of the object prints as that (`KEY_READ`).
//! - Buffers: the bytes the call passed or returned (`data/buffers.tsv`),
//!   cut at `-s`; information buffers as the structure their class selects.
//! - Registry data by REG_* type: strings, string lists, numbers, bytes.
//! - A ULONG parameter decodes only its low 32 bits: the upper half of the
//!   register is not part of the argument.
//!
//! # When values are read
//!
//! The debugger engine stops the target when a call returns and decodes
//! then: every argument, in or out, shows target memory as it is *after*
//! the call. For in-parameters that is what the caller passed unless the
//! callee or another thread changed it meanwhile (rare; strace reads
//! in-parameters at entry and has the same issue with other threads).
//!
//! Out-parameters (and in-out ones) are decoded only when the call
//! succeeded: its NTSTATUS has severity success or informational, except
//! STATUS_PENDING (the data is not there yet), or it is
//! STATUS_BUFFER_OVERFLOW, a warning that comes with partial data. Otherwise,
//! and when the call did not return, they show as the raw pointer (`NULL` or
//! hex), as strace does for a failed call's out-parameters.

use winstrace_core::event::Arg;
use winstrace_core::memory::TargetMemory;
use winstrace_core::ntstatus;
use winstrace_core::value::Value;
use winstrace_signatures::{Dir, Param, Signature};

pub mod capture;
mod data;
mod printers;
mod spec;
pub mod xlat;

use data::{Content, LenSource};
use printers::{Cx, Src};
use spec::Spec;

/// How to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// strace's `-s`: strings show at most this many characters (UTF-16
    /// units), buffers this many bytes, string lists this many strings.
    pub string_limit: usize,
    /// strace's `-X raw`: print every argument as a raw number (names are
    /// kept).
    pub raw: bool,
}

impl Default for DecodeOptions {
    fn default() -> DecodeOptions {
        DecodeOptions { string_limit: 32, raw: false }
    }
}

/// Number of arguments passed in registers on x64 (RCX, RDX, R8, R9).
const REGISTER_ARGS: usize = 4;

const STATUS_PENDING: u32 = 0x0000_0103;
const STATUS_BUFFER_OVERFLOW: u32 = 0x8000_0005;

/// Whether out-parameters hold data after a call that returned `status`.
fn outs_valid(status: u32) -> bool {
    status == STATUS_BUFFER_OVERFLOW || (!ntstatus::is_failure(status) && status != STATUS_PENDING)
}

/// Decodes the arguments of a call of `function` (an `Nt*` or `Zw*` name).
///
/// `raw_args` are the argument values in order: RCX, RDX, R8, R9, then the
/// stack slots. `result` is the NTSTATUS returned, `None` when the call did
/// not return. Returns one [`Arg`] per parameter of the function's
/// signature and `true`; for a function without a signature, the register
/// arguments as raw values and `false` (the argument count is unknown). If
/// `raw_args` holds fewer values than the signature has parameters, the
/// arguments stop there and the flag is `false` too.
///
/// Never panics on target data: what cannot be read shows as
/// `Value::Unreadable`.
pub fn decode_call(
    function: &str,
    raw_args: &[u64],
    result: Option<u64>,
    mem: &dyn TargetMemory,
    opts: &DecodeOptions,
) -> (Vec<Arg>, bool) {
    let Some((sig, plan)) = signature_and_plan(function) else {
        return (raw_args.iter().take(REGISTER_ARGS).copied().map(Arg::raw).collect(), false);
    };
    let call = CallCx { sig, plan, raw_args };
    let outs_ok = result.is_some_and(|r| outs_valid(r as u32));
    let cx = Cx { mem, limit: opts.string_limit, access_object: call.access_object() };
    let mut args = Vec::with_capacity(sig.params.len());
    for (i, p) in sig.params.iter().enumerate() {
        let Some(&raw) = raw_args.get(i) else { return (args, false) };
        let out = call.plan.params[i].out;
        let value = if opts.raw {
            Value::Hex(raw)
        } else if out && !outs_ok {
            if raw == 0 {
                Value::Null
            } else {
                Value::Hex(raw)
            }
        } else {
            call.decode_param(&cx, i, raw)
        };
        args.push(Arg { name: Some(p.name), ty: Some(p.ty), out, raw, value });
    }
    (args, true)
}

/// What decoding one function needs from the data files, resolved once
/// per function rather than looked up by name for every call.
struct Plan {
    params: Vec<ParamPlan>,
    access: Option<&'static data::AccessRule>,
}

struct ParamPlan {
    /// Out or in-out (after params.tsv's direction fixes).
    out: bool,
    spec: Spec,
    buffer: Option<&'static data::BufferRule>,
}

/// The signature of `function` (an `Nt*` or `Zw*` name) and its plan; the
/// plans are built for every signature on first use.
fn signature_and_plan(function: &str) -> Option<(&'static Signature, &'static Plan)> {
    static PLANS: std::sync::OnceLock<Vec<Plan>> = std::sync::OnceLock::new();
    let all = winstrace_signatures::all();
    let index = match function.strip_prefix("Zw") {
        Some(rest) => all.binary_search_by(|s| s.name[2..].cmp(rest).then(s.name[..2].cmp("Nt"))).ok()?,
        None => all.binary_search_by(|s| s.name.cmp(function)).ok()?,
    };
    let plans = PLANS.get_or_init(|| {
        all.iter()
            .map(|sig| Plan {
                params: sig
                    .params
                    .iter()
                    .map(|p| {
                        let dir = data::param_rule(sig.name, p.name).and_then(|r| r.dir).unwrap_or(p.dir);
                        ParamPlan {
                            out: dir != Dir::In,
                            spec: spec_for(sig.name, p),
                            buffer: data::buffer_rule(sig.name, p.name),
                        }
                    })
                    .collect(),
                access: data::access_rule(sig.name),
            })
            .collect()
    });
    Some((&all[index], &plans[index]))
}

/// One call being decoded: its signature, plan and raw arguments, to look
/// up parameters by name (lengths, classes, options).
struct CallCx<'a> {
    sig: &'static Signature,
    plan: &'static Plan,
    raw_args: &'a [u64],
}

impl CallCx<'_> {
    fn param_index(&self, name: &str) -> Option<usize> {
        self.sig.params.iter().position(|p| p.name == name)
    }

    fn param(&self, name: &str) -> Option<(&'static Param, u64)> {
        let i = self.param_index(name)?;
        Some((&self.sig.params[i], *self.raw_args.get(i)?))
    }

    /// The value of integer parameter `name`, cut to its type's width.
    fn param_uint(&self, name: &str) -> Option<u64> {
        let i = self.param_index(name)?;
        let raw = *self.raw_args.get(i)?;
        Some(match self.plan.params[i].spec.width() {
            w @ (1 | 2 | 4) => raw & ((1u64 << (8 * w)) - 1),
            _ => raw,
        })
    }

    /// The xlat access table of the call's access masks.
    fn access_object(&self) -> Option<&'static str> {
        let rule = self.plan.access?;
        if let Some((param, mask, object)) = rule.switch {
            if self.param_uint(param).is_some_and(|v| v & mask != 0) {
                return Some(object);
            }
        }
        Some(rule.object)
    }

    fn decode_param(&self, cx: &Cx, index: usize, raw: u64) -> Value {
        let plan = &self.plan.params[index];
        if let Some(rule) = plan.buffer {
            if raw == 0 {
                return Value::Null;
            }
            let len = self.length(cx, rule.length);
            let max = self.length(cx, rule.max);
            let len = match (len, max) {
                (Some(l), Some(m)) => l.min(m),
                (l, m) => match l.or(m) {
                    Some(l) => l,
                    // No length at all: the pointer is all there is to show.
                    None => return Value::Hex(raw),
                },
            };
            return match rule.content {
                Content::Bytes => printers::bytes(cx, raw, len),
                Content::RegData(ty) => match self.param_uint(ty) {
                    Some(t) => printers::regdata(cx, t, raw, len),
                    None => printers::bytes(cx, raw, len),
                },
                Content::Class(class) => match self.param(class) {
                    Some((cp, _)) => {
                        let value = self.param_uint(class).unwrap_or(0);
                        printers::class_buffer(cx, cp.ty, value, raw, len)
                    }
                    None => printers::bytes(cx, raw, len),
                },
            };
        }
        printers::decode(cx, &plan.spec, Src::Reg(raw))
    }

    /// A buffer length from its source, or None when it cannot be had.
    fn length(&self, cx: &Cx, source: Option<LenSource>) -> Option<u64> {
        self.length_with(source, &mut |src, width| printers::read_uint(cx, src, width))
    }

    /// [`Self::length`] with target memory read by `read_uint` (the capture
    /// walk reads through its sink).
    fn length_with(
        &self,
        source: Option<LenSource>,
        read_uint: &mut dyn FnMut(Src, u64) -> Result<u64, winstrace_core::memory::Unreadable>,
    ) -> Option<u64> {
        match source? {
            LenSource::Param(name) => self.param_uint(name),
            LenSource::Deref(name) => {
                let i = self.param_index(name)?;
                let ptr = *self.raw_args.get(i)?;
                if ptr == 0 {
                    return None;
                }
                let width = match &self.plan.params[i].spec {
                    Spec::Ptr(inner) => inner.width(),
                    _ => 4,
                };
                read_uint(Src::Mem(ptr), width).ok()
            }
            LenSource::Iosb(name) => {
                let (_, ptr) = self.param(name)?;
                if ptr == 0 {
                    return None;
                }
                // IO_STATUS_BLOCK.Information, after the 8-byte Status/Pointer union.
                read_uint(Src::Mem(ptr.wrapping_add(8)), 8).ok()
            }
        }
    }
}

/// The decoder of parameter `p` of `function`, most specific first: a
/// params.tsv rule, an ACCESS_MASK, the signature's meta type when it names
/// an xlat table, the C type.
fn spec_for(function: &str, p: &'static Param) -> Spec {
    if let Some(spec) = data::param_rule(function, p.name).and_then(|r| r.spec.clone()) {
        return spec;
    }
    if p.ty == "ACCESS_MASK" {
        return Spec::Access(None);
    }
    if let Some(meta) = p.meta.filter(|m| xlat::has_table(m)) {
        return Spec::Xlat { table: meta, flags: xlat::is_flags(meta) };
    }
    spec::for_type(p.ty)
}

/// The arguments as text, `Name=value` joined by `, ` (as a call line shows
/// them). For tests and tools.
pub fn args_text(args: &[Arg]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if let Some(name) = a.name {
            s.push_str(name);
            s.push('=');
        }
        a.value.write_text(&mut s);
    }
    s
}

#[cfg(test)]
mod tests;
