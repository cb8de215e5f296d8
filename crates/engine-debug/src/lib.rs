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
mod handles;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{
    install_ctrl_c_handler, list_processes, trace, trace_with, Companion, Horizon, Injection, Report,
};

/// Helpers over a live process that the in-process engine (and the command
/// line) share with this one: Ctrl-C, a process's image and command line,
/// `-y`, winstrace's own peak memory.
#[cfg(windows)]
pub mod live {
    pub use crate::handles::{current_user_sid, HandleNamer};
    pub use crate::windows::{detach_requested, peak_working_set, process_identity, LiveMemory};
}

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
    /// Show what handles refer to (`-y`).
    pub handle_names: bool,
    /// Write each call, with the target memory its decoding read, to this
    /// file: the recorded sample that the decoding benchmark replays.
    pub record_sample: Option<std::path::PathBuf>,
}

/// A line of a recorded sample: `function TAB status|? TAB args TAB regions`,
/// args as comma-separated hex, regions as `address:hexbytes` separated by
/// `;` (every byte decoding read, merged into non-overlapping runs).
pub fn sample_line(function: &str, status: Option<u64>, args: &[u64], reads: &[(u64, Vec<u8>)]) -> String {
    use std::fmt::Write as _;
    let mut line = format!("{function}\t");
    match status {
        Some(s) => {
            let _ = write!(line, "{s:x}");
        }
        None => line.push('?'),
    }
    line.push('\t');
    let args: Vec<String> = args.iter().map(|a| format!("{a:x}")).collect();
    line.push_str(&args.join(","));
    line.push('\t');
    let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut sorted: Vec<&(u64, Vec<u8>)> = reads.iter().collect();
    sorted.sort_by_key(|(a, _)| *a);
    for (address, bytes) in sorted {
        match regions.last_mut() {
            Some((start, run)) if *address <= *start + run.len() as u64 => {
                let offset = (*address - *start) as usize;
                if offset + bytes.len() > run.len() {
                    run.truncate(offset);
                    run.extend_from_slice(bytes);
                }
            }
            _ => regions.push((*address, bytes.clone())),
        }
    }
    let regions: Vec<String> = regions
        .iter()
        .map(|(a, b)| format!("{a:x}:{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()))
        .collect();
    line.push_str(&regions.join(";"));
    line
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
    /// Hooked functions that have no signature (their arguments print raw):
    /// the signature database's coverage of the target's ntdll, at run time.
    pub functions_without_signature: u64,
    /// Records an in-process agent could not write (its ring's lost count).
    pub lost_records: u64,
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
        let s = Stats { debug_events: 110, calls: 100, hooked_functions: 1, ..Stats::default() };
        assert!((s.events_per_call() - 1.1).abs() < 1e-9);
        assert_eq!(Stats::default().events_per_call(), 0.0);
    }
}

/// What `-y` shows for a handle, from the object's type and NT name (and,
/// for files, the DOS path when Windows can map it). `user_sid` is the
/// tracer's user, whose `\REGISTRY\USER\<sid>` is HKCU. `None`: nothing
/// worth showing (an unnamed event, say).
pub fn handle_display_name(
    object_type: &str,
    nt_name: &str,
    dos_path: Option<&str>,
    id: Option<u32>,
    user_sid: Option<&str>,
) -> Option<String> {
    match object_type {
        "File" => dos_path.map(str::to_string).or_else(|| (!nt_name.is_empty()).then(|| nt_name.to_string())),
        "Key" => Some(registry_name(nt_name, user_sid)),
        "Process" => id.map(|pid| format!("pid {pid}")),
        "Thread" => id.map(|tid| format!("tid {tid}")),
        _ => (!nt_name.is_empty()).then(|| nt_name.to_string()),
    }
}

/// `\REGISTRY\MACHINE\SOFTWARE\X` -> `HKLM\SOFTWARE\X`, and the user's own
/// hive to `HKCU`, as regedit and Process Monitor write them.
fn registry_name(nt_name: &str, user_sid: Option<&str>) -> String {
    let upper = nt_name.to_ascii_uppercase();
    let replace = |prefix_len: usize, root: &str| format!("{root}{}", &nt_name[prefix_len..]);
    if let Some(sid) = user_sid {
        let user_root = format!("\\REGISTRY\\USER\\{}", sid.to_ascii_uppercase());
        if upper == user_root || upper.starts_with(&format!("{user_root}\\")) {
            return replace(user_root.len(), "HKCU");
        }
    }
    for (prefix, root) in [("\\REGISTRY\\MACHINE", "HKLM"), ("\\REGISTRY\\USER", "HKU")] {
        if upper == prefix || upper.starts_with(&format!("{prefix}\\")) {
            return replace(prefix.len(), root);
        }
    }
    nt_name.to_string()
}

#[cfg(test)]
mod sample_tests {
    #[test]
    fn sample_lines_merge_overlapping_reads() {
        let reads = vec![
            (0x1008, vec![9, 10]),
            (0x1000, vec![1, 2, 3, 4]),
            (0x1002, vec![3, 4, 5, 6]),
            (0x2000, vec![7]),
        ];
        assert_eq!(
            super::sample_line("NtClose", Some(0xc0000008), &[0x24, 0], &reads),
            "NtClose\tc0000008\t24,0\t1000:010203040506;1008:090a;2000:07"
        );
        assert_eq!(super::sample_line("NtContinue", None, &[1], &[]), "NtContinue\t?\t1\t");
    }
}

#[cfg(test)]
mod handle_name_tests {
    use super::handle_display_name as name;

    #[test]
    fn files_prefer_the_dos_path() {
        assert_eq!(
            name("File", "\\Device\\HarddiskVolume1\\x.txt", Some("C:\\x.txt"), None, None).unwrap(),
            "C:\\x.txt"
        );
        assert_eq!(
            name("File", "\\Device\\NamedPipe\\p", None, None, None).unwrap(),
            "\\Device\\NamedPipe\\p"
        );
        assert_eq!(name("File", "", None, None, None), None);
    }

    #[test]
    fn registry_roots_get_their_short_names() {
        let sid = Some("S-1-5-21-0-0-0-1000");
        assert_eq!(
            name("Key", "\\REGISTRY\\USER\\S-1-5-21-0-0-0-1000\\Software\\X", None, None, sid).unwrap(),
            "HKCU\\Software\\X"
        );
        assert_eq!(name("Key", "\\REGISTRY\\USER\\S-1-5-21-0-0-0-1000", None, None, sid).unwrap(), "HKCU");
        assert_eq!(
            name("Key", "\\Registry\\Machine\\Software\\Wine", None, None, sid).unwrap(),
            "HKLM\\Software\\Wine"
        );
        assert_eq!(
            name("Key", "\\REGISTRY\\USER\\.DEFAULT\\X", None, None, sid).unwrap(),
            "HKU\\.DEFAULT\\X"
        );
        // Another user's hive, or no SID known, stays under HKU.
        assert_eq!(
            name("Key", "\\REGISTRY\\USER\\S-1-5-21-0-0-0-1000\\X", None, None, None).unwrap(),
            "HKU\\S-1-5-21-0-0-0-1000\\X"
        );
        assert_eq!(name("Key", "\\REGISTRY\\MACHINEX", None, None, sid).unwrap(), "\\REGISTRY\\MACHINEX");
    }

    #[test]
    fn processes_threads_and_named_objects() {
        assert_eq!(name("Process", "", None, Some(12), None).unwrap(), "pid 12");
        assert_eq!(name("Thread", "", None, Some(16), None).unwrap(), "tid 16");
        assert_eq!(
            name("Event", "\\BaseNamedObjects\\Ready", None, None, None).unwrap(),
            "\\BaseNamedObjects\\Ready"
        );
        assert_eq!(name("Event", "", None, None, None), None);
    }
}
