//! Recognising ntdll's system-call stubs.
//!
//! Windows x64 and Wine 8 both start every syscall stub with
//! `mov r10, rcx; mov eax, <number>` (`4c 8b d1 b8 xx xx xx xx`) and end each
//! path in `ret`. What follows differs (Windows: `syscall` or `int 2e`; Wine:
//! `syscall` or `call [0x7ffe1000]`), so rather than match every variant
//! byte for byte we decode the stub with iced-x86 and accept it when it can
//! run unchanged at another address: no RIP-relative operands and no branch
//! that leaves the stub. Such a stub is copied whole into the trampolines.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};

/// How many bytes of a stub we look at. Stubs are 32 bytes apart in both
/// Windows' and Wine's ntdll.
pub const STUB_WINDOW: usize = 32;

/// A recognised syscall stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubShape {
    /// The system service number loaded into EAX.
    pub service_number: u32,
    /// The bytes to copy: every instruction reachable from the stub's start.
    pub code: Vec<u8>,
}

/// Returns the shape of the stub in `bytes` (read from the function's
/// start), or `None` if it is not a relocatable syscall stub.
pub fn recognize(bytes: &[u8]) -> Option<StubShape> {
    let window = &bytes[..bytes.len().min(STUB_WINDOW)];
    if window.len() < 8 || window[..4] != [0x4c, 0x8b, 0xd1, 0xb8] {
        return None;
    }
    let service_number = u32::from_le_bytes([window[4], window[5], window[6], window[7]]);

    // Walk every path from offset 0; `reached[i]` marks decoded instruction
    // starts, `end` the furthest byte any reached instruction covers.
    let mut reached = [false; STUB_WINDOW];
    let mut pending = vec![0usize];
    let mut end = 0usize;
    let mut saw_syscall = false;
    while let Some(start) = pending.pop() {
        let mut offset = start;
        loop {
            if offset >= window.len() {
                return None; // Runs off the bytes we have: not a whole stub.
            }
            if reached[offset] {
                break;
            }
            reached[offset] = true;
            let mut decoder = Decoder::with_ip(64, &window[offset..], offset as u64, DecoderOptions::NONE);
            let mut insn = Instruction::default();
            decoder.decode_out(&mut insn);
            if insn.is_invalid() || insn.is_ip_rel_memory_operand() {
                return None;
            }
            let next = offset + insn.len();
            end = end.max(next);
            if insn.mnemonic() == Mnemonic::Syscall {
                // The system call returns to the next instruction.
                saw_syscall = true;
                offset = next;
                continue;
            }
            match insn.flow_control() {
                FlowControl::Return => break,
                FlowControl::Next => {}
                // `int 2e` is the legacy system-call gate; it returns.
                FlowControl::Interrupt if insn.mnemonic() == Mnemonic::Int => {}
                FlowControl::UnconditionalBranch => {
                    pending.push(in_window(insn.near_branch_target())?);
                    break;
                }
                FlowControl::ConditionalBranch => {
                    pending.push(in_window(insn.near_branch_target())?);
                }
                // `call [abs]` (Wine's dispatcher pointer) is position-
                // independent: it has no register base and no RIP-relative
                // displacement (checked above). Relative calls are not.
                FlowControl::IndirectCall if insn.memory_base() == iced_x86::Register::None => {
                    saw_syscall = true;
                }
                _ => return None,
            }
            offset = next;
        }
    }
    if !saw_syscall {
        return None;
    }
    Some(StubShape { service_number, code: window[..end].to_vec() })
}

/// An `Nt*` export of ntdll whose code is a relocatable syscall stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundStub {
    pub name: String,
    pub address: u64,
    pub shape: StubShape,
}

/// Every `Nt*` syscall stub of the ntdll mapped at `ntdll_base`, found from
/// its export table and recognised by its bytes: what both engines hook.
pub fn find_stubs(
    mem: &dyn winstrace_core::memory::TargetMemory,
    ntdll_base: u64,
) -> Result<Vec<FoundStub>, crate::pe::PeError> {
    let mut found = Vec::new();
    for export in crate::pe::exports(mem, ntdll_base)? {
        // `Nt*` exports, not `Ntdll*` helpers; the stub shape decides the rest.
        if !export.name.starts_with("Nt") || export.name.starts_with("Ntdll") {
            continue;
        }
        let mut window = [0u8; STUB_WINDOW];
        let n = mem.read_partial(export.address, &mut window);
        if let Some(shape) = recognize(&window[..n]) {
            found.push(FoundStub { name: export.name, address: export.address, shape });
        }
    }
    Ok(found)
}

fn in_window(target: u64) -> Option<usize> {
    (target < STUB_WINDOW as u64).then_some(target as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Wine 8's NtClose, as read from its ntdll.dll.
    const WINE_NT_CLOSE: &str = "4c8bd1b815000000f604250803fe7f0175030f05c3eb01c3ff14250010fe7fc3";
    /// Windows 11's layout: test SharedUserData, syscall or int 2e, then padding.
    const WINDOWS_NT_CLOSE: &str = "4c8bd1b80f000000f604250803fe7f0175030f05c3cd2ec30f1f840000000000";

    #[test]
    fn wine_stub_is_copied_whole() {
        let shape = recognize(&hex(WINE_NT_CLOSE)).unwrap();
        assert_eq!(shape.service_number, 0x15);
        assert_eq!(shape.code, hex(WINE_NT_CLOSE));
    }

    #[test]
    fn windows_stub_is_copied_without_its_padding() {
        let shape = recognize(&hex(WINDOWS_NT_CLOSE)).unwrap();
        assert_eq!(shape.service_number, 0xf);
        assert_eq!(shape.code, hex(WINDOWS_NT_CLOSE)[..24].to_vec());
    }

    #[test]
    fn old_plain_stub_is_accepted() {
        // Windows 10 before the SharedUserData test: mov r10,rcx; mov eax,n; syscall; ret
        let shape = recognize(&hex("4c8bd1b8070000000f05c3")).unwrap();
        assert_eq!(shape.service_number, 7);
        assert_eq!(shape.code.len(), 11);
    }

    #[test]
    fn non_stubs_are_refused() {
        // Wine's NtGetTickCount is ordinary code reading SharedUserData.
        assert_eq!(recognize(&hex("488da42400000000488b0521880100488b008b8020030000c30f1f8000000000")), None);
        // Already patched: starts with a jmp.
        assert_eq!(recognize(&hex("e9000000009090909090")), None);
        // The right prefix but a RIP-relative call after it.
        assert_eq!(recognize(&hex("4c8bd1b801000000ff1500000000c3")), None);
        // The right prefix, but a branch out of the stub.
        assert_eq!(recognize(&hex("4c8bd1b801000000eb70")), None);
        // Right prefix, no system call at all.
        assert_eq!(recognize(&hex("4c8bd1b801000000c3")), None);
        // Truncated.
        assert_eq!(recognize(&hex("4c8bd1b8010000")), None);
        assert_eq!(recognize(&hex("4c8bd1b8010000000f05")), None);
    }

    #[test]
    fn find_stubs_keeps_nt_syscall_stubs_only() {
        use winstrace_core::memory::MemoryImage;
        let code = [
            (0x2000, &hex(WINE_NT_CLOSE)[..]),
            (0x2040, &hex(WINDOWS_NT_CLOSE)[..]),
            (0x2080, &hex(WINE_NT_CLOSE)[..]),
        ];
        let exports = [
            ("NtClose", 0x2000),
            ("NtdllDialogWndProc", 0x2080),
            ("RtlFoo", 0x2080),
            ("NtOther", 0x2040),
            ("NtCode", 0x20c0),
        ];
        let img = crate::pe::tests::tiny_pe(&exports, &code);
        let found = find_stubs(&MemoryImage::new().with(0x10_0000, img), 0x10_0000).unwrap();
        let names: Vec<(&str, u64, u32)> =
            found.iter().map(|f| (f.name.as_str(), f.address, f.shape.service_number)).collect();
        assert_eq!(names, [("NtClose", 0x10_2000, 0x15), ("NtOther", 0x10_2040, 0xf)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep over many byte patterns after the prefix.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..20_000 {
            let mut b = hex("4c8bd1b801000000");
            for _ in 0..24 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let _ = recognize(&b);
        }
    }
}
