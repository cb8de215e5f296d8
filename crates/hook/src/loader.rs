//! The routine a tracer writes into a target to load the agent DLL there.
//!
//! It runs as an APC on a launched process's first thread (queued before
//! the thread's first instruction, so it runs when the loader has finished
//! initialising the process, before the program's entry point) or as the
//! start routine of a thread the tracer creates in an attached process.
//! Both call it with one pointer-sized argument, which it ignores:
//!
//! ```text
//! begin_trap: int3                  ; the tracer: "this thread is mine now"
//!             sub rsp, 0x28         ; home area, RSP 16-byte aligned at the call
//!             mov rcx, <path>       ; the agent's path, UTF-16, in the target
//!             mov rax, <LoadLibraryW>
//!             call rax
//!             add rsp, 0x28
//! end_trap:   int3                  ; the tracer: "the agent is loaded"
//!             ret
//! ```
//!
//! The two `int3`s are for a debugger (the tracer) watching the target: the
//! calls the thread makes between them (loading the agent) are the
//! tracer's, not the program's. A tracer that leaves before the routine has
//! run replaces the first `int3` by `ret`; one that leaves while it runs
//! replaces both by `nop`.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

/// The laid-out routine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderRoutine {
    /// Where the routine must be placed; `code` is written here and its
    /// first byte is `begin_trap`.
    pub base: u64,
    pub code: Vec<u8>,
    /// The `int3` the routine starts with.
    pub begin_trap: u64,
    /// The `int3` after `LoadLibraryW` returned.
    pub end_trap: u64,
}

/// `int3`, `ret` and `nop`: what the traps are, and what a leaving tracer
/// makes of them.
pub const INT3: u8 = 0xcc;
pub const RET: u8 = 0xc3;
pub const NOP: u8 = 0x90;

/// Lays the routine out at `base`, calling `load_library(path)`.
pub fn build(base: u64, path: u64, load_library: u64) -> Result<LoaderRoutine, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut end = a.create_label();
    a.int3()?;
    a.sub(rsp, 0x28)?;
    a.mov(rcx, path)?;
    a.mov(rax, load_library)?;
    a.call(rax)?;
    a.add(rsp, 0x28)?;
    a.set_label(&mut end)?;
    a.int3()?;
    a.ret()?;
    let result = a.assemble_options(base, iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    Ok(LoaderRoutine {
        base,
        begin_trap: base,
        end_trap: result.label_ip(&end)?,
        code: result.inner.code_buffer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    #[test]
    fn loads_the_path_between_two_traps() {
        let r = build(0x1_0000, 0x2_0000, 0x7b60_1234).unwrap();
        let mut f = IntelFormatter::new();
        let text: Vec<(u64, String)> = Decoder::with_ip(64, &r.code, r.base, DecoderOptions::NONE)
            .into_iter()
            .map(|i| {
                let mut s = String::new();
                f.format(&i, &mut s);
                (i.ip(), s)
            })
            .collect();
        let listing: Vec<&str> = text.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            listing,
            [
                "int3",
                "sub rsp,28h",
                "mov rcx,20000h",
                "mov rax,7B601234h",
                "call rax",
                "add rsp,28h",
                "int3",
                "ret"
            ]
        );
        assert_eq!(r.begin_trap, r.base);
        assert_eq!(r.code[0], INT3);
        assert_eq!(text[6].0, r.end_trap);
        assert_eq!(r.code[(r.end_trap - r.base) as usize], INT3);
    }
}
