//! The in-process engine (`--engine inject`), first version.
//!
//! It launches the target suspended, creates the shared mapping
//! `Local\winstrace-ring-<pid>` (readable and writable by the current user
//! only) holding a [`winstrace_ring`] ring, and injects the agent DLL
//! ([`Options::agent_dll`]; winstrace.exe embeds it) "early bird":
//! an APC to `LoadLibraryW` queued on the suspended main thread runs while
//! the loader initialises the process, before the program's entry point.
//! The agent's `DllMain` opens the mapping, hooks every Nt* stub and
//! publishes the hooked functions' names (see `winstrace_agent::mapping`);
//! from then on each call is one record in the ring, which [`trace`] turns
//! into [`EventKind::Call`](winstrace_core::event::EventKind::Call) events
//! until the process exits.
//!
//! Each record carries the memory the call's decoding reads, captured by
//! the agent when the call returned (`winstrace_decode::capture`): the
//! tracer decodes those bytes with the same decoders the debugger engine
//! runs over the live process. `-e trace=` is applied in the agent: a
//! function filtered out is not hooked.
//!
//! [`attach`] injects the agent into a running process with a remote
//! thread that loads it; on Ctrl-C the tracer runs the agent's detach
//! routine in the target (the stubs are put back, the trampolines stay for
//! calls still in flight), reads what is left in the ring and leaves the
//! process running.
//!
//! Under `-f` the agent reports each child its process creates (after
//! NtCreateUserProcess, while the child's first thread is still suspended)
//! and waits until the tracer has created the child's mapping and queued
//! the agent's injection on that thread; the tracer then reads every
//! process's ring.
//!
//! [`call_from_record`] and the errors are platform-independent; the
//! Windows half is `windows.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use winstrace_agent::record::{self, lifecycle, CallRecord, LifecycleRecord};
use winstrace_core::event::{Call, CallResult, EventKind};
use winstrace_decode::capture::CapturedMemory;
use winstrace_decode::DecodeOptions;
use winstrace_filter::{StatusFilter, TraceSet};

pub mod handles;
#[cfg(all(windows, target_arch = "x86_64"))]
mod windows;
#[cfg(all(windows, target_arch = "x86_64"))]
pub use windows::{attach, trace};

/// Data area of the ring, bytes (about 23,000 records).
pub const RING_CAPACITY: u64 = 4 << 20;

/// Room for the agent's name table, bytes (ntdll has some 500 Nt* exports).
pub const NAMES_BYTES: usize = 64 << 10;

/// How to trace.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The agent DLL to inject (winstrace.exe carries one and writes it out).
    pub agent_dll: std::path::PathBuf,
    /// How arguments are decoded (`-s`, `-X raw`).
    pub decode: DecodeOptions,
    /// Which functions are traced (`-e trace=`); the others are not hooked.
    pub trace: TraceSet,
    /// Which calls are shown by their status (`-z`, `-Z`).
    pub status: StatusFilter,
    /// `-y`: name the handles in the arguments.
    pub handle_names: bool,
    /// `-f`: inject the agent into the children the target creates too.
    pub follow_children: bool,
    /// Polled while tracing: true asks to detach (Ctrl-C).
    pub detach_requested: Option<fn() -> bool>,
}

/// The functions to hook among `available` (the Nt* stubs of ntdll), or
/// `None` for all of them.
pub fn functions_to_hook<'a>(
    trace: &TraceSet,
    available: impl Iterator<Item = &'a str>,
) -> Option<Vec<String>> {
    if trace.is_everything() {
        return None;
    }
    let mut only: Vec<String> = available.filter(|name| trace.matches(name)).map(str::to_string).collect();
    only.sort();
    only.dedup();
    Some(only)
}

/// How tracing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The target's exit code; `None` when winstrace detached and the
    /// target runs on.
    pub exit_code: Option<u32>,
    /// Calls reported.
    pub calls: u64,
    /// Functions the agent hooked.
    pub hooked_functions: u64,
    /// Records the agent could not write (the ring's lost counter).
    pub lost_records: u64,
}

/// Errors a user can act on. Each prints as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    ProgramNotFound {
        program: String,
    },
    /// The agent DLL is not where the engine looks for it.
    AgentNotFound {
        path: String,
    },
    /// The agent was loaded but could not hook (the target was terminated).
    AgentFailed {
        code: i32,
    },
    /// The target exited without the agent ever reporting.
    AgentNotLoaded,
    /// The shared ring broke its protocol.
    Ring(String),
    /// The process is a 32-bit (WOW64) one; the agent is 64-bit only.
    NotX64 {
        pid: u32,
    },
    /// Any other failure of a Windows call, with its error code.
    Os {
        what: String,
        code: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProgramNotFound { program } => write!(f, "cannot run '{program}': program not found"),
            Error::NotX64 { pid } => write!(
                f,
                "process {pid} is a 32-bit program: --engine inject traces x64 programs only (use --engine debug)"
            ),
            Error::AgentNotFound { path } => {
                write!(f, "the agent DLL is missing: {path}")
            }
            Error::AgentFailed { code } => {
                let meaning = attach_error_meaning(*code);
                write!(f, "the agent could not hook the target (error {code}: {meaning}); target terminated")
            }
            Error::AgentNotLoaded => {
                write!(f, "the target exited before the agent attached (was it injected?)")
            }
            Error::Ring(e) => write!(f, "the shared ring is corrupt: {e}"),
            Error::Os { what, code } => write!(f, "{what} failed: Windows error {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// What an attach error of the agent means.
fn attach_error_meaning(code: i32) -> &'static str {
    winstrace_agent::ATTACH_ERRORS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown error", |(_, meaning)| meaning)
}

/// The name a record's function index stands for: the agent's table entry,
/// or `Nt?<index>` for an index outside the table (a hostile or truncated
/// table; such calls decode without a signature).
pub fn function_name(names: &[Arc<str>], index: u32) -> Arc<str> {
    match names.get(index as usize) {
        Some(name) => name.clone(),
        None => Arc::from(format!("Nt?{index}")),
    }
}

/// The event a lifecycle record stands for, or `None` for one to drop:
/// OutputDebugStringW raises its text twice when no debugger takes it (wide,
/// then narrow), so a narrow debug string right after the same wide one on
/// a thread is a repeat. `last_wide` is the thread's last wide string.
pub fn event_from_lifecycle(record: &LifecycleRecord, last_wide: &mut Option<String>) -> Option<EventKind> {
    let text = || String::from_utf16_lossy(&record.text);
    let [a, b, _] = record.values;
    Some(match record.kind {
        lifecycle::THREAD_START => EventKind::ThreadStart { start_address: a },
        lifecycle::THREAD_EXIT => EventKind::ThreadExit { code: a as u32 },
        lifecycle::DLL_LOAD => EventKind::DllLoad { path: text(), base: a },
        lifecycle::DLL_UNLOAD => EventKind::DllUnload { base: a },
        lifecycle::EXCEPTION => EventKind::Exception { code: a as u32, address: b, first_chance: true },
        lifecycle::DEBUG_STRING => {
            let text = text();
            let wide = a != 0;
            if !wide && last_wide.take().as_deref() == Some(text.as_str()) {
                return None;
            }
            if wide {
                *last_wide = Some(text.clone());
            }
            EventKind::DebugOutput { text }
        }
        _ => return None,
    })
}

/// A call's duration from its entry and return TSCs, given the counter's
/// rate (ticks per second); `None` if the call did not return, the rate is
/// unknown or the counter went backwards.
pub fn duration(record: &CallRecord, tsc_rate: Option<f64>) -> Option<Duration> {
    if record.no_return {
        return None;
    }
    let rate = tsc_rate.filter(|r| r.is_finite() && *r > 0.0)?;
    let ticks = record.return_tsc.checked_sub(record.entry_tsc)?;
    Some(Duration::from_secs_f64(ticks as f64 / rate))
}

/// Turns a record (`payload`, already checked by [`CallRecord::decode`]
/// into `record`) into a call, decoding the arguments from the memory it
/// carries.
pub fn call_from_record(
    record: &CallRecord,
    payload: &[u8],
    names: &[Arc<str>],
    id: u64,
    tsc_rate: Option<f64>,
    opts: &DecodeOptions,
) -> Call {
    let function = function_name(names, record.function);
    // System calls return an NTSTATUS in EAX; the upper half of RAX carries
    // nothing.
    let status = (!record.no_return).then_some(u64::from(record.status as u32));
    let mut memory = CapturedMemory::new();
    for (address, bytes) in record::pieces(payload) {
        memory.add(address, bytes);
    }
    let (args, args_complete) = winstrace_decode::decode_call(&function, &record.args, status, &memory, opts);
    Call {
        function,
        id,
        args,
        args_complete,
        result: match status {
            Some(s) => CallResult::Returned(s),
            None => CallResult::NoReturn,
        },
        resumed: false,
        entry_time: None,
        duration: duration(record, tsc_rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winstrace_agent::record::RECORD_ARGS;
    use winstrace_core::value::Value;

    fn record(function: u32, status: u64, args: &[u64]) -> CallRecord {
        let mut a = [0u64; RECORD_ARGS];
        a[..args.len()].copy_from_slice(args);
        CallRecord {
            function,
            thread_id: 9,
            status,
            no_return: false,
            capture_full: false,
            entry_tsc: 1_000,
            return_tsc: 3_000,
            args: a,
        }
    }

    fn names() -> Vec<Arc<str>> {
        ["NtClose", "NtQueryAttributesFile", "NtTerminateProcess"].into_iter().map(Arc::from).collect()
    }

    #[test]
    fn a_record_becomes_a_decoded_call() {
        let r = record(0, 0xffff_ffff_c000_0008, &[0x24]);
        let call = call_from_record(&r, &r.encode(), &names(), 5, Some(1e9), &DecodeOptions::default());
        assert_eq!(&*call.function, "NtClose");
        assert_eq!(call.id, 5);
        assert_eq!(call.result, CallResult::Returned(0xc000_0008));
        assert!(call.args_complete);
        assert_eq!(call.args.len(), 1);
        assert_eq!(call.args[0].name, Some("Handle"));
        assert_eq!(call.args[0].raw, 0x24);
        assert_eq!(call.duration, Some(Duration::from_nanos(2_000)));
    }

    #[test]
    fn pointer_arguments_decode_from_the_memory_the_record_carries() {
        use winstrace_agent::record::RecordWriter;
        use winstrace_decode::capture::{capture_plan, CaptureSink};
        // NtQueryAttributesFile's OBJECT_ATTRIBUTES at 0x1000, its
        // UNICODE_STRING at 0x1040 and the path at 0x1080, as the target had them.
        let path: Vec<u8> = "\\??\\C:\\gone.txt".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut memory = vec![0u8; 0x200];
        memory[0..4].copy_from_slice(&48u32.to_le_bytes());
        memory[0x10..0x18].copy_from_slice(&0x1040u64.to_le_bytes());
        memory[0x40..0x42].copy_from_slice(&(path.len() as u16).to_le_bytes());
        memory[0x42..0x44].copy_from_slice(&(path.len() as u16).to_le_bytes());
        memory[0x48..0x50].copy_from_slice(&0x1080u64.to_le_bytes());
        memory[0x80..0x80 + path.len()].copy_from_slice(&path);
        let read = |address: u64, out: &mut [u8]| {
            let Some(start) = address.checked_sub(0x1000).map(|a| a as usize) else { return 0 };
            let n = out.len().min(memory.len().saturating_sub(start));
            out[..n].copy_from_slice(&memory[start..start + n]);
            n
        };
        let r = record(1, 0xc000_0034, &[0x1000, 0x5000]);
        let mut buf = [0u8; 2048];
        let mut writer = RecordWriter::new(&mut buf, read).unwrap();
        capture_plan("NtQueryAttributesFile").unwrap().capture(
            &r.args,
            Some(0xc000_0034),
            &DecodeOptions::default(),
            &mut writer,
        );
        assert_eq!(writer.capture(0x1000, 1), 1);
        let payload = writer.finish(&r).to_vec();
        let decoded = CallRecord::decode(&payload).unwrap();
        let call = call_from_record(&decoded, &payload, &names(), 1, None, &DecodeOptions::default());
        assert_eq!(
            winstrace_decode::args_text(&call.args),
            r#"ObjectAttributes={Name="\\??\\C:\\gone.txt"}, FileInformation=0x5000"#
        );
    }

    #[test]
    fn lifecycle_records_become_events_and_repeated_debug_strings_are_dropped() {
        let record = |kind, values: [u64; 3], text: &str| LifecycleRecord {
            kind,
            thread_id: 4,
            values,
            text: text.encode_utf16().collect(),
        };
        let mut last = None;
        assert_eq!(
            event_from_lifecycle(&record(lifecycle::DLL_LOAD, [0x7b60_0000, 0, 0], r"C:\k.dll"), &mut last),
            Some(EventKind::DllLoad { path: r"C:\k.dll".into(), base: 0x7b60_0000 })
        );
        assert_eq!(
            event_from_lifecycle(&record(lifecycle::EXCEPTION, [0xc000_0005, 0x1234, 0], ""), &mut last),
            Some(EventKind::Exception { code: 0xc000_0005, address: 0x1234, first_chance: true })
        );
        assert_eq!(
            event_from_lifecycle(
                &record(lifecycle::THREAD_EXIT, [0xffff_ffff_0000_0007, 0, 0], ""),
                &mut last
            ),
            Some(EventKind::ThreadExit { code: 7 })
        );
        let wide = record(lifecycle::DEBUG_STRING, [1, 0, 0], "hello");
        let narrow = record(lifecycle::DEBUG_STRING, [0, 0, 0], "hello");
        assert_eq!(
            event_from_lifecycle(&wide, &mut last),
            Some(EventKind::DebugOutput { text: "hello".into() })
        );
        assert_eq!(event_from_lifecycle(&narrow, &mut last), None, "the narrow repeat");
        assert_eq!(
            event_from_lifecycle(&narrow, &mut last),
            Some(EventKind::DebugOutput { text: "hello".into() })
        );
        assert_eq!(event_from_lifecycle(&record(9, [0; 3], ""), &mut last), None);
    }

    #[test]
    fn the_trace_set_decides_what_is_hooked() {
        let available = ["NtClose", "NtCreateFile", "NtOpenKey", "NtQueryAttributesFile"];
        assert_eq!(functions_to_hook(&TraceSet::default(), available.into_iter()), None);
        let files = TraceSet::parse_expression("trace=%file").unwrap();
        assert_eq!(
            functions_to_hook(&files, available.into_iter()),
            Some(vec!["NtCreateFile".to_string(), "NtQueryAttributesFile".to_string()])
        );
        let not_close = TraceSet::parse_expression("trace=!NtClose").unwrap();
        assert_eq!(functions_to_hook(&not_close, available.into_iter()).map(|v| v.len()), Some(3));
    }

    #[test]
    fn pointer_arguments_are_unreadable_without_memory_capture() {
        let r = record(1, 0xc000_0034, &[0x1000, 0x2000]);
        let call = call_from_record(&r, &r.encode(), &names(), 1, None, &DecodeOptions::default());
        assert_eq!(&*call.function, "NtQueryAttributesFile");
        assert_eq!(call.args.len(), 2);
        assert!(matches!(call.args[0].value, Value::Unreadable(_)), "{:?}", call.args[0].value);
        assert_eq!(call.duration, None);
    }

    #[test]
    fn no_return_calls_and_unknown_indexes() {
        let r = CallRecord { no_return: true, status: 0, return_tsc: 0, ..record(2, 0, &[u64::MAX, 0]) };
        let call = call_from_record(&r, &r.encode(), &names(), 2, Some(1e9), &DecodeOptions::default());
        assert_eq!(call.result, CallResult::NoReturn);
        assert_eq!(call.duration, None);
        let call = call_from_record(
            &record(77, 0, &[1, 2, 3, 4, 5]),
            &record(77, 0, &[]).encode(),
            &names(),
            3,
            None,
            &DecodeOptions::default(),
        );
        assert_eq!(&*call.function, "Nt?77");
        assert!(!call.args_complete);
        assert_eq!(call.args.len(), 4);
    }

    #[test]
    fn durations_refuse_backwards_counters_and_bad_rates() {
        let mut r = record(0, 0, &[]);
        assert_eq!(duration(&r, Some(0.0)), None);
        assert_eq!(duration(&r, Some(f64::NAN)), None);
        r.return_tsc = 10;
        assert_eq!(duration(&r, Some(1e9)), None);
    }

    #[test]
    fn errors_are_one_line() {
        for e in [
            Error::ProgramNotFound { program: "x.exe".into() },
            Error::AgentNotFound { path: "C:\\a\\winstrace_agent.dll".into() },
            Error::AgentFailed { code: -6 },
            Error::AgentNotLoaded,
            Error::Ring("bad".into()),
            Error::NotX64 { pid: 12 },
            Error::Os { what: "CreateFileMappingW".into(), code: 5 },
        ] {
            assert!(!e.to_string().contains('\n'));
        }
        assert!(Error::AgentFailed { code: -6 }.to_string().contains("no system-call stub recognised"));
    }
}
