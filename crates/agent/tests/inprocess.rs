//! The agent DLL hooking the test process itself, which also plays the
//! tracer: it creates the ring, loads `winstrace_agent.dll`, attaches it and
//! drains the records on a reader thread.
//!
//! All tests share the one agent of the process (it attaches once), so they
//! run one at a time and each looks only at the records written between two
//! barriers of its own.
#![cfg(all(windows, target_arch = "x86_64"))]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use windows_sys::Win32::Storage::FileSystem::{GetFileAttributesW, INVALID_FILE_ATTRIBUTES};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress, LoadLibraryW};
use windows_sys::Win32::System::Memory::{VirtualAlloc, MEM_COMMIT, MEM_RESERVE, PAGE_NOACCESS};
use windows_sys::Win32::System::Threading::GetCurrentThreadId;
use winstrace_agent::record::{pieces, CallRecord, RECORD_KIND_CALL, RECORD_KIND_ENTRY};
use winstrace_decode::capture::CapturedMemory;
use winstrace_decode::{args_text, decode_call, DecodeOptions};
use winstrace_ring::{Ring, RingRef};

const CAPACITY: u64 = 1 << 20;
const STATUS_OBJECT_NAME_NOT_FOUND: u64 = 0xc000_0034;
const TIMEOUT: Duration = Duration::from_secs(120);

/// What GetProcAddress hands back, before the cast to the real signature.
type RawProc = unsafe extern "system" fn() -> isize;
type AttachFn = unsafe extern "C" fn(*const u64, usize) -> i32;
type SetTracedFn = unsafe extern "C" fn(i32) -> i32;
type IndexFn = unsafe extern "C" fn(*const u8, usize) -> i32;

struct Tracer {
    ring: RingRef<'static>,
    records: Mutex<Vec<CallRecord>>,
    /// The whole record of each entry of `records` (header and captured memory).
    payloads: Mutex<Vec<Vec<u8>>>,
    /// Entry records (written at call time), with their payloads.
    entries: Mutex<Vec<(CallRecord, Vec<u8>)>>,
    /// The ring's read position once every record before it is in `records`.
    collected_up_to: AtomicU64,
    bad_records: AtomicU64,
    reader_thread: AtomicU32,
    /// Set by a test to make the reader itself call GetFileAttributesW this
    /// many times; the reader clears it when done.
    reader_probe: AtomicU32,
    hooked: i32,
    query_attributes_file: u32,
    serial: Mutex<()>,
}

fn agent_dll() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let deps = exe.parent().expect("deps dir");
    // The copy cargo built for this test run first: the one in the profile
    // directory may be from an older build.
    for dir in [deps, deps.parent().expect("profile dir")] {
        let dll = dir.join("winstrace_agent.dll");
        if dll.exists() {
            return dll;
        }
    }
    panic!("winstrace_agent.dll not found next to {}", exe.display());
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

fn missing_file_attributes(path: &[u16]) {
    // SAFETY: NUL-terminated path.
    let attributes = unsafe { GetFileAttributesW(path.as_ptr()) };
    assert_eq!(attributes, INVALID_FILE_ATTRIBUTES);
}

fn missing_path(tag: &str) -> Vec<u16> {
    // The root exists, the file does not: STATUS_OBJECT_NAME_NOT_FOUND.
    wide(&format!("C:\\winstrace-agent-test-missing-{tag}.txt"))
}

fn tracer() -> &'static Tracer {
    static TRACER: OnceLock<Tracer> = OnceLock::new();
    TRACER.get_or_init(|| {
        let region: &'static [AtomicU64] = Box::leak(Ring::alloc_region(CAPACITY).expect("region"));
        let ring = Ring::init(region, CAPACITY).expect("ring");
        let dll = wide(&agent_dll().to_string_lossy());
        // SAFETY: NUL-terminated path; the DLL stays loaded for good.
        let module = unsafe { LoadLibraryW(dll.as_ptr()) };
        assert!(!module.is_null(), "LoadLibraryW failed");
        let symbol = |name: &[u8]| {
            // SAFETY: NUL-terminated export name on a loaded module.
            unsafe { GetProcAddress(module, name.as_ptr()) }.unwrap_or_else(|| panic!("no export {name:?}"))
        };
        // SAFETY: the exports have these signatures (crates/agent/src/windows.rs).
        let (attach, set_traced, index) = unsafe {
            (
                std::mem::transmute::<RawProc, AttachFn>(symbol(b"winstrace_agent_attach\0")),
                std::mem::transmute::<RawProc, SetTracedFn>(symbol(b"winstrace_agent_set_thread_traced\0")),
                std::mem::transmute::<RawProc, IndexFn>(symbol(b"winstrace_agent_function_index\0")),
            )
        };
        // SAFETY: the region is leaked, so it lives as long as the process.
        let hooked = unsafe { attach(region.as_ptr() as *const u64, region.len()) };
        assert!(hooked > 100, "attach returned {hooked}");
        let name = b"NtQueryAttributesFile";
        // SAFETY: pointer and length of a byte string.
        let query_attributes_file = unsafe { index(name.as_ptr(), name.len()) };
        assert!(query_attributes_file >= 0, "NtQueryAttributesFile is not hooked");
        let state = Tracer {
            ring,
            records: Mutex::new(Vec::new()),
            payloads: Mutex::new(Vec::new()),
            entries: Mutex::new(Vec::new()),
            collected_up_to: AtomicU64::new(0),
            bad_records: AtomicU64::new(0),
            reader_thread: AtomicU32::new(0),
            reader_probe: AtomicU32::new(0),
            hooked,
            query_attributes_file: query_attributes_file as u32,
            serial: Mutex::new(()),
        };
        std::thread::spawn(move || {
            // SAFETY: plain call into the agent.
            assert_eq!(unsafe { set_traced(0) }, 0);
            // SAFETY: plain call.
            let me = unsafe { GetCurrentThreadId() };
            let t = tracer();
            t.reader_thread.store(me, Ordering::Release);
            read_forever(t)
        });
        state
    })
}

fn read_forever(t: &'static Tracer) -> ! {
    let mut reader = t.ring.reader().expect("reader");
    let probe_path = missing_path("reader");
    loop {
        match reader.next() {
            Ok(Some(record)) => {
                if record.kind == RECORD_KIND_ENTRY {
                    match CallRecord::decode(record.payload) {
                        Ok(r) => t.entries.lock().unwrap().push((r, record.payload.to_vec())),
                        Err(_) => {
                            t.bad_records.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if record.kind != RECORD_KIND_CALL {
                    t.collected_up_to.store(t.ring.read_position(), Ordering::Release);
                    continue;
                }
                match CallRecord::decode(record.payload).ok() {
                    Some(r) => {
                        // Payloads first: a test that sees the record finds its payload.
                        t.payloads.lock().unwrap().push(record.payload.to_vec());
                        t.records.lock().unwrap().push(r);
                    }
                    None => {
                        t.bad_records.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(None) => {
                let probes = t.reader_probe.load(Ordering::Acquire);
                for _ in 0..probes {
                    missing_file_attributes(&probe_path);
                }
                if probes != 0 {
                    t.reader_probe.store(0, Ordering::Release);
                }
                std::thread::yield_now();
            }
            Err(e) => panic!("ring error: {e}"),
        }
        t.collected_up_to.store(t.ring.read_position(), Ordering::Release);
    }
}

impl Tracer {
    /// Waits until every record reserved before now is in `records`, and
    /// returns how many records there are.
    fn barrier(&self) -> usize {
        let target = self.ring.write_position();
        let start = Instant::now();
        while self.collected_up_to.load(Ordering::Acquire) < target {
            assert!(start.elapsed() < TIMEOUT, "reader stuck: {:?}", self.ring);
            std::thread::sleep(Duration::from_millis(1));
        }
        self.records.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<CallRecord> {
        self.records.lock().unwrap()[mark..].to_vec()
    }

    /// Records since `mark` with their payloads.
    fn payloads_since(&self, mark: usize) -> Vec<(CallRecord, Vec<u8>)> {
        let records = self.records.lock().unwrap()[mark..].to_vec();
        let payloads = self.payloads.lock().unwrap()[mark..mark + records.len()].to_vec();
        records.into_iter().zip(payloads).collect()
    }
}

/// The arguments of a record as the tracer decodes them from the memory
/// it carries.
/// The arguments of a call record as the tracer decodes them: from the
/// memory its entry record carries (the in-parameters') and its own (the
/// out-parameters').
fn decoded_args(t: &Tracer, function: &str, record: &CallRecord, payload: &[u8]) -> String {
    let entries = t.entries.lock().unwrap();
    let entry = entries
        .iter()
        .find(|(e, _)| e.thread_id == record.thread_id && e.entry_tsc == record.entry_tsc)
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    decoded_with(function, record, &[&entry, payload], Some(record.status & 0xffff_ffff))
}

fn decoded_args_with(function: &str, record: &CallRecord, payload: &[u8], status: Option<u64>) -> String {
    decoded_with(function, record, &[payload], status)
}

fn decoded_with(function: &str, record: &CallRecord, payloads: &[&[u8]], status: Option<u64>) -> String {
    let mut memory = CapturedMemory::new();
    for (address, bytes) in payloads.iter().filter(|p| !p.is_empty()).flat_map(|p| pieces(p)) {
        memory.add(address, bytes);
    }
    let (args, _) = decode_call(function, &record.args, status, &memory, &DecodeOptions::default());
    args_text(&args)
}

fn serial(t: &Tracer) -> MutexGuard<'_, ()> {
    t.serial.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_hundred_calls_from_one_thread_give_a_hundred_records() {
    let t = tracer();
    let _one_at_a_time = serial(t);
    let path = missing_path("single");
    // SAFETY: plain call.
    let me = unsafe { GetCurrentThreadId() };
    let mark = t.barrier();
    for _ in 0..100 {
        missing_file_attributes(&path);
    }
    t.barrier();
    let mine: Vec<CallRecord> = t
        .since(mark)
        .into_iter()
        .filter(|r| r.thread_id == me && r.function == t.query_attributes_file)
        .collect();
    assert_eq!(mine.len(), 100, "hooked {} functions", t.hooked);
    // The memory behind the pointers came along: the tracer decodes the path.
    let (first, payload) = t
        .payloads_since(mark)
        .into_iter()
        .find(|(r, _)| r.thread_id == me && r.function == t.query_attributes_file)
        .unwrap();
    assert_eq!(
        decoded_args(t, "NtQueryAttributesFile", &first, &payload),
        format!(
            r#"ObjectAttributes={{Name="\\??\\C:\\winstrace-agent-test-missing-single.txt", Attributes=OBJ_CASE_INSENSITIVE}}, FileInformation={:#x}"#,
            first.args[1]
        )
    );
    for r in &mine {
        assert_eq!(r.status & 0xffff_ffff, STATUS_OBJECT_NAME_NOT_FOUND, "{r:x?}");
        assert!(!r.no_return);
        assert_ne!(r.args[0], 0, "OBJECT_ATTRIBUTES pointer");
        assert_ne!(r.args[1], 0, "FILE_BASIC_INFORMATION pointer");
        assert!(r.return_tsc >= r.entry_tsc);
    }
    // Each call also has its entry record, written at call time with the
    // memory of its in-parameters, and matched to the call by its entry TSC.
    let entries: Vec<(CallRecord, Vec<u8>)> = t
        .entries
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r.thread_id == me && r.function == t.query_attributes_file)
        .filter(|(r, _)| mine.iter().any(|m| m.entry_tsc == r.entry_tsc))
        .cloned()
        .collect();
    assert_eq!(entries.len(), 100);
    for (entry, payload) in &entries {
        assert_eq!((entry.status, entry.return_tsc, entry.no_return), (0, 0, false));
        assert!(decoded_args_with("NtQueryAttributesFile", entry, payload, None)
            .contains(r#"Name="\\??\\C:\\winstrace-agent-test-missing-single.txt""#));
    }
    assert_eq!(t.bad_records.load(Ordering::Relaxed), 0);
    assert_eq!(t.ring.lost_records(), 0);
}

type QueryAttributesFn = unsafe extern "system" fn(*const ObjectAttributes, *mut u8) -> i32;

#[repr(C)]
struct UnicodeString {
    length: u16,
    maximum_length: u16,
    buffer: *const u16,
}

#[repr(C)]
struct ObjectAttributes {
    length: u32,
    root_directory: usize,
    object_name: *const UnicodeString,
    attributes: u32,
    security_descriptor: usize,
    security_quality_of_service: usize,
}

/// Bad pointers in a traced call: the agent's copy faults, the fault is
/// caught, the record says "unreadable" where the memory was, and the
/// program goes on as if untraced.
#[test]
fn unreadable_pointers_are_captured_as_unreadable_and_harm_nothing() {
    let t = tracer();
    let _one_at_a_time = serial(t);
    let ntdll = wide("ntdll.dll");
    // SAFETY: NUL-terminated names; ntdll is loaded; the export has this signature.
    let query: QueryAttributesFn = unsafe {
        let proc =
            GetProcAddress(GetModuleHandleW(ntdll.as_ptr()), c"NtQueryAttributesFile".as_ptr() as *const u8);
        std::mem::transmute::<RawProc, QueryAttributesFn>(proc.expect("NtQueryAttributesFile"))
    };
    // A page that exists but cannot be read.
    // SAFETY: a fresh allocation, left allocated (one page).
    let no_access =
        unsafe { VirtualAlloc(std::ptr::null(), 4096, MEM_COMMIT | MEM_RESERVE, PAGE_NOACCESS) } as u64;
    assert_ne!(no_access, 0);
    let name = UnicodeString { length: 20, maximum_length: 20, buffer: no_access as *const u16 };
    let attributes = ObjectAttributes {
        length: 48,
        root_directory: 0,
        object_name: &name,
        attributes: 0x40,
        security_descriptor: 0,
        security_quality_of_service: 0,
    };
    let mut info = [0u8; 40];
    // SAFETY: me = the calling thread.
    let me = unsafe { GetCurrentThreadId() };
    let mark = t.barrier();
    // SAFETY: the system checks the pointers it is given and fails the call.
    let statuses = unsafe {
        [
            query(0x10 as *const ObjectAttributes, info.as_mut_ptr()),
            query(no_access as *const ObjectAttributes, info.as_mut_ptr()),
            query(&attributes, info.as_mut_ptr()),
        ]
    };
    assert!(statuses.iter().all(|&s| s < 0), "{statuses:x?}");
    t.barrier();
    let mine: Vec<String> = t
        .payloads_since(mark)
        .into_iter()
        .filter(|(r, _)| r.thread_id == me && r.function == t.query_attributes_file)
        .map(|(r, payload)| decoded_args(t, "NtQueryAttributesFile", &r, &payload))
        .collect();
    let info_ptr = info.as_ptr() as u64;
    assert_eq!(
        mine,
        vec![
            format!("ObjectAttributes=0x10 (unreadable), FileInformation={info_ptr:#x}"),
            format!("ObjectAttributes={no_access:#x} (unreadable), FileInformation={info_ptr:#x}"),
            format!(
                "ObjectAttributes={{Name={no_access:#x} (unreadable), Attributes=OBJ_CASE_INSENSITIVE}}, FileInformation={info_ptr:#x}"
            ),
        ]
    );
}

#[test]
fn eight_threads_times_ten_thousand_calls_lose_nothing() {
    const THREADS: usize = 8;
    const CALLS: usize = 10_000;
    let t = tracer();
    let _one_at_a_time = serial(t);
    let mark = t.barrier();
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            std::thread::spawn(move || {
                let path = missing_path(&format!("stress-{i}"));
                // SAFETY: plain call.
                let me = unsafe { GetCurrentThreadId() };
                for _ in 0..CALLS {
                    missing_file_attributes(&path);
                }
                me
            })
        })
        .collect();
    // The workers are alive until joined, so their ids are distinct.
    let ids: Vec<u32> = workers.into_iter().map(|w| w.join().expect("worker")).collect();
    t.barrier();
    let elapsed = started.elapsed();
    let records = t.since(mark);
    let mut per_thread = [0usize; THREADS];
    for r in records.iter().filter(|r| r.function == t.query_attributes_file) {
        if let Some(i) = ids.iter().position(|&id| id == r.thread_id) {
            assert_eq!(r.status & 0xffff_ffff, STATUS_OBJECT_NAME_NOT_FOUND);
            per_thread[i] += 1;
        }
    }
    eprintln!(
        "{} records in all in {elapsed:?}; NtQueryAttributesFile per thread: {per_thread:?}",
        records.len()
    );
    assert_eq!(per_thread, [CALLS; THREADS]);
    assert_eq!(t.ring.lost_records(), 0);
    assert_eq!(t.bad_records.load(Ordering::Relaxed), 0);
}

#[test]
fn the_readers_own_calls_are_not_traced() {
    let t = tracer();
    let _one_at_a_time = serial(t);
    let start = Instant::now();
    while t.reader_thread.load(Ordering::Acquire) == 0 {
        assert!(start.elapsed() < TIMEOUT);
        std::thread::sleep(Duration::from_millis(1));
    }
    let reader = t.reader_thread.load(Ordering::Acquire);
    // The reader excluded itself first thing, but calls the new thread
    // made before that (thread start-up in std and ntdll) are traced: look
    // only at what it did after.
    let all_before = t.barrier();
    let early: Vec<u32> =
        t.since(0)[..all_before].iter().filter(|r| r.thread_id == reader).map(|r| r.function).collect();
    eprintln!("reader records before it excluded itself (function indexes): {early:?}");
    t.reader_probe.store(25, Ordering::Release);
    while t.reader_probe.load(Ordering::Acquire) != 0 {
        assert!(start.elapsed() < TIMEOUT, "reader did not run its probe");
        std::thread::sleep(Duration::from_millis(1));
    }
    t.barrier();
    // Not one record from the reader since it excluded itself: neither the probe's
    // GetFileAttributesW nor its yields and allocations.
    let from_reader = t.since(all_before).iter().filter(|r| r.thread_id == reader).count();
    assert_eq!(from_reader, 0);
    // Calls made by the test thread meanwhile are traced (control).
    // SAFETY: plain call.
    let me = unsafe { GetCurrentThreadId() };
    let mark = t.barrier();
    missing_file_attributes(&missing_path("control"));
    t.barrier();
    assert_eq!(
        t.since(mark).iter().filter(|r| r.thread_id == me && r.function == t.query_attributes_file).count(),
        1
    );
}
