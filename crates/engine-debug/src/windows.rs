//! The Windows half of the debugger engine: the debug-event loop, the live
//! [`TargetMemory`], hook installation and detaching.

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::io::{self, Write as _};
use std::os::windows::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use windows_sys::Wdk::System::Threading::{NtQueryInformationProcess, ProcessBasicInformation};
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, DBG_CONTINUE, DBG_EXCEPTION_NOT_HANDLED, ERROR_ACCESS_DENIED,
    ERROR_INVALID_PARAMETER, ERROR_SEM_TIMEOUT, EXCEPTION_BREAKPOINT, HANDLE, INVALID_HANDLE_VALUE, NTSTATUS,
    WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{GetFinalPathNameByHandleW, VOLUME_NAME_DOS};
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::Diagnostics::Debug::{
    ContinueDebugEvent, DebugActiveProcess, DebugActiveProcessStop, DebugSetProcessKillOnExit,
    FlushInstructionCache, GetThreadContext, ReadProcessMemory, SetThreadContext, WaitForDebugEvent,
    WriteProcessMemory, CONTEXT, CONTEXT_CONTROL_AMD64, CONTEXT_INTEGER_AMD64, CREATE_PROCESS_DEBUG_EVENT,
    CREATE_THREAD_DEBUG_EVENT, DEBUG_EVENT, EXCEPTION_DEBUG_EVENT, EXIT_PROCESS_DEBUG_EVENT,
    EXIT_THREAD_DEBUG_EVENT, LOAD_DLL_DEBUG_EVENT, OUTPUT_DEBUG_STRING_EVENT, UNLOAD_DLL_DEBUG_EVENT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Memory::{
    VirtualAllocEx, VirtualProtectEx, VirtualQueryEx, MEMORY_BASIC_INFORMATION, MEM_COMMIT, MEM_FREE,
    MEM_RESERVE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_PROTECTION_FLAGS, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::PROCESS_BASIC_INFORMATION;
use windows_sys::Win32::System::Threading::{
    CreateRemoteThread, OpenProcess, QueueUserAPC, ResumeThread, SuspendThread, WaitForSingleObject,
    DEBUG_ONLY_THIS_PROCESS, DEBUG_PROCESS, PROCESS_QUERY_LIMITED_INFORMATION,
};

use winstrace_core::event::{Call, CallResult, Event, EventKind, EventSink, ProcessStart, Value};
use winstrace_core::memory::{PageCache, TargetMemory, Unreadable};
use winstrace_hook::trampoline::{self, Frame, StubToTrace, Trampolines, FRAME_SIZE, SLOTS_BYTES};
use winstrace_hook::{is_no_return, loader, pe, stub};

use winstrace_filter::{StatusFilter, TraceSet};

use crate::clock::TscClock;
use crate::handles::HandleNamer;
use crate::{EngineError, Options, Outcome, ProcessEntry, Stats, Target};

/// Set by the console control handler; the event loop polls it.
static DETACH_REQUESTED: AtomicBool = AtomicBool::new(false);

unsafe extern "system" fn on_console_ctrl(_ctrl_type: u32) -> i32 {
    // Ctrl-C and Ctrl-Break ask us to detach. Returning TRUE keeps winstrace
    // alive long enough to remove its traps; the target decides for itself.
    DETACH_REQUESTED.store(true, Ordering::SeqCst);
    1
}

/// winstrace's own peak working set in bytes, for `--stats`.
pub fn peak_working_set() -> Option<usize> {
    use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: PROCESS_MEMORY_COUNTERS is plain data; cb is set to its size.
    unsafe {
        let mut c: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        c.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        (K32GetProcessMemoryInfo(GetCurrentProcess(), &mut c, c.cb) != 0).then_some(c.PeakWorkingSetSize)
    }
}

/// Whether Ctrl-C (or Ctrl-Break) asked to detach, once
/// [`install_ctrl_c_handler`] is in place.
pub fn detach_requested() -> bool {
    DETACH_REQUESTED.load(Ordering::SeqCst)
}

/// Makes Ctrl-C (and Ctrl-Break) detach from the target instead of killing
/// winstrace with its traps still in place.
pub fn install_ctrl_c_handler() {
    // SAFETY: the handler is a plain function that only touches an atomic.
    unsafe {
        // A process can inherit "ignore Ctrl-C" (a background job, a new
        // process group); undo that first, or the handler never runs.
        SetConsoleCtrlHandler(None, 0);
        SetConsoleCtrlHandler(Some(on_console_ctrl), 1);
    }
}

/// All processes, for `-p NAME`.
pub fn list_processes() -> Result<Vec<ProcessEntry>, EngineError> {
    // SAFETY: a snapshot handle is checked, used and closed here.
    unsafe {
        let snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        if snap == INVALID_HANDLE_VALUE {
            return Err(os_error("listing processes"));
        }
        let mut out = Vec::new();
        let mut entry: PROCESSENTRY32W = std::mem::zeroed();
        entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
        let mut ok = Process32FirstW(snap, &mut entry);
        while ok != 0 {
            let len = entry.szExeFile.iter().position(|&c| c == 0).unwrap_or(entry.szExeFile.len());
            out.push(ProcessEntry {
                pid: entry.th32ProcessID,
                image_name: String::from_utf16_lossy(&entry.szExeFile[..len]),
            });
            ok = Process32NextW(snap, &mut entry);
        }
        CloseHandle(snap);
        Ok(out)
    }
}

fn os_error(what: &str) -> EngineError {
    // SAFETY: reads the calling thread's last-error value.
    let code = unsafe { GetLastError() };
    EngineError::Os { what: what.to_string(), code }
}

/// Target memory that remembers what was read, for `record_sample`.
struct RecordingMemory<'a> {
    inner: &'a dyn TargetMemory,
    reads: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
}

impl TargetMemory for RecordingMemory<'_> {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        self.inner.read_exact(address, buf)?;
        self.reads.borrow_mut().push((address, buf.to_vec()));
        Ok(())
    }
}

/// A live process's memory, read with ReadProcessMemory (a bad address
/// is an error, not a fault): the stopped target's here, winstrace's own
/// ntdll for the in-process engine.
pub struct LiveMemory {
    pub process: HANDLE,
}

impl TargetMemory for LiveMemory {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut read = 0usize;
        // SAFETY: `buf` is a valid writable buffer of the given length; the
        // OS validates the target address and fails rather than faulting.
        let ok = unsafe {
            ReadProcessMemory(
                self.process,
                address as *const c_void,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut read,
            )
        };
        if ok != 0 && read == buf.len() {
            Ok(())
        } else {
            Err(Unreadable { address })
        }
    }
}

fn write_memory(process: HANDLE, address: u64, bytes: &[u8]) -> Result<(), EngineError> {
    let mut written = 0usize;
    // SAFETY: `bytes` is a valid readable buffer; the OS checks the target range.
    let ok = unsafe {
        WriteProcessMemory(
            process,
            address as *const c_void,
            bytes.as_ptr().cast(),
            bytes.len(),
            &mut written,
        )
    };
    if ok == 0 || written != bytes.len() {
        return Err(os_error(&format!("writing {} bytes at {address:#x} in the target", bytes.len())));
    }
    Ok(())
}

/// Writes `bytes` into code at `address`, lifting the page protection for
/// the write and restoring it afterwards.
fn patch_code(process: HANDLE, address: u64, bytes: &[u8]) -> Result<(), EngineError> {
    let mut old: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: changes protection of target pages only; `old` is a valid out-pointer.
    let ok = unsafe {
        VirtualProtectEx(process, address as *const c_void, bytes.len(), PAGE_EXECUTE_READWRITE, &mut old)
    };
    if ok == 0 {
        return Err(os_error(&format!("unprotecting code at {address:#x}")));
    }
    let result = write_memory(process, address, bytes);
    let mut ignored: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: as above; restores what VirtualProtectEx reported.
    unsafe {
        VirtualProtectEx(process, address as *const c_void, bytes.len(), old, &mut ignored);
        FlushInstructionCache(process, address as *const c_void, bytes.len());
    }
    result
}

/// The traps installed in one process.
struct Hooks {
    trampolines: Trampolines,
    /// Per traced stub (same order as the trampolines' thunks).
    names: Vec<Arc<str>>,
    /// Each patched stub's address, the original bytes the patch replaces
    /// and the patch.
    patches: Vec<StubPatch>,
    /// Whether the stubs hold the patches (else their original bytes).
    applied: bool,
}

struct StubPatch {
    address: u64,
    original: Vec<u8>,
    patch: Vec<u8>,
}

/// The in-process engine's agent in one process (see [`Companion`]).
struct Agent {
    injection: Injection,
    state: AgentLoad,
    /// The agent DLL's image, once loaded: exceptions there are its
    /// memory probe's, handled by the agent itself.
    image: Option<(u64, u64)>,
    /// The thread that ran the loader routine as an APC, until its next
    /// call: the APC dispatcher's NtContinue, which ends the routine, is
    /// the tracer's too.
    apc_thread: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentLoad {
    /// The loader routine is queued or started but has not reached its first trap.
    Queued,
    /// This thread runs the loader routine.
    Loading(u32),
    /// The routine has returned: the agent's hooks are in (or it failed).
    Loaded,
}

struct ThreadState {
    handle: HANDLE,
}

struct ProcessState {
    handle: HANDLE,
    threads: HashMap<u32, ThreadState>,
    hooks: Option<Hooks>,
    /// The loader's breakpoint (or the attach breakpoint) is ours to swallow.
    initial_breakpoint_seen: bool,
    /// In-flight calls already reported as `<unfinished ...>`: (thread, frame).
    announced: HashSet<(u64, u64)>,
    /// Where ntdll is mapped, once known.
    ntdll_base: Option<u64>,
    /// With a companion: the agent injected into this process.
    agent: Option<Agent>,
    /// Threads the tracer created (the attach loader, the detach routine):
    /// not the program's, not shown.
    own_threads: HashSet<u32>,
}

impl ProcessState {
    /// Whether events of thread `tid` are the tracer's own doing.
    fn is_tracers(&self, tid: u32) -> bool {
        self.own_threads.contains(&tid)
            || self.agent.as_ref().is_some_and(|a| a.state == AgentLoad::Loading(tid))
    }
}

/// Where a companion's loader routine is in a target (see
/// `winstrace_hook::loader`).
#[derive(Debug, Clone)]
pub struct Injection {
    /// The routine: an APC on a launched process's first thread, the start
    /// of a new thread in an attached one.
    pub routine: u64,
    /// Its first `int3` and the one after the agent is loaded: in between,
    /// the thread's calls and events are the tracer's.
    pub begin_trap: u64,
    pub end_trap: u64,
    /// The agent DLL's file name, to recognise its load event.
    pub dll_name: String,
}

/// How far a [`Companion::poll`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// The calls that ended a moment ago or earlier: a debug event that
    /// comes a little late (Wine wakes a thread's waiter before it reports
    /// the thread's exit) can still be put before a call it caused.
    Settled,
    /// Before the exit event of thread `thread` (or, `None`, of the whole
    /// process) of `pid`: what that exit cannot have caused.
    Exit { pid: u32, thread: Option<u32> },
    /// Everything: before any other debug event, and when the tracer leaves.
    Everything,
}

/// Reports an event: pid, tid, time, what.
pub type Report<'a> = dyn FnMut(u32, u32, SystemTime, EventKind) + 'a;

/// The in-process engine's part in a debug session
/// (`winstrace-engine-inject` implements it). The debugger traces each
/// process from its first instruction, as it does alone, and has the
/// companion inject its agent into it; once the agent's hooks are in, the
/// calls come from the companion (the agent's ring) and only the rare
/// events (threads, DLLs, exceptions, debug strings, exits) from the
/// debugger.
pub trait Companion {
    /// Process `pid` (`process`: the debug session's handle to it) is new:
    /// prepares the agent's injection and writes the loader routine into
    /// it. An error leaves the process to the debugger alone.
    fn prepare(&mut self, pid: u32, process: HANDLE) -> Result<Injection, String>;
    /// Reports what the agents have recorded, up to `horizon` (a call
    /// another thread's line interrupts first as `<unfinished ...>`).
    /// `interleaved`: the traced processes have more than one thread
    /// between them (else no call can be interrupted).
    fn poll(&mut self, report: &mut Report<'_>, horizon: Horizon, interleaved: bool);
    /// Before the debugger prints an event: reports the agents' calls in
    /// flight as `<unfinished ...>`.
    fn announce_in_flight(&mut self, report: &mut Report<'_>);
    /// After the loader routine has run: why the agent is not tracing
    /// `pid`, if it is not (the debugger then takes the process back).
    fn failure(&mut self, pid: u32) -> Option<String>;
    /// The agent's detach routine in `pid`, to run on Ctrl-C.
    fn detach_routine(&mut self, pid: u32) -> Option<u64>;
    /// `pid` is gone, or left: everything it recorded has been reported.
    fn forget(&mut self, pid: u32);
    /// Functions the agents hooked (the most in one process) and records
    /// their rings lost.
    fn counts(&self) -> (u64, u64);
}

/// Traces `target` until it exits or, on Ctrl-C, is detached.
pub fn trace(target: &Target, options: &Options, sink: &mut dyn EventSink) -> Result<Outcome, EngineError> {
    trace_with(target, options, sink, None)
}

/// [`trace`], with the in-process engine's agent injected into every traced
/// process when `companion` is given.
pub fn trace_with<'a>(
    target: &Target,
    options: &Options,
    sink: &'a mut dyn EventSink,
    companion: Option<&'a mut dyn Companion>,
) -> Result<Outcome, EngineError> {
    let attach = matches!(target, Target::Attach { .. });
    let mut engine = Engine {
        sink,
        companion,
        processes: HashMap::new(),
        stats: Stats::default(),
        first_pid: 0,
        attach,
        clock: TscClock::calibrate(),
        first_exit_code: None,
        options: options.clone(),
        handle_names: options.handle_names.then(HandleNamer::new),
        sample: match &options.record_sample {
            Some(path) => {
                Some(std::cell::RefCell::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(
                    |e| EngineError::Os { what: format!("creating '{}' ({e})", path.display()), code: 0 },
                )?)))
            }
            None => None,
        },
    };
    match target {
        Target::Launch { program, args } => engine.launch(program, args, options.follow_children)?,
        Target::Attach { pid } => engine.attach(*pid)?,
    }
    let outcome = engine.run();
    let _ = engine.sink.finish();
    outcome
}

struct Engine<'s> {
    sink: &'s mut dyn EventSink,
    companion: Option<&'s mut dyn Companion>,
    processes: HashMap<u32, ProcessState>,
    stats: Stats,
    first_pid: u32,
    /// True when tracing a process we attached to rather than started.
    attach: bool,
    /// Turns the time-stamp counter values the trampolines record into times.
    clock: TscClock,
    options: Options,
    /// `-y`: names of handles, when asked for.
    handle_names: Option<HandleNamer>,
    /// Where `record_sample` writes.
    sample: Option<std::cell::RefCell<std::io::BufWriter<std::fs::File>>>,
    first_exit_code: Option<u32>,
}

/// What the event loop does after an event.
enum Next {
    Continue(NTSTATUS),
    /// Continue this event, then stop the loop with this exit code.
    Exit(u32),
}

/// The environment variable that keeps a process started under a debugger
/// on the normal heap.
const NO_DEBUG_HEAP: &str = "_NO_DEBUG_HEAP";

impl Engine<'_> {
    fn launch(&mut self, program: &str, args: &[String], follow_children: bool) -> Result<(), EngineError> {
        // std's Command resolves the program on PATH, quotes arguments as
        // the MSVC runtime expects and passes our standard handles on, so
        // the target's output reaches the same place as ours.
        let mut command = Command::new(program);
        command.args(args).creation_flags(if follow_children {
            DEBUG_PROCESS
        } else {
            DEBUG_ONLY_THIS_PROCESS
        });
        // A process started under a debugger gets Windows' debug heap (its
        // loader sees the debugger and turns on heap checking), which makes
        // a program slower and can change how a heap bug shows. The program
        // is to run as it does untraced, so the tracer asks for the normal
        // heap, as Visual Studio does, unless the user has set the variable.
        if std::env::var_os(NO_DEBUG_HEAP).is_none() {
            command.env(NO_DEBUG_HEAP, "1");
        }
        let child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => EngineError::ProgramNotFound { program: program.to_string() },
            io::ErrorKind::PermissionDenied => {
                EngineError::AccessDenied { what: format!("running '{program}'") }
            }
            _ => EngineError::Os {
                what: format!("starting '{program}'"),
                code: e.raw_os_error().unwrap_or(0) as u32,
            },
        })?;
        self.first_pid = child.id();
        // Dropping `child` closes our copies of its handles; the debug
        // events bring their own.
        drop(child);
        Ok(())
    }

    fn attach(&mut self, pid: u32) -> Result<(), EngineError> {
        // What a failed step says, from the Windows error it left.
        let failed = |what: String| {
            // SAFETY: reads the calling thread's last-error value.
            match unsafe { GetLastError() } {
                ERROR_INVALID_PARAMETER => EngineError::NoSuchProcess { pid },
                ERROR_ACCESS_DENIED => EngineError::AccessDenied { what },
                code => EngineError::Os { what, code },
            }
        };
        // Check the process exists first, so that a wrong PID gets its own message.
        // SAFETY: OpenProcess returns a handle or null; the handle is closed.
        unsafe {
            let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if h.is_null() {
                return Err(failed(format!("opening process {pid}")));
            }
            CloseHandle(h);
            if DebugActiveProcess(pid) == 0 {
                return Err(failed(format!("attaching to process {pid}")));
            }
            // Leaving (or dying) must not take the target with us.
            DebugSetProcessKillOnExit(0);
        }
        self.first_pid = pid;
        Ok(())
    }
}

/// A 16-byte aligned CONTEXT, as GetThreadContext requires on x64.
#[repr(C, align(16))]
struct AlignedContext(CONTEXT);

/// How long the loop waits for an event before checking for Ctrl-C.
const POLL_MS: u32 = 100;
/// The same with a companion, whose rings are read between waits.
const COMPANION_POLL_MS: u32 = 2;
/// How long the agents' detach routines may take.
const AGENT_DETACH_MS: u64 = 10_000;
/// After removing the traps, how long a quiet spell proves no thread is
/// still on its way to one.
const DRAIN_MS: u32 = 200;

impl Engine<'_> {
    fn run(&mut self) -> Result<Outcome, EngineError> {
        let mut exit_code = None;
        // With agents, their rings are read between debug events.
        let poll_ms = if self.companion.is_some() { COMPANION_POLL_MS } else { POLL_MS };
        loop {
            if DETACH_REQUESTED.load(Ordering::SeqCst) {
                self.detach();
                break;
            }
            let Some(event) = wait_for_event(poll_ms)? else {
                self.poll_companion();
                continue;
            };
            if let Next::Exit(code) = self.handle_event(&event) {
                exit_code = Some(code);
                break;
            }
        }
        if let Some(companion) = self.companion.as_ref() {
            let (hooked, lost) = companion.counts();
            self.stats.hooked_functions = self.stats.hooked_functions.max(hooked);
            self.stats.lost_records = lost;
        }
        Ok(Outcome { exit_code, stats: self.stats })
    }

    /// Handles one debug event and continues it: what the agents recorded
    /// first (a thread's record is written before the system call that
    /// raises the event), then the event itself.
    fn handle_event(&mut self, event: &DEBUG_EVENT) -> Next {
        self.poll_companion_before(event);
        self.stats.debug_events += 1;
        let next = self.dispatch(event);
        let status = match next {
            Next::Continue(status) => status,
            Next::Exit(_) => DBG_CONTINUE,
        };
        // SAFETY: continues the event we just received.
        unsafe { ContinueDebugEvent(event.dwProcessId, event.dwThreadId, status) };
        next
    }

    /// Reports what the agents recorded (nothing without a companion).
    fn poll_companion(&mut self) {
        self.poll_companion_to(Horizon::Settled);
    }

    /// Reports what the agents recorded before `event` is handled.
    fn poll_companion_before(&mut self, event: &DEBUG_EVENT) {
        let horizon = match event.dwDebugEventCode {
            EXIT_THREAD_DEBUG_EVENT => {
                Horizon::Exit { pid: event.dwProcessId, thread: Some(event.dwThreadId) }
            }
            EXIT_PROCESS_DEBUG_EVENT => Horizon::Exit { pid: event.dwProcessId, thread: None },
            // A record is written before the system call that raises an
            // event: all of them come first.
            _ => Horizon::Everything,
        };
        self.poll_companion_to(horizon);
    }

    fn poll_companion_to(&mut self, horizon: Horizon) {
        let Some(companion) = self.companion.take() else { return };
        let interleaved = self.processes.values().map(|p| p.threads.len()).sum::<usize>() > 1;
        companion.poll(
            &mut |pid, tid, time, kind| {
                let Some(p) = self.processes.get_mut(&pid) else { return };
                if p.is_tracers(tid) {
                    return;
                }
                if let Some(agent) = p.agent.as_mut().filter(|a| a.apc_thread == Some(tid)) {
                    agent.apc_thread = None;
                    if matches!(&kind, EventKind::Call(call) if &*call.function == "NtContinue") {
                        return;
                    }
                }
                self.stats.calls += u64::from(matches!(kind, EventKind::Call(_)));
                self.emit_raw(pid, tid, time, kind)
            },
            horizon,
            interleaved,
        );
        self.companion = Some(companion);
    }

    /// Ctrl-C: removes the traps and detaches, leaving the targets running.
    /// The code is rewritten with every thread of every traced process
    /// suspended (by us, with the handles the debug events gave us), so no
    /// thread runs the bytes being replaced. No thread is made to break in
    /// (DebugBreakProcess): under Wine that remote thread, created through
    /// a system APC, sometimes took the target down with it on a loaded
    /// machine.
    fn detach(&mut self) {
        self.stop_agents();
        let threads: Vec<HANDLE> =
            self.processes.values().flat_map(|p| p.threads.values().map(|t| t.handle)).collect();
        // SAFETY: thread handles owned by the debug session (all access).
        let suspended: Vec<HANDLE> =
            threads.into_iter().filter(|&t| unsafe { SuspendThread(t) } != u32::MAX).collect();
        self.remove_all_hooks();
        for thread in suspended {
            // SAFETY: resumes a thread suspended just above.
            unsafe { ResumeThread(thread) };
        }
        self.drain_and_detach();
    }

    fn emit(&mut self, pid: u32, tid: u32, kind: EventKind) {
        self.emit_at(pid, tid, SystemTime::now(), kind);
    }

    /// Emits an event, after reporting the calls it interrupts.
    fn emit_at(&mut self, pid: u32, tid: u32, time: SystemTime, kind: EventKind) {
        if self.processes.get(&pid).is_some_and(|p| p.is_tracers(tid)) {
            return;
        }
        self.announce_all_unfinished();
        self.emit_raw(pid, tid, time, kind);
    }

    fn emit_raw(&mut self, pid: u32, tid: u32, time: SystemTime, kind: EventKind) {
        let event = Event { pid, tid, time, kind };
        // A sink that cannot write (a closed pipe, a full disk) must not take
        // the target down with it: tracing goes on, the loss is reported once.
        if let Err(e) = self.sink.event(&event) {
            static REPORTED: AtomicBool = AtomicBool::new(false);
            if !REPORTED.swap(true, Ordering::Relaxed) {
                eprintln!("winstrace: cannot write the trace: {e}");
            }
        }
    }

    fn dispatch(&mut self, ev: &DEBUG_EVENT) -> Next {
        let (pid, tid) = (ev.dwProcessId, ev.dwThreadId);
        match ev.dwDebugEventCode {
            CREATE_PROCESS_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let info = unsafe { ev.u.CreateProcessInfo };
                close_file(info.hFile);
                let attached = self.attach && pid == self.first_pid;
                let mut threads = HashMap::new();
                threads.insert(tid, ThreadState { handle: info.hThread });
                self.processes.insert(
                    pid,
                    ProcessState {
                        handle: info.hProcess,
                        threads,
                        hooks: None,
                        initial_breakpoint_seen: false,
                        announced: HashSet::new(),
                        ntdll_base: None,
                        agent: None,
                        own_threads: HashSet::new(),
                    },
                );
                let (image, command_line) = process_identity(info.hProcess);
                self.emit(pid, tid, EventKind::ProcessStart(ProcessStart { image, command_line, attached }));
                self.inject_agent(pid, info.hProcess, info.hThread, attached);
                Next::Continue(DBG_CONTINUE)
            }
            CREATE_THREAD_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let info = unsafe { ev.u.CreateThread };
                if let Some(p) = self.processes.get_mut(&pid) {
                    p.threads.insert(tid, ThreadState { handle: info.hThread });
                }
                let start_address = info.lpStartAddress.map_or(0, |f| f as usize as u64);
                self.emit(pid, tid, EventKind::ThreadStart { start_address });
                Next::Continue(DBG_CONTINUE)
            }
            EXIT_THREAD_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let code = unsafe { ev.u.ExitThread.dwExitCode };
                // The thread counts until its line is out: the calls its
                // exit interrupts are announced first.
                self.emit(pid, tid, EventKind::ThreadExit { code });
                if let Some(p) = self.processes.get_mut(&pid) {
                    p.threads.remove(&tid);
                    p.own_threads.remove(&tid);
                }
                Next::Continue(DBG_CONTINUE)
            }
            EXIT_PROCESS_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let code = unsafe { ev.u.ExitProcess.dwExitCode };
                if let Some(companion) = self.companion.as_mut() {
                    companion.forget(pid);
                }
                self.emit(pid, tid, EventKind::ProcessExit { code });
                self.processes.remove(&pid);
                if let Some(namer) = self.handle_names.as_mut() {
                    namer.forget_process(pid);
                }
                if pid == self.first_pid {
                    self.first_exit_code = Some(code);
                }
                // Tracing ends with the last traced process (children under
                // -f may outlive the first); winstrace exits with the first's code.
                if self.processes.is_empty() {
                    Next::Exit(self.first_exit_code.unwrap_or(code))
                } else {
                    Next::Continue(DBG_CONTINUE)
                }
            }
            LOAD_DLL_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let info = unsafe { ev.u.LoadDll };
                let base = info.lpBaseOfDll as u64;
                let path = file_path(info.hFile)
                    .or_else(|| self.processes.get(&pid).and_then(|p| mapped_file_path(p.handle, base)))
                    .unwrap_or_default();
                close_file(info.hFile);
                self.emit(pid, tid, EventKind::DllLoad { path: path.clone(), base });
                if is_ntdll(&path) {
                    let attached_agent = self.attach
                        && pid == self.first_pid
                        && self.processes.get(&pid).is_some_and(|p| p.agent.is_some());
                    if let Some(p) = self.processes.get_mut(&pid) {
                        p.ntdll_base = Some(base);
                    }
                    // An attached process's calls are the agent's to trace
                    // from the moment it is in: the debugger would only trace
                    // the few in between.
                    if !attached_agent {
                        self.install_hooks(pid, base);
                    }
                }
                if let Some(p) = self.processes.get_mut(&pid) {
                    if let Some(agent) = p.agent.as_mut() {
                        if file_name_is(&path, &agent.injection.dll_name) {
                            let size = pe::image_size(&LiveMemory { process: p.handle }, base).unwrap_or(0);
                            agent.image = Some((base, base + size));
                        }
                    }
                }
                Next::Continue(DBG_CONTINUE)
            }
            UNLOAD_DLL_DEBUG_EVENT => {
                // SAFETY: the union member matching the event code.
                let base = unsafe { ev.u.UnloadDll.lpBaseOfDll } as u64;
                self.emit(pid, tid, EventKind::DllUnload { base });
                Next::Continue(DBG_CONTINUE)
            }
            OUTPUT_DEBUG_STRING_EVENT => {
                // SAFETY: the union member matching the event code.
                let info = unsafe { ev.u.DebugString };
                let text = self.processes.get(&pid).map_or_else(String::new, |p| {
                    let mem = LiveMemory { process: p.handle };
                    read_debug_string(
                        &mem,
                        info.lpDebugStringData as u64,
                        info.nDebugStringLength,
                        info.fUnicode != 0,
                    )
                });
                self.emit(pid, tid, EventKind::DebugOutput { text });
                Next::Continue(DBG_CONTINUE)
            }
            EXCEPTION_DEBUG_EVENT => self.on_exception(ev),
            _ => Next::Continue(DBG_CONTINUE),
        }
    }

    fn on_exception(&mut self, ev: &DEBUG_EVENT) -> Next {
        let (pid, tid) = (ev.dwProcessId, ev.dwThreadId);
        // SAFETY: the union member matching the event code.
        let info = unsafe { ev.u.Exception };
        let record = info.ExceptionRecord;
        let address = record.ExceptionAddress as u64;
        let code = record.ExceptionCode;
        if let Some(agent) = self.processes.get(&pid).and_then(|p| p.agent.as_ref()) {
            // The agent's memory probe faults on bad pointers by design and
            // handles that itself.
            if info.dwFirstChance != 0
                && agent.image.is_some_and(|(start, end)| (start..end).contains(&address))
            {
                return Next::Continue(DBG_EXCEPTION_NOT_HANDLED);
            }
        }
        if code == EXCEPTION_BREAKPOINT {
            if let Some(next) = self.on_loader_trap(pid, tid, address) {
                return next;
            }
            if let Some(next) = self.on_trap(pid, tid, address) {
                return next;
            }
            let Some(p) = self.processes.get_mut(&pid) else {
                return Next::Continue(DBG_EXCEPTION_NOT_HANDLED);
            };
            if !p.initial_breakpoint_seen {
                // The loader's breakpoint for a new debugger (or the attach
                // breakpoint): the target did not ask for it.
                p.initial_breakpoint_seen = true;
                return Next::Continue(DBG_CONTINUE);
            }
        }
        self.emit(
            pid,
            tid,
            EventKind::Exception { code: code as u32, address, first_chance: info.dwFirstChance != 0 },
        );
        // The target's own exceptions go back to it untouched, so its
        // handlers run exactly as they would untraced.
        Next::Continue(DBG_EXCEPTION_NOT_HANDLED)
    }

    /// Handles a breakpoint at one of our traps; `None` if it is not ours.
    fn on_trap(&mut self, pid: u32, tid: u32, address: u64) -> Option<Next> {
        let p = self.processes.get(&pid)?;
        let hooks = p.hooks.as_ref()?;
        let returned = if address == hooks.trampolines.return_trap {
            true
        } else if address == hooks.trampolines.entry_trap {
            false
        } else {
            return None;
        };
        let thread = p.threads.get(&tid)?.handle;
        let mut ctx = AlignedContext(
            // SAFETY: CONTEXT is plain data; all-zero is a valid value.
            unsafe { std::mem::zeroed() },
        );
        ctx.0.ContextFlags = CONTEXT_CONTROL_AMD64 | CONTEXT_INTEGER_AMD64;
        // SAFETY: `ctx` is a valid, aligned CONTEXT; the thread is stopped.
        if unsafe { GetThreadContext(thread, &mut ctx.0) } == 0 {
            return Some(Next::Continue(DBG_CONTINUE));
        }
        let live = LiveMemory { process: p.handle };
        // One cache for this stop: the frame's stack page is the one most
        // arguments point into too.
        let mem = PageCache::new(&live);
        let frame_address = ctx.0.Rsp;
        let mut bytes = [0u8; FRAME_SIZE];
        let frame = mem.read_exact(frame_address, &mut bytes).ok().map(|_| Frame::parse(&bytes));
        step_past_int3(thread, &mut ctx, address);
        let Some(frame) = frame else { return Some(Next::Continue(DBG_CONTINUE)) };
        let Some(mut call) = self.call_from_frame(pid, &mem, frame_address, &frame, returned) else {
            return Some(Next::Continue(DBG_CONTINUE));
        };
        if let Some(p) = self.processes.get_mut(&pid) {
            call.resumed = p.announced.remove(&(u64::from(tid), frame_address));
        }
        self.stats.calls += 1;
        let result = match call.result {
            CallResult::Returned(value) => Some(value),
            CallResult::NoReturn => None,
        };
        if !self.options.status.shows(result) {
            return Some(Next::Continue(DBG_CONTINUE));
        }
        self.name_handles(pid, &mut call);
        let time = if returned { self.clock.time_of(frame.return_tsc) } else { SystemTime::now() };
        let closed = (&*call.function == "NtClose" && call.result == CallResult::Returned(0))
            .then(|| call.args.first().map(|a| a.raw))
            .flatten();
        self.emit_at(pid, tid, time, EventKind::Call(call));
        if let (Some(namer), Some(handle)) = (self.handle_names.as_mut(), closed) {
            namer.forget(pid, handle);
        }
        Some(Next::Continue(DBG_CONTINUE))
    }

    /// The call a frame describes, its arguments decoded from the live
    /// target (which is stopped while we read it).
    fn call_from_frame(
        &self,
        pid: u32,
        live: &dyn TargetMemory,
        frame_address: u64,
        frame: &Frame,
        returned: bool,
    ) -> Option<Call> {
        let p = self.processes.get(&pid)?;
        let hooks = p.hooks.as_ref()?;
        let index = frame.function(&hooks.trampolines.copies)?;
        let function = hooks.names[index].clone();
        // System calls return an NTSTATUS in EAX; the upper half of RAX
        // carries nothing.
        let status = returned.then_some(u64::from(frame.rax as u32));
        let recording = RecordingMemory { inner: live, reads: std::cell::RefCell::new(Vec::new()) };
        let mem: &dyn TargetMemory = if self.sample.is_some() { &recording } else { live };
        let (args, args_complete) =
            winstrace_decode::decode_call(&function, &frame.args, status, mem, &self.options.decode);
        if let Some(sample) = &self.sample {
            let line = crate::sample_line(&function, status, &frame.args, &recording.reads.borrow());
            let _ = writeln!(sample.borrow_mut(), "{line}");
        }
        Some(Call {
            function,
            id: frame_address,
            args,
            args_complete,
            result: status.map_or(CallResult::NoReturn, CallResult::Returned),
            resumed: false,
            entry_time: Some(self.clock.time_of(frame.entry_tsc)),
            duration: returned.then(|| self.clock.duration(frame.entry_tsc, frame.return_tsc)),
        })
    }

    /// `-y`: replaces each handle in the arguments (and in the structures
    /// they point to, such as OBJECT_ATTRIBUTES' root) by the handle with
    /// its name.
    fn name_handles(&mut self, pid: u32, call: &mut Call) {
        let Some(namer) = self.handle_names.as_mut() else { return };
        let Some(process) = self.processes.get(&pid).map(|p| p.handle) else { return };
        name_call_handles(namer, process, pid, call);
    }

    /// Reports, as `<unfinished ...>`, every traced call in flight that is
    /// not reported yet, before another event is printed: that line is
    /// about to come between their entry and return. With one thread in one
    /// process there can be none, and nothing is read.
    fn announce_all_unfinished(&mut self) {
        let threads: usize = self.processes.values().map(|p| p.threads.len()).sum();
        // Under -Z/-z a call is shown only once its result is known, so
        // it is never shown unfinished.
        if threads < 2 || self.options.status != StatusFilter::All {
            return;
        }
        if let Some(companion) = self.companion.take() {
            companion.announce_in_flight(&mut |pid, tid, time, kind| self.emit_raw(pid, tid, time, kind));
            self.companion = Some(companion);
        }
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            self.announce_unfinished(pid);
        }
    }

    fn announce_unfinished(&mut self, pid: u32) {
        let Some(p) = self.processes.get(&pid) else { return };
        let Some(hooks) = p.hooks.as_ref() else { return };
        let live = LiveMemory { process: p.handle };
        let mem = PageCache::new(&live);
        let mut table = vec![0u8; SLOTS_BYTES];
        if mem.read_exact(hooks.trampolines.base, &mut table).is_err() {
            return;
        }
        let mut fresh: Vec<(u64, u64, Frame)> = trampoline::parse_in_flight(&table)
            .into_iter()
            .filter(|f| !p.announced.contains(&(f.thread_id, f.frame)))
            .filter_map(|f| {
                let mut bytes = [0u8; FRAME_SIZE];
                mem.read_exact(f.frame, &mut bytes).ok()?;
                Some((f.thread_id, f.frame, Frame::parse(&bytes)))
            })
            .collect();
        fresh.sort_by_key(|(_, _, frame)| frame.entry_tsc);
        for (thread_id, frame_address, frame) in fresh {
            let Some(mut call) = self.call_from_frame(pid, &mem, frame_address, &frame, false) else {
                continue;
            };
            call.duration = None;
            self.name_handles(pid, &mut call);
            let time = call.entry_time.unwrap_or_else(SystemTime::now);
            if let Some(p) = self.processes.get_mut(&pid) {
                p.announced.insert((thread_id, frame_address));
            }
            self.emit_raw(pid, thread_id as u32, time, EventKind::CallStart(call));
        }
    }
}

impl Engine<'_> {
    /// Redirects every recognised `Nt*` stub of the ntdll mapped at
    /// `ntdll_base` to trampolines. A failure leaves the process untraced
    /// but running: it is reported, never fatal to the target.
    fn install_hooks(&mut self, pid: u32, ntdll_base: u64) {
        let Some(p) = self.processes.get(&pid) else { return };
        match install_hooks(p.handle, ntdll_base, &self.options.trace) {
            Ok(hooks) => {
                self.stats.hooked_functions += hooks.names.len() as u64;
                self.stats.functions_without_signature +=
                    hooks.names.iter().filter(|name| winstrace_signatures::lookup(name).is_none()).count()
                        as u64;
                if let Some(p) = self.processes.get_mut(&pid) {
                    p.hooks = Some(hooks);
                }
            }
            Err(e) => eprintln!("winstrace: cannot trace process {pid}: {e}"),
        }
    }

    /// Puts every stub back and disarms both traps, in every process, and
    /// makes an agent loader routine that has not finished harmless.
    fn remove_all_hooks(&mut self) {
        for (pid, p) in &mut self.processes {
            if let Some(agent) = p.agent.as_ref() {
                let disarm: &[(u64, u8)] = match agent.state {
                    // Not started: the routine returns at once.
                    AgentLoad::Queued => &[(agent.injection.begin_trap, loader::RET)],
                    AgentLoad::Loading(_) => {
                        &[(agent.injection.begin_trap, loader::NOP), (agent.injection.end_trap, loader::NOP)]
                    }
                    AgentLoad::Loaded => &[],
                };
                for (address, byte) in disarm {
                    if let Err(e) = patch_code(p.handle, *address, &[*byte]) {
                        eprintln!("winstrace: process {pid}: cannot disarm the agent's loader: {e}");
                    }
                }
            }
            let Some(mut hooks) = p.hooks.take() else { continue };
            set_stubs(*pid, p.handle, &mut hooks, false);
            // A thread inside a call (blocked in a wait, say) will still come
            // back through the trampoline: a nop lets it pass untraced. The
            // region itself stays allocated for the same reason.
            for trap in [hooks.trampolines.return_trap, hooks.trampolines.entry_trap] {
                if let Err(e) = patch_code(p.handle, trap, &[0x90]) {
                    eprintln!("winstrace: process {pid}: cannot disarm a trap: {e}");
                }
            }
            // Keep the trap addresses so that events already queued from
            // before the disarm are still recognised while draining.
            p.hooks = Some(hooks);
        }
    }

    /// With a companion: writes the agent's loader routine into the new
    /// process `pid` and has it run, as an APC on the first thread of a
    /// process that has not run yet (it runs once the loader has
    /// initialised the process, before the program's entry point), or on a
    /// thread of its own in an attached one.
    fn inject_agent(&mut self, pid: u32, process: HANDLE, thread: HANDLE, attached: bool) {
        let Some(companion) = self.companion.as_mut() else { return };
        let injection = match companion.prepare(pid, process) {
            Ok(injection) => injection,
            Err(e) => {
                eprintln!("winstrace: process {pid}: {e}; the debugger engine traces it alone");
                return;
            }
        };
        let routine = injection.routine;
        let mut own_thread = None;
        let started = if attached {
            if let Some((handle, tid)) = start_thread_at(process, routine) {
                own_thread = Some(tid);
                // SAFETY: our handle to the thread just created.
                unsafe { CloseHandle(handle) };
            }
            own_thread.is_some()
        } else {
            // SAFETY: `routine` is the loader routine just written into the
            // target; an APC routine takes one pointer-sized argument,
            // which it ignores. The thread handle of a create-process event
            // allows THREAD_SET_CONTEXT, which QueueUserAPC needs.
            unsafe {
                QueueUserAPC(
                    Some(std::mem::transmute::<usize, unsafe extern "system" fn(usize)>(routine as usize)),
                    thread,
                    0,
                ) != 0
            }
        };
        if !started {
            eprintln!(
                "winstrace: process {pid}: cannot start the agent's loader (error {}); the debugger engine traces it alone",
                // SAFETY: reads the calling thread's last-error value.
                unsafe { GetLastError() }
            );
            if let Some(companion) = self.companion.as_mut() {
                companion.forget(pid);
            }
            return;
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.own_threads.extend(own_thread);
            p.agent = Some(Agent { injection, state: AgentLoad::Queued, image: None, apc_thread: None });
        }
    }

    /// Handles a breakpoint at an agent loader routine's traps; `None` if
    /// it is not one. At the first, the thread becomes the tracer's and
    /// the stubs get their original bytes back, for the agent to find and
    /// copy them (the debugger's trampolines stay for calls in flight); at
    /// the second the agent is in, or, if it failed, the debugger's patches
    /// go back in.
    fn on_loader_trap(&mut self, pid: u32, tid: u32, address: u64) -> Option<Next> {
        let p = self.processes.get_mut(&pid)?;
        let agent = p.agent.as_mut()?;
        let begin = address == agent.injection.begin_trap;
        if !begin && address != agent.injection.end_trap {
            return None;
        }
        agent.state = if begin { AgentLoad::Loading(tid) } else { AgentLoad::Loaded };
        if !begin && !p.own_threads.contains(&tid) {
            agent.apc_thread = Some(tid);
        }
        let thread = p.threads.get(&tid)?.handle;
        let mut ctx = AlignedContext(
            // SAFETY: CONTEXT is plain data; all-zero is a valid value.
            unsafe { std::mem::zeroed() },
        );
        ctx.0.ContextFlags = CONTEXT_CONTROL_AMD64;
        // SAFETY: `ctx` is a valid, aligned CONTEXT; the thread is stopped.
        if unsafe { GetThreadContext(thread, &mut ctx.0) } != 0 {
            step_past_int3(thread, &mut ctx, address);
        }
        let failure = if begin { None } else { self.companion.as_mut().and_then(|c| c.failure(pid)) };
        let p = self.processes.get_mut(&pid)?;
        if begin {
            if let Some(hooks) = p.hooks.as_mut() {
                set_stubs(pid, p.handle, hooks, false);
            }
        } else if let Some(why) = failure {
            eprintln!("winstrace: process {pid}: {why}; the debugger engine traces it");
            p.agent = None;
            match (p.hooks.as_mut(), p.ntdll_base) {
                (Some(hooks), _) => set_stubs(pid, p.handle, hooks, true),
                (None, Some(base)) => self.install_hooks(pid, base),
                (None, None) => {}
            }
            if let Some(companion) = self.companion.as_mut() {
                companion.forget(pid);
            }
        }
        Some(Next::Continue(DBG_CONTINUE))
    }

    /// Ctrl-C with agents: runs each agent's detach routine (the agent puts
    /// the stubs back and stops recording), handling the debug events
    /// meanwhile, for each routine runs in a thread of its own.
    fn stop_agents(&mut self) {
        let Some(companion) = self.companion.as_mut() else { return };
        let mut running = Vec::new();
        for (pid, p) in &mut self.processes {
            if p.agent.as_ref().map(|a| a.state) != Some(AgentLoad::Loaded) {
                continue;
            }
            // The agent published the address of its detach routine in its
            // own process: at worst a hostile target runs its own code.
            let Some(routine) = companion.detach_routine(*pid) else { continue };
            let Some((handle, tid)) = start_thread_at(p.handle, routine) else {
                eprintln!("winstrace: process {pid}: cannot run the agent's detach routine");
                continue;
            };
            p.own_threads.insert(tid);
            running.push(handle);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(AGENT_DETACH_MS);
        while !running.is_empty() && std::time::Instant::now() < deadline {
            if let Ok(Some(event)) = wait_for_event(COMPANION_POLL_MS) {
                self.handle_event(&event);
            }
            running.retain(|&thread| {
                // SAFETY: our thread handles; a zero timeout only polls.
                let done = unsafe { WaitForSingleObject(thread, 0) } == WAIT_OBJECT_0;
                if done {
                    // SAFETY: closed once, when done.
                    unsafe { CloseHandle(thread) };
                }
                !done
            });
        }
        self.poll_companion();
    }

    /// Handles the events threads raised before the traps were disarmed,
    /// then detaches from every process.
    fn drain_and_detach(&mut self) {
        while let Ok(Some(event)) = wait_for_event(DRAIN_MS) {
            self.handle_event(&event);
        }
        self.poll_companion_to(Horizon::Everything);
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            if let Some(companion) = self.companion.as_mut() {
                companion.forget(pid);
            }
            // SAFETY: plain call on a pid we debug.
            if unsafe { DebugActiveProcessStop(pid) } == 0 {
                eprintln!("winstrace: detaching from process {pid} failed (error {})", unsafe {
                    GetLastError()
                });
            }
            self.emit(pid, 0, EventKind::Detached);
        }
        self.processes.clear();
    }
}

/// `-y` for one call of process `pid` (`process`: a handle to it with
/// PROCESS_DUP_HANDLE access): each handle in the arguments, and in the
/// structures they point to, gets its name.
fn name_call_handles(namer: &mut HandleNamer, process: HANDLE, pid: u32, call: &mut Call) {
    for arg in &mut call.args {
        name_handles_in(namer, process, pid, &mut arg.value, false);
    }
}

/// Names the handles inside `value`. `fresh`: the value was just handed out
/// by the call (an out `[0x24]`), so what was known of that handle value
/// belongs to a closed handle and is forgotten first.
fn name_handles_in(namer: &mut HandleNamer, process: HANDLE, pid: u32, value: &mut Value, fresh: bool) {
    match value {
        Value::Handle(handle) => {
            let handle = *handle;
            // NULL and the pseudo-handles (-1 .. -6) name themselves.
            if handle == 0 || handle >= (-6i64) as u64 {
                return;
            }
            if fresh {
                namer.forget(pid, handle);
            }
            if let Some(name) = namer.name(process, pid, handle) {
                *value = Value::NamedHandle { raw: handle, name };
            }
        }
        Value::Pointer(inner) => name_handles_in(namer, process, pid, inner, true),
        Value::Struct(fields) => {
            for field in fields {
                name_handles_in(namer, process, pid, &mut field.value, false);
            }
        }
        Value::Array { items, .. } => {
            for item in items {
                name_handles_in(namer, process, pid, item, false);
            }
        }
        _ => {}
    }
}

/// Starts a thread of `process` at `routine`, a routine in it that takes
/// one (ignored) pointer argument; its handle and id.
fn start_thread_at(process: HANDLE, routine: u64) -> Option<(HANDLE, u32)> {
    let mut tid = 0u32;
    // SAFETY: the thread runs code of the target's (the caller vouches for
    // what it is), with a null argument; `tid` is a valid out-pointer.
    let handle = unsafe {
        CreateRemoteThread(
            process,
            std::ptr::null(),
            0,
            Some(std::mem::transmute::<usize, unsafe extern "system" fn(*mut c_void) -> u32>(
                routine as usize,
            )),
            std::ptr::null(),
            0,
            &mut tid,
        )
    };
    (!handle.is_null()).then_some((handle, tid))
}

/// Writes each stub's patch (`patched`) or its original bytes back.
fn set_stubs(pid: u32, process: HANDLE, hooks: &mut Hooks, patched: bool) {
    if hooks.applied == patched {
        return;
    }
    for stub in &hooks.patches {
        let bytes = if patched { &stub.patch } else { &stub.original };
        if let Err(e) = patch_code(process, stub.address, bytes) {
            eprintln!("winstrace: process {pid}: cannot rewrite a stub: {e}");
        }
    }
    hooks.applied = patched;
}

/// Resumes a thread stopped at the `int3` at `address` after it, wherever
/// the OS left RIP (`ctx`: the thread's context, control registers read).
fn step_past_int3(thread: HANDLE, ctx: &mut AlignedContext, address: u64) {
    if ctx.0.Rip == address {
        ctx.0.Rip = address + 1;
        // SAFETY: a valid, aligned CONTEXT for a thread stopped by a debug event.
        unsafe { SetThreadContext(thread, &ctx.0) };
    }
}

/// Whether `path`'s last component is `name` (ASCII case ignored).
fn file_name_is(path: &str, name: &str) -> bool {
    path.rsplit(['\\', '/']).next().is_some_and(|last| last.eq_ignore_ascii_case(name))
}

fn wait_for_event(timeout_ms: u32) -> Result<Option<DEBUG_EVENT>, EngineError> {
    // SAFETY: DEBUG_EVENT is plain data; WaitForDebugEvent fills it.
    unsafe {
        let mut event: DEBUG_EVENT = std::mem::zeroed();
        if WaitForDebugEvent(&mut event, timeout_ms) != 0 {
            return Ok(Some(event));
        }
        match GetLastError() {
            // The documented timeout error, and WAIT_TIMEOUT for good measure.
            ERROR_SEM_TIMEOUT | 258 => Ok(None),
            code => Err(EngineError::Os { what: "waiting for debug events".into(), code }),
        }
    }
}

fn close_file(file: HANDLE) {
    if !file.is_null() && file != INVALID_HANDLE_VALUE {
        // SAFETY: the debug API hands us this file handle to close.
        unsafe { CloseHandle(file) };
    }
}

fn is_ntdll(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == "ntdll.dll" || lower.ends_with("\\ntdll.dll") || lower.ends_with("/ntdll.dll")
}

/// The DOS path of an open file, without the `\\?\` prefix.
pub(crate) fn file_path(file: HANDLE) -> Option<String> {
    if file.is_null() || file == INVALID_HANDLE_VALUE {
        return None;
    }
    let mut buf = vec![0u16; 1024];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { GetFinalPathNameByHandleW(file, buf.as_mut_ptr(), buf.len() as u32, VOLUME_NAME_DOS) }
        as usize;
    if n == 0 || n >= buf.len() {
        return None;
    }
    let path = String::from_utf16_lossy(&buf[..n]);
    Some(path.strip_prefix("\\\\?\\").map(str::to_string).unwrap_or(path))
}

/// The file mapped at `base` in a process (an NT path), when there is no
/// file handle to ask.
fn mapped_file_path(process: HANDLE, base: u64) -> Option<String> {
    use windows_sys::Win32::System::ProcessStatus::K32GetMappedFileNameW;
    let mut buf = vec![0u16; 1024];
    // SAFETY: `buf` is writable for its length.
    let n =
        unsafe { K32GetMappedFileNameW(process, base as *const c_void, buf.as_mut_ptr(), buf.len() as u32) }
            as usize;
    (n > 0 && n < buf.len()).then(|| String::from_utf16_lossy(&buf[..n]))
}

/// Image path and command line from the target's process parameters.
/// A process's image path and command line, read from its PEB (empty
/// strings when they cannot be read).
// A HANDLE is an opaque kernel handle: it is passed to system calls, never
// dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn process_identity(process: HANDLE) -> (String, String) {
    let mem = LiveMemory { process };
    let read = || -> Option<(String, String)> {
        // SAFETY: PROCESS_BASIC_INFORMATION is plain data of the size passed.
        let peb = unsafe {
            let mut info: PROCESS_BASIC_INFORMATION = std::mem::zeroed();
            let mut len = 0u32;
            let status = NtQueryInformationProcess(
                process,
                ProcessBasicInformation,
                (&mut info as *mut PROCESS_BASIC_INFORMATION).cast(),
                std::mem::size_of::<PROCESS_BASIC_INFORMATION>() as u32,
                &mut len,
            );
            if status < 0 {
                return None;
            }
            info.PebBaseAddress as u64
        };
        // PEB.ProcessParameters at 0x20; in RTL_USER_PROCESS_PARAMETERS the
        // ImagePathName and CommandLine UNICODE_STRINGs are at 0x60 and 0x70.
        let params = mem.read_u64(peb + 0x20).ok()?;
        let unicode_string = |at: u64| -> Option<String> {
            let len = mem.read_u16(at).ok()? as usize;
            let buffer = mem.read_u64(at + 8).ok()?;
            mem.read_utf16(buffer, len / 2).ok()
        };
        Some((unicode_string(params + 0x60)?, unicode_string(params + 0x70)?))
    };
    read().unwrap_or_default()
}

fn read_debug_string(mem: &dyn TargetMemory, address: u64, length: u16, unicode: bool) -> String {
    // nDebugStringLength counts the terminator, in characters.
    let chars = (length as usize).saturating_sub(1);
    let text = if unicode {
        mem.read_utf16(address, chars).unwrap_or_default()
    } else {
        let mut buf = vec![0u8; chars];
        let n = mem.read_partial(address, &mut buf);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    text.trim_end_matches('\0').to_string()
}

fn install_hooks(process: HANDLE, ntdll_base: u64, trace: &TraceSet) -> Result<Hooks, EngineError> {
    let mem = LiveMemory { process };
    let found = stub::find_stubs(&mem, ntdll_base)
        .map_err(|e| EngineError::Os { what: format!("reading ntdll's exports ({e})"), code: 0 })?;
    let mut stubs = Vec::new();
    let mut names = Vec::new();
    for stub::FoundStub { name, address, shape } in found {
        // A function outside -e trace= keeps its stub: it costs nothing.
        if !trace.matches(&name) {
            continue;
        }
        stubs.push(StubToTrace { address, code: shape.code, no_return: is_no_return(&name) });
        names.push(Arc::from(name));
    }
    if stubs.is_empty() && !trace.is_everything() {
        // The filter left nothing to trace here: fine, nothing to patch.
        return Ok(Hooks {
            trampolines: empty_trampolines(),
            names: Vec::new(),
            patches: Vec::new(),
            applied: true,
        });
    }
    if stubs.is_empty() {
        return Err(EngineError::Os {
            what: "finding ntdll's system-call stubs (none recognised)".into(),
            code: 0,
        });
    }
    let asm_error = |e| EngineError::Os { what: format!("assembling trampolines ({e})"), code: 0 };
    let size = trampoline::region_size(&stubs).map_err(asm_error)?;
    let region = allocate_near(process, ntdll_base, size)?;
    let trampolines = trampoline::build(region, &stubs).map_err(asm_error)?;
    write_memory(process, trampolines.code_base, &trampolines.code)?;
    let mut old: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: protects our own code in the target; the in-flight table
    // before it stays writable.
    unsafe {
        VirtualProtectEx(
            process,
            trampolines.code_base as *const c_void,
            trampolines.code.len(),
            PAGE_EXECUTE_READ,
            &mut old,
        )
    };

    let mut patches = Vec::with_capacity(stubs.len());
    for (stub, thunk) in stubs.iter().zip(&trampolines.thunks) {
        let patch = trampoline::jump_patch(stub.address, *thunk);
        if patch.len() > stub.code.len() {
            continue; // A far jump would overwrite more than the stub.
        }
        patch_code(process, stub.address, &patch)?;
        patches.push(StubPatch { address: stub.address, original: stub.code[..patch.len()].to_vec(), patch });
    }
    Ok(Hooks { trampolines, names, patches, applied: true })
}

/// Trampolines for no stub at all: nothing is allocated, no trap matches.
fn empty_trampolines() -> Trampolines {
    Trampolines {
        base: 0,
        code_base: 0,
        code: Vec::new(),
        return_trap: u64::MAX,
        entry_trap: u64::MAX,
        thunks: Vec::new(),
        copies: Vec::new(),
    }
}

/// Allocates `size` bytes for trampolines, within ±2 GiB of `near` when it
/// can (stubs then need only a 5-byte jump), anywhere otherwise.
fn allocate_near(process: HANDLE, near: u64, size: usize) -> Result<u64, EngineError> {
    const GRANULE: u64 = 0x1_0000;
    const REACH: u64 = 0x7000_0000;
    let alloc = |at: u64| -> u64 {
        // SAFETY: reserves fresh pages in the target; `at` is only a hint.
        unsafe {
            VirtualAllocEx(process, at as *const c_void, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE)
                as u64
        }
    };
    // Walk the address space from REACH below `near` upward, trying each free range.
    let mut at = near.saturating_sub(REACH).max(GRANULE);
    while at < near.saturating_add(REACH) {
        // SAFETY: MEMORY_BASIC_INFORMATION is plain data filled by the call.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let got = unsafe {
            VirtualQueryEx(
                process,
                at as *const c_void,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if got == 0 {
            break;
        }
        let start = info.BaseAddress as u64;
        let end = start + info.RegionSize as u64;
        if info.State == MEM_FREE {
            let aligned = start.div_ceil(GRANULE) * GRANULE;
            if aligned + size as u64 <= end {
                let got = alloc(aligned);
                if got != 0 {
                    return Ok(got);
                }
            }
        }
        at = end.max(at + GRANULE);
    }
    match alloc(0) {
        0 => Err(os_error("allocating trampolines in the target")),
        address => Ok(address),
    }
}
