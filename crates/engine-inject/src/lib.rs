//! The in-process engine (`--engine inject`).
//!
//! It runs inside a debug session of the debugger engine, as its
//! [`Companion`](winstrace_engine_debug::Companion): the debugger traces
//! each process from its first instruction (the loader's calls included)
//! and this engine injects the agent DLL ([`Options::agent_dll`];
//! winstrace.exe embeds it) into it. For each process it creates the shared
//! mapping `Local\winstrace-ring-<pid>` (readable and writable by the
//! current user only) holding a [`winstrace_ring`] ring and the agent's
//! configuration, and writes a loader routine (`winstrace_hook::loader`)
//! into the target, which the debugger runs as an APC on a launched
//! process's first thread (once the loader has initialised the process,
//! before the program's entry point) or on a thread of its own for `-p`.
//! The agent's `DllMain` opens the mapping, hooks every Nt* stub and
//! publishes the hooked functions' names (see `winstrace_agent::mapping`);
//! from then on each returning call is two records in the ring (its entry
//! and its return; one, before the call, for a call that does not return),
//! which the debug loop's polls turn into
//! [`EventKind::Call`](winstrace_core::event::EventKind::Call) events,
//! while threads, DLLs, exceptions, debug strings, children and exits
//! still come from the debugger, which sees them first.
//!
//! The records carry the memory the call's decoding reads, captured by the
//! agent (`winstrace_decode::capture`): the in-parameters' at call time,
//! in the entry record, the out-parameters' after the return. The tracer
//! decodes those bytes with the same decoders the debugger engine runs
//! over the live process. `-e trace=` is applied in the agent: a
//! function filtered out is not hooked.
//!
//! On Ctrl-C the debugger runs the agent's detach routine in the target
//! (the stubs are put back, the trampolines stay for calls still in
//! flight), this engine reads what is left in the ring and the debugger
//! leaves the process running.
//!
//! [`call_from_record`] and the errors are platform-independent; the
//! Windows half is `windows.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use winstrace_agent::record::{self, CallRecord};
use winstrace_core::event::{Call, CallResult};
use winstrace_core::memory::TargetMemory;
use winstrace_decode::capture::CapturedMemory;
use winstrace_decode::DecodeOptions;
use winstrace_filter::{StatusFilter, TraceSet};

pub mod handles;
#[cfg(all(windows, target_arch = "x86_64"))]
mod windows;
#[cfg(all(windows, target_arch = "x86_64"))]
pub use windows::Inject;

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

/// Errors a user can act on. Each prints as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The agent DLL is not where the engine looks for it.
    AgentNotFound { path: String },
    /// The agent was loaded but could not hook.
    AgentFailed { code: i32 },
    /// The agent's loader ran, but the agent never reported.
    AgentNotLoaded,
    /// The shared ring broke its protocol.
    Ring(String),
    /// The process is a 32-bit (WOW64) one; the agent is 64-bit only.
    NotX64 { pid: u32 },
    /// Any other failure of a Windows call, with its error code.
    Os { what: String, code: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotX64 { pid } => write!(f, "process {pid} is a 32-bit program: the agent is x64 only"),
            Error::AgentNotFound { path } => {
                write!(f, "the agent DLL is missing: {path}")
            }
            Error::AgentFailed { code } => {
                let meaning = attach_error_meaning(*code);
                write!(f, "the agent could not hook the process (error {code}: {meaning})")
            }
            Error::AgentNotLoaded => {
                write!(f, "the agent DLL did not load")
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
/// carries. `entry`: the payload of the call's entry record, if it has one
/// (`RECORD_KIND_ENTRY`): in-parameters are then decoded from the memory
/// as it was at call time, out- and in-out parameters from the memory
/// after the return (which holds only theirs), over the entry's (which an
/// out-parameter's decoding may read too).
pub fn call_from_record(
    record: &CallRecord,
    payload: &[u8],
    entry: Option<&[u8]>,
    names: &[Arc<str>],
    id: u64,
    tsc_rate: Option<f64>,
    opts: &DecodeOptions,
) -> Call {
    let function = function_name(names, record.function);
    // System calls return an NTSTATUS in EAX; the upper half of RAX carries
    // nothing.
    let status = (!record.no_return).then_some(u64::from(record.status as u32));
    let memory = record_memory(entry.into_iter().chain([payload]));
    let (mut args, mut args_complete) =
        winstrace_decode::decode_call(&function, &record.args, status, &memory, opts);
    // When no memory is in both captures (the common case), every byte
    // the decoding read came from the one capture that has it: the
    // in-parameters' from the entry's. Only an overlap (an in-buffer that
    // is also the out-buffer) needs the in-parameters decoded apart.
    let overlap = entry.is_some_and(|entry| {
        record::pieces(entry).any(|(a, x)| {
            record::pieces(payload).any(|(b, y)| a < b + y.len() as u64 && b < a + x.len() as u64)
        })
    });
    if let Some(entry) = entry.filter(|_| overlap) {
        let at_entry = record_memory([entry]);
        let (entry_args, entry_complete) =
            winstrace_decode::decode_call(&function, &record.args, None, &at_entry, opts);
        for (arg, at_call) in args.iter_mut().zip(entry_args) {
            if !arg.out {
                *arg = at_call;
            }
        }
        args_complete &= entry_complete;
    }
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

/// A call still in progress, as `<unfinished ...>` shows it: its
/// arguments decoded without a result (out-parameters are not filled in
/// yet), from `memory` (the record's captured bytes, or the live process).
pub fn call_start(
    function: Arc<str>,
    args: &[u64],
    id: u64,
    memory: &dyn TargetMemory,
    opts: &DecodeOptions,
) -> Call {
    let (args, args_complete) = winstrace_decode::decode_call(&function, args, None, memory, opts);
    Call {
        function,
        id,
        args,
        args_complete,
        result: CallResult::NoReturn,
        resumed: false,
        entry_time: None,
        duration: None,
    }
}

/// The memory records carry, as target memory; where two hold the same
/// bytes, the later record's win (a call's return over its entry).
pub fn record_memory<'p>(payloads: impl IntoIterator<Item = &'p [u8]>) -> CapturedMemory {
    let mut memory = CapturedMemory::new();
    for (address, bytes) in payloads.into_iter().flat_map(record::pieces) {
        memory.add(address, bytes);
    }
    memory
}

/// A call of the agent's, as the tracer orders them: a record read from
/// the ring (it has returned) or a frame read from the agent's in-flight
/// table (it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub thread_id: u32,
    pub entry_tsc: u64,
    /// When the call returned (`None`: not yet, or never).
    pub return_tsc: Option<u64>,
}

/// strace's `<unfinished ...>` for the in-process engine. `records` are
/// in the order they are to be printed (the ring's: by return); `in_flight`
/// are calls not returned yet. Returns, per record, the calls (indexes
/// into `records`, then `records.len() + i` for `in_flight[i]`) to print
/// as unfinished just before it: every call of another thread that
/// entered before the record's call returned and is not printed yet.
/// Sorting the candidates by entry keeps this O(n log n).
pub fn unfinished_before(records: &[Span], in_flight: &[Span]) -> Vec<Vec<usize>> {
    let mut candidates: Vec<usize> = (0..records.len() + in_flight.len()).collect();
    let span = |i: usize| if i < records.len() { records[i] } else { in_flight[i - records.len()] };
    candidates.sort_by_key(|&i| span(i).entry_tsc);
    let mut done = vec![false; records.len() + in_flight.len()];
    let mut next = 0;
    // Calls entered before the current record returned, not printed yet.
    let mut open: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let until = record.return_tsc.unwrap_or(record.entry_tsc);
        while next < candidates.len() && span(candidates[next]).entry_tsc < until {
            open.push(candidates[next]);
            next += 1;
        }
        done[i] = true;
        // A call of this thread stays open: it can only enclose this one
        // (an APC run inside a wait), and another thread's record may
        // still interrupt it.
        let before: Vec<usize> =
            open.iter().copied().filter(|&c| !done[c] && span(c).thread_id != record.thread_id).collect();
        for &c in &before {
            done[c] = true;
        }
        open.retain(|&c| !done[c]);
        out.push(before);
    }
    out
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

    fn span(thread_id: u32, entry_tsc: u64, return_tsc: Option<u64>) -> Span {
        Span { thread_id, entry_tsc, return_tsc }
    }

    #[test]
    fn calls_overlapping_another_threads_line_are_announced_once_before_it() {
        // Thread 1 waits (10..50) while thread 2 makes two calls; thread 3
        // is still inside a call (entered at 30) when the batch ends.
        let records =
            [span(2, 12, Some(15)), span(2, 20, Some(25)), span(1, 10, Some(50)), span(2, 55, Some(60))];
        let in_flight = [span(3, 30, None), span(4, 70, None)];
        let before = unfinished_before(&records, &in_flight);
        assert_eq!(before, vec![vec![2], vec![], vec![4], vec![]]);
        // One thread alone is never interrupted.
        let alone = [span(1, 1, Some(2)), span(1, 3, Some(4))];
        assert_eq!(unfinished_before(&alone, &[span(1, 5, None)]), vec![Vec::<usize>::new(), vec![]]);
        // A call that encloses another of its thread (an APC inside a
        // wait) stays a candidate for the next thread's line.
        let nested = [span(1, 2, Some(3)), span(2, 4, Some(5)), span(1, 1, Some(9))];
        assert_eq!(unfinished_before(&nested, &[]), vec![vec![], vec![2], vec![]]);
    }

    #[test]
    fn a_record_becomes_a_decoded_call() {
        let r = record(0, 0xffff_ffff_c000_0008, &[0x24]);
        let call = call_from_record(&r, &r.encode(), None, &names(), 5, Some(1e9), &DecodeOptions::default());
        assert_eq!(&*call.function, "NtClose");
        assert_eq!(call.id, 5);
        assert_eq!(call.result, CallResult::Returned(0xc000_0008));
        assert!(call.args_complete);
        assert_eq!(call.args.len(), 1);
        assert_eq!(call.args[0].name, Some("Handle"));
        assert_eq!(call.args[0].raw, 0x24);
        assert_eq!(call.duration, Some(Duration::from_nanos(2_000)));
    }

    /// The payload of an NtQueryAttributesFile record (`status`: `None` for
    /// an entry record) whose OBJECT_ATTRIBUTES at 0x1000 names `path`, as
    /// the agent captures it.
    fn probe_payload(path: &str, status: Option<u64>) -> Vec<u8> {
        probe_payload_of(path, status, false)
    }

    /// [`probe_payload`], of the out-parameters only when `outs_only` (as
    /// the agent captures a returning call's return).
    fn probe_payload_of(path: &str, status: Option<u64>, outs_only: bool) -> Vec<u8> {
        use winstrace_agent::record::RecordWriter;
        use winstrace_decode::capture::{capture_plan, CaptureSink};
        // The OBJECT_ATTRIBUTES at 0x1000, its UNICODE_STRING at 0x1040 and
        // the path at 0x1080, as the target had them.
        let path: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
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
        let r = CallRecord {
            return_tsc: status.map_or(0, |_| 3_000),
            ..record(1, status.unwrap_or(0), &[0x1000, 0x5000])
        };
        let mut buf = [std::mem::MaybeUninit::uninit(); 2048];
        let mut writer = RecordWriter::new(&mut buf, read).unwrap();
        let plan = capture_plan("NtQueryAttributesFile").unwrap();
        if outs_only {
            plan.capture_outs(&r.args, status, &DecodeOptions::default(), &mut writer);
        } else {
            plan.capture(&r.args, status, &DecodeOptions::default(), &mut writer);
            assert_eq!(writer.capture(0x1000, 1), 1);
        }
        writer.finish(&r).to_vec()
    }

    #[test]
    fn pointer_arguments_decode_from_the_memory_the_record_carries() {
        let payload = probe_payload("\\??\\C:\\gone.txt", Some(0xc000_0034));
        let decoded = CallRecord::decode(&payload).unwrap();
        let call = call_from_record(&decoded, &payload, None, &names(), 1, None, &DecodeOptions::default());
        assert_eq!(
            winstrace_decode::args_text(&call.args),
            r#"ObjectAttributes={Name="\\??\\C:\\gone.txt"}, FileInformation=0x5000"#
        );
    }

    #[test]
    fn in_parameters_decode_from_the_entry_record_out_parameters_from_the_return() {
        // The program changed the path while the call ran: the trace shows
        // what the call was given.
        let entry = probe_payload("\\??\\C:\\given.txt", None);
        let payload = probe_payload("\\??\\C:\\changed.txt", Some(0xc000_0034));
        let decoded = CallRecord::decode(&payload).unwrap();
        let opts = DecodeOptions::default();
        let call = call_from_record(&decoded, &payload, Some(&entry), &names(), 1, None, &opts);
        assert_eq!(
            winstrace_decode::args_text(&call.args),
            r#"ObjectAttributes={Name="\\??\\C:\\given.txt"}, FileInformation=0x5000"#
        );
        assert_eq!(call.result, CallResult::Returned(0xc000_0034));
        let without = call_from_record(&decoded, &payload, None, &names(), 1, None, &opts);
        assert!(winstrace_decode::args_text(&without.args).contains("changed.txt"));
        // As the agent writes them: the return's record holds the
        // out-parameters only, so no byte is in both.
        let outs = probe_payload_of("\\??\\C:\\changed.txt", Some(0xc000_0034), true);
        let decoded = CallRecord::decode(&outs).unwrap();
        let call = call_from_record(&decoded, &outs, Some(&entry), &names(), 1, None, &opts);
        assert_eq!(
            winstrace_decode::args_text(&call.args),
            r#"ObjectAttributes={Name="\\??\\C:\\given.txt"}, FileInformation=0x5000"#
        );
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
        let call = call_from_record(&r, &r.encode(), None, &names(), 1, None, &DecodeOptions::default());
        assert_eq!(&*call.function, "NtQueryAttributesFile");
        assert_eq!(call.args.len(), 2);
        assert!(matches!(call.args[0].value, Value::Unreadable(_)), "{:?}", call.args[0].value);
        assert_eq!(call.duration, None);
    }

    #[test]
    fn no_return_calls_and_unknown_indexes() {
        let r = CallRecord { no_return: true, status: 0, return_tsc: 0, ..record(2, 0, &[u64::MAX, 0]) };
        let call = call_from_record(&r, &r.encode(), None, &names(), 2, Some(1e9), &DecodeOptions::default());
        assert_eq!(call.result, CallResult::NoReturn);
        assert_eq!(call.duration, None);
        let call = call_from_record(
            &record(77, 0, &[1, 2, 3, 4, 5]),
            &record(77, 0, &[]).encode(),
            None,
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
