//! The code an in-process agent places next to ntdll.
//!
//! Same thunks, stub copies and frame as [`crate::trampoline`] (the frame
//! layout is shared, so [`Frame::parse`](crate::trampoline::Frame::parse)
//! reads both), but where the debugger's routines execute `int3`, these call
//! the agent: no debugger, no context switch per call.
//!
//! The region starts with a data slot holding the address of the agent's
//! callback, `extern "win64" fn(frame: *const u8, no_return: u64)`. The
//! builder leaves it zero; the agent stores its callback there after
//! writing the code and before it makes the region executable (and
//! read-only) and patches any stub, so the slot is never read empty.
//!
//! - Returning functions: the *return routine* saves the frame, claims an
//!   in-flight slot, calls the callback with RCX = the frame's address and
//!   RDX = [`ENTRY`] (in-parameters as they are at call time), reloads the
//!   argument registers, calls the stub copy, stores RAX and the return
//!   RDTSC, calls the callback
//!   with RCX = the frame's address and RDX = [`RETURNED`], reloads RAX
//!   from the frame and returns to the caller.
//! - Functions that do not return (NtContinue, NtTerminateProcess, ...):
//!   the *entry routine* saves the frame, zeroes its RAX and return-RDTSC
//!   fields, calls the callback with RDX = [`NO_RETURN`], reloads the
//!   argument registers (the callback may clobber them) and tail-jumps into
//!   the stub copy with the caller's own return address.
//!
//! Stack alignment: a thunk is entered with RSP = 8 mod 16 (just after the
//! caller's `call`); the frame is 8 mod 16, the home area 32 bytes, so RSP is
//! 16-byte aligned at both `call`s, as the x64 convention requires.
//!
//! The callback runs on the calling thread after the system call (or before
//! it, for no-return functions) and may clobber only what the x64
//! convention lets a callee clobber; the traced function's caller cannot
//! tell a difference beyond that. Returning functions keep the same
//! in-flight table as the debugger's (a separate, writable page), so the
//! tracer can show a call that blocks as `<unfinished ...>`.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};

use crate::trampoline::{
    claim_slot, emit_thunks, release_slot, save_frame, store_tsc, thunk_addresses, StubToTrace, FRAME_SIZE,
    R8_AT, R9_AT, RAX_AT, RCX_AT, RDX_AT, RETURN_TSC_AT, STUB_AT,
};

/// `no_return` argument of a callback made after the call returned.
pub const RETURNED: u64 = 0;
/// `no_return` argument of a callback made before a call that never returns
/// to its caller; the frame's RAX and return RDTSC are then 0.
pub const NO_RETURN: u64 = 1;
/// `no_return` argument of the callback a returning function's routine
/// makes before the call (the callback sees the in-parameters as they are
/// at call time); the same routine calls it again, with [`RETURNED`],
/// after the return.
pub const ENTRY: u64 = 2;
/// Bytes before the code: the callback slot, padded so that the code
/// starts 16-byte aligned.
pub const DATA_BYTES: usize = 16;
/// The home area the callee may use, reserved below the frame for the call.
const HOME: i32 = 0x20;

/// The laid-out region: callback slot, shared routines, thunks and copies.
#[derive(Debug, Clone)]
pub struct InlineTrampolines {
    /// Where the region must be placed; `code` is written here.
    pub base: u64,
    /// The whole region's bytes, callback slot (zero) included.
    pub code: Vec<u8>,
    /// Address of the 8-byte callback slot (`base`).
    pub callback_slot: u64,
    /// Address of the return routine (shared by returning functions).
    pub return_routine: u64,
    /// Address of the entry routine (shared by no-return functions).
    pub entry_routine: u64,
    /// Per stub, in input order: the thunk its first bytes jump to.
    pub thunks: Vec<u64>,
    /// Per stub, in input order: its copy's address, as saved in frames
    /// (see [`Frame::function`](crate::trampoline::Frame::function)).
    pub copies: Vec<u64>,
}

/// Bytes the whole region needs for `stubs`.
pub fn region_size(stubs: &[StubToTrace]) -> Result<usize, IcedError> {
    // Every reference is RIP-relative or a 64-bit immediate, so the size
    // depends on neither address.
    Ok(build(0, stubs, 0)?.code.len())
}

/// Lays out the callback slot, routines, thunks and stub copies at `base`;
/// calls in flight are listed in the in-flight table at `slots` (see
/// [`crate::trampoline::SLOTS_BYTES`]; writable, unlike the code).
pub fn build(base: u64, stubs: &[StubToTrace], slots: u64) -> Result<InlineTrampolines, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut slot = a.create_label();
    let mut return_routine = a.create_label();
    let mut entry_routine = a.create_label();

    a.set_label(&mut slot)?;
    a.dq(&[0, 0])?;

    a.set_label(&mut return_routine)?;
    save_frame(&mut a)?;
    claim_slot(&mut a, slots)?;
    a.mov(rcx, rsp)?;
    a.mov(edx, ENTRY as u32)?;
    call_callback(&mut a, slot)?;
    // The callback may clobber the argument registers: reload them (the
    // stack arguments are in the frame, above the callback's home area).
    reload_arguments(&mut a)?;
    a.call(r11)?;
    a.mov(qword_ptr(rsp + RAX_AT), rax)?;
    store_tsc(&mut a, RETURN_TSC_AT)?;
    a.mov(rcx, rsp)?;
    a.xor(edx, edx)?; // RETURNED
    call_callback(&mut a, slot)?;
    // Released only once the callback has published the call: the tracer
    // always finds it in one place or the other.
    release_slot(&mut a)?;
    a.mov(rax, qword_ptr(rsp + RAX_AT))?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.ret()?;

    a.set_label(&mut entry_routine)?;
    save_frame(&mut a)?;
    a.mov(qword_ptr(rsp + RAX_AT), 0)?;
    a.mov(qword_ptr(rsp + RETURN_TSC_AT), 0)?;
    a.mov(rcx, rsp)?;
    a.mov(edx, NO_RETURN as u32)?;
    call_callback(&mut a, slot)?;
    reload_arguments(&mut a)?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.jmp(r11)?;

    let labels = emit_thunks(&mut a, stubs, return_routine, entry_routine)?;
    let result = a.assemble_options(base, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let (thunks, copies) = thunk_addresses(&result, &labels)?;
    Ok(InlineTrampolines {
        base,
        callback_slot: result.label_ip(&slot)?,
        return_routine: result.label_ip(&return_routine)?,
        entry_routine: result.label_ip(&entry_routine)?,
        thunks,
        copies,
        code: result.inner.code_buffer,
    })
}

/// Reloads the four register arguments and the stub copy's address (R11)
/// from the frame.
fn reload_arguments(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rcx, qword_ptr(rsp + RCX_AT))?;
    a.mov(rdx, qword_ptr(rsp + RDX_AT))?;
    a.mov(r8, qword_ptr(rsp + R8_AT))?;
    a.mov(r9, qword_ptr(rsp + R9_AT))?;
    a.mov(r11, qword_ptr(rsp + STUB_AT))
}

/// `call [rip+slot]` with a home area below the frame.
fn call_callback(a: &mut CodeAssembler, slot: CodeLabel) -> Result<(), IcedError> {
    a.sub(rsp, HOME)?;
    a.call(qword_ptr(slot))?;
    a.add(rsp, HOME)
}

/// The 8 bytes that replace the first 8 of a stub at `from` (which starts
/// `original`) so that it jumps to `to`: `jmp rel32` followed by the
/// original bytes 5..8, or `None` if `to` is out of `rel32` reach or
/// `original` is shorter than 8 bytes. Written with one aligned 8-byte
/// store, a thread fetching the stub's start sees either the old or the new
/// instruction, never a mix (see the agent's README for the one case this
/// leaves: a thread suspended right after the stub's first instruction).
pub fn atomic_patch(from: u64, to: u64, original: &[u8]) -> Option<[u8; 8]> {
    let original: &[u8; 8] = original.get(..8)?.try_into().ok()?;
    let rel = i32::try_from((to as i128) - (from as i128 + 5)).ok()?;
    let mut p = *original;
    p[0] = 0xe9;
    p[1..5].copy_from_slice(&rel.to_le_bytes());
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trampoline::tests::frame_of;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    const WINE_STUB: [u8; 32] = [
        0x4c, 0x8b, 0xd1, 0xb8, 0x15, 0, 0, 0, 0xf6, 0x04, 0x25, 0x08, 0x03, 0xfe, 0x7f, 0x01, 0x75, 0x03,
        0x0f, 0x05, 0xc3, 0xeb, 0x01, 0xc3, 0xff, 0x14, 0x25, 0x00, 0x10, 0xfe, 0x7f, 0xc3,
    ];

    /// Instructions from `from` up to and including the first one whose
    /// text satisfies `last`, as "text" without addresses.
    fn listing(t: &InlineTrampolines, from: u64, last: impl Fn(&str) -> bool) -> Vec<String> {
        let code = &t.code[(from - t.base) as usize..];
        let mut d = Decoder::with_ip(64, code, from, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for insn in &mut d {
            let mut s = String::new();
            f.format(&insn, &mut s);
            let done = last(&s);
            out.push(s);
            if done {
                break;
            }
        }
        out
    }

    fn stubs() -> Vec<StubToTrace> {
        vec![
            StubToTrace { address: 0x7b00_1000, code: WINE_STUB.to_vec(), no_return: false },
            StubToTrace { address: 0x7b00_1020, code: WINE_STUB.to_vec(), no_return: true },
        ]
    }

    #[test]
    fn layout_slot_thunks_and_copies() {
        let base = 0x7a00_0000;
        let t = build(base, &stubs(), 0x50_0000).unwrap();
        assert_eq!(t.callback_slot, base);
        assert_eq!(&t.code[..DATA_BYTES], &[0u8; DATA_BYTES]);
        assert_eq!(t.return_routine, base + DATA_BYTES as u64);
        assert_eq!(region_size(&stubs()).unwrap(), t.code.len());
        for (i, copy) in t.copies.iter().enumerate() {
            let at = (copy - base) as usize;
            assert_eq!(&t.code[at..at + 32], &WINE_STUB, "copy {i} holds the stub verbatim");
            assert_eq!(frame_of(i, *copy).function(&t.copies), Some(i));
        }
        assert_eq!(frame_of(1, t.copies[1] + 1).function(&t.copies), None);
        // Stub 0 returns, stub 1 does not: each thunk passes its index and
        // its copy to its routine.
        for (i, routine) in [t.return_routine, t.entry_routine].into_iter().enumerate() {
            assert_eq!(
                listing(&t, t.thunks[i], |s| s.starts_with("jmp")),
                [
                    format!("mov eax,{i}"),
                    format!("lea r11,[{:X}h]", t.copies[i]),
                    format!("jmp {routine:016X}h")
                ]
            );
        }
    }

    #[test]
    fn return_routine_calls_the_stub_then_the_callback_with_the_frame() {
        let base = 0x40_0000;
        let t = build(base, &stubs(), 0x50_0000).unwrap();
        let text = listing(&t, t.return_routine, |s| s == "ret");
        // Frame saving and the slot's claim and release are trampoline.rs's
        // (tested there): check that they come, and in what order.
        assert_eq!(text[0], "sub rsp,0D8h");
        assert_eq!(text[1], "mov [rsp+0D0h],rax");
        assert_eq!(text[2], "mov [rsp+88h],rcx");
        let at =
            |insn: &str| text.iter().position(|s| s == insn).unwrap_or_else(|| panic!("{insn}: {text:?}"));
        let claim = at("lock cmpxchg [r11],r10");
        assert_eq!(text[claim - 2], "mov r11,500000h", "the table given");
        let call = at("call r11");
        let callback = text.iter().rposition(|s| *s == format!("call qword ptr [{:X}h]", base)).unwrap();
        let release = at("mov qword ptr [r11],0");
        assert!(at("mov [rsp+0B8h],rax") < claim && claim < call && call < callback && callback < release);
        // The entry callback, then the arguments reloaded for the stub.
        let entry = text.iter().position(|s| s == "mov edx,2").unwrap();
        assert!(claim < entry && entry < call);
        assert_eq!(
            &text[entry - 1..entry + 4],
            [
                "mov rcx,rsp",
                "mov edx,2",
                "sub rsp,20h",
                &format!("call qword ptr [{:X}h]", base),
                "add rsp,20h"
            ]
        );
        assert_eq!(
            &text[call - 5..call + 6],
            [
                "mov rcx,[rsp+88h]",
                "mov rdx,[rsp+90h]",
                "mov r8,[rsp+98h]",
                "mov r9,[rsp+0A0h]",
                "mov r11,[rsp+0A8h]",
                "call r11",
                "mov [rsp+0B0h],rax",
                "rdtsc",
                "shl rdx,20h",
                "or rax,rdx",
                "mov [rsp+0C0h],rax",
            ]
        );
        assert_eq!(
            &text[callback - 3..callback + 2],
            [
                "mov rcx,rsp",
                "xor edx,edx",
                "sub rsp,20h",
                // The slot is at the region's base.
                &format!("call qword ptr [{:X}h]", base),
                "add rsp,20h",
            ]
        );
        assert_eq!(&text[release + 1..], ["mov rax,[rsp+0B0h]", "add rsp,0D8h", "ret"]);
    }

    #[test]
    fn entry_routine_calls_the_callback_then_tail_jumps_with_the_arguments_restored() {
        let base = 0x40_0000;
        let t = build(base, &stubs(), 0x50_0000).unwrap();
        let text = listing(&t, t.entry_routine, |s| s.starts_with("jmp"));
        assert_eq!(text[0], "sub rsp,0D8h");
        let after_save = text.iter().position(|s| s == "mov [rsp+0B8h],rax").unwrap() + 1;
        assert_eq!(
            &text[after_save..],
            [
                "mov qword ptr [rsp+0B0h],0",
                "mov qword ptr [rsp+0C0h],0",
                "mov rcx,rsp",
                "mov edx,1",
                "sub rsp,20h",
                &format!("call qword ptr [{:X}h]", base),
                "add rsp,20h",
                "mov rcx,[rsp+88h]",
                "mov rdx,[rsp+90h]",
                "mov r8,[rsp+98h]",
                "mov r9,[rsp+0A0h]",
                "mov r11,[rsp+0A8h]",
                "add rsp,0D8h",
                "jmp r11",
            ]
        );
    }

    #[test]
    fn frame_and_stack_stay_aligned_for_the_callback() {
        // Entered at 8 mod 16; the frame and home area keep RSP 16-aligned
        // at the call (the callee sees 8 mod 16 after the return address).
        assert_eq!((8 + FRAME_SIZE + HOME as usize) % 16, 0);
        assert_eq!(DATA_BYTES % 16, 0);
    }

    #[test]
    fn atomic_patch_keeps_the_original_tail() {
        let p = atomic_patch(0x7b00_1000, 0x7a00_0040, &WINE_STUB).unwrap();
        let rel = (0x7a00_0040i64 - 0x7b00_1005) as i32;
        let mut want = [0xe9, 0, 0, 0, 0, 0, 0, 0];
        want[1..5].copy_from_slice(&rel.to_le_bytes());
        assert_eq!(p, want);
        let mut stub = WINE_STUB;
        stub[5..8].copy_from_slice(&[1, 2, 3]);
        assert_eq!(&atomic_patch(0x1000, 0x2000, &stub).unwrap()[5..], &[1, 2, 3]);
        assert_eq!(atomic_patch(0x7ff0_0000_0000, 0x1000, &WINE_STUB), None, "out of reach");
        assert_eq!(atomic_patch(0x1000, 0x2000, &WINE_STUB[..7]), None, "too short");
    }
}
