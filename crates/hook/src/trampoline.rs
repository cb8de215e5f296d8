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
pub const FRAME_SIZE: usize = 0xd8;

pub(crate) const STACK_ARGS_AT: i32 = 0x20; // above the callee's 32-byte home area
pub(crate) const RCX_AT: i32 = STACK_ARGS_AT + 8 * STACK_ARGS as i32;
pub(crate) const RDX_AT: i32 = RCX_AT + 8;
pub(crate) const R8_AT: i32 = RCX_AT + 16;
pub(crate) const R9_AT: i32 = RCX_AT + 24;
pub(crate) const STUB_AT: i32 = RCX_AT + 32;
pub(crate) const RAX_AT: i32 = RCX_AT + 40;
pub(crate) const ENTRY_TSC_AT: i32 = RCX_AT + 48;
pub(crate) const RETURN_TSC_AT: i32 = RCX_AT + 56;
pub(crate) const SLOT_AT: i32 = RCX_AT + 64;
/// The stub's index among those the trampolines were built for (the thunk
/// passes it in EAX, which the stub overwrites anyway): a frame read from
/// a thread's stack names its function by itself.
pub(crate) const INDEX_AT: i32 = RCX_AT + 72;
/// Where the caller's stack arguments are, seen from inside the frame: past
/// the frame, the caller's return address and its 32-byte home area.
pub(crate) const CALLER_ARGS_AT: i32 = FRAME_SIZE as i32 + 8 + 0x20;

const _: () = assert!(INDEX_AT + 8 == FRAME_SIZE as i32);
const _: () = assert!(FRAME_SIZE % 16 == 8);

/// The in-flight table at the start of the region: one 16-byte slot per
/// call in progress, `{thread id, frame address}`, claimed with
/// `lock cmpxchg` at entry and cleared before the return trap. It lets the
/// tracer see, at any event, which other calls have started and not yet
/// returned (strace's `<unfinished ...>`), without a trap at entry.
pub const SLOT_COUNT: usize = 256;
pub const SLOT_SIZE: usize = 16;
/// Bytes of the in-flight table; the code starts right after it, on the
/// next page, because the table is writable and the code is not.
pub const SLOTS_BYTES: usize = SLOT_COUNT * SLOT_SIZE;
const _: () = assert!(SLOTS_BYTES % 0x1000 == 0);

/// A call in flight, as read from the in-flight table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    pub thread_id: u64,
    /// Address of the call's frame on that thread's stack.
    pub frame: u64,
}

/// Lists the occupied slots of an in-flight table read from the target.
/// A slot whose frame is not yet written (the thread stopped between its
/// two stores) is skipped.
pub fn parse_in_flight(table: &[u8]) -> Vec<InFlight> {
    table
        .chunks_exact(SLOT_SIZE)
        .filter_map(|slot| {
            let thread_id = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
            let frame = u64::from_le_bytes(slot[8..].try_into().expect("8 bytes"));
            (thread_id != 0 && frame != 0).then_some(InFlight { thread_id, frame })
        })
        .collect()
}

/// What the tracer reads back from a frame at a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The call's arguments: RCX, RDX, R8, R9, then the stack slots.
    pub args: [u64; MAX_ARGS],
    /// Address of the stub copy that ran: identifies the function.
    pub stub_copy: u64,
    /// The return value (meaningful at the return trap only).
    pub rax: u64,
    /// The thread's time-stamp counter at entry and after the return.
    pub entry_tsc: u64,
    pub return_tsc: u64,
    /// Which stub, by its index in the trampolines' input.
    pub index: u32,
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
        Frame {
            args,
            stub_copy: q(STUB_AT),
            rax: q(RAX_AT),
            entry_tsc: q(ENTRY_TSC_AT),
            return_tsc: q(RETURN_TSC_AT),
            index: q(INDEX_AT) as u32,
        }
    }

    /// The frame's function, as an index into `copies` (the stub copies of
    /// the trampolines that wrote it, in input order): the index its thunk
    /// stored, if the copy it jumped to is that stub's. A frame is read
    /// from a thread's stack, so both are checked.
    pub fn function(&self, copies: &[u64]) -> Option<usize> {
        let index = self.index as usize;
        (copies.get(index) == Some(&self.stub_copy)).then_some(index)
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

/// The laid-out trampoline region: the in-flight table, then the code.
#[derive(Debug, Clone)]
pub struct Trampolines {
    /// Where the region must be placed; the in-flight table starts here.
    pub base: u64,
    /// Where `code` goes: `base + SLOTS_BYTES`.
    pub code_base: u64,
    pub code: Vec<u8>,
    /// Address of the `int3` after a call returns.
    pub return_trap: u64,
    /// Address of the `int3` before a no-return call.
    pub entry_trap: u64,
    /// Per stub, in input order: the thunk its first bytes jump to.
    pub thunks: Vec<u64>,
    /// Per stub, in input order: its copy's address, as saved in frames
    /// (see [`Frame::function`]).
    pub copies: Vec<u64>,
}

/// Bytes the whole region needs for `stubs`.
pub fn region_size(stubs: &[StubToTrace]) -> Result<usize, IcedError> {
    // The code's size does not depend on where it goes (every reference is
    // relative), so laying it out at 0 measures it.
    Ok(SLOTS_BYTES + build(0, stubs)?.code.len())
}

/// Lays out the in-flight table, thunks and stub copies for `stubs` at `base`.
pub fn build(base: u64, stubs: &[StubToTrace]) -> Result<Trampolines, IcedError> {
    let code_base = base + SLOTS_BYTES as u64;
    let mut a = CodeAssembler::new(64)?;
    let mut return_routine = a.create_label();
    let mut entry_routine = a.create_label();
    let mut return_trap = a.create_label();
    let mut entry_trap = a.create_label();

    a.set_label(&mut return_routine)?;
    save_frame(&mut a)?;
    claim_slot(&mut a, base)?;
    // RDTSC and the slot search used RDX and R11: reload them.
    a.mov(rdx, qword_ptr(rsp + RDX_AT))?;
    a.mov(r11, qword_ptr(rsp + STUB_AT))?;
    a.call(r11)?;
    a.mov(qword_ptr(rsp + RAX_AT), rax)?;
    store_tsc(&mut a, RETURN_TSC_AT)?;
    release_slot(&mut a)?;
    a.mov(rax, qword_ptr(rsp + RAX_AT))?;
    a.set_label(&mut return_trap)?;
    a.int3()?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.ret()?;

    a.set_label(&mut entry_routine)?;
    save_frame(&mut a)?;
    a.mov(rdx, qword_ptr(rsp + RDX_AT))?;
    a.set_label(&mut entry_trap)?;
    a.int3()?;
    a.add(rsp, FRAME_SIZE as i32)?;
    a.jmp(r11)?;

    let labels = emit_thunks(&mut a, stubs, return_routine, entry_routine)?;
    let result = a.assemble_options(code_base, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let (thunks, copies) = thunk_addresses(&result, &labels)?;
    Ok(Trampolines {
        base,
        code_base,
        return_trap: result.label_ip(&return_trap)?,
        entry_trap: result.label_ip(&entry_trap)?,
        thunks,
        copies,
        code: result.inner.code_buffer,
    })
}

/// Claims a free slot of the in-flight table at `slots` for the frame at
/// RSP: {thread id from the TEB, frame}, with `lock cmpxchg`; stores the
/// slot's address (0 if all are busy) in the frame. Clobbers RAX, R10, R11.
pub(crate) fn claim_slot(a: &mut CodeAssembler, slots: u64) -> Result<(), IcedError> {
    let mut claim = a.create_label();
    let mut claimed = a.create_label();
    let mut no_slot = a.create_label();
    a.mov(r10, qword_ptr(0x48).gs())?; // TEB.ClientId.UniqueThread
    a.mov(r11, slots)?;
    a.set_label(&mut claim)?;
    a.xor(eax, eax)?;
    a.lock().cmpxchg(qword_ptr(r11), r10)?;
    a.je(claimed)?;
    a.add(r11, SLOT_SIZE as i32)?;
    a.mov(rax, slots + SLOTS_BYTES as u64)?;
    a.cmp(r11, rax)?;
    a.jb(claim)?;
    // All slots busy: this call goes untracked in the table (it is still
    // traced; only an interruption of it cannot be shown).
    a.xor(r11d, r11d)?;
    a.jmp(no_slot)?;
    a.set_label(&mut claimed)?;
    a.mov(qword_ptr(r11 + 8), rsp)?;
    a.set_label(&mut no_slot)?;
    a.mov(qword_ptr(rsp + SLOT_AT), r11)
}

/// Releases the frame's in-flight slot, if it has one: frame first, so a
/// half-released slot reads as free. Clobbers R11.
pub(crate) fn release_slot(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut released = a.create_label();
    a.mov(r11, qword_ptr(rsp + SLOT_AT))?;
    a.test(r11, r11)?;
    a.jz(released)?;
    a.mov(qword_ptr(r11 + 8), 0)?;
    a.mov(qword_ptr(r11), 0)?;
    a.set_label(&mut released)
}

/// Emits each stub's thunk (`mov eax, index; lea r11, [copy]; jmp routine`) and its copy;
/// returns their labels. Both layouts (this one and [`crate::inline`]) share it.
pub(crate) fn emit_thunks(
    a: &mut CodeAssembler,
    stubs: &[StubToTrace],
    return_routine: CodeLabel,
    entry_routine: CodeLabel,
) -> Result<Vec<(CodeLabel, CodeLabel)>, IcedError> {
    let mut labels = Vec::with_capacity(stubs.len());
    for (index, stub) in stubs.iter().enumerate() {
        let mut thunk = a.create_label();
        let mut copy = a.create_label();
        a.set_label(&mut thunk)?;
        a.mov(eax, index as u32)?;
        a.lea(r11, qword_ptr(copy))?;
        a.jmp(if stub.no_return { entry_routine } else { return_routine })?;
        a.set_label(&mut copy)?;
        a.db(&stub.code)?;
        labels.push((thunk, copy));
    }
    Ok(labels)
}

/// The addresses of the thunks and copies [`emit_thunks`] laid out.
pub(crate) fn thunk_addresses(
    result: &CodeAssemblerResult,
    labels: &[(CodeLabel, CodeLabel)],
) -> Result<(Vec<u64>, Vec<u64>), IcedError> {
    let thunks = labels.iter().map(|(t, _)| result.label_ip(t)).collect::<Result<_, _>>()?;
    let copies = labels.iter().map(|(_, c)| result.label_ip(c)).collect::<Result<_, _>>()?;
    Ok((thunks, copies))
}

/// `RDTSC` into the frame slot `at` (clobbers RAX and RDX).
pub(crate) fn store_tsc(a: &mut CodeAssembler, at: i32) -> Result<(), IcedError> {
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(qword_ptr(rsp + at), rax)
}

/// Reserves the frame, saves the stub's index (EAX), the register
/// arguments and the stub copy's address (R11), copies the stack arguments and stores the entry RDTSC
/// (clobbers RAX and RDX). Shared with [`crate::inline`].
pub(crate) fn save_frame(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.sub(rsp, FRAME_SIZE as i32)?;
    a.mov(qword_ptr(rsp + INDEX_AT), rax)?;
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
    store_tsc(a, ENTRY_TSC_AT)
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
pub(crate) mod tests {
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

    /// The code bytes at `address`.
    fn code_at(t: &Trampolines, address: u64) -> &[u8] {
        &t.code[(address - t.code_base) as usize..]
    }

    #[test]
    fn thunks_point_at_their_copies_and_routines() {
        let base = 0x1_0000_0000;
        let stubs = vec![
            StubToTrace { address: 0x7b00_1000, code: WINE_STUB.to_vec(), no_return: false },
            StubToTrace { address: 0x7b00_1020, code: WINE_STUB.to_vec(), no_return: true },
        ];
        let t = build(base, &stubs).unwrap();
        assert_eq!(t.code_base, base + SLOTS_BYTES as u64);
        assert_eq!(region_size(&stubs).unwrap(), SLOTS_BYTES + t.code.len());
        assert_eq!(t.thunks.len(), 2);
        assert!(t.copies[0] < t.copies[1]);
        for (i, copy) in t.copies.iter().enumerate() {
            assert_eq!(&code_at(&t, *copy)[..32], &WINE_STUB, "copy {i} holds the stub verbatim");
            assert_eq!(frame_of(i, *copy).function(&t.copies), Some(i));
        }
        assert_eq!(frame_of(0, t.copies[0] + 1).function(&t.copies), None);
        assert_eq!(frame_of(1, t.copies[0]).function(&t.copies), None, "index and copy disagree");
        assert_eq!(code_at(&t, t.return_trap)[0], 0xcc);
        assert_eq!(code_at(&t, t.entry_trap)[0], 0xcc);

        let thunk0 = disassemble(&code_at(&t, t.thunks[0])[..17], t.thunks[0]);
        assert_eq!(thunk0[0], format!("{:x} mov eax,0", t.thunks[0]));
        assert_eq!(thunk0[1], format!("{:x} lea r11,[{:X}h]", t.thunks[0] + 5, t.copies[0]));
        assert_eq!(thunk0[2], format!("{:x} jmp {:016X}h", t.thunks[0] + 12, t.code_base));
        // The no-return stub's thunk goes to the entry routine, which starts
        // right after the return routine's `int3; add rsp,0D8h (7 bytes); ret`.
        let entry_routine = t.return_trap + 1 + 7 + 1;
        let thunk1 = disassemble(&code_at(&t, t.thunks[1])[..17], t.thunks[1]);
        assert_eq!(thunk1[0], format!("{:x} mov eax,1", t.thunks[1]));
        assert_eq!(thunk1[2], format!("{:x} jmp {:016X}h", t.thunks[1] + 12, entry_routine));
        let len = (t.entry_trap - entry_routine) as usize + 11;
        let entry = disassemble(&code_at(&t, entry_routine)[..len], entry_routine);
        assert!(entry[0].ends_with("sub rsp,0D8h"), "{entry:?}");
        assert!(entry[entry.len() - 3].ends_with("int3"));
        assert!(entry[entry.len() - 1].ends_with("jmp r11"), "{entry:?}");
    }

    #[test]
    fn return_routine_saves_registers_copies_args_claims_a_slot_and_traps_after_the_call() {
        let t = build(0x40_0000, &[StubToTrace { address: 0, code: WINE_STUB.to_vec(), no_return: false }])
            .unwrap();
        let text = disassemble(&t.code[..(t.return_trap - t.code_base + 9) as usize], t.code_base);
        let body: Vec<&str> = text.iter().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(body[0], "sub rsp,0D8h");
        assert_eq!(body[1], "mov [rsp+0D0h],rax", "the stub's index, from the thunk");
        assert_eq!(
            &body[2..7],
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
        assert_eq!(&body[7..9], ["mov rax,[rsp+100h]", "mov [rsp+20h],rax"]);
        let after_copy = 7 + 2 * STACK_ARGS;
        assert_eq!(
            &body[after_copy..after_copy + 4],
            ["rdtsc", "shl rdx,20h", "or rax,rdx", "mov [rsp+0B8h],rax"]
        );
        // Branch targets are checked as the instructions they land on.
        let at = |address: &str| -> String {
            let address = u64::from_str_radix(address.trim_end_matches('h'), 16).unwrap();
            let line = text.iter().find(|l| l.starts_with(&format!("{address:x} "))).expect("a target");
            format!("-> {}", line.split_once(' ').unwrap().1)
        };
        let rest: Vec<String> = body[after_copy + 4..]
            .iter()
            .map(|l| match l.split_once(" short ") {
                Some((op, target)) => format!("{op} {}", at(target)),
                None => l.to_string(),
            })
            .collect();
        assert_eq!(
            rest,
            [
                "mov r10,gs:[48h]",
                "mov r11,400000h",
                "xor eax,eax",
                "lock cmpxchg [r11],r10",
                "je -> mov [r11+8],rsp",
                "add r11,10h",
                "mov rax,401000h",
                "cmp r11,rax",
                "jb -> xor eax,eax",
                "xor r11d,r11d",
                "jmp -> mov [rsp+0C8h],r11",
                "mov [r11+8],rsp",
                "mov [rsp+0C8h],r11",
                "mov rdx,[rsp+90h]",
                "mov r11,[rsp+0A8h]",
                "call r11",
                "mov [rsp+0B0h],rax",
                "rdtsc",
                "shl rdx,20h",
                "or rax,rdx",
                "mov [rsp+0C0h],rax",
                "mov r11,[rsp+0C8h]",
                "test r11,r11",
                "je -> mov rax,[rsp+0B0h]",
                "mov qword ptr [r11+8],0",
                "mov qword ptr [r11],0",
                "mov rax,[rsp+0B0h]",
                "int3",
                "add rsp,0D8h",
                "ret"
            ]
        );
    }

    #[test]
    fn in_flight_table_lists_occupied_slots_only() {
        let mut table = vec![0u8; SLOTS_BYTES];
        let mut put = |slot: usize, tid: u64, frame: u64| {
            table[slot * 16..slot * 16 + 8].copy_from_slice(&tid.to_le_bytes());
            table[slot * 16 + 8..slot * 16 + 16].copy_from_slice(&frame.to_le_bytes());
        };
        put(0, 0x20, 0x5ff000);
        put(3, 0x24, 0); // claimed, frame not yet stored
        put(255, 0x28, 0x7ff000);
        assert_eq!(
            parse_in_flight(&table),
            [InFlight { thread_id: 0x20, frame: 0x5ff000 }, InFlight { thread_id: 0x28, frame: 0x7ff000 }]
        );
    }

    /// A frame as a thunk for stub `index`, whose copy is at `copy`, saves it.
    pub(crate) fn frame_of(index: usize, copy: u64) -> Frame {
        Frame {
            args: [0; MAX_ARGS],
            stub_copy: copy,
            rax: 0,
            entry_tsc: 0,
            return_tsc: 0,
            index: index as u32,
        }
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
        put(ENTRY_TSC_AT, 1000);
        put(RETURN_TSC_AT, 1500);
        let f = Frame::parse(&bytes);
        assert_eq!(f.args.to_vec(), (1..=MAX_ARGS as u64).collect::<Vec<_>>());
        assert_eq!((f.stub_copy, f.rax, f.entry_tsc, f.return_tsc), (0xabc, 0xc000_0034, 1000, 1500));
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
