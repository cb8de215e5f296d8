//! The Windows half: launching suspended, the shared mapping, the early-bird
//! injection and the reading loop.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, GetLastError, LocalFree, DUPLICATE_SAME_ACCESS, ERROR_ALREADY_EXISTS,
    HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Diagnostics::Debug::WriteProcessMemory;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualAllocEx, FILE_MAP_ALL_ACCESS,
    MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT, MEM_RESERVE, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    CreateRemoteThread, GetCurrentProcess, GetExitCodeProcess, GetProcessId, IsWow64Process, OpenProcess,
    OpenThread, QueueUserAPC, ResumeThread, TerminateProcess, WaitForSingleObject, CREATE_SUSPENDED,
    PROCESS_CREATE_THREAD, PROCESS_DUP_HANDLE, PROCESS_QUERY_INFORMATION, PROCESS_SYNCHRONIZE,
    PROCESS_VM_OPERATION, PROCESS_VM_READ, PROCESS_VM_WRITE, THREAD_SET_CONTEXT, THREAD_SUSPEND_RESUME,
};
use winstrace_agent::mapping::{self, AgentState, Layout};
use winstrace_agent::record::{
    CallRecord, ChildRecord, LifecycleRecord, RECORD_KIND_CALL, RECORD_KIND_CHILD, RECORD_KIND_LIFECYCLE,
};
use winstrace_agent::AgentConfig;
use winstrace_core::event::{CallResult, Event, EventKind, EventSink, ProcessStart};
use winstrace_ring::{Reader, Ring, RingRef};

use crate::handles::HandleTracker;
use crate::{
    call_from_record, event_from_lifecycle, functions_to_hook, Error, Options, Outcome, NAMES_BYTES,
    RING_CAPACITY,
};

/// How long the loop sleeps on the target's handle when the ring is empty.
const POLL_MS: u32 = 5;
/// How long a detach may take in the target before the tracer gives up
/// waiting (the agent only restores 8 bytes per stub).
const DETACH_WAIT_MS: u32 = 10_000;

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

/// The one thread of a process that was just created suspended.
fn main_thread(pid: u32) -> Result<Handle, Error> {
    // SAFETY: a snapshot of all threads; closed by `Handle`.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return Err(last_error("CreateToolhelp32Snapshot"));
    }
    let snapshot = Handle(snapshot);
    // SAFETY: THREADENTRY32 is plain data; dwSize is set before use.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    // SAFETY: walks the snapshot with a correctly sized entry.
    let mut more = unsafe { Thread32First(snapshot.0, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: plain call; the handle is closed by `Handle`.
            let thread =
                unsafe { OpenThread(THREAD_SET_CONTEXT | THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if thread.is_null() {
                return Err(last_error("OpenThread"));
            }
            return Ok(Handle(thread));
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snapshot.0, &mut entry) } != 0;
    }
    Err(Error::Os { what: format!("finding the main thread of process {pid}"), code: 0 })
}

/// Writes the agent's path into the target; returns its address there.
fn write_remote_path(process: HANDLE, dll: &std::path::Path) -> Result<*mut c_void, Error> {
    let path = wide(&dll.display().to_string());
    let bytes = path.len() * 2;
    // SAFETY: allocates in the target; left there (a few hundred bytes).
    let remote =
        unsafe { VirtualAllocEx(process, std::ptr::null(), bytes, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) };
    if remote.is_null() {
        return Err(last_error("VirtualAllocEx"));
    }
    let mut written = 0usize;
    // SAFETY: `remote` has `bytes` writable bytes in the target; `path` is ours.
    if unsafe { WriteProcessMemory(process, remote, path.as_ptr() as *const c_void, bytes, &mut written) }
        == 0
        || written != bytes
    {
        return Err(last_error("WriteProcessMemory"));
    }
    Ok(remote)
}

/// `LoadLibraryW`'s address, the same in the target as here: kernel32 is a
/// system DLL, mapped at one address in every process of a session.
fn load_library_address() -> Result<unsafe extern "system" fn() -> isize, Error> {
    let kernel32 = wide("kernel32.dll");
    // SAFETY: NUL-terminated names; kernel32 is loaded in every process and,
    // being a system DLL, at the same address in the target as here.
    let load_library =
        unsafe { GetProcAddress(GetModuleHandleW(kernel32.as_ptr()), c"LoadLibraryW".as_ptr() as *const u8) };
    load_library.ok_or_else(|| last_error("GetProcAddress(LoadLibraryW)"))
}

/// Writes the agent's path into the target and queues an APC to
/// `LoadLibraryW` on its suspended main thread.
fn queue_injection(process: HANDLE, thread: &Handle, dll: &std::path::Path) -> Result<(), Error> {
    let remote = write_remote_path(process, dll)?;
    let load_library = load_library_address()?;
    // SAFETY: LoadLibraryW takes one pointer-sized argument, as an APC
    // routine does (its return value in RAX is ignored on x64).
    let apc = unsafe {
        std::mem::transmute::<unsafe extern "system" fn() -> isize, unsafe extern "system" fn(usize)>(
            load_library,
        )
    };
    // SAFETY: queues the APC on the target's thread; the parameter is the
    // target's copy of the path.
    if unsafe { QueueUserAPC(Some(apc), thread.0, remote as usize) } == 0 {
        return Err(last_error("QueueUserAPC"));
    }
    Ok(())
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
    Ok(AgentConfig { decode: options.decode.clone(), only, follow_children: options.follow_children })
}

fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Launches `program` with `args`, injects the agent and reports every
/// call it records until the process exits (or, on Ctrl-C, until the
/// agent is detached).
pub fn trace(
    program: &str,
    args: &[String],
    options: &Options,
    sink: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    check_agent(options)?;
    // std's Command resolves the program on PATH and quotes the arguments;
    // CREATE_SUSPENDED keeps the main thread from running any code until
    // the mapping exists and the injection is queued.
    let child =
        Command::new(program).args(args).creation_flags(CREATE_SUSPENDED).spawn().map_err(|e| {
            match e.kind() {
                io::ErrorKind::NotFound => Error::ProgramNotFound { program: program.to_string() },
                _ => Error::Os {
                    what: format!("starting '{program}'"),
                    code: e.raw_os_error().unwrap_or(0) as u32,
                },
            }
        })?;
    let pid = child.id();
    let process = child.as_raw_handle() as HANDLE;
    let result = (|| {
        check_x64(process, pid)?;
        let config = agent_config(options)?;
        let shared = Shared::create(pid, &config)?;
        let thread = main_thread(pid)?;
        queue_injection(process, &thread, &options.agent_dll)?;
        let command_line =
            std::iter::once(program).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        emit(
            sink,
            pid,
            0,
            EventKind::ProcessStart(ProcessStart {
                image: program.to_string(),
                command_line,
                attached: false,
            }),
        );
        // SAFETY: resumes the thread we created suspended.
        if unsafe { ResumeThread(thread.0) } == u32::MAX {
            return Err(last_error("ResumeThread"));
        }
        drop(thread);
        follow(pid, process, shared, &config, options, sink)
    })();
    if result.is_err() {
        // SAFETY: our own child's handle, still open (`child` owns it).
        unsafe { TerminateProcess(process, 1) };
    }
    drop(child);
    let _ = sink.finish();
    result
}

/// Attaches to the running process `pid`: injects the agent with a remote
/// thread that loads it (the agent stops the process's other threads while
/// it patches the stubs) and reports every call until the process exits or,
/// on Ctrl-C, the agent is detached and the process runs on.
pub fn attach(pid: u32, options: &Options, sink: &mut dyn EventSink) -> Result<Outcome, Error> {
    check_agent(options)?;
    let access = PROCESS_CREATE_THREAD
        | PROCESS_QUERY_INFORMATION
        | PROCESS_VM_OPERATION
        | PROCESS_VM_READ
        | PROCESS_VM_WRITE
        | PROCESS_DUP_HANDLE
        | PROCESS_SYNCHRONIZE;
    // SAFETY: plain call; the handle is closed by `Handle`.
    let process = unsafe { OpenProcess(access, 0, pid) };
    if process.is_null() {
        return Err(last_error(&format!("opening process {pid}")));
    }
    let process = Handle(process);
    check_x64(process.0, pid)?;
    let config = agent_config(options)?;
    let shared = Shared::create(pid, &config)?;
    let remote = write_remote_path(process.0, &options.agent_dll)?;
    let load_library = load_library_address()?;
    // SAFETY: LoadLibraryW takes one pointer-sized argument and returns a
    // pointer-sized value, as a thread routine does (its exit code is cut
    // to 32 bits, which nothing reads).
    let routine = unsafe {
        std::mem::transmute::<
            unsafe extern "system" fn() -> isize,
            unsafe extern "system" fn(*mut c_void) -> u32,
        >(load_library)
    };
    let (image, command_line) = winstrace_engine_debug::live::process_identity(process.0);
    emit(sink, pid, 0, EventKind::ProcessStart(ProcessStart { image, command_line, attached: true }));
    let loader = remote_thread(process.0, routine, remote)?;
    drop(loader);
    let result = follow(pid, process.0, shared, &config, options, sink);
    let _ = sink.finish();
    result
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

/// Starts `routine(parameter)` on a new thread of `process`.
fn remote_thread(
    process: HANDLE,
    routine: unsafe extern "system" fn(*mut c_void) -> u32,
    parameter: *mut c_void,
) -> Result<Handle, Error> {
    // SAFETY: `routine` is code in the target taking one pointer argument;
    // the thread handle is closed by `Handle`.
    let thread = unsafe {
        CreateRemoteThread(process, std::ptr::null(), 0, Some(routine), parameter, 0, std::ptr::null_mut())
    };
    if thread.is_null() {
        return Err(last_error("CreateRemoteThread"));
    }
    Ok(Handle(thread))
}

fn emit(sink: &mut dyn EventSink, pid: u32, tid: u32, kind: EventKind) {
    let _ = sink.event(&Event { pid, tid, time: SystemTime::now(), kind });
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

/// One traced process.
struct Session {
    pid: u32,
    process: HANDLE,
    /// Set for children: the handle is ours to close.
    _owned: Option<Handle>,
    shared: Shared,
    reader: Reader<'static>,
    ring: RingRef<'static>,
    names: Option<Vec<Arc<str>>>,
    handles: HandleTracker,
    /// Per thread, its last wide debug string (see `event_from_lifecycle`).
    last_wide: std::collections::HashMap<u32, String>,
    exit_code: Option<u32>,
}

impl Session {
    fn new(pid: u32, process: HANDLE, owned: Option<Handle>, shared: Shared) -> Result<Session, Error> {
        let ring = Ring::attach(shared.layout.ring(shared.region)).map_err(|e| Error::Ring(e.to_string()))?;
        let reader = ring.reader().map_err(|e| Error::Ring(e.to_string()))?;
        Ok(Session {
            pid,
            process,
            _owned: owned,
            shared,
            reader,
            ring,
            names: None,
            handles: HandleTracker::new(),
            last_wide: std::collections::HashMap::new(),
            exit_code: None,
        })
    }
}

/// Reads the records of process `pid` (and, under -f, of the children it
/// and they create) until they have all exited or a detach is requested,
/// and reports them. The outcome's exit code is `pid`'s.
fn follow(
    pid: u32,
    process: HANDLE,
    shared: Shared,
    config: &AgentConfig,
    options: &Options,
    sink: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    let mut sessions = vec![Session::new(pid, process, None, shared)?];
    let (tsc0, instant0) = (read_tsc(), Instant::now());
    let tsc_rate = || {
        let seconds = instant0.elapsed().as_secs_f64();
        (seconds > 0.01).then(|| read_tsc().wrapping_sub(tsc0) as f64 / seconds)
    };
    let mut lookups = options.handle_names.then(winstrace_engine_debug::live::HandleNamer::new);
    let user_sid = lookups.as_ref().and_then(|l| l.user_sid().map(str::to_string));
    let mut calls = 0u64;
    let mut first_exit_code = None;
    let mut hooked_functions = 0u64;
    let detach_requested = || options.detach_requested.is_some_and(|requested| requested());
    loop {
        let detaching = detach_requested();
        let mut read_any = false;
        let mut children = Vec::new();
        for session in &mut sessions {
            // SAFETY: a process handle; a zero timeout only polls.
            let exited = unsafe { WaitForSingleObject(session.process, 0) } == WAIT_OBJECT_0;
            if session.names.is_none() {
                match mapping::read_agent_state(session.shared.region, &session.shared.layout) {
                    AgentState::Attached(list) => {
                        hooked_functions = hooked_functions.max(list.len() as u64);
                        session.names = Some(list.into_iter().map(Arc::from).collect());
                    }
                    AgentState::Failed(code) => return Err(Error::AgentFailed { code }),
                    AgentState::Invalid => {
                        return Err(Error::Ring("the agent's name table is invalid".into()))
                    }
                    AgentState::Pending if exited => {
                        session.ring.set_consumer_alive(false);
                        if session.pid == pid {
                            return Err(Error::AgentNotLoaded);
                        }
                        // A child that died before its agent ran: it ends here.
                        session.exit_code = Some(exit_code_of(session.process)?);
                        emit(
                            sink,
                            session.pid,
                            0,
                            EventKind::ProcessExit { code: session.exit_code.unwrap_or(0) },
                        );
                        continue;
                    }
                    AgentState::Pending => continue,
                }
            }
            if detaching && !exited {
                // The agent puts the stubs back and stops recording; what it
                // recorded before is still in the ring, read below.
                run_detach_routine(session)?;
            }
            let names = session.names.as_deref().unwrap_or(&[]);
            let rate = tsc_rate();
            while let Some(rec) = session.reader.next().map_err(|e| Error::Ring(e.to_string()))? {
                read_any = true;
                if rec.kind == RECORD_KIND_CHILD {
                    if let Some(child) = ChildRecord::decode(rec.payload) {
                        children.push((session.pid, session.process, session.shared.region, child));
                    }
                    continue;
                }
                if rec.kind == RECORD_KIND_LIFECYCLE {
                    if let Some(record) = LifecycleRecord::decode(rec.payload) {
                        let mut last = session.last_wide.remove(&record.thread_id);
                        let event = event_from_lifecycle(&record, &mut last);
                        if let Some(text) = last {
                            session.last_wide.insert(record.thread_id, text);
                        }
                        if let Some(kind) = event {
                            emit(sink, session.pid, record.thread_id, kind);
                        }
                    }
                    continue;
                }
                if rec.kind != RECORD_KIND_CALL {
                    continue;
                }
                let Ok(record) = CallRecord::decode(rec.payload) else { continue };
                calls += 1;
                let mut call = call_from_record(&record, rec.payload, names, calls, rate, &options.decode);
                let result = match call.result {
                    CallResult::Returned(status) => Some(status),
                    _ => None,
                };
                if !options.status.shows(result) {
                    continue;
                }
                if let Some(lookups) = lookups.as_mut() {
                    let (process, pid) = (session.process, session.pid);
                    let mut lookup = |handle: u64| {
                        lookups.forget(pid, handle);
                        lookups.name(process, pid, handle)
                    };
                    session.handles.name_call(&mut call, user_sid.as_deref(), &mut lookup);
                }
                emit(sink, session.pid, record.thread_id, EventKind::Call(call));
            }
            if detaching && !exited {
                session.ring.set_consumer_alive(false);
                emit(sink, session.pid, 0, EventKind::Detached);
                session.exit_code = Some(0);
            } else if exited {
                // Everything the process published is read (a record it
                // reserved but never published, if it died mid-write, is lost).
                session.ring.set_consumer_alive(false);
                let code = exit_code_of(session.process)?;
                session.exit_code = Some(code);
                if session.pid == pid {
                    first_exit_code = Some(code);
                }
                emit(sink, session.pid, 0, EventKind::ProcessExit { code });
            }
        }
        let lost: u64 = sessions.iter().map(|s| s.ring.lost_records()).sum();
        sessions.retain(|s| s.exit_code.is_none());
        for (parent_pid, parent, parent_region, child) in children {
            // Whatever happens to the child, the parent may go on.
            let session = start_child(parent_pid, parent, &child, config, options, sink);
            mapping::acknowledge_child(parent_region);
            match session {
                Ok(session) => sessions.push(session),
                Err(e) => eprintln!("winstrace: cannot trace a child of process {parent_pid}: {e}"),
            }
        }
        if sessions.is_empty() || detaching {
            return Ok(Outcome {
                exit_code: if detaching { None } else { first_exit_code },
                calls,
                hooked_functions,
                lost_records: lost,
            });
        }
        if !read_any {
            // SAFETY: a process handle; waiting a little for it or for records.
            unsafe { WaitForSingleObject(sessions[0].process, POLL_MS) };
        }
    }
}

fn exit_code_of(process: HANDLE) -> Result<u32, Error> {
    let mut code = 0u32;
    // SAFETY: a process handle; the process has exited.
    if unsafe { GetExitCodeProcess(process, &mut code) } == 0 {
        return Err(last_error("GetExitCodeProcess"));
    }
    Ok(code)
}

/// Runs the agent's detach routine in the target, in a thread of its own,
/// and waits for it (boundedly).
fn run_detach_routine(session: &Session) -> Result<(), Error> {
    let routine = mapping::detach_routine(session.shared.region);
    if routine == 0 {
        return Ok(());
    }
    // SAFETY: the agent published the address of its detach routine
    // (`extern "system" fn(*mut c_void) -> u32`) in its own process; at
    // worst a hostile target runs its own code.
    let routine = unsafe {
        std::mem::transmute::<usize, unsafe extern "system" fn(*mut c_void) -> u32>(routine as usize)
    };
    let thread = remote_thread(session.process, routine, std::ptr::null_mut())?;
    // SAFETY: our thread handle; a bounded wait.
    unsafe { WaitForSingleObject(thread.0, DETACH_WAIT_MS) };
    Ok(())
}

/// `-f`: a traced process created a child, still suspended. Takes copies of
/// its process and thread handles, creates its mapping, queues the agent's
/// injection on its first thread (which runs when the parent resumes it)
/// and reports it.
fn start_child(
    parent_pid: u32,
    parent: HANDLE,
    child: &ChildRecord,
    config: &AgentConfig,
    options: &Options,
    sink: &mut dyn EventSink,
) -> Result<Session, Error> {
    let duplicate = |handle: u64| -> Result<Handle, Error> {
        let mut ours: HANDLE = std::ptr::null_mut();
        // SAFETY: copies a handle of the parent (which we may duplicate
        // from: PROCESS_DUP_HANDLE) into this process.
        let ok = unsafe {
            DuplicateHandle(
                parent,
                handle as HANDLE,
                GetCurrentProcess(),
                &mut ours,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            return Err(last_error(&format!("taking handle {handle:#x} of process {parent_pid}")));
        }
        Ok(Handle(ours))
    };
    let process = duplicate(child.process_handle)?;
    let thread = duplicate(child.thread_handle)?;
    // SAFETY: a process handle of ours.
    let pid = unsafe { GetProcessId(process.0) };
    check_x64(process.0, pid)?;
    let shared = Shared::create(pid, config)?;
    queue_injection(process.0, &thread, &options.agent_dll)?;
    let (image, command_line) = winstrace_engine_debug::live::process_identity(process.0);
    emit(sink, pid, 0, EventKind::ProcessStart(ProcessStart { image, command_line, attached: false }));
    let raw = process.0;
    Session::new(pid, raw, Some(process), shared)
}
