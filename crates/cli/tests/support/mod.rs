//! Shared helpers for the integration tests: run winstrace and the test
//! program under Wine (or on Windows) and pick apart the trace.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WINSTRACE: &str = env!("CARGO_BIN_EXE_winstrace");
pub const TESTPROG: &str = env!("CARGO_BIN_EXE_wst-testprog");

/// No test run may hang CI: anything slower than this is killed and fails.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// A unique path in the temporary directory for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("wst-{}-{n}-{name}", std::process::id()))
}

/// Waits for `child` with [`TIMEOUT`], killing it if it overruns.
pub fn wait_output(child: Child, what: &str) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("waiting for a child"),
        Err(_) => {
            let _ = Command::new("taskkill").args(["/F", "/PID", &id.to_string()]).status();
            panic!("{what} did not finish within {TIMEOUT:?}");
        }
    }
}

/// What one winstrace run produced.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The trace file's content (`-o`).
    pub trace: String,
}

impl Run {
    /// The exit code as Windows reports it (32 bits).
    pub fn code(&self) -> u32 {
        self.status.code().expect("an exit code") as u32
    }

    /// Trace lines without their `[pid N tid M] ` prefixes.
    pub fn lines(&self) -> Vec<&str> {
        self.trace.lines().map(|l| strip_ids(l).1).collect()
    }

    /// The lines of calls to `function`.
    pub fn calls(&self, function: &str) -> Vec<&str> {
        let prefix = format!("{function}(");
        self.lines().into_iter().filter(|l| l.starts_with(&prefix)).collect()
    }

    /// Index of the first line at or after `from` that starts with `prefix`.
    pub fn find_from(&self, from: usize, prefix: &str) -> Option<usize> {
        self.lines().iter().skip(from).position(|l| l.starts_with(prefix)).map(|i| i + from)
    }
}

/// Splits `[pid 1 tid 2] rest` into ((1, 2), rest), `[pid 1] rest` into
/// ((1, 0), rest).
pub fn strip_ids(line: &str) -> (Option<(u32, u32)>, &str) {
    if let Some(rest) = line.strip_prefix("[pid ") {
        if let Some((ids, body)) = rest.split_once("] ") {
            if let Some((pid, tid)) = ids.split_once(" tid ") {
                if let (Ok(pid), Ok(tid)) = (pid.parse(), tid.parse()) {
                    return (Some((pid, tid)), body);
                }
            } else if let Ok(pid) = ids.parse() {
                // A process-wide event (exit, detach): no thread.
                return (Some((pid, 0)), body);
            }
        }
    }
    (None, line)
}

/// Runs winstrace with `args`, its output captured, and waits for it.
fn run_winstrace(args: &[&std::ffi::OsStr]) -> Output {
    let spawn = || {
        Command::new(WINSTRACE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // Wine 8 now and then fails a CreateProcess with ERROR_INTERNAL_ERROR
    // (1359) when many processes start at once; that is not winstrace's
    // doing, so try again a few times before calling it a failure.
    let mut child = spawn();
    for _ in 0..3 {
        match &child {
            Err(e) if e.raw_os_error() == Some(1359) => {
                std::thread::sleep(Duration::from_millis(500));
                child = spawn();
            }
            _ => break,
        }
    }
    wait_output(child.expect("starting winstrace"), &format!("winstrace {args:?}"))
}

/// Runs `winstrace -o TRACE <args>` and collects everything.
pub fn winstrace(args: &[&str]) -> Run {
    let trace_path = temp_path("trace.txt");
    let mut all: Vec<&std::ffi::OsStr> = vec!["-o".as_ref(), trace_path.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let out = run_winstrace(&all);
    let trace = std::fs::read_to_string(&trace_path).unwrap_or_default();
    let _ = std::fs::remove_file(&trace_path);
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        trace,
    }
}

/// Both engines, for tests that must hold for each.
pub const ENGINES: [&str; 2] = ["debug", "inject"];

/// [`winstrace`] with `--engine engine` first.
pub fn winstrace_on(engine: &str, args: &[&str]) -> Run {
    let mut all = vec!["--engine", engine];
    all.extend_from_slice(args);
    winstrace(&all)
}

/// Runs winstrace on the test program with `args`.
pub fn trace_testprog(args: &[&str]) -> Run {
    let mut all = vec![TESTPROG];
    all.extend_from_slice(args);
    winstrace(&all)
}

/// [`trace_testprog`] with `--engine engine`.
pub fn trace_testprog_on(engine: &str, args: &[&str]) -> Run {
    let mut all = vec![TESTPROG];
    all.extend_from_slice(args);
    winstrace_on(engine, &all)
}

/// Runs winstrace without `-o`, for error cases: (exit code, stdout, stderr).
pub fn winstrace_plain(args: &[&str]) -> (u32, String, String) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let out = run_winstrace(&args);
    (
        out.status.code().expect("an exit code") as u32,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls until `cond` holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
