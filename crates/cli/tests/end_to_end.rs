//! End to end, on each engine: winstrace traces the project's test program
//! (and Wine's own cmd.exe) and the tests check what the trace shows. The
//! tests that trace run once per engine (`debug::NAME`, `inject::NAME`):
//! the in-process engine is the default because it passes all of them.

#![cfg(windows)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const NOT_FOUND: &str = "= 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND";
const SUCCESS: &str = "= 0x0 STATUS_SUCCESS";

/// The value of the first argument of a call line: `NtClose(Handle=0x24)`
/// gives `0x24`.
fn first_arg(line: &str) -> &str {
    let inner = &line[line.find('(').unwrap() + 1..];
    let arg = inner.split([',', ')']).next().unwrap();
    arg.split_once('=').map_or(arg, |(_, value)| value)
}

fn file_is_created_written_and_closed_in_order(engine: &str) {
    let path = temp_path("created.txt");
    let path = path.to_str().unwrap();
    let run = trace_testprog_on(engine, &["file", path, "hello"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, format!("wrote 5 bytes to {path}\n"));
    assert_eq!(std::fs::read_to_string(path).unwrap(), "hello");
    let _ = std::fs::remove_file(path);

    // The program creates, writes and closes, in that order: a successful
    // NtCreateFile, then NtWriteFile on some handle, then NtClose of it.
    let lines = run.lines();
    let write_at = lines.iter().rposition(|l| l.starts_with("NtWriteFile(")).expect("an NtWriteFile");
    // The last NtWriteFile is the program's stdout line; the file write is
    // the one before it whose handle is then closed.
    let file_write = (0..write_at + 1)
        .rev()
        .filter(|&i| lines[i].starts_with("NtWriteFile("))
        .find(|&i| {
            let h = first_arg(lines[i]);
            lines[i + 1..].iter().any(|l| l.starts_with(&format!("NtClose(Handle={h})")))
        })
        .expect("an NtWriteFile on a handle that is then closed");
    assert!(lines[file_write].ends_with(SUCCESS), "{}", lines[file_write]);
    let handle = first_arg(lines[file_write]);
    let create =
        lines[..file_write].iter().rposition(|l| l.starts_with("NtCreateFile(")).expect("NtCreateFile first");
    assert!(lines[create].ends_with(SUCCESS), "{}", lines[create]);
    let close = run.find_from(file_write, &format!("NtClose(Handle={handle})")).unwrap();
    assert!(lines[close].ends_with(SUCCESS), "{}", lines[close]);
}

fn missing_file_open_fails_with_object_name_not_found(engine: &str) {
    let run = trace_testprog_on(engine, &["missing", "C:\\wst-no-such-dir\\missing.txt"]);
    assert_eq!(run.code(), 0, "{run:?}");
    // The directory is missing too, which NT reports as a path error
    // (ERROR_PATH_NOT_FOUND for Win32).
    assert_eq!(run.stdout, "open failed: error 3\n");
    let failed: Vec<_> = run.calls("NtCreateFile").into_iter().filter(|l| !l.ends_with(SUCCESS)).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].ends_with("= 0xc000003a STATUS_OBJECT_PATH_NOT_FOUND"), "{}", failed[0]);

    // CreateFileW on a missing file in an existing directory: one
    // NtCreateFile that fails with STATUS_OBJECT_NAME_NOT_FOUND.
    let path = temp_path("missing.txt");
    let run = trace_testprog_on(engine, &["missing", path.to_str().unwrap()]);
    assert_eq!(run.stdout, "open failed: error 2\n");
    let failed: Vec<_> = run.calls("NtCreateFile").into_iter().filter(|l| !l.ends_with(SUCCESS)).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].ends_with(NOT_FOUND), "{}", failed[0]);
}

fn registry_key_created_and_value_set(engine: &str) {
    let key = format!("Software\\winstrace-test-{}", std::process::id());
    let run = trace_testprog_on(engine, &["reg", &key, "Greeting", "hello", "--cleanup"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, format!("set HKCU\\{key}\\Greeting\ndeleted HKCU\\{key}\n"));
    let lines = run.lines();
    let create = lines.iter().position(|l| l.starts_with("NtCreateKey(")).expect("NtCreateKey");
    assert!(lines[create].ends_with(SUCCESS), "{}", lines[create]);
    let set = run.find_from(create, "NtSetValueKey(").expect("NtSetValueKey after NtCreateKey");
    assert!(lines[set].ends_with(SUCCESS), "{}", lines[set]);
    let handle = first_arg(lines[set]);
    let close = run.find_from(set, &format!("NtClose(Handle={handle})")).expect("the key handle closed");
    assert!(lines[close].ends_with(SUCCESS));
    let delete = run.find_from(close, "NtDeleteKey(").expect("NtDeleteKey");
    assert!(lines[delete].ends_with(SUCCESS));
}

fn second_thread_is_traced_with_its_own_id(engine: &str) {
    let run = trace_testprog_on(engine, &["thread"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, "thread done\n");
    // Find the worker: the thread whose NtQueryAttributesFile fails.
    let probes: Vec<_> = run
        .trace
        .lines()
        .map(strip_ids)
        .filter(|(_, body)| body.starts_with("NtQueryAttributesFile(") && body.ends_with(NOT_FOUND))
        .collect();
    assert_eq!(probes.len(), 1, "{probes:?}");
    let (ids, _) = probes[0];
    let (pid, tid) = ids.expect("ids are shown once a second thread exists");
    let started = format!("[pid {pid} tid {tid}] --- thread {tid} started at 0x");
    let exited = format!("[pid {pid} tid {tid}] --- thread {tid} exited with 0 ---");
    let all: Vec<&str> = run.trace.lines().collect();
    let start_at = all.iter().position(|l| l.starts_with(&started)).expect("thread start line");
    let probe_at = all.iter().position(|l| strip_ids(l) == probes[0]).unwrap();
    let exit_at = all.iter().position(|l| *l == exited).expect("thread exit line");
    assert!(start_at < probe_at && probe_at < exit_at);
    // The main thread's calls carry a different tid.
    assert!(run.trace.lines().any(|l| matches!(strip_ids(l).0, Some((p, t)) if p == pid && t != tid)));
}

fn handled_exception_is_reported_and_reaches_the_programs_handler(engine: &str) {
    let run = trace_testprog_on(engine, &["exception"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, "handler saw 0xe0000001\nexception handled\n");
    let reports: Vec<_> =
        run.lines().into_iter().filter(|l| l.starts_with("--- exception 0xe0000001 ")).collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].ends_with(", first chance ---"), "{}", reports[0]);
}

fn n_identical_calls_give_exactly_n_lines(engine: &str) {
    let count = |n: u32| {
        let run = trace_testprog_on(engine, &["loop", &n.to_string()]);
        assert_eq!(run.code(), 0);
        assert_eq!(run.stdout, format!("loop done {n}\n"));
        let probes = run.calls("NtQueryAttributesFile");
        assert!(probes.iter().all(|l| l.ends_with(NOT_FOUND) || l.ends_with(SUCCESS)));
        probes.iter().filter(|l| l.ends_with(NOT_FOUND)).count()
    };
    let baseline = count(0);
    assert_eq!(count(137) - baseline, 137);
}

fn child_process_creation_is_seen_and_its_code_reported(engine: &str) {
    let run = trace_testprog_on(engine, &["child", "7"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, "child exited with 7\n");
    let create = run.calls("NtCreateUserProcess");
    assert_eq!(create.len(), 1, "{create:?}");
    assert!(create[0].ends_with(SUCCESS));
}

fn exit_code_is_propagated(engine: &str) {
    let run = trace_testprog_on(engine, &["exit", "42"]);
    assert_eq!(run.code(), 42);
    assert!(run.trace.ends_with("+++ exited with 42 +++\n"), "{}", run.trace);
    // A full 32-bit code survives too.
    let run = trace_testprog_on(engine, &["exit", "3221225477"]);
    assert_eq!(run.code(), 0xc000_0005);
}

fn target_stdout_passes_through_while_the_trace_goes_to_the_file(engine: &str) {
    let run = trace_testprog_on(engine, &["echo", "hello from the target"]);
    assert_eq!(run.stdout, "hello from the target\n");
    assert_eq!(run.stderr, "");
    assert!(run.trace.starts_with("--- process started "), "{}", &run.trace[..200.min(run.trace.len())]);
    assert!(run.trace.contains("command line "));
    assert!(run.trace.ends_with("+++ exited with 0 +++\n"));
}

fn trace_goes_to_stderr_without_dash_o(engine: &str) {
    let (code, stdout, stderr) = winstrace_plain(&["--engine", engine, TESTPROG, "echo", "plain"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "plain\n");
    assert!(stderr.contains("\nNtQueryAttributesFile(") || stderr.contains("\nNtClose("), "{stderr}");
    assert!(stderr.ends_with("+++ exited with 0 +++\n"));
}

fn lifecycle_lines_for_start_dlls_debug_output_and_exit(engine: &str) {
    let run = trace_testprog_on(engine, &["debugstr", "hello debugger"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let lines = run.lines();
    assert!(lines[0].starts_with("--- process started "), "{}", lines[0]);
    assert!(lines[0].contains("wst-testprog.exe"), "{}", lines[0]);
    assert!(
        lines[0].ends_with("debugstr \\\"hello debugger\\\"\" ---") || lines[0].contains("hello debugger"),
        "{}",
        lines[0]
    );
    let ntdll =
        lines.iter().position(|l| l.starts_with("--- dll loaded ") && l.contains("ntdll.dll")).unwrap();
    let kernel32 =
        lines.iter().position(|l| l.starts_with("--- dll loaded ") && l.contains("kernel32.dll")).unwrap();
    assert!(ntdll < kernel32);
    // Calls made by the loader between ntdll and kernel32 are traced too.
    assert!(lines[ntdll..kernel32].iter().any(|l| l.starts_with("Nt")));
    assert_eq!(lines.iter().filter(|l| **l == "--- debug output \"hello debugger\" ---").count(), 1);
    assert_eq!(*lines.last().unwrap(), "+++ exited with 0 +++");
}

fn crash_is_reported_first_and_second_chance(engine: &str) {
    let run = trace_testprog_on(engine, &["crash"]);
    assert_eq!(run.code(), 0xc000_0005);
    let av: Vec<_> = run
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("--- exception 0xc0000005 STATUS_ACCESS_VIOLATION at "))
        .collect();
    assert!(av.len() >= 2, "{av:?}");
    assert!(av[0].ends_with(", first chance ---"));
    assert!(av.iter().any(|l| l.ends_with(", second chance ---")));
    assert!(run.trace.ends_with("+++ exited with 3221225477 +++\n"));
}

fn wine_cmd_echo_is_traced(engine: &str) {
    let run = winstrace_on(engine, &["cmd.exe", "/c", "echo", "hi"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout, "hi\r\n");
    let lines = run.lines();
    assert!(lines[0].starts_with("--- process started ") && lines[0].contains("cmd.exe"), "{}", lines[0]);
    // cmd writes "hi" with one successful NtWriteFile to its stdout.
    assert!(run.calls("NtWriteFile").iter().any(|l| l.ends_with(SUCCESS)));
    assert!(run.calls("NtTerminateProcess").iter().all(|l| l.ends_with("= ?")));
    assert_eq!(*lines.last().unwrap(), "+++ exited with 0 +++");
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = winstrace_plain(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: winstrace"), "{stdout}");
    assert!(stdout.contains("-p, --attach <PID|NAME>"));
    // The classes of -e trace=%CLASS are listed from the filter's data.
    for class in
        ["%file", "%registry", "%process", "%thread", "%memory", "%sync", "%section", "%token", "%system"]
    {
        assert!(stdout.contains(&format!("  {class} ")), "{class} missing from --help");
    }
    let (code, stdout, _) = winstrace_plain(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("winstrace {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_launched_program_gets_the_normal_heap_unless_the_user_chose() {
    // Started under a debugger, a Windows program gets the debug heap
    // unless _NO_DEBUG_HEAP is set in its environment: winstrace sets it.
    let run = trace_testprog(&["env", "_NO_DEBUG_HEAP"]);
    assert_eq!(run.stdout, "_NO_DEBUG_HEAP=1\n", "{run:?}");
    // A value the user set is passed on as it is.
    let trace = temp_path("heap-trace.txt");
    let out = Command::new(WINSTRACE)
        .env("_NO_DEBUG_HEAP", "0")
        .arg("-o")
        .arg(&trace)
        .args([TESTPROG, "env", "_NO_DEBUG_HEAP"])
        .stdin(Stdio::null())
        .output()
        .expect("running winstrace");
    let _ = std::fs::remove_file(&trace);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "_NO_DEBUG_HEAP=0\n", "{out:?}");
}

#[test]
fn program_not_found_is_a_one_line_error() {
    let (code, stdout, stderr) = winstrace_plain(&["wst-no-such-program.exe", "x"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(stderr, "winstrace: cannot run 'wst-no-such-program.exe': program not found\n");
}

#[test]
fn unknown_pid_is_a_one_line_error() {
    // Windows process ids are multiples of 4; this one is too large to exist.
    let (code, _, stderr) = winstrace_plain(&["-p", "4294967292"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "winstrace: no process with id 4294967292\n");
}

#[test]
fn unknown_name_is_a_one_line_error() {
    let (code, _, stderr) = winstrace_plain(&["-p", "wst-no-such-process"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "winstrace: no process named 'wst-no-such-process'\n");
}

/// Starts the test program untraced, sleeping, with stdout captured.
fn start_sleeper(args: &[&str]) -> std::process::Child {
    Command::new(TESTPROG).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap()
}

#[test]
fn ambiguous_name_lists_the_candidates() {
    let mut a = start_sleeper(&["sleep", "20000"]);
    let mut b = start_sleeper(&["sleep", "20000"]);
    let (code, _, stderr) = winstrace_plain(&["-p", "WST-TESTPROG"]);
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    assert_eq!(code, 1);
    assert!(stderr.starts_with("winstrace: several processes named 'WST-TESTPROG': "), "{stderr}");
    assert!(stderr.contains(&format!("{} (wst-testprog.exe)", a.id())), "{stderr}");
    assert!(stderr.contains(&format!("{} (wst-testprog.exe)", b.id())), "{stderr}");
    assert!(stderr.ends_with("; give a PID with -p\n"));
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn attaching_to_a_process_already_being_traced_is_access_denied() {
    let mut target = start_sleeper(&["sleep", "20000"]);
    let pid = target.id().to_string();
    let trace_path = temp_path("first.txt");
    let mut first = Command::new(WINSTRACE)
        .args(["-o", trace_path.to_str().unwrap(), "-p", &pid])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first tracer has attached (its trace file says so).
    let attached = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&trace_path).is_ok_and(|t| t.contains("--- attached to process"))
    });
    let (code, _, stderr) = winstrace_plain(&["-p", &pid]);
    let _ = (first.kill(), first.wait(), target.kill(), target.wait());
    let _ = std::fs::remove_file(&trace_path);
    assert!(attached);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "winstrace: attaching to process {pid}: access denied (is it already being debugged, or owned by another user?)\n"
        )
    );
}

/// The tests above that take an engine, once per engine.
macro_rules! on_each_engine {
    ($($test:ident),* $(,)?) => {
        mod debug {
            $( #[test] fn $test() { super::$test("debug") } )*
        }
        mod inject {
            $( #[test] fn $test() { super::$test("inject") } )*
        }
    };
}

on_each_engine!(
    file_is_created_written_and_closed_in_order,
    missing_file_open_fails_with_object_name_not_found,
    registry_key_created_and_value_set,
    second_thread_is_traced_with_its_own_id,
    handled_exception_is_reported_and_reaches_the_programs_handler,
    n_identical_calls_give_exactly_n_lines,
    child_process_creation_is_seen_and_its_code_reported,
    exit_code_is_propagated,
    target_stdout_passes_through_while_the_trace_goes_to_the_file,
    trace_goes_to_stderr_without_dash_o,
    lifecycle_lines_for_start_dlls_debug_output_and_exit,
    crash_is_reported_first_and_second_chance,
    wine_cmd_echo_is_traced,
);
