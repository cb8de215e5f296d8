//! `wst-testprog`: a Windows program with known behaviour, traced by the
//! winstrace integration tests.
//!
//! The tests assert on the exact ntdll calls a traced program makes, so every
//! subcommand calls the Win32 API directly (rather than through `std`, which
//! adds its own calls) to do one small, predictable thing, then prints a fixed
//! line on stdout and exits with a known code. Run without arguments for the
//! list of subcommands. Failures of the operation under test print a message on
//! stderr and exit 1; bad usage exits 2.
//!
//! It is a `[[bin]]` of the `winstrace` package only so that the tests can find
//! it through `CARGO_BIN_EXE_wst-testprog`; on other systems it just says so.

#[cfg(not(windows))]
fn main() {
    println!("wst-testprog only runs on Windows");
    std::process::exit(2);
}

#[cfg(windows)]
fn main() {
    win::main()
}

#[cfg(windows)]
mod win {
    use std::ffi::c_void;
    use std::io::Write;
    use std::ptr::{null, null_mut};
    use std::sync::atomic::{AtomicU32, Ordering};

    use windows_sys::Win32::Foundation::{
        CloseHandle, GetLastError, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, GetFileAttributesW, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, OPEN_EXISTING,
    };
    use windows_sys::Win32::System::Diagnostics::Debug::{
        AddVectoredExceptionHandler, OutputDebugStringW, RaiseException, RemoveVectoredExceptionHandler,
        EXCEPTION_CONTINUE_EXECUTION, EXCEPTION_CONTINUE_SEARCH, EXCEPTION_POINTERS,
    };
    use windows_sys::Win32::System::LibraryLoader::GetModuleFileNameW;
    use windows_sys::Win32::System::Performance::{QueryPerformanceCounter, QueryPerformanceFrequency};
    use windows_sys::Win32::System::Registry::{
        RegCloseKey, RegCreateKeyExW, RegDeleteKeyW, RegSetValueExW, HKEY, HKEY_CURRENT_USER, KEY_SET_VALUE,
        REG_OPTION_NON_VOLATILE, REG_SZ,
    };
    use windows_sys::Win32::System::Threading::{
        CreateEventW, CreateProcessW, CreateThread, ExitProcess, GetExitCodeProcess, SetEvent, Sleep,
        WaitForSingleObject, INFINITE, PROCESS_INFORMATION, STARTUPINFOW,
    };

    // windows-sys only declares WriteFile with its Win32_System_IO feature (for
    // OVERLAPPED), which this package does not enable; we never pass an
    // OVERLAPPED, so an untyped pointer is enough.
    #[link(name = "kernel32")]
    extern "system" {
        fn WriteFile(
            file: HANDLE,
            buffer: *const u8,
            len: u32,
            written: *mut u32,
            overlapped: *mut c_void,
        ) -> i32;
    }

    const USAGE: &str = "\
usage: wst-testprog SUBCOMMAND [ARGS]
  file PATH TEXT            create PATH, write TEXT, close; prints 'wrote N bytes to PATH'
  missing PATH              open a missing file; prints 'open failed: error 2'
  reg SUBKEY NAME VALUE [--cleanup]
                            set HKCU\\SUBKEY\\NAME (REG_SZ); prints 'set HKCU\\SUBKEY\\NAME'
  thread                    probe a missing file from a second thread; prints 'thread done'
  exception                 raise 0xE0000001 and continue from a vectored handler
  loop N                    N x GetFileAttributesW on a missing file; prints 'loop done N'
  bench N                   like loop, timed; prints 'bench N calls ns_per_call X'
  child CODE                run 'wst-testprog exit CODE'; prints 'child exited with CODE'
  orphan CODE MS            start 'wst-testprog sleep MS', exit CODE without waiting for it
  event NAME                create the named event NAME, set it, close it; prints 'set event NAME'
  exit CODE                 exit with CODE
  echo TEXT                 print TEXT
  env NAME                  print 'NAME=VALUE' from the environment, or 'NAME unset'
  debugstr TEXT             OutputDebugStringW(TEXT); prints 'sent debug string'
  sleep MS                  sleep MS ms; prints 'slept MS'
  wait-then-loop MS N       Sleep(10) for about MS ms, then loop N; prints 'finished after loop N'
  crash                     read a null pointer with no handler installed";

    /// Probed by `thread`; must not exist, so each probe is one failing
    /// NtQueryAttributesFile.
    const THREAD_PROBE: &str = r"C:\wst-thread-probe.txt";
    /// Probed by `loop`, `bench` and `wait-then-loop`; must not exist.
    const LOOP_PROBE: &str = r"C:\wst-loop-probe.txt";
    /// The custom, continuable exception `exception` raises (bit 29 set: an
    /// application code, not a system one).
    const CUSTOM_EXCEPTION: u32 = 0xE000_0001;

    /// Exception code the vectored handler saw; 0 until it ran.
    static HANDLER_SAW: AtomicU32 = AtomicU32::new(0);

    pub fn main() -> ! {
        // Arguments come from GetCommandLineW, which makes no ntdll call. Lossy
        // conversion is fine: the tests pass ASCII.
        let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let code = run(args.get(1..).unwrap_or_default()).unwrap_or_else(|| {
            eprintln!("{USAGE}");
            2
        });
        exit(code)
    }

    /// Runs the subcommand in `args[0]`; `None` means bad usage.
    fn run(args: &[&str]) -> Option<u32> {
        let code = match *args {
            ["file", path, text] => file(path, text),
            ["missing", path] => missing(path),
            ["reg", subkey, name, value] => reg(subkey, name, value, false),
            ["reg", subkey, name, value, "--cleanup"] => reg(subkey, name, value, true),
            ["thread"] => thread(),
            ["exception"] => exception(),
            ["loop", n] => {
                let n = n.parse().ok()?;
                probe_loop(n);
                println!("loop done {n}");
                0
            }
            ["bench", n] => bench(n.parse().ok()?),
            ["child", code] => child(code.parse().ok()?),
            ["orphan", code, ms] => orphan(code.parse().ok()?, ms.parse().ok()?),
            ["event", name] => named_event(name),
            ["exit", code] => code.parse().ok()?,
            ["echo", text] => {
                println!("{text}");
                0
            }
            ["env", name] => {
                match std::env::var(name) {
                    Ok(value) => println!("{name}={value}"),
                    Err(_) => println!("{name} unset"),
                }
                0
            }
            ["debugstr", text] => {
                let text = wide(text);
                // SAFETY: `text` is a NUL-terminated UTF-16 string.
                unsafe { OutputDebugStringW(text.as_ptr()) };
                println!("sent debug string");
                0
            }
            ["sleep", ms] => {
                let ms = ms.parse().ok()?;
                // SAFETY: Sleep has no pointer arguments.
                unsafe { Sleep(ms) };
                println!("slept {ms}");
                0
            }
            ["wait-then-loop", ms, n] => wait_then_loop(ms.parse().ok()?, n.parse().ok()?),
            ["crash"] => crash(),
            _ => return None,
        };
        Some(code)
    }

    /// Flushes stdout, then ExitProcess. ExitProcess skips Rust's own flush,
    /// and using it everywhere gives every subcommand the same exit path.
    fn exit(code: u32) -> ! {
        let _ = std::io::stdout().flush();
        // SAFETY: ExitProcess has no pointer arguments; nothing runs after it.
        unsafe { ExitProcess(code) }
    }

    /// `s` as a NUL-terminated UTF-16 string, as the W functions take.
    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(Some(0)).collect()
    }

    fn last_error() -> u32 {
        // SAFETY: GetLastError only reads the thread's last-error value.
        unsafe { GetLastError() }
    }

    /// `file PATH TEXT`: NtCreateFile, one NtWriteFile, NtClose.
    fn file(path: &str, text: &str) -> u32 {
        let wpath = wide(path);
        // SAFETY: `wpath` is NUL-terminated; null security attributes and
        // template handle are allowed.
        let handle = unsafe {
            CreateFileW(
                wpath.as_ptr(),
                GENERIC_WRITE,
                0,
                null(),
                CREATE_ALWAYS,
                FILE_ATTRIBUTE_NORMAL,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            eprintln!("create {path} failed: error {}", last_error());
            return 1;
        }
        // The tests pass short texts; a longer one fails cleanly instead of
        // being truncated by the cast.
        let Ok(len) = u32::try_from(text.len()) else {
            close(handle);
            eprintln!("text too long");
            return 1;
        };
        let mut written = 0u32;
        // SAFETY: `handle` is an open file; the buffer is `len` valid bytes;
        // `written` outlives the synchronous call; no OVERLAPPED.
        let ok = unsafe { WriteFile(handle, text.as_ptr(), len, &mut written, null_mut()) };
        let error = last_error();
        close(handle);
        if ok == 0 {
            eprintln!("write to {path} failed: error {error}");
            return 1;
        }
        println!("wrote {written} bytes to {path}");
        0
    }

    fn close(handle: HANDLE) {
        // SAFETY: callers pass a handle they own and do not use it afterwards.
        unsafe { CloseHandle(handle) };
    }

    /// `missing PATH`: one NtCreateFile that fails (STATUS_OBJECT_NAME_NOT_FOUND
    /// maps to ERROR_FILE_NOT_FOUND, 2).
    fn missing(path: &str) -> u32 {
        let wpath = wide(path);
        // SAFETY: as in `file`.
        let handle = unsafe {
            CreateFileW(
                wpath.as_ptr(),
                GENERIC_READ,
                0,
                null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                null_mut(),
            )
        };
        if handle != INVALID_HANDLE_VALUE {
            close(handle);
            eprintln!("open {path} unexpectedly succeeded");
            return 1;
        }
        println!("open failed: error {}", last_error());
        0
    }

    /// `reg SUBKEY NAME VALUE [--cleanup]`: NtCreateKey, NtSetValueKey, NtClose
    /// (plus, on first use of HKCU in the process, the NtOpenKey of the user's
    /// hive). `--cleanup` then deletes the key SUBKEY itself (not any parent
    /// keys RegCreateKeyExW created) and prints `deleted HKCU\SUBKEY`.
    fn reg(subkey: &str, name: &str, value: &str, cleanup: bool) -> u32 {
        let wsubkey = wide(subkey);
        let mut key: HKEY = null_mut();
        // SAFETY: `wsubkey` is NUL-terminated; class, security attributes and
        // disposition may be null; `key` receives the opened key.
        let status = unsafe {
            RegCreateKeyExW(
                HKEY_CURRENT_USER,
                wsubkey.as_ptr(),
                0,
                null(),
                REG_OPTION_NON_VOLATILE,
                KEY_SET_VALUE,
                null(),
                &mut key,
                null_mut(),
            )
        };
        if status != 0 {
            eprintln!("RegCreateKeyExW HKCU\\{subkey} failed: error {status}");
            return 1;
        }
        let wname = wide(name);
        // REG_SZ data is the UTF-16 string including its terminating NUL.
        let data = wide(value);
        let data_len = (data.len() * 2) as u32;
        // SAFETY: `key` is open with KEY_SET_VALUE; `data` is `data_len` bytes.
        let status =
            unsafe { RegSetValueExW(key, wname.as_ptr(), 0, REG_SZ, data.as_ptr().cast(), data_len) };
        // SAFETY: `key` is ours and not used afterwards.
        unsafe { RegCloseKey(key) };
        if status != 0 {
            eprintln!("RegSetValueExW {name} failed: error {status}");
            return 1;
        }
        println!("set HKCU\\{subkey}\\{name}");
        if cleanup {
            // RegDeleteKeyW rather than RegDeleteTreeW: the key has no
            // subkeys, and it makes fewer calls (no enumeration).
            // SAFETY: `wsubkey` is NUL-terminated.
            let status = unsafe { RegDeleteKeyW(HKEY_CURRENT_USER, wsubkey.as_ptr()) };
            if status != 0 {
                eprintln!("RegDeleteKeyW HKCU\\{subkey} failed: error {status}");
                return 1;
            }
            println!("deleted HKCU\\{subkey}");
        }
        0
    }

    /// One GetFileAttributesW (one NtQueryAttributesFile) of a missing path.
    fn probe(path: &[u16]) {
        // SAFETY: callers pass a NUL-terminated UTF-16 path.
        let attributes = unsafe { GetFileAttributesW(path.as_ptr()) };
        // The result is expected to be INVALID_FILE_ATTRIBUTES; keep the call
        // from being treated as dead.
        std::hint::black_box(attributes);
    }

    /// `thread`: CreateThread (NtCreateThreadEx), whose thread probes
    /// THREAD_PROBE, then wait for it. CreateThread rather than std::thread
    /// because std also names the thread and sets up its own bookkeeping.
    /// The worker sleeps first, so that the main thread is surely inside its
    /// wait when the worker's calls happen (the calls interleave).
    fn thread() -> u32 {
        unsafe extern "system" fn thread_main(_: *mut c_void) -> u32 {
            // SAFETY: Sleep has no pointer arguments.
            unsafe { Sleep(200) };
            probe(&wide(THREAD_PROBE));
            0
        }
        // SAFETY: `thread_main` has the LPTHREAD_START_ROUTINE signature and
        // ignores its parameter; default stack, flags and attributes.
        let handle = unsafe { CreateThread(null(), 0, Some(thread_main), null(), 0, null_mut()) };
        if handle.is_null() {
            eprintln!("CreateThread failed: error {}", last_error());
            return 1;
        }
        // SAFETY: `handle` is the thread just created.
        unsafe { WaitForSingleObject(handle, INFINITE) };
        close(handle);
        println!("thread done");
        0
    }

    /// Continues from CUSTOM_EXCEPTION only; everything else (for instance
    /// std's stack-overflow check) goes on to the other handlers.
    unsafe extern "system" fn vectored_handler(info: *mut EXCEPTION_POINTERS) -> i32 {
        // SAFETY: the system passes valid exception pointers to a vectored
        // handler for the duration of the call.
        let code = unsafe { (*(*info).ExceptionRecord).ExceptionCode } as u32;
        if code != CUSTOM_EXCEPTION {
            return EXCEPTION_CONTINUE_SEARCH;
        }
        // Printing from inside exception dispatch is best avoided; main
        // reports what the handler saw.
        HANDLER_SAW.store(code, Ordering::SeqCst);
        EXCEPTION_CONTINUE_EXECUTION
    }

    /// `exception`: RaiseException of CUSTOM_EXCEPTION, continued by our
    /// vectored handler (NtContinue). Under a debugger the first-chance
    /// exception goes to the debugger first (NtRaiseException); if it passes
    /// it on unhandled, dispatch reaches the same handler, so the output is
    /// the same. Without a debugger, Wine dispatches in user mode and makes
    /// no NtRaiseException call.
    fn exception() -> u32 {
        // SAFETY: `vectored_handler` has the PVECTORED_EXCEPTION_HANDLER
        // signature and lives for the whole program; first = 1 puts it ahead
        // of std's handler.
        let cookie = unsafe { AddVectoredExceptionHandler(1, Some(vectored_handler)) };
        if cookie.is_null() {
            eprintln!("AddVectoredExceptionHandler failed");
            return 1;
        }
        // Flags 0: continuable, so EXCEPTION_CONTINUE_EXECUTION returns here.
        // SAFETY: no arguments are passed, so the null array is never read.
        unsafe { RaiseException(CUSTOM_EXCEPTION, 0, 0, null()) };
        // SAFETY: `cookie` came from AddVectoredExceptionHandler above.
        unsafe { RemoveVectoredExceptionHandler(cookie) };
        let saw = HANDLER_SAW.load(Ordering::SeqCst);
        if saw == 0 {
            eprintln!("handler did not run");
            return 1;
        }
        println!("handler saw {saw:#010x}");
        println!("exception handled");
        0
    }

    /// N probes of LOOP_PROBE: exactly N NtQueryAttributesFile calls.
    fn probe_loop(n: u64) {
        let path = wide(LOOP_PROBE);
        for _ in 0..n {
            probe(&path);
        }
    }

    fn perf_counter() -> i64 {
        let mut count = 0i64;
        // SAFETY: `count` is a valid out pointer; this never fails on XP+.
        unsafe { QueryPerformanceCounter(&mut count) };
        count
    }

    /// `bench N`: times `loop N` with the performance counter. The two
    /// counter reads are outside the loop; under Wine each is an
    /// NtQueryPerformanceCounter call (the frequency is a constant, no call).
    fn bench(n: u64) -> u32 {
        let mut frequency = 0i64;
        // SAFETY: `frequency` is a valid out pointer.
        unsafe { QueryPerformanceFrequency(&mut frequency) };
        let start = perf_counter();
        probe_loop(n);
        let ticks = perf_counter() - start;
        let ns_per_call =
            if n == 0 || frequency <= 0 { 0.0 } else { ticks as f64 * 1e9 / frequency as f64 / n as f64 };
        println!("bench {n} calls ns_per_call {ns_per_call:.1}");
        0
    }

    /// Starts this program again with `args`; returns its process and
    /// thread handles (the caller closes them), or `None` after saying why.
    fn spawn_self(args: &str) -> Option<PROCESS_INFORMATION> {
        // Big enough for any path, long paths included.
        let mut exe = vec![0u16; 32_768];
        // SAFETY: the buffer holds `exe.len()` u16s; null module = this exe.
        let len = unsafe { GetModuleFileNameW(null_mut(), exe.as_mut_ptr(), exe.len() as u32) };
        if len == 0 || len as usize >= exe.len() {
            eprintln!("GetModuleFileNameW failed: error {}", last_error());
            return None;
        }
        exe.truncate(len as usize);
        let exe = String::from_utf16_lossy(&exe);
        let application = wide(&exe);
        // CreateProcessW may write into the command line, so it is our own
        // mutable buffer. The application name is given too, so no search.
        let mut command_line = wide(&format!("\"{exe}\" {args}"));
        // SAFETY: both are plain C structs for which all-zero is valid.
        let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
        startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
        // SAFETY: as above.
        let mut process: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the strings are NUL-terminated, `command_line` is writable,
        // the structs outlive the call; no handles are inherited and the
        // environment and directory are this process's.
        let ok = unsafe {
            CreateProcessW(
                application.as_ptr(),
                command_line.as_mut_ptr(),
                null(),
                null(),
                0,
                0,
                null(),
                null(),
                &startup,
                &mut process,
            )
        };
        if ok == 0 {
            eprintln!("CreateProcessW failed: error {}", last_error());
            return None;
        }
        Some(process)
    }

    /// `child CODE`: runs `exit CODE` as a child process and waits for it.
    fn child(code: u32) -> u32 {
        let Some(process) = spawn_self(&format!("exit {code}")) else { return 1 };
        let mut exit_code = 0u32;
        // SAFETY: the handles come from CreateProcessW and are ours to close.
        unsafe {
            WaitForSingleObject(process.hProcess, INFINITE);
            GetExitCodeProcess(process.hProcess, &mut exit_code);
        }
        close(process.hThread);
        close(process.hProcess);
        println!("child exited with {exit_code}");
        u32::from(exit_code != code)
    }

    /// `event NAME`: a named kernel object, for `-y` to name.
    fn named_event(name: &str) -> u32 {
        let wide_name = wide(name);
        // SAFETY: `wide_name` is NUL-terminated; no security attributes.
        let event = unsafe { CreateEventW(null(), 1, 0, wide_name.as_ptr()) };
        if event.is_null() {
            eprintln!("CreateEventW failed: error {}", last_error());
            return 1;
        }
        // SAFETY: `event` is the handle just created.
        unsafe { SetEvent(event) };
        close(event);
        println!("set event {name}");
        0
    }

    /// `orphan CODE MS`: starts `sleep MS` as a child, does not wait for it,
    /// and exits with CODE while the child still runs.
    fn orphan(code: u32, ms: u32) -> u32 {
        let Some(process) = spawn_self(&format!("sleep {ms}")) else { return 1 };
        close(process.hThread);
        close(process.hProcess);
        println!("left a child sleeping {ms} ms");
        code
    }

    /// `wait-then-loop MS N`: a window of about MS ms made of Sleep(10)
    /// calls, so that a debugger can attach and detach meanwhile, then `loop N`.
    /// The window is timed rather than counted so it stays about MS ms even
    /// when a debugger slows the process; under Wine each clock read is an
    /// NtQueryPerformanceCounter call between the NtDelayExecution calls.
    fn wait_then_loop(ms: u64, n: u64) -> u32 {
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < u128::from(ms) {
            // SAFETY: Sleep has no pointer arguments.
            unsafe { Sleep(10) };
        }
        probe_loop(n);
        println!("finished after loop {n}");
        0
    }

    /// `crash`: an unhandled access violation (0xC0000005) reading address 0.
    fn crash() -> u32 {
        let _ = std::io::stdout().flush();
        // black_box keeps the compiler from proving the pointer null and
        // replacing the read with a trap of its own.
        let p: *const u32 = std::hint::black_box(null());
        // SAFETY: none: this read faults on purpose. It is volatile so it is
        // really performed, and nothing handles the fault, so the process dies.
        let value = unsafe { p.read_volatile() };
        eprintln!("read {value} from a null pointer without crashing");
        1
    }
}
