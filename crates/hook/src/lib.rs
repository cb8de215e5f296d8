//! Finding ntdll's system-call stubs and building the trampolines that trace
//! them. Platform-independent: it reads the target through
//! [`winstrace_core::memory::TargetMemory`] and produces bytes for an engine
//! to write, so all of it tests on Linux.
//!
//! - [`pe`] lists a loaded module's exports from its in-memory PE headers.
//! - [`stub`] recognises a syscall stub by its byte shape and checks, with
//!   iced-x86, that it can be copied elsewhere unchanged.
//! - [`trampoline`] lays out the code the debugger engine puts in the target:
//!   one thunk and one stub copy per function, and shared routines that save
//!   the arguments on the stack and trap once per call.
//! - [`loader`] lays out the routine that loads the agent DLL in a target.

pub mod inline;
pub mod loader;
pub mod pe;
pub mod stub;
pub mod trampoline;

/// ntdll functions that do not return to their caller when they succeed.
/// Engines report them at entry, as strace reports `exit_group(0) = ?`, and
/// route them through the trampolines' entry routine.
pub fn is_no_return(function: &str) -> bool {
    matches!(
        function,
        "NtContinue"
            | "NtContinueEx"
            | "NtRaiseException"
            | "NtTerminateProcess"
            | "NtTerminateThread"
            | "NtCallbackReturn"
    )
}
