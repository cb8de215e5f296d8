//! The code the debugger engine places in the target.
//!
//! Each traced stub's first bytes become a jump to its *thunk*. The thunk
//! loads the address of its *copy* of the original stub into R11 and jumps to
//! a shared routine, which:
//!
//! 1. reserves a [`FRAME_SIZE`]-byte frame on the thread's own stack and
//!    saves RCX, RDX, R8, R9 and R11 in it;
//! 2. copies [`STACK_ARGS`] stack-argument slots down, so the stub sees its
//!    arguments where the x64 convention puts them;
//! 3. calls the stub copy (the system call happens there), stores RAX;
//! 4. executes `int3` at [`Trampolines::return_trap`]: the one debug event
//!    of the call. The tracer reads the whole frame with one memory read;
//! 5. frees the frame and returns to the caller.
//!
//! Functions that do not return to their caller (NtContinue,
//! NtTerminateProcess, ...) take the *entry* routine instead: same frame,
//! `int3` at [`Trampolines::entry_trap`] before the call, then a tail jump
//! into the stub copy so that it runs with the caller's own return address.
//!
//! Keeping the saved arguments on the calling thread's stack, not in a table,
//! means any number of threads can be inside calls at once and a call that
//! never returns (an exception, a thread killed mid-wait) leaves nothing
//! behind. Detaching replaces both `int3`s with `nop`s: threads still inside
//! a call then return normally without a debugger.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};

/// Stack-passed arguments copied for the stub: with the 4 register arguments
/// this covers 17, the most any Nt* function takes.
pub const STACK_ARGS: usize = 13;
/// Arguments the frame holds in all.
pub const MAX_ARGS: usize = 4 + STACK_ARGS;
/// Bytes reserved on the stack. It is 8 mod 16, so that RSP is 16-byte
/// aligned at the `call` into the stub copy, as the ABI requires.
pub const FRAME_SIZE: usize = 0xb8;

const STACK_ARGS_AT: i32 = 0x20; // above the callee's 32-byte home area
const RCX_AT: i32 = STACK_ARGS_AT + 8 * STACK_ARGS as i32;
const RDX_AT: i32 = RCX_AT + 8;
const R8_AT: i32 = RCX_AT + 16;
const R9_AT: i32 = RCX_AT + 24;
const STUB_AT: i32 = RCX_AT + 32;
const RAX_AT: i32 = RCX_AT + 40;
/// Where the caller's stack arguments are, seen from inside the frame: past
/// the frame, the caller's return address and its 32-byte home area.
const CALLER_ARGS_AT: i32 = FRAME_SIZE as i32 + 8 + 0x20;

const _: () = assert!(RAX_AT + 8 == FRAME_SIZE as i32);
const _: () = assert!(FRAME_SIZE % 16 == 8);

/// What the tracer reads back from a frame at a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The call's arguments: RCX, RDX, R8, R9, then the stack slots.
    pub args: [u64; MAX_ARGS],
    /// Address of the stub copy that ran: identifies the function.
    pub stub_copy: u64,
    /// The return value (meaningful at the return trap only).
    pub rax: u64,
}

impl Frame {
    /// Parses the [`FRAME_SIZE`] bytes read at RSP when a trap fires.
    pub fn parse(bytes: &[u8; FRAME_SIZE]) -> Frame {
        let q = |at: i32| {
            let at = at as usize;
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        };
        let mut args = [0u64; MAX_ARGS];
        args[0] = q(RCX_AT);
        args[1] = q(RDX_AT);
        args[2] = q(R8_AT);
        args[3] = q(R9_AT);
        for i in 0..STACK_ARGS {
            args[4 + i] = q(STACK_ARGS_AT + 8 * i as i32);
        }
        Frame { args, stub_copy: q(STUB_AT), rax: q(RAX_AT) }
    }
}

/// One function to trace: where its stub is and the stub bytes to copy.
#[derive(Debug, Clone)]
pub struct StubToTrace {
    pub address: u64,
    pub code: Vec<u8>,
    /// True for functions that never come back to their caller.
    pub no_return: bool,
}

/// The laid-out trampoline region.
#[derive(Debug, Clone)]
pub struct Trampolines {
    /// Where the region must be placed.
    pub base: u64,
    pub code: Vec<u8>,
    /// Address of the `int3` after a call returns.
    pub return_trap: u64,
    /// Address of the `int3` before a no-return call.
    pub entry_trap: u64,
    /// Per stub, in input order: the thunk its first bytes jump to.
    pub thunks: Vec<u64>,
    /// Per stub, in input order: its copy's address, as saved in frames.
    /// Strictly increasing, so [`Trampolines::stub_index`] can search it.
    pub copies: Vec<u64>,
}

impl Trampolines {
    /// Which input stub a frame's `stub_copy` belongs to.
    pub fn stub_index(&self, stub_copy: u64) -> Option<usize> {
        self.copies.binary_search(&stub_copy).ok()
    }
}

/// Lays out thunks and stub copies for `stubs` at `base`.
pub fn build(base: u64, stubs: &[StubToTrace]) -> Result<Trampolines, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut return_routine = a.create_label();
    let mut entry_routine = a.create_label();
    let mut return_trap = a.create_label();
    let mut entry_trap = a.create_label();

    a.set_label(&mut return_routine)?;
    save_frame(&mut a)?;
    a.call(r11)?;
    a.mov(qword_ptr(rsp + RAX_AT), rax)?;
    a.set_label(&mut return_trap)?;
    a.int3()?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.ret()?;

    a.set_label(&mut entry_routine)?;
    save_frame(&mut a)?;
    a.set_label(&mut entry_trap)?;
    a.int3()?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.jmp(r11)?;

    let mut labels = Vec::with_capacity(stubs.len());
    for stub in stubs {
        let mut thunk = a.create_label();
        let mut copy = a.create_label();
        a.set_label(&mut thunk)?;
        a.lea(r11, qword_ptr(copy))?;
        a.jmp(if stub.no_return { entry_routine } else { return_routine })?;
        a.set_label(&mut copy)?;
        a.db(&stub.code)?;
        labels.push((thunk, copy));
    }

    let result = a.assemble_options(base, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    Ok(Trampolines {
        base,
        return_trap: result.label_ip(&return_trap)?,
        entry_trap: result.label_ip(&entry_trap)?,
        thunks: labels.iter().map(|(t, _)| result.label_ip(t)).collect::<Result<_, _>>()?,
        copies: labels.iter().map(|(_, c)| result.label_ip(c)).collect::<Result<_, _>>()?,
        code: result.inner.code_buffer,
    })
}

fn save_frame(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.sub(rsp, FRAME_SIZE as i32)?;
    a.mov(qword_ptr(rsp + RCX_AT), rcx)?;
    a.mov(qword_ptr(rsp + RDX_AT), rdx)?;
    a.mov(qword_ptr(rsp + R8_AT), r8)?;
    a.mov(qword_ptr(rsp + R9_AT), r9)?;
    a.mov(qword_ptr(rsp + STUB_AT), r11)?;
    // RAX is free: the stub loads the service number into it.
    for i in 0..STACK_ARGS as i32 {
        a.mov(rax, qword_ptr(rsp + (CALLER_ARGS_AT + 8 * i)))?;
        a.mov(qword_ptr(rsp + (STACK_ARGS_AT + 8 * i)), rax)?;
    }
    Ok(())
}

/// The bytes that redirect a stub at `from` to its thunk at `to`: a 5-byte
/// `jmp rel32` when the thunk is within ±2 GiB, else a 14-byte
/// `jmp [rip+0]` followed by the absolute address.
pub fn jump_patch(from: u64, to: u64) -> Vec<u8> {
    let rel = (to as i128) - (from as i128 + 5);
    if let Ok(rel) = i32::try_from(rel) {
        let mut p = vec![0xe9];
        p.extend_from_slice(&rel.to_le_bytes());
        p
    } else {
        let mut p = vec![0xff, 0x25, 0, 0, 0, 0];
        p.extend_from_slice(&to.to_le_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    const WINE_STUB: [u8; 32] = [
        0x4c, 0x8b, 0xd1, 0xb8, 0x15, 0, 0, 0, 0xf6, 0x04, 0x25, 0x08, 0x03, 0xfe, 0x7f, 0x01, 0x75, 0x03,
        0x0f, 0x05, 0xc3, 0xeb, 0x01, 0xc3, 0xff, 0x14, 0x25, 0x00, 0x10, 0xfe, 0x7f, 0xc3,
    ];

    fn disassemble(code: &[u8], ip: u64) -> Vec<String> {
        let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for insn in &mut d {
            let mut s = String::new();
            f.format(&insn, &mut s);
            out.push(format!("{:x} {s}", insn.ip()));
        }
        out
    }

    #[test]
    fn thunks_point_at_their_copies_and_routines() {
        let base = 0x1_0000_0000;
        let stubs = vec![
            StubToTrace { address: 0x7b00_1000, code: WINE_STUB.to_vec(), no_return: false },
            StubToTrace { address: 0x7b00_1020, code: WINE_STUB.to_vec(), no_return: true },
        ];
        let t = build(base, &stubs).unwrap();
        assert_eq!(t.thunks.len(), 2);
        assert!(t.copies[0] < t.copies[1]);
        for (i, copy) in t.copies.iter().enumerate() {
            let at = (copy - base) as usize;
            assert_eq!(&t.code[at..at + 32], &WINE_STUB, "copy {i} holds the stub verbatim");
            assert_eq!(t.stub_index(*copy), Some(i));
        }
        assert_eq!(t.stub_index(t.copies[0] + 1), None);
        assert_eq!(t.code[(t.return_trap - base) as usize], 0xcc);
        assert_eq!(t.code[(t.entry_trap - base) as usize], 0xcc);

        let thunk0 = disassemble(&t.code[(t.thunks[0] - base) as usize..][..12], t.thunks[0]);
        assert_eq!(thunk0[0], format!("{:x} lea r11,[{:X}h]", t.thunks[0], t.copies[0]));
        assert_eq!(thunk0[1], format!("{:x} jmp {:016X}h", t.thunks[0] + 7, base));
        // The no-return stub's thunk goes to the entry routine, which starts
        // right after the return routine's `int3; add rsp,0B8h (7 bytes); ret`.
        let entry_routine = t.return_trap + 1 + 7 + 1;
        let thunk1 = disassemble(&t.code[(t.thunks[1] - base) as usize..][..12], t.thunks[1]);
        assert_eq!(thunk1[1], format!("{:x} jmp {:016X}h", t.thunks[1] + 7, entry_routine));
        let entry = disassemble(
            &t.code[(entry_routine - base) as usize..(t.entry_trap - base) as usize + 11],
            entry_routine,
        );
        assert!(entry[0].ends_with("sub rsp,0B8h"), "{entry:?}");
        assert!(entry[entry.len() - 3].ends_with("int3"));
        assert!(entry[entry.len() - 1].ends_with("jmp r11"), "{entry:?}");
    }

    #[test]
    fn return_routine_saves_registers_copies_args_and_traps_after_the_call() {
        let t = build(0x40_0000, &[StubToTrace { address: 0, code: WINE_STUB.to_vec(), no_return: false }])
            .unwrap();
        let text = disassemble(&t.code[..(t.return_trap - t.base + 9) as usize], t.base);
        let body: Vec<&str> = text.iter().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(body[0], "sub rsp,0B8h");
        assert_eq!(
            &body[1..6],
            [
                "mov [rsp+88h],rcx",
                "mov [rsp+90h],rdx",
                "mov [rsp+98h],r8",
                "mov [rsp+0A0h],r9",
                "mov [rsp+0A8h],r11"
            ]
        );
        // First copied slot: the caller's 5th argument lands where the stub
        // expects its 5th argument after our call.
        assert_eq!(&body[6..8], ["mov rax,[rsp+0E0h]", "mov [rsp+20h],rax"]);
        assert_eq!(body[6 + 2 * STACK_ARGS], "call r11");
        assert_eq!(body[7 + 2 * STACK_ARGS], "mov [rsp+0B0h],rax");
        assert_eq!(&body[8 + 2 * STACK_ARGS..], ["int3", "add rsp,0B8h", "ret"]);
    }

    #[test]
    fn frame_parse_maps_slots_to_arguments() {
        let mut bytes = [0u8; FRAME_SIZE];
        let mut put = |at: i32, v: u64| bytes[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        put(RCX_AT, 1);
        put(RDX_AT, 2);
        put(R8_AT, 3);
        put(R9_AT, 4);
        for i in 0..STACK_ARGS {
            put(STACK_ARGS_AT + 8 * i as i32, 5 + i as u64);
        }
        put(STUB_AT, 0xabc);
        put(RAX_AT, 0xc000_0034);
        let f = Frame::parse(&bytes);
        assert_eq!(f.args.to_vec(), (1..=MAX_ARGS as u64).collect::<Vec<_>>());
        assert_eq!((f.stub_copy, f.rax), (0xabc, 0xc000_0034));
    }

    #[test]
    fn jump_patches_near_and_far() {
        assert_eq!(jump_patch(0x1000, 0x2000), vec![0xe9, 0xfb, 0x0f, 0, 0]);
        assert_eq!(jump_patch(0x2000, 0x1000), vec![0xe9, 0xfb, 0xef, 0xff, 0xff]);
        let far = jump_patch(0x7ff0_0000_0000, 0x1000);
        assert_eq!(far.len(), 14);
        assert_eq!(&far[..6], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(&far[6..], &0x1000u64.to_le_bytes());
    }
}
