//! The debugger engine: traces a process through the Windows debug API.
//!
//! It needs nothing installed in the target. When the target's ntdll is
//! mapped (its own load event), the engine lists ntdll's exports, recognises
//! every `Nt*` syscall stub by its byte shape, writes trampolines into the
//! target (see [`winstrace_hook::trampoline`]) and redirects each stub to
//! them. From then on every call costs one `int3` debug event, at its return.
//!
//! Only the Windows half ([`trace`] and friends) needs `cfg(windows)`; the
//! types here and the name matching build everywhere.

use std::fmt;

pub mod clock;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{install_ctrl_c_handler, list_processes, trace};

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Start `program` with `args` under the debugger.
    Launch { program: String, args: Vec<String> },
    /// Attach to the running process `pid`.
    Attach { pid: u32 },
}

/// How to trace.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Trace the processes the target creates, and theirs (`-f`).
    pub follow_children: bool,
    /// The functions to trace (`-e trace=`). The others are not trapped.
    pub trace: winstrace_filter::TraceSet,
    /// Which calls to report by their result (`-Z`, `-z`).
    pub status: winstrace_filter::StatusFilter,
    /// How arguments are decoded (`-s`, `-X raw`).
    pub decode: winstrace_decode::DecodeOptions,
}

/// How tracing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The first traced process's exit code; `None` after a detach.
    pub exit_code: Option<u32>,
    pub stats: Stats,
}

/// Counters that explain the engine's cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every debug event received, call traps and lifecycle events alike.
    pub debug_events: u64,
    /// Calls reported.
    pub calls: u64,
    /// Stubs redirected to trampolines (summed over processes).
    pub hooked_functions: u64,
}

impl Stats {
    /// Debug events per traced call: the figure the trampoline design keeps
    /// near 1 (lifecycle events make it slightly larger on short traces).
    pub fn events_per_call(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.debug_events as f64 / self.calls as f64
        }
    }
}

/// Errors a user can act on. Each prints as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    ProgramNotFound {
        program: String,
    },
    NoSuchProcess {
        pid: u32,
    },
    AccessDenied {
        what: String,
    },
    /// Any other failure of a Windows call, with its error code.
    Os {
        what: String,
        code: u32,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::ProgramNotFound { program } => {
                write!(f, "cannot run '{program}': program not found")
            }
            EngineError::NoSuchProcess { pid } => write!(f, "no process with id {pid}"),
            EngineError::AccessDenied { what } => {
                write!(f, "{what}: access denied (is it already being debugged, or owned by another user?)")
            }
            EngineError::Os { what, code } => write!(f, "{what} failed: Windows error {code}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// A running process, as listed for `-p NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    pub image_name: String,
}

/// Whether `query` names the image `image_name`, as `-p NAME` matches:
/// case-insensitively, with the `.exe` suffix optional.
pub fn image_name_matches(query: &str, image_name: &str) -> bool {
    let strip = |s: &str| {
        let lower = s.to_lowercase();
        match lower.strip_suffix(".exe") {
            Some(stem) => stem.to_string(),
            None => lower,
        }
    };
    strip(query) == strip(image_name)
}

/// ntdll functions that do not return to their caller when they succeed.
/// They are reported at entry, as strace reports `exit_group(0) = ?`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matching_ignores_case_and_exe() {
        assert!(image_name_matches("notepad", "NOTEPAD.EXE"));
        assert!(image_name_matches("Notepad.exe", "notepad.exe"));
        assert!(image_name_matches("wst-testprog", "wst-testprog.exe"));
        assert!(!image_name_matches("note", "notepad.exe"));
        assert!(!image_name_matches("notepad.exe.exe", "notepad.exe"));
        assert!(image_name_matches("svc.com", "SVC.COM"));
    }

    #[test]
    fn error_messages_name_what_failed() {
        assert_eq!(
            EngineError::ProgramNotFound { program: "nope.exe".into() }.to_string(),
            "cannot run 'nope.exe': program not found"
        );
        assert_eq!(EngineError::NoSuchProcess { pid: 7 }.to_string(), "no process with id 7");
    }

    #[test]
    fn events_per_call() {
        let s = Stats { debug_events: 110, calls: 100, hooked_functions: 1 };
        assert!((s.events_per_call() - 1.1).abs() < 1e-9);
        assert_eq!(Stats::default().events_per_call(), 0.0);
    }
}
