//! The Windows side: finding and patching ntdll's stubs in this process, and
//! the callback every hooked call runs.

use std::ffi::c_void;
use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, HMODULE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Foundation::{
    EXCEPTION_ACCESS_VIOLATION, EXCEPTION_GUARD_PAGE, EXCEPTION_IN_PAGE_ERROR,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    AddVectoredExceptionHandler, FlushInstructionCache, GetThreadContext, SetThreadContext, CONTEXT,
    CONTEXT_CONTROL_AMD64, EXCEPTION_POINTERS,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::Memory::{
    MapViewOfFile, OpenFileMappingW, VirtualAlloc, VirtualProtect, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEM_COMMIT, MEM_FREE, MEM_RESERVE, PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE, PAGE_PROTECTION_FLAGS, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetCurrentThreadId, OpenThread, ResumeThread, SuspendThread,
    TlsAlloc, TlsGetValue, TlsSetValue, THREAD_GET_CONTEXT, THREAD_SET_CONTEXT, THREAD_SUSPEND_RESUME,
    TLS_OUT_OF_INDEXES,
};
use winstrace_core::memory::{TargetMemory, Unreadable};
use winstrace_hook::trampoline::{Frame, StubToTrace, FRAME_SIZE};
use winstrace_hook::{inline, is_no_return, stub, trampoline};
use winstrace_ring::{Ring, RingRef};

use winstrace_decode::capture::{self, CapturePlan};
use winstrace_decode::DecodeOptions;

use crate::mapping::{self, Layout};
use crate::record::{CallRecord, RecordWriter, RECORD_KIND_CALL, RECORD_KIND_ENTRY};
use crate::AgentConfig;

/// Bytes of the buffer a record is built in, on the calling thread's stack:
/// the call's header and the memory its capture plan asks for. A capture
/// that needs more is cut (the record says so) and the rest shows as
/// unreadable.
const RECORD_BUFFER: usize = 8 << 10;

/// Offset of `TEB.TlsSlots` (64 pointers) on x64, Windows and Wine alike.
const TEB_TLS_SLOTS: usize = 0x1480;
/// Offset of `TEB.ClientId.UniqueThread` on x64.
const TEB_THREAD_ID: usize = 0x48;
/// TLS indexes below this live in the TEB itself (no allocation to reach them).
const TEB_TLS_COUNT: u32 = 64;

/// Reentrancy guard values, kept per thread in a TEB TLS slot.
const GUARD_TRACED: u64 = 0;
/// Inside `on_call`: a nested hooked call (from the wait callback, say) is
/// passed through untraced.
const GUARD_BUSY: u64 = 1;
/// The thread asked not to be traced (the agent's own work, a reader).
const GUARD_EXCLUDED: u64 = 2;

/// What `on_call` needs, set once before the first stub is patched.
struct State {
    ring: RingRef<'static>,
    /// The in-flight table the return routine keeps (for the tracer).
    in_flight: u64,
    /// Per function: its stub copy's address (see `Frame::function`).
    copies: Vec<u64>,
    names: Vec<String>,
    /// Per function (same index): what of its memory to capture.
    plans: Vec<Option<CapturePlan>>,
    /// `-s` and `-X raw`, as the tracer will decode.
    decode: DecodeOptions,
    /// NtYieldExecution's stub copy: a yield that goes around the hooks.
    yield_copy: Option<unsafe extern "system" fn() -> i32>,
    /// The stubs' patches, for detaching.
    patches: Vec<Patch>,
    /// NtTerminateProcess's function index (see `wait_for_tracer`).
    terminate: Option<usize>,
    /// Per function: whether its calls are recorded (the tracer's filter
    /// wants them); NtTerminateProcess is hooked even when not.
    recorded: Vec<bool>,
}

impl State {
    /// One step of a wait (a full ring, the tracer catching up): some
    /// spins, then a yield that goes around the hooks.
    fn wait_a_little(&self) {
        for _ in 0..64 {
            spin_loop();
        }
        if let Some(yield_now) = self.yield_copy {
            // SAFETY: an unhooked copy of NtYieldExecution, which takes no
            // arguments and only returns a status.
            unsafe { yield_now() };
        }
    }
}

static STATE: OnceLock<State> = OnceLock::new();
static ATTACHING: AtomicBool = AtomicBool::new(false);
/// The TLS index of the guard, `u32::MAX` until allocated.
static TLS_INDEX: AtomicU32 = AtomicU32::new(u32::MAX);

fn teb_read(offset: usize) -> u64 {
    let value: u64;
    // SAFETY: GS points at this thread's TEB on x64 Windows; callers pass
    // offsets of fields inside it (thread id, TLS slots below 64).
    unsafe {
        std::arch::asm!("mov {v}, qword ptr gs:[{o}]", v = out(reg) value, o = in(reg) offset,
            options(nostack, readonly, preserves_flags));
    }
    value
}

fn teb_write(offset: usize, value: u64) {
    // SAFETY: as in `teb_read`; only our own TLS slot is ever written.
    unsafe {
        std::arch::asm!("mov qword ptr gs:[{o}], {v}", v = in(reg) value, o = in(reg) offset,
            options(nostack, preserves_flags));
    }
}

/// Byte offset in the TEB of the guard slot, if allocated.
fn guard_offset() -> Option<usize> {
    let index = TLS_INDEX.load(Ordering::Acquire);
    (index < TEB_TLS_COUNT).then(|| TEB_TLS_SLOTS + 8 * index as usize)
}

/// Allocates the guard's TLS index once. Read and written straight in the
/// TEB (TlsGetValue/TlsSetValue would touch the thread's last error), which
/// needs an index below 64; the offset is checked against TlsGetValue once.
fn ensure_guard() -> Option<usize> {
    if let Some(offset) = guard_offset() {
        return Some(offset);
    }
    // SAFETY: plain calls; the index is ours for the life of the process.
    let index = unsafe { TlsAlloc() };
    if index == TLS_OUT_OF_INDEXES {
        return None;
    }
    if index >= TEB_TLS_COUNT {
        return None; // Leaked: a handful of bytes, and attach fails anyway.
    }
    let offset = TEB_TLS_SLOTS + 8 * index as usize;
    teb_write(offset, 0x5157);
    // SAFETY: reads our own, just allocated index.
    let seen = unsafe { TlsGetValue(index) } as u64;
    teb_write(offset, 0);
    if seen != 0x5157 {
        // SAFETY: as above; leave the slot as TlsAlloc made it.
        unsafe { TlsSetValue(index, std::ptr::null()) };
        return None;
    }
    match TLS_INDEX.compare_exchange(u32::MAX, index, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(offset),
        Err(_) => guard_offset(), // Another thread won; our index stays unused.
    }
}

/// Stops (`traced == 0`) or resumes tracing of the calling thread's calls.
/// Returns 0, or -3 if no TLS slot is available. Usable before attaching.
#[no_mangle]
pub extern "C" fn winstrace_agent_set_thread_traced(traced: i32) -> i32 {
    let Some(offset) = ensure_guard() else { return -3 };
    teb_write(offset, if traced != 0 { GUARD_TRACED } else { GUARD_EXCLUDED });
    0
}

/// The index recorded as `function` for the hooked function `name` (ASCII,
/// `len` bytes, no terminator), or -1 if it is not hooked or not attached.
///
/// # Safety
/// `name` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn winstrace_agent_function_index(name: *const u8, len: usize) -> i32 {
    let Some(state) = STATE.get() else { return -1 };
    if name.is_null() {
        return -1;
    }
    // SAFETY: the caller promises `len` readable bytes at `name`.
    let name = unsafe { std::slice::from_raw_parts(name, len) };
    state.names.iter().position(|n| n.as_bytes() == name).map_or(-1, |i| i as i32)
}

/// The callback of every hooked call (see `winstrace_hook::inline`): runs
/// on the calling thread with `frame` pointing at the saved frame.
extern "win64" fn on_call(frame: *const u8, no_return: u64) {
    as_traced_thread(|| record_call(frame, no_return));
}

/// Runs `f` with the calling thread's guard set to busy (calls it makes
/// meanwhile pass untraced), if the agent is still recording and the thread
/// is traced and not already inside the agent.
fn as_traced_thread(f: impl FnOnce()) {
    if DETACHED.load(Ordering::Relaxed) {
        return;
    }
    let Some(guard) = guard_offset() else { return };
    if teb_read(guard) != GUARD_TRACED {
        return;
    }
    teb_write(guard, GUARD_BUSY);
    f();
    teb_write(guard, GUARD_TRACED);
}

/// Builds the record on the stack and writes it: no heap, no lock, and no
/// call into a hooked function (the wait yields through a stub copy).
fn record_call(frame: *const u8, no_return: u64) {
    let Some(state) = STATE.get() else { return };
    // SAFETY: the inline routines pass RSP, the start of a FRAME_SIZE-byte
    // frame they have just filled on this thread's stack.
    let bytes = unsafe { std::ptr::read(frame as *const [u8; FRAME_SIZE]) };
    let f = Frame::parse(&bytes);
    let Some(function) = f.function(&state.copies) else { return };
    let recorded = state.recorded.get(function).copied().unwrap_or(true);
    let entry = no_return == inline::ENTRY;
    if entry && (state.decode.raw || !recorded) {
        return; // Nothing to capture at call time.
    }
    let returned = no_return == inline::RETURNED;
    let record = CallRecord {
        function: function as u32,
        thread_id: teb_read(TEB_THREAD_ID) as u32,
        // At entry the frame's result and return TSC are not written yet.
        status: if entry { 0 } else { f.rax },
        no_return: !returned && !entry,
        capture_full: false,
        entry_tsc: f.entry_tsc,
        return_tsc: if entry { 0 } else { f.return_tsc },
        args: f.args,
    };
    // Not zeroed: the writer initialises what it writes (see RecordWriter).
    let mut buffer = [MaybeUninit::<u8>::uninit(); RECORD_BUFFER];
    let Some(mut writer) = RecordWriter::new(&mut buffer, probe_read) else { return };
    if let Some(plan) = state.plans.get(function).copied().flatten() {
        // The memory the tracer's decoders will read, as they will read it:
        // at call time without a result (the in-parameters), after the
        // return (the NTSTATUS decides whether out-parameters hold
        // anything), or before a call that does not return.
        // A returning call's in-parameters are in its entry record: the
        // return adds its out-parameters.
        let result = returned.then_some(u64::from(f.rax as u32));
        if returned {
            plan.capture_outs(&f.args, result, &state.decode, &mut writer);
        } else {
            plan.capture(&f.args, result, &state.decode, &mut writer);
        }
    }
    let payload = writer.finish(&record);
    let mut wait = || state.wait_a_little();
    let kind = if entry { RECORD_KIND_ENTRY } else { RECORD_KIND_CALL };
    // A refused record is counted in the ring's lost counter; nothing else
    // to do about it from inside someone else's call.
    let written = !recorded || state.ring.write(kind, payload, &mut wait).is_ok();
    if written
        && record.no_return
        && Some(function) == state.terminate
        && (f.args[0] == 0 || f.args[0] == u64::MAX)
    {
        wait_for_tracer(&state.ring, &mut wait);
    }
}

/// The shared mapping this agent attached through (for the tracer's
/// acknowledgements); none when a test attached it directly.
static MAPPING: OnceLock<&'static [AtomicU64]> = OnceLock::new();
/// How many waits (each some spins and a yield) the process's exit gives
/// the tracer to catch up: a few seconds at most.
const EXIT_WAITS: u32 = 200_000;

/// The process is about to end itself (NtTerminateProcess on itself, the
/// first step of ExitProcess, while every handle is still open). Waits
/// until the tracer has handled everything written so far, so that it can
/// still look into the living process for what it decodes (`-y` names a
/// handle it never saw opened by asking the process for it). Gives up if
/// the tracer is gone or takes too long.
fn wait_for_tracer(ring: &RingRef<'_>, wait: &mut dyn FnMut()) {
    let written = ring.write_position();
    // Through the mapping the tracer says what it has handled; without one
    // (a test attached the agent itself) what it has read.
    let handled = || MAPPING.get().map_or_else(|| ring.read_position(), |region| mapping::processed(region));
    for _ in 0..EXIT_WAITS {
        if handled() >= written || !ring.consumer_alive() {
            return;
        }
        wait();
    }
}

// The memory probe: copies from addresses the traced program passed, which
// may be anything. `rep movsb` stops at the first byte that faults; the
// vectored handler below then resumes right after the instruction, and the
// count register says how far it got. No system call on the way, so the
// common case (readable memory) costs what a memcpy costs.
std::arch::global_asm!(
    ".globl winstrace_probe_copy",
    ".globl winstrace_probe_copy_insn",
    "winstrace_probe_copy:",
    "    push rdi",
    "    push rsi",
    "    mov rdi, rcx",
    "    mov rsi, rdx",
    "    mov rcx, r8",
    "winstrace_probe_copy_insn:",
    "    rep movsb",
    "    mov rax, r8",
    "    sub rax, rcx",
    "    pop rsi",
    "    pop rdi",
    "    ret",
);

extern "C" {
    /// Copies up to `len` bytes from `src` to `dst`; returns how many it
    /// copied before the first unreadable source byte.
    fn winstrace_probe_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    /// The `rep movsb` of `winstrace_probe_copy` (a label, not data).
    static winstrace_probe_copy_insn: u8;
}

/// Length of `rep movsb` (F3 A4).
const REP_MOVSB_BYTES: u64 = 2;

/// Copies the readable start of `address..address + out.len()` into `out`.
fn probe_read(address: u64, out: &mut [u8]) -> usize {
    if PROBE_HANDLER.load(Ordering::Acquire) == 0 || address.checked_add(out.len() as u64).is_none() {
        return 0;
    }
    // SAFETY: `out` is ours; a fault on the source side is caught by
    // `probe_fault_handler`, which is registered (checked above).
    unsafe { winstrace_probe_copy(out.as_mut_ptr(), address as *const u8, out.len()) }
}

/// The vectored handler's registration (non-zero once registered).
static PROBE_HANDLER: AtomicU64 = AtomicU64::new(0);

/// Turns a fault of the probe's `rep movsb` into "copied this far".
unsafe extern "system" fn probe_fault_handler(info: *mut EXCEPTION_POINTERS) -> i32 {
    const EXCEPTION_CONTINUE_EXECUTION: i32 = -1;
    const EXCEPTION_CONTINUE_SEARCH: i32 = 0;
    // SAFETY: the system passes valid exception and context records.
    unsafe {
        let record = &*(*info).ExceptionRecord;
        let context = &mut *(*info).ContextRecord;
        let faults = matches!(
            record.ExceptionCode,
            EXCEPTION_ACCESS_VIOLATION | EXCEPTION_GUARD_PAGE | EXCEPTION_IN_PAGE_ERROR
        );
        let insn = std::ptr::addr_of!(winstrace_probe_copy_insn) as u64;
        if faults && context.Rip == insn {
            context.Rip = insn + REP_MOVSB_BYTES;
            return EXCEPTION_CONTINUE_EXECUTION;
        }
    }
    EXCEPTION_CONTINUE_SEARCH
}

fn register_probe_handler() -> bool {
    if PROBE_HANDLER.load(Ordering::Acquire) != 0 {
        return true;
    }
    // SAFETY: registers a handler that only looks at its own instruction.
    let handle = unsafe { AddVectoredExceptionHandler(1, Some(probe_fault_handler)) };
    if handle.is_null() {
        return false;
    }
    PROBE_HANDLER.store(handle as u64, Ordering::Release);
    true
}

/// This process's memory, read by the probe (`probe_read`): a bad address
/// in a header is "unreadable", not an access violation, and no system call
/// is made.
struct ProbedMemory;

impl TargetMemory for ProbedMemory {
    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        if probe_read(address, buf) == buf.len() {
            Ok(())
        } else {
            Err(Unreadable { address })
        }
    }
}

/// Hooks every recognised Nt* stub of this process's ntdll and records each
/// call into the ring at `ring` (`words` 64-bit words, 8-byte aligned,
/// already formatted by `Ring::init` and alive as long as the process).
/// Returns the number of hooked functions, or a negative error
/// (see [`crate::ATTACH_ERRORS`]). Attaches once per process.
///
/// # Safety
/// `ring` must point at `words` readable and writable `u64`s that nothing
/// frees while the process runs.
#[no_mangle]
pub unsafe extern "C" fn winstrace_agent_attach(ring: *const u64, words: usize) -> i32 {
    attach_with(ring, words, &AgentConfig::default())
}

/// [`winstrace_agent_attach`] with a configuration (the tracer's, from the
/// shared mapping).
fn attach_with(ring: *const u64, words: usize, config: &AgentConfig) -> i32 {
    if STATE.get().is_some() || ATTACHING.swap(true, Ordering::AcqRel) {
        return -1;
    }
    let result = attach(ring, words, config);
    if result < 0 {
        ATTACHING.store(false, Ordering::Release);
    }
    result
}

fn attach(ring: *const u64, words: usize, config: &AgentConfig) -> i32 {
    let Some(guard) = ensure_guard() else { return -3 };
    // The attaching thread's own calls (allocations, protection changes
    // through already patched stubs) are not traced.
    let saved_guard = teb_read(guard);
    teb_write(guard, GUARD_EXCLUDED);
    let result = attach_unguarded(ring, words, config);
    teb_write(guard, saved_guard);
    result
}

fn attach_unguarded(ring: *const u64, words: usize, config: &AgentConfig) -> i32 {
    if ring.is_null() || ring as usize % 8 != 0 {
        return -2;
    }
    // SAFETY: the caller promises `words` u64s at `ring` for the life of the
    // process; AtomicU64 has the size and alignment of u64, and every access
    // to the region goes through the atomics.
    let region: &'static [AtomicU64] = unsafe { std::slice::from_raw_parts(ring as *const AtomicU64, words) };
    let Ok(ring) = Ring::attach(region) else { return -2 };

    let ntdll_name: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: NUL-terminated name; no reference is taken on the module.
    let ntdll: HMODULE = unsafe { GetModuleHandleW(ntdll_name.as_ptr()) };
    if ntdll.is_null() {
        return -4;
    }
    let ntdll = ntdll as u64;
    // The probe reads the export table, and later every captured argument.
    if !register_probe_handler() {
        return -10;
    }
    let Ok(found) = stub::find_stubs(&ProbedMemory, ntdll) else { return -5 };
    let mut stubs = Vec::new();
    let mut names = Vec::new();
    let mut recorded = Vec::new();
    for stub::FoundStub { name, address, shape } in found {
        // The patch is one aligned 8-byte store over the first 8 bytes.
        // NtTerminateProcess is hooked whatever the filter: the process's
        // exit waits there for the tracer (see `wait_for_tracer`).
        let handshake = name == "NtTerminateProcess";
        if address % 8 != 0 || shape.code.len() < 8 || !(config.wants(&name) || handshake) {
            continue;
        }
        recorded.push(config.wants(&name));
        stubs.push(StubToTrace { address, code: shape.code, no_return: is_no_return(&name) });
        names.push(name);
    }
    if stubs.is_empty() {
        return -6;
    }
    let Ok(size) = inline::region_size(&stubs) else { return -7 };
    let Some(region) = allocate_near(ntdll, size) else { return -8 };
    // The in-flight table stays writable, apart from the code.
    // SAFETY: a fresh read-write allocation; zeroed, as the table needs.
    let in_flight = unsafe {
        VirtualAlloc(std::ptr::null(), trampoline::SLOTS_BYTES, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE)
    } as u64;
    if in_flight == 0 {
        return -8;
    }
    let Ok(t) = inline::build(region, &stubs, in_flight) else { return -7 };
    // SAFETY: `region` is a fresh read-write allocation of `size` bytes and
    // the build at the same base has exactly that size.
    unsafe {
        std::ptr::copy_nonoverlapping(t.code.as_ptr(), region as *mut u8, t.code.len());
        *(t.callback_slot as *mut u64) = on_call as extern "win64" fn(*const u8, u64) as usize as u64;
    }
    let mut old: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: our own fresh allocation; from now on it is code.
    if unsafe { VirtualProtect(region as *const c_void, t.code.len(), PAGE_EXECUTE_READ, &mut old) } == 0 {
        return -9;
    }
    // SAFETY: plain call on our own process.
    unsafe { FlushInstructionCache(GetCurrentProcess(), region as *const c_void, t.code.len()) };

    let yield_copy = names.iter().position(|n| n == "NtYieldExecution").map(|i| {
        // SAFETY: the copy of NtYieldExecution's stub is a complete function
        // with that (argument-less, status-returning) signature.
        unsafe { std::mem::transmute::<usize, unsafe extern "system" fn() -> i32>(t.copies[i] as usize) }
    });
    // Plans (and the tables behind them) are built here, not in a hook.
    capture::warm_up();
    let plans = names.iter().map(|n| capture::capture_plan(n)).collect();
    // Every patch is worked out (and every allocation made) before the
    // first store: while other threads are suspended nothing may allocate.
    let patches: Vec<Patch> = stubs
        .iter()
        .zip(&t.thunks)
        .zip(&t.copies)
        .filter_map(|((stub, thunk), copy)| {
            let patch = inline::atomic_patch(stub.address, *thunk, &stub.code)?;
            let original: [u8; 8] = stub.code[..8].try_into().ok()?;
            Some(Patch {
                address: stub.address,
                original: u64::from_le_bytes(original),
                patched: u64::from_le_bytes(patch),
                copy: *copy,
            })
        })
        .collect();
    let terminate = names.iter().position(|n| n == "NtTerminateProcess");
    let state = State {
        in_flight,
        terminate,
        recorded,
        ring,
        copies: t.copies.clone(),
        names,
        plans,
        decode: config.decode.clone(),
        yield_copy,
        patches,
    };
    if STATE.set(state).is_err() {
        return -1;
    }
    let Some(state) = STATE.get() else { return -1 };
    let Some(range) = PatchRange::of(&state.patches) else { return -6 };
    let threads = OtherThreads::open();
    let Some(_writable) = range.make_writable() else { return -9 };
    let _stopped = threads.suspend(&state.patches);
    let mut hooked = 0i32;
    for patch in &state.patches {
        if patch.store(patch.original, patch.patched) {
            hooked += 1;
        }
    }
    // The threads resume, then the pages get their protection back (the
    // guards drop in reverse order).
    hooked
}

/// One stub's patch: the 8 bytes it had and the 8 bytes that jump to its
/// thunk, and where its verbatim copy is.
struct Patch {
    address: u64,
    original: u64,
    patched: u64,
    copy: u64,
}

impl Patch {
    /// Replaces the stub's first 8 bytes `from` by `to` in one atomic store,
    /// if they still are `from` (no other hooker got there in between).
    fn store(&self, from: u64, to: u64) -> bool {
        // SAFETY: `address` is 8-byte aligned (checked when the stub was
        // chosen), inside ntdll's code, which the caller made writable;
        // every thread reads those bytes only as instructions, so an atomic
        // store is the one write they can observe, whole or not at all.
        let word = unsafe { &*(self.address as *const AtomicU64) };
        word.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

/// The span of ntdll's code the patches touch.
struct PatchRange {
    first: u64,
    end: u64,
}

impl PatchRange {
    fn of(patches: &[Patch]) -> Option<PatchRange> {
        let first = patches.iter().map(|p| p.address).min()?;
        let end = patches.iter().map(|p| p.address + 8).max()?;
        Some(PatchRange { first, end })
    }

    /// Makes the span writable (and keeps it executable, so threads
    /// running in it are unaffected) until the guard is dropped.
    fn make_writable(&self) -> Option<WritableCode<'_>> {
        let mut old: PAGE_PROTECTION_FLAGS = 0;
        // SAFETY: ntdll's code pages; they stay executable throughout.
        let ok = unsafe {
            VirtualProtect(self.first as *const c_void, self.len(), PAGE_EXECUTE_READWRITE, &mut old)
        };
        (ok != 0).then_some(WritableCode { range: self, old })
    }

    fn len(&self) -> usize {
        (self.end - self.first) as usize
    }
}

/// Puts back the protection of a [`PatchRange`] and flushes the
/// instruction cache over it.
struct WritableCode<'r> {
    range: &'r PatchRange,
    old: PAGE_PROTECTION_FLAGS,
}

impl Drop for WritableCode<'_> {
    fn drop(&mut self) {
        let mut ignored: PAGE_PROTECTION_FLAGS = 0;
        // SAFETY: puts back the protection the pages had.
        unsafe {
            VirtualProtect(self.range.first as *const c_void, self.range.len(), self.old, &mut ignored);
            FlushInstructionCache(GetCurrentProcess(), self.range.first as *const c_void, self.range.len());
        }
    }
}

/// Handles to the process's other threads, opened before any is
/// suspended (opening allocates).
struct OtherThreads {
    handles: Vec<HANDLE>,
}

/// Threads suspended by [`OtherThreads::suspend`], resumed on drop.
struct Stopped<'t> {
    threads: &'t OtherThreads,
    suspended: Vec<bool>,
}

impl OtherThreads {
    fn open() -> OtherThreads {
        let mut handles = Vec::new();
        // SAFETY: a snapshot handle, walked with a correctly sized entry
        // and closed; thread handles are closed by `Drop`.
        unsafe {
            let me = GetCurrentThreadId();
            let pid = GetCurrentProcessId();
            let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
            if snapshot == INVALID_HANDLE_VALUE {
                return OtherThreads { handles };
            }
            let mut entry: THREADENTRY32 = std::mem::zeroed();
            entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
            let mut more = Thread32First(snapshot, &mut entry) != 0;
            while more {
                if entry.th32OwnerProcessID == pid && entry.th32ThreadID != me {
                    let access = THREAD_SUSPEND_RESUME | THREAD_GET_CONTEXT | THREAD_SET_CONTEXT;
                    let handle = OpenThread(access, 0, entry.th32ThreadID);
                    if !handle.is_null() {
                        handles.push(handle);
                    }
                }
                more = Thread32Next(snapshot, &mut entry) != 0;
            }
            CloseHandle(snapshot);
        }
        OtherThreads { handles }
    }

    /// Suspends every thread and moves any that stopped inside the first 8
    /// bytes of a stub (after its first instruction, where a patch would
    /// land it in the middle of the jump) to the same offset in the stub's
    /// copy, which holds the same bytes: that call completes, untraced.
    /// Allocates nothing after the first suspension.
    fn suspend(&self, patches: &[Patch]) -> Stopped<'_> {
        let mut suspended = Vec::with_capacity(self.handles.len());
        for &handle in &self.handles {
            // SAFETY: a thread handle with THREAD_SUSPEND_RESUME access.
            suspended.push(unsafe { SuspendThread(handle) } != u32::MAX);
        }
        for (&handle, _) in self.handles.iter().zip(&suspended).filter(|(_, &s)| s) {
            let mut context = AlignedContext(
                // SAFETY: CONTEXT is plain data; all-zero is a valid value.
                unsafe { std::mem::zeroed() },
            );
            context.0.ContextFlags = CONTEXT_CONTROL_AMD64;
            // SAFETY: an aligned CONTEXT; GetThreadContext also waits until
            // the thread is really suspended.
            if unsafe { GetThreadContext(handle, &mut context.0) } == 0 {
                continue;
            }
            let rip = context.0.Rip;
            let inside = patches.iter().find(|p| rip > p.address && rip < p.address + 8);
            if let Some(patch) = inside {
                context.0.Rip = patch.copy + (rip - patch.address);
                // SAFETY: the thread is suspended; only RIP changes, to the
                // same instruction boundary in an identical copy.
                unsafe { SetThreadContext(handle, &context.0) };
            }
        }
        Stopped { threads: self, suspended }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        for (&handle, &suspended) in self.threads.handles.iter().zip(&self.suspended) {
            if suspended {
                // SAFETY: resumes a thread this guard suspended.
                unsafe { ResumeThread(handle) };
            }
        }
    }
}

impl Drop for OtherThreads {
    fn drop(&mut self) {
        for &handle in &self.handles {
            // SAFETY: handles we opened, closed once.
            unsafe { CloseHandle(handle) };
        }
    }
}

/// A 16-byte aligned CONTEXT, as GetThreadContext requires on x64.
#[repr(C, align(16))]
struct AlignedContext(CONTEXT);

/// Set once the tracer detached: hooked calls still running come back
/// through the trampolines and record nothing.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Puts every stub back and stops recording; returns how many stubs were
/// restored. The trampolines and this DLL stay (a thread blocked inside a
/// call will still return through them). For the tracer, which runs it in
/// a thread of its own (`CreateRemoteThread`) on Ctrl-C; the mapping
/// publishes its address.
#[no_mangle]
pub extern "system" fn winstrace_agent_detach(_parameter: *mut c_void) -> u32 {
    let Some(guard) = ensure_guard() else { return 0 };
    teb_write(guard, GUARD_EXCLUDED);
    let Some(state) = STATE.get() else { return 0 };
    if DETACHED.swap(true, Ordering::AcqRel) {
        return 0;
    }
    let Some(range) = PatchRange::of(&state.patches) else { return 0 };
    let Some(_writable) = range.make_writable() else { return 0 };
    // A thread can only be at a patched stub's first byte (about to take
    // the jump) or inside the trampolines, never in the middle of the
    // 8 bytes: putting the original back needs no thread stopped.
    state.patches.iter().filter(|p| p.store(p.patched, p.original)).count() as u32
}

/// Allocates `size` read-write bytes within ±2 GiB of `near` (a `jmp rel32`
/// from any stub then reaches the region), or `None`.
fn allocate_near(near: u64, size: usize) -> Option<u64> {
    const GRANULE: u64 = 0x1_0000;
    const REACH: u64 = 0x7000_0000;
    let mut at = near.saturating_sub(REACH).max(GRANULE);
    while at < near.saturating_add(REACH) {
        // SAFETY: MEMORY_BASIC_INFORMATION is plain data filled by the call.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: queries our own address space.
        let got = unsafe {
            VirtualQuery(at as *const c_void, &mut info, std::mem::size_of::<MEMORY_BASIC_INFORMATION>())
        };
        if got == 0 {
            return None;
        }
        let start = info.BaseAddress as u64;
        let end = start + info.RegionSize as u64;
        if info.State == MEM_FREE {
            let aligned = start.div_ceil(GRANULE) * GRANULE;
            let last = aligned + size as u64;
            if last <= end && aligned + GRANULE > near.saturating_sub(REACH) && last < near + REACH {
                // SAFETY: reserves fresh pages; `aligned` is a free range.
                let got = unsafe {
                    VirtualAlloc(aligned as *const c_void, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE)
                } as u64;
                if got != 0 {
                    return Some(got);
                }
            }
        }
        at = end.max(at + GRANULE);
    }
    None
}

/// `DllMain`'s reason code for the DLL being loaded into a process.
const DLL_PROCESS_ATTACH: u32 = 1;

/// The DLL's entry point (called by the mingw CRT's startup routine). When
/// the tracer injected the DLL it has created the mapping of this process
/// id beforehand, so attaching here puts the hooks in before the program's
/// entry point runs. Attaching in `DllMain` (under the loader lock) is
/// sound because it loads no library and waits for no other thread: it
/// allocates, changes page protections and reads this process's memory.
#[no_mangle]
pub extern "system" fn DllMain(_module: *mut c_void, reason: u32, _reserved: *mut c_void) -> i32 {
    if reason == DLL_PROCESS_ATTACH {
        attach_to_shared_mapping();
    }
    1
}

/// Opens `Local\winstrace-ring-<our pid>`, attaches to the ring in it and
/// publishes the names of the hooked functions. Does nothing if there is no
/// such mapping (a process that loaded the DLL itself, as the tests do) or
/// if its header is not one we understand.
fn attach_to_shared_mapping() {
    // SAFETY: plain call.
    let pid = unsafe { GetCurrentProcessId() };
    let name: Vec<u16> = mapping::mapping_name(pid).encode_utf16().chain([0]).collect();
    // SAFETY: NUL-terminated name; the handle is kept open for good (the
    // view keeps the mapping alive anyway).
    let section = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, name.as_ptr()) };
    if section.is_null() {
        return;
    }
    // SAFETY: maps the whole section; the view is never unmapped.
    let view = unsafe { MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0) };
    let base = view.Value as *const u64;
    if base.is_null() {
        return;
    }
    // SAFETY: MEMORY_BASIC_INFORMATION is plain data filled by the call.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: queries our own address space at the view we just mapped.
    let got = unsafe {
        VirtualQuery(base as *const c_void, &mut info, std::mem::size_of::<MEMORY_BASIC_INFORMATION>())
    };
    if got == 0 {
        return;
    }
    let words = info.RegionSize / 8;
    // SAFETY: the view is page-aligned, `words` u64s long, readable and
    // writable, and stays mapped for the life of the process; the tracer
    // shares it, so every access goes through the atomics.
    let region: &'static [AtomicU64] = unsafe { std::slice::from_raw_parts(base as *const AtomicU64, words) };
    let Some(layout) = Layout::read_header(region) else { return };
    let config = mapping::read_config(region, &layout);
    let _ = MAPPING.set(region);
    let ring = layout.ring(region);
    let result = attach_with(ring.as_ptr() as *const u64, ring.len(), &config);
    let names = STATE.get().map(|s| s.names.as_slice()).unwrap_or(&[]);
    let names = if result >= 0 { names } else { &[] };
    let detach = winstrace_agent_detach as extern "system" fn(*mut c_void) -> u32 as usize as u64;
    let in_flight = STATE.get().map_or(0, |s| s.in_flight);
    mapping::publish_names(region, &layout, names.iter().map(String::as_str), result, detach, in_flight);
}
