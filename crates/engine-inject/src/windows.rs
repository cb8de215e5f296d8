//! The Windows half: the shared mapping, the loader routine written into
//! the target, and the companion that reads and orders the agents' records
//! for the debug loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, LocalFree, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Diagnostics::Debug::WriteProcessMemory;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualAllocEx, VirtualProtectEx,
    FILE_MAP_ALL_ACCESS, MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT, MEM_RESERVE, PAGE_EXECUTE_READ,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, IsWow64Process};
use winstrace_agent::mapping::{self, AgentState, Layout};
use winstrace_agent::record::{CallRecord, RECORD_KIND_CALL, RECORD_KIND_ENTRY};
use winstrace_agent::AgentConfig;
use winstrace_core::event::{Call, CallResult, EventKind};
use winstrace_core::memory::{PageCache, TargetMemory};
use winstrace_engine_debug::live::{HandleNamer, LiveMemory};
use winstrace_engine_debug::{Companion, Horizon, Injection, Report};
use winstrace_filter::StatusFilter;
use winstrace_hook::{loader, trampoline};
use winstrace_ring::{Reader, Ring, RingRef};

use crate::handles::HandleTracker;
use crate::{
    call_from_record, call_start, function_name, functions_to_hook, record_memory, unfinished_before, Error,
    Options, Span, NAMES_BYTES, RING_CAPACITY,
};

/// An owned kernel handle.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A mapped view, unmapped on drop.
struct View {
    base: *mut c_void,
    words: usize,
}

impl View {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the view is page-aligned, `words` u64s long, readable and
        // writable while `self` lives; the target shares it, so every access
        // goes through the atomics.
        unsafe { std::slice::from_raw_parts(self.base as *const AtomicU64, self.words) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: unmaps our own view once; no slice of it outlives `self`.
        unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.base }) };
    }
}

fn last_error(what: &str) -> Error {
    // SAFETY: reads the calling thread's last-error value.
    Error::Os { what: what.to_string(), code: unsafe { GetLastError() } }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// Creates the named mapping for process `pid`, accessible to the current
/// user only (an explicit, protected DACL with one ACE), and maps it.
fn create_mapping(pid: u32, words: usize) -> Result<(Handle, View), Error> {
    let sid = winstrace_engine_debug::live::current_user_sid()
        .ok_or_else(|| last_error("finding the current user's SID"))?;
    let sddl = wide(&format!("D:P(A;;GA;;;{sid})"));
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: NUL-terminated SDDL; the descriptor is freed below.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    } == 0
    {
        return Err(last_error("ConvertStringSecurityDescriptorToSecurityDescriptorW"));
    }
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd,
        bInheritHandle: 0,
    };
    let bytes = words as u64 * 8;
    let name = wide(&mapping::mapping_name(pid));
    // SAFETY: a pagefile-backed section; `sa` and `name` outlive the call.
    let section = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            &sa,
            PAGE_READWRITE,
            (bytes >> 32) as u32,
            bytes as u32,
            name.as_ptr(),
        )
    };
    // SAFETY: reads the last error right after the call.
    let error = unsafe { GetLastError() };
    // SAFETY: frees the descriptor the conversion allocated; the section
    // has its own copy.
    unsafe { LocalFree(sd) };
    if section.is_null() {
        return Err(Error::Os { what: "CreateFileMappingW".into(), code: error });
    }
    let section = Handle(section);
    if error == ERROR_ALREADY_EXISTS {
        // Someone else made it first: not ours to trust.
        return Err(Error::Os {
            what: format!("creating {} (it already exists)", mapping::mapping_name(pid)),
            code: error,
        });
    }
    // SAFETY: maps the whole section we just created.
    let view = unsafe { MapViewOfFile(section.0, FILE_MAP_ALL_ACCESS, 0, 0, bytes as usize) };
    if view.Value.is_null() {
        return Err(last_error("MapViewOfFile"));
    }
    Ok((section, View { base: view.Value, words }))
}

/// `LoadLibraryW`'s address, the same in the target as here: kernel32 is a
/// system DLL, mapped at one address in every process of a session.
fn load_library_address() -> Result<u64, Error> {
    let kernel32 = wide("kernel32.dll");
    // SAFETY: NUL-terminated names; kernel32 is loaded in every process and,
    // being a system DLL, at the same address in the target as here.
    let load_library =
        unsafe { GetProcAddress(GetModuleHandleW(kernel32.as_ptr()), c"LoadLibraryW".as_ptr() as *const u8) };
    load_library.map(|f| f as usize as u64).ok_or_else(|| last_error("GetProcAddress(LoadLibraryW)"))
}

/// How long a call's record waits before it is reported: long enough for
/// a debug event it comes after (under Wine a thread's exit reaches the
/// debugger after the thread waiting for it has woken) to arrive first.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// Bytes before the agent's path in the page the loader routine goes in.
const ROUTINE_BYTES: usize = 64;

/// Writes the loader routine (see `winstrace_hook::loader`) and the agent's
/// path into the target, executable and read-only; returns the routine.
fn write_loader(process: HANDLE, dll: &std::path::Path) -> Result<loader::LoaderRoutine, Error> {
    let path = wide(&dll.display().to_string());
    let bytes = ROUTINE_BYTES + path.len() * 2;
    // SAFETY: allocates in the target; left there (one page), as a thread
    // may still be inside the routine when the tracer leaves.
    let remote =
        unsafe { VirtualAllocEx(process, std::ptr::null(), bytes, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) };
    if remote.is_null() {
        return Err(last_error("VirtualAllocEx"));
    }
    let base = remote as u64;
    let routine = loader::build(base, base + ROUTINE_BYTES as u64, load_library_address()?)
        .map_err(|e| Error::Os { what: format!("assembling the agent's loader ({e})"), code: 0 })?;
    let mut page = routine.code.clone();
    assert!(page.len() <= ROUTINE_BYTES, "the loader routine outgrew its room");
    page.resize(ROUTINE_BYTES, loader::INT3);
    page.extend(path.iter().flat_map(|u| u.to_le_bytes()));
    let mut written = 0usize;
    // SAFETY: `remote` has `bytes` writable bytes in the target; `page` is ours.
    if unsafe {
        WriteProcessMemory(process, remote, page.as_ptr() as *const c_void, page.len(), &mut written)
    } == 0
        || written != page.len()
    {
        return Err(last_error("WriteProcessMemory"));
    }
    let mut old = 0u32;
    // SAFETY: our own allocation in the target.
    if unsafe { VirtualProtectEx(process, remote, bytes, PAGE_EXECUTE_READ, &mut old) } == 0 {
        return Err(last_error("VirtualProtectEx"));
    }
    Ok(routine)
}

/// What the agent is to do: the decode options, and which functions to
/// hook. The names come from winstrace's own ntdll, the same file the
/// target loads (same machine, same architecture).
fn agent_config(options: &Options) -> Result<AgentConfig, Error> {
    let only = if options.trace.is_everything() {
        None
    } else {
        let name = wide("ntdll.dll");
        // SAFETY: NUL-terminated name; ntdll is loaded in every process.
        let ntdll = unsafe { GetModuleHandleW(name.as_ptr()) } as u64;
        // SAFETY: the pseudo-handle of our own process.
        let own = winstrace_engine_debug::live::LiveMemory { process: unsafe { GetCurrentProcess() } };
        let stubs = winstrace_hook::stub::find_stubs(&own, ntdll)
            .map_err(|e| Error::Os { what: format!("reading ntdll's exports: {e}"), code: 0 })?;
        functions_to_hook(&options.trace, stubs.iter().map(|s| s.name.as_str()))
    };
    Ok(AgentConfig { decode: options.decode.clone(), only })
}

fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Refuses a 32-bit (WOW64) process: the 64-bit agent cannot be loaded
/// into it, and an APC or thread running 64-bit LoadLibraryW there would
/// take it down.
fn check_x64(process: HANDLE, pid: u32) -> Result<(), Error> {
    let mut wow64 = 0i32;
    // SAFETY: a process handle with query access; `wow64` is ours.
    if unsafe { IsWow64Process(process, &mut wow64) } == 0 {
        return Err(last_error(&format!("asking whether process {pid} is 32-bit")));
    }
    if wow64 != 0 {
        return Err(Error::NotX64 { pid });
    }
    Ok(())
}

fn check_agent(options: &Options) -> Result<(), Error> {
    if options.agent_dll.is_file() {
        Ok(())
    } else {
        Err(Error::AgentNotFound { path: options.agent_dll.display().to_string() })
    }
}

/// The tracer's side of the shared mapping: the section, its view, and the
/// layout and ring in it. The view lives as long as winstrace (a reader
/// borrows it; there are a handful of processes per trace).
struct Shared {
    region: &'static [AtomicU64],
    layout: Layout,
}

impl Shared {
    /// Creates the mapping of process `pid` with the ring and the agent's
    /// config in it.
    fn create(pid: u32, config: &AgentConfig) -> Result<Shared, Error> {
        let ring_words = Ring::region_words(RING_CAPACITY).expect("a 4 MiB ring fits in usize");
        let layout = Layout::for_config(ring_words, NAMES_BYTES, config);
        let (section, view) = create_mapping(pid, layout.total_words())?;
        let view: &'static View = Box::leak(Box::new(view));
        std::mem::forget(section);
        let region = view.words();
        let ring = Ring::init(layout.ring(region), RING_CAPACITY).map_err(|e| Error::Ring(e.to_string()))?;
        ring.set_consumer_alive(true);
        layout.write_header(region, config);
        Ok(Shared { region, layout })
    }
}

/// One traced process's agent.
struct Session {
    /// The debug session's handle to it (valid until its exit event).
    process: HANDLE,
    shared: Shared,
    reader: Reader<'static>,
    ring: RingRef<'static>,
    names: Option<Vec<Arc<str>>>,
    handles: HandleTracker,
    /// Calls shown `<unfinished ...>`: (thread, entry TSC).
    announced: HashSet<(u32, u64)>,
    /// Records read and not reported yet, in ring order: those read since
    /// the last poll and those held back then (see `Inject::poll`). A
    /// queue, so that reporting the settled front moves only those.
    pending: VecDeque<Drained>,
    /// Per thread, when its last reported call ended.
    last_end: HashMap<u32, u64>,
    /// Entry records of calls whose return record has not been read yet:
    /// (thread, entry TSC) to payload. A return record takes its entry out
    /// as it is read, so this holds the calls in progress, about one per
    /// thread, however many records wait to be reported.
    entries: HashMap<(u32, u64), Vec<u8>>,
}

impl Session {
    fn new(process: HANDLE, shared: Shared) -> Result<Session, Error> {
        let ring = Ring::attach(shared.layout.ring(shared.region)).map_err(|e| Error::Ring(e.to_string()))?;
        let reader = ring.reader().map_err(|e| Error::Ring(e.to_string()))?;
        Ok(Session {
            process,
            shared,
            reader,
            ring,
            names: None,
            handles: HandleTracker::new(),
            announced: HashSet::new(),
            pending: VecDeque::new(),
            last_end: HashMap::new(),
            entries: HashMap::new(),
        })
    }
}

/// The in-process engine, as the debugger engine's companion: it injects
/// the agent into every process the debugger traces and reports the calls
/// the agents record (see [`winstrace_engine_debug::Companion`]).
pub struct Inject {
    options: Options,
    config: AgentConfig,
    dll_name: String,
    sessions: HashMap<u32, Session>,
    lookups: Option<HandleNamer>,
    user_sid: Option<String>,
    hooked_functions: u64,
    /// Records lost by the rings of processes already gone.
    lost_records: u64,
    tsc0: u64,
    instant0: Instant,
}

impl Inject {
    /// Checks the agent DLL and computes what the agents are to do.
    pub fn new(options: &Options) -> Result<Inject, Error> {
        check_agent(options)?;
        let lookups = options.handle_names.then(HandleNamer::new);
        let user_sid = lookups.as_ref().and_then(|l| l.user_sid().map(str::to_string));
        Ok(Inject {
            options: options.clone(),
            config: agent_config(options)?,
            dll_name: options
                .agent_dll
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sessions: HashMap::new(),
            lookups,
            user_sid,
            hooked_functions: 0,
            lost_records: 0,
            tsc0: read_tsc(),
            instant0: Instant::now(),
        })
    }

    /// The time-stamp counter's rate, ticks per second, once measurable.
    fn tsc_rate(&self) -> Option<f64> {
        let seconds = self.instant0.elapsed().as_secs_f64();
        (seconds > 0.01).then(|| read_tsc().wrapping_sub(self.tsc0) as f64 / seconds)
    }
}

/// A call record read from the ring and not yet reported.
struct Drained {
    record: CallRecord,
    payload: Vec<u8>,
    /// The payload of the call's entry record, if it wrote one.
    entry: Option<Vec<u8>>,
    /// Where the record is in the ring.
    position: u64,
}

impl Drained {
    /// The memory the call's in-parameters pointed to at call time: its
    /// entry record's, or the record's own for a call that wrote none.
    fn in_memory(&self) -> &[u8] {
        self.entry.as_deref().unwrap_or(&self.payload)
    }
}

/// The first of each thread's records in `pending`. Run on every poll over
/// the ~20 ms of records waiting to settle, so it does not hash: a traced
/// process has few threads, and they are compared in a short list.
fn first_per_thread(pending: &VecDeque<Drained>) -> impl Iterator<Item = &Drained> {
    let mut threads: Vec<u32> = Vec::new();
    pending.iter().filter(move |d| {
        let new = !threads.contains(&d.record.thread_id);
        if new {
            threads.push(d.record.thread_id);
        }
        new
    })
}

/// When a call ended: its return, or its entry for one that does not return.
fn end_tsc(record: &CallRecord) -> u64 {
    if record.no_return {
        record.entry_tsc
    } else {
        record.return_tsc
    }
}

fn record_span(record: &CallRecord) -> Span {
    Span {
        thread_id: record.thread_id,
        entry_tsc: record.entry_tsc,
        return_tsc: (!record.no_return).then_some(record.return_tsc),
    }
}

impl Inject {
    /// Reads process `pid`'s ring into its `pending` queue; false until its
    /// agent has attached.
    fn drain(&mut self, pid: u32) -> bool {
        let Some(session) = self.sessions.get_mut(&pid) else { return false };
        if session.names.is_none() {
            match mapping::read_agent_state(session.shared.region, &session.shared.layout) {
                AgentState::Attached(list) => {
                    self.hooked_functions = self.hooked_functions.max(list.len() as u64);
                    session.names = Some(list.into_iter().map(Arc::from).collect());
                }
                _ => return false,
            }
        }
        loop {
            match session.reader.next() {
                Ok(Some(rec)) => {
                    let Ok(record) = CallRecord::decode(rec.payload) else { continue };
                    match rec.kind {
                        RECORD_KIND_CALL => {
                            let entry = session.entries.remove(&(record.thread_id, record.entry_tsc));
                            session.pending.push_back(Drained {
                                record,
                                payload: rec.payload.to_vec(),
                                entry,
                                position: rec.position,
                            });
                        }
                        // Kept until the call's return record comes (a
                        // thread's entry records pile up only if it never
                        // returns from its call, and then there is one).
                        RECORD_KIND_ENTRY => {
                            session
                                .entries
                                .insert((record.thread_id, record.entry_tsc), rec.payload.to_vec());
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A target that breaks the ring's protocol loses its
                    // agent's records, not the trace.
                    eprintln!("winstrace: process {pid}: {}", Error::Ring(e.to_string()));
                    session.ring.set_consumer_alive(false);
                    session.names = Some(Vec::new());
                    break;
                }
            }
        }
        true
    }

    /// The calls in flight in `pid`, decoded as `<unfinished ...>`: those
    /// whose entry record came and whose return has not (with `-X raw`,
    /// which writes no entry records, the agent's in-flight table, read from
    /// the live process, and each call's frame on its thread's stack; only
    /// when `interleaved`: with one thread no call can be interrupted).
    /// Calls already announced and functions not traced are left out.
    fn in_flight(&mut self, pid: u32, interleaved: bool) -> Vec<(Span, Call)> {
        let Some(session) = self.sessions.get(&pid) else { return Vec::new() };
        let names = session.names.as_deref().unwrap_or(&[]);
        if names.is_empty() {
            return Vec::new();
        }
        // A thread with a record held back is already past it: its current
        // call comes after that record. A call reported already may still
        // be about to leave the table.
        let held: Vec<u32> = first_per_thread(&session.pending).map(|d| d.record.thread_id).collect();
        let skip = |span: &Span, function: &str| {
            held.contains(&span.thread_id)
                || session.last_end.get(&span.thread_id).is_some_and(|&end| end >= span.entry_tsc)
                || session.announced.contains(&(span.thread_id, span.entry_tsc))
                || !self.options.trace.matches(function)
        };
        let mut out = Vec::new();
        if !self.options.decode.raw {
            for payload in session.entries.values() {
                let Ok(record) = CallRecord::decode(payload) else { continue };
                let span = Span { return_tsc: None, ..record_span(&record) };
                let function = function_name(names, record.function);
                if !skip(&span, &function) {
                    let memory = record_memory([payload.as_slice()]);
                    out.push((
                        span,
                        call_start(function, &record.args, span.entry_tsc, &memory, &self.options.decode),
                    ));
                }
            }
            return out;
        }
        let table_address = mapping::in_flight_table(session.shared.region);
        if table_address == 0 || !interleaved {
            return out;
        }
        let live = LiveMemory { process: session.process };
        let memory = PageCache::new(&live);
        let mut table = vec![0u8; trampoline::SLOTS_BYTES];
        if memory.read_exact(table_address, &mut table).is_err() {
            return out;
        }
        for slot in trampoline::parse_in_flight(&table) {
            let mut bytes = [0u8; trampoline::FRAME_SIZE];
            if memory.read_exact(slot.frame, &mut bytes).is_err() {
                continue;
            }
            let frame = trampoline::Frame::parse(&bytes);
            let span =
                Span { thread_id: slot.thread_id as u32, entry_tsc: frame.entry_tsc, return_tsc: None };
            let function = function_name(names, frame.index);
            if !skip(&span, &function) {
                out.push((
                    span,
                    call_start(function, &frame.args, span.entry_tsc, &memory, &self.options.decode),
                ));
            }
        }
        out
    }

    /// A read record's call as it started (for `<unfinished ...>`).
    fn call_start_of(&self, pid: u32, drained: &Drained) -> Call {
        let names = self.sessions.get(&pid).and_then(|s| s.names.as_deref()).unwrap_or(&[]);
        let record = &drained.record;
        let memory = record_memory([drained.in_memory()]);
        call_start(
            function_name(names, record.function),
            &record.args,
            record.entry_tsc,
            &memory,
            &self.options.decode,
        )
    }

    /// The first call each thread of `pid` has held back, as in progress.
    fn held_calls(&self, pid: u32) -> Vec<(Span, Call)> {
        let Some(session) = self.sessions.get(&pid) else { return Vec::new() };
        first_per_thread(&session.pending)
            .map(|d| (Span { return_tsc: None, ..record_span(&d.record) }, self.call_start_of(pid, d)))
            .collect()
    }

    /// Tells `pid`'s agent which records are handled: up to the first one
    /// held back, or all that were read.
    fn acknowledge(&self, pid: u32) {
        if let Some(session) = self.sessions.get(&pid) {
            let handled = session.pending.front().map_or(session.ring.read_position(), |d| d.position);
            mapping::acknowledge_processed(session.shared.region, handled);
        }
    }

    /// Reports a call as `<unfinished ...>`, once.
    fn announce(&mut self, pid: u32, span: Span, mut call: Call, report: &mut Report<'_>) {
        let Some(session) = self.sessions.get_mut(&pid) else { return };
        if !session.announced.insert((span.thread_id, span.entry_tsc)) {
            return;
        }
        self.name_handles(pid, &mut call);
        report(pid, span.thread_id, SystemTime::now(), EventKind::CallStart(call));
    }

    /// Reports a returned (or no-return) call.
    fn report_record(&mut self, pid: u32, drained: &Drained, rate: Option<f64>, report: &mut Report<'_>) {
        let Some(session) = self.sessions.get_mut(&pid) else { return };
        let record = &drained.record;
        let resumed =
            !session.announced.is_empty() && session.announced.remove(&(record.thread_id, record.entry_tsc));
        session.last_end.insert(record.thread_id, end_tsc(record));
        let names = session.names.as_deref().unwrap_or(&[]);
        let mut call = call_from_record(
            record,
            &drained.payload,
            drained.entry.as_deref(),
            names,
            // The id a call_start of this call had too (see the JSON schema).
            record.entry_tsc,
            rate,
            &self.options.decode,
        );
        call.resumed = resumed;
        let result = match call.result {
            CallResult::Returned(status) => Some(status),
            _ => None,
        };
        if !self.options.status.shows(result) {
            return;
        }
        self.name_handles(pid, &mut call);
        report(pid, record.thread_id, SystemTime::now(), EventKind::Call(call));
    }

    /// `-y`: names the handles of a call of process `pid`.
    fn name_handles(&mut self, pid: u32, call: &mut Call) {
        let (Some(lookups), Some(session)) = (self.lookups.as_mut(), self.sessions.get_mut(&pid)) else {
            return;
        };
        let process = session.process;
        let mut lookup = |handle: u64| {
            lookups.forget(pid, handle);
            lookups.name(process, pid, handle)
        };
        session.handles.name_call(call, self.user_sid.as_deref(), &mut lookup);
    }
}

impl Companion for Inject {
    fn prepare(&mut self, pid: u32, process: HANDLE) -> Result<Injection, String> {
        let prepare = || -> Result<(Shared, loader::LoaderRoutine), Error> {
            check_x64(process, pid)?;
            let shared = Shared::create(pid, &self.config)?;
            Ok((shared, write_loader(process, &self.options.agent_dll)?))
        };
        let (shared, routine) = prepare().map_err(|e| e.to_string())?;
        self.sessions.insert(pid, Session::new(process, shared).map_err(|e| e.to_string())?);
        Ok(Injection {
            routine: routine.base,
            begin_trap: routine.begin_trap,
            end_trap: routine.end_trap,
            dll_name: self.dll_name.clone(),
        })
    }

    fn poll(&mut self, report: &mut Report<'_>, horizon: Horizon, interleaved: bool) {
        let rate = self.tsc_rate();
        let pids: Vec<u32> = self.sessions.keys().copied().collect();
        let attached: Vec<u32> = pids.iter().copied().filter(|&pid| self.drain(pid)).collect();
        // Report the calls that ended up to `limit` (a TSC); hold the rest,
        // in ring order, for the next poll.
        let limit = match horizon {
            Horizon::Everything => u64::MAX,
            Horizon::Settled => match rate {
                Some(rate) => read_tsc().saturating_sub((rate * SETTLE.as_secs_f64()) as u64),
                None => u64::MAX,
            },
            Horizon::Exit { pid, thread } => {
                // The exit event comes after the thread's (or process's) last
                // call; a call that ended after that may have ended because
                // of the exit (a wait for it), so it waits.
                let exiting = |r: &CallRecord| thread.map_or(true, |tid| r.thread_id == tid);
                let session = self.sessions.get(&pid);
                let read = session.and_then(|s| {
                    s.pending.iter().map(|d| &d.record).filter(|r| exiting(r)).map(end_tsc).max()
                });
                let before = session.and_then(|s| match thread {
                    Some(tid) => s.last_end.get(&tid).copied(),
                    None => s.last_end.values().copied().max(),
                });
                read.max(before).unwrap_or(0)
            }
        };
        // Every process's settled records are taken out before any is
        // reported: a process's calls in progress are judged against what
        // the others still hold back.
        let mut batches: Vec<(u32, Vec<Drained>)> = Vec::with_capacity(attached.len());
        for pid in attached {
            if let Some(session) = self.sessions.get_mut(&pid) {
                let pending = &mut session.pending;
                let settled =
                    pending.iter().position(|d| end_tsc(&d.record) > limit).unwrap_or(pending.len());
                batches.push((pid, pending.drain(..settled).collect()));
            }
        }
        for (pid, batch) in batches {
            if batch.is_empty() {
                self.acknowledge(pid);
                continue;
            }
            // Under -Z/-z a call is shown only once its result is known, so
            // it is never shown unfinished.
            let mut in_flight = if self.options.status == StatusFilter::All {
                self.in_flight(pid, interleaved)
            } else {
                Vec::new()
            };
            // A call published but not yet out of the table is a record.
            in_flight.retain(|(f, _)| {
                !batch.iter().any(|d| d.record.thread_id == f.thread_id && d.record.entry_tsc == f.entry_tsc)
            });
            // A call held back is still in progress as far as the trace has
            // shown (each thread's first; the others come after it).
            if self.options.status == StatusFilter::All {
                in_flight.extend(self.held_calls(pid));
            }
            let spans: Vec<Span> = batch.iter().map(|d| record_span(&d.record)).collect();
            if self.options.status == StatusFilter::All && self.sessions.len() > 1 {
                // Another process's call in progress since before these
                // returned is interrupted by their lines too.
                let first = spans.iter().map(|s| s.return_tsc.unwrap_or(s.entry_tsc)).min().unwrap_or(0);
                let others: Vec<u32> = self.sessions.keys().copied().filter(|&p| p != pid).collect();
                for other in others {
                    let mut calls = self.in_flight(other, interleaved);
                    calls.retain(|(span, _)| span.entry_tsc < first);
                    calls.sort_by_key(|(span, _)| span.entry_tsc);
                    for (span, call) in calls {
                        self.announce(other, span, call, report);
                    }
                }
            }
            let flight_spans: Vec<Span> = in_flight.iter().map(|(span, _)| *span).collect();
            let before = if self.options.status == StatusFilter::All {
                unfinished_before(&spans, &flight_spans)
            } else {
                vec![Vec::new(); batch.len()]
            };
            for (drained, announce) in batch.iter().zip(before) {
                for c in announce {
                    let (span, call) = if c < batch.len() {
                        (spans[c], self.call_start_of(pid, &batch[c]))
                    } else {
                        in_flight[c - batch.len()].clone()
                    };
                    self.announce(pid, span, call, report);
                }
                self.report_record(pid, drained, rate, report);
            }
            self.acknowledge(pid);
        }
    }

    fn announce_in_flight(&mut self, report: &mut Report<'_>) {
        if self.options.status != StatusFilter::All {
            return;
        }
        let pids: Vec<u32> = self.sessions.keys().copied().collect();
        for pid in pids {
            // Calls published since the last poll ended at a time unknown
            // against the event's: each thread's first is shown in
            // progress, and all are reported after the event.
            self.drain(pid);
            let mut in_flight = self.in_flight(pid, true);
            let held = self.held_calls(pid);
            in_flight.extend(held);
            in_flight.sort_by_key(|(span, _)| span.entry_tsc);
            for (span, call) in in_flight {
                self.announce(pid, span, call, report);
            }
        }
    }

    fn failure(&mut self, pid: u32) -> Option<String> {
        let session = self.sessions.get(&pid)?;
        match mapping::read_agent_state(session.shared.region, &session.shared.layout) {
            AgentState::Attached(_) => None,
            AgentState::Failed(code) => Some(Error::AgentFailed { code }.to_string()),
            AgentState::Pending => Some(Error::AgentNotLoaded.to_string()),
            AgentState::Invalid => Some("the agent's name table is invalid".into()),
        }
    }

    fn detach_routine(&mut self, pid: u32) -> Option<u64> {
        let session = self.sessions.get(&pid)?;
        Some(mapping::detach_routine(session.shared.region)).filter(|&routine| routine != 0)
    }

    fn forget(&mut self, pid: u32) {
        if let Some(session) = self.sessions.remove(&pid) {
            session.ring.set_consumer_alive(false);
            self.lost_records += session.ring.lost_records();
        }
        if let Some(lookups) = self.lookups.as_mut() {
            lookups.forget_process(pid);
        }
    }

    fn counts(&self) -> (u64, u64) {
        let lost = self.lost_records + self.sessions.values().map(|s| s.ring.lost_records()).sum::<u64>();
        (self.hooked_functions, lost)
    }
}
