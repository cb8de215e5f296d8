//! The in-process engine (`--engine inject`), end to end: winstrace injects
//! the agent into the test program and the tests check the trace.
//!
//! The agent DLL is the one winstrace.exe embeds and writes out (to
//! `%TEMP%\winstrace-<version>-<digest>\`): nothing else is needed beside it.

#![cfg(windows)]

mod support;

use support::*;

const NOT_FOUND: &str = " = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND";

fn trace_injected(args: &[&str]) -> Run {
    let mut all = vec!["--engine", "inject", TESTPROG];
    all.extend_from_slice(args);
    winstrace(&all)
}

fn is_call(line: &str) -> bool {
    line.starts_with("Nt") && line.contains('(')
}

#[test]
fn n_probes_give_exactly_n_more_lines() {
    let probes = |n: u32| {
        let run = trace_injected(&["loop", &n.to_string()]);
        assert_eq!(run.code(), 0, "{run:?}");
        assert_eq!(run.stdout, format!("loop done {n}\n"));
        let lines = run.lines();
        let found = lines
            .iter()
            .filter(|l| l.starts_with("NtQueryAttributesFile(") && l.ends_with(NOT_FOUND))
            .count();
        (found, run)
    };
    let (baseline, _) = probes(0);
    let (found, run) = probes(100);
    assert_eq!(found - baseline, 100, "{}", run.trace);

    // The hooks are in before the program's own code runs: calls of its
    // start-up come before the first probe, and the trace is framed by the
    // process's start and exit.
    let lines = run.lines();
    let first_probe = lines.iter().position(|l| l.starts_with("NtQueryAttributesFile(")).unwrap();
    assert!(lines[..first_probe].iter().any(|l| is_call(l)), "{}", run.trace);
    assert!(lines.iter().filter(|l| is_call(l)).count() > 100, "{}", run.trace);
    assert!(lines.first().unwrap().starts_with("--- process started "), "{}", run.trace);
    assert_eq!(*lines.last().unwrap(), "+++ exited with 0 +++");
    assert!(
        lines.iter().any(|l| l.starts_with("NtTerminateProcess(") && l.ends_with(" = ?")),
        "{}",
        run.trace
    );
}

#[test]
fn exit_code_is_propagated() {
    let run = trace_injected(&["exit", "42"]);
    assert_eq!(run.code(), 42, "{run:?}");
    assert_eq!(run.lines().last().copied(), Some("+++ exited with 42 +++"));
}

#[test]
fn attaching_by_pid_traces_the_running_process_until_it_exits() {
    // The target waits 3 s (room for the attach), then makes 10 probes.
    let target = std::process::Command::new(TESTPROG)
        .args(["wait-then-loop", "3000", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id().to_string();
    let run = winstrace(&["--engine", "inject", "-p", &pid]);
    let out = target.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "finished after loop 10\n");
    assert_eq!(run.code(), 0, "{run:?}");
    let lines = run.lines();
    assert!(lines[0].starts_with(&format!("--- attached to process {pid}: image ")), "{}", lines[0]);
    assert!(lines[0].contains("wst-testprog.exe"), "{}", lines[0]);
    let probes: Vec<&str> = run.calls("NtQueryAttributesFile");
    assert_eq!(probes.len(), 10, "{}", run.trace);
    assert!(probes
        .iter()
        .all(|l| l.contains(r#"Name="\\??\\C:\\wst-loop-probe.txt""#) && l.ends_with(NOT_FOUND)));
    assert!(run.calls("NtDelayExecution").len() >= 3, "the waits were traced: {}", run.trace);
    assert_eq!(*lines.last().unwrap(), "+++ exited with 0 +++");
}

#[test]
fn attaching_to_a_missing_process_fails_in_one_line() {
    let (code, _, stderr) = winstrace_plain(&["--engine", "inject", "-p", "4000000000"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("winstrace: ") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn pointer_arguments_are_decoded_from_captured_memory() {
    let path = r"C:\wst-inject-captured-probe.txt";
    let run = trace_injected(&["missing", path]);
    assert_eq!(run.stdout, "open failed: error 2\n", "{run:?}");
    let opens = run.calls("NtCreateFile");
    let open = opens.last().expect("an NtCreateFile call");
    assert!(
        open.contains(r#"ObjectAttributes={Name="\\??\\C:\\wst-inject-captured-probe.txt", Attributes=OBJ_CASE_INSENSITIVE}"#),
        "{open}"
    );
    assert!(open.ends_with(NOT_FOUND), "{open}");
    // An in-buffer: the bytes the program wrote to its standard output.
    let writes = run.calls("NtWriteFile");
    assert!(
        writes.iter().any(|w| w.contains(r#"Buffer="open failed: error 2\n", Length=21"#)),
        "{}",
        run.trace
    );
}

#[test]
fn a_trace_set_hooks_only_its_functions() {
    let run = winstrace(&[
        "--engine",
        "inject",
        "--stats",
        "-e",
        "trace=NtQueryAttributesFile",
        TESTPROG,
        "loop",
        "7",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let calls: Vec<&str> = run.lines().into_iter().filter(|l| is_call(l)).collect();
    assert!(calls.iter().all(|l| l.starts_with("NtQueryAttributesFile(")), "{}", run.trace);
    let probes = calls.iter().filter(|l| l.contains("wst-loop-probe.txt") && l.ends_with(NOT_FOUND));
    assert_eq!(probes.count(), 7, "{}", run.trace);
    // Filtered out means not hooked: the agent hooked that function and
    // NtTerminateProcess (where the process's exit waits for the tracer),
    // whose calls it does not record.
    assert!(run.stderr.contains(" 2 functions hooked,"), "{}", run.stderr);
}

#[test]
fn status_filters_pick_failed_or_successful_calls() {
    let failed = trace_injected_with(&["-Z"], &["loop", "3"]);
    let calls: Vec<&str> = failed.lines().into_iter().filter(|l| is_call(l)).collect();
    assert!(calls.len() >= 3, "{}", failed.trace);
    assert!(calls.iter().all(|l| l.contains(" = 0x8") || l.contains(" = 0xc")), "{}", failed.trace);
    let ok = trace_injected_with(&["-z"], &["loop", "3"]);
    let calls: Vec<&str> = ok.lines().into_iter().filter(|l| is_call(l)).collect();
    assert!(
        !calls.is_empty() && calls.iter().all(|l| !l.ends_with(NOT_FOUND) && !l.ends_with(" = ?")),
        "{}",
        ok.trace
    );
}

fn trace_injected_with(options: &[&str], args: &[&str]) -> Run {
    let mut all = vec!["--engine", "inject"];
    all.extend_from_slice(options);
    all.push(TESTPROG);
    all.extend_from_slice(args);
    winstrace(&all)
}

/// The call lines of a trace from the first one that mentions `marker`
/// (what comes before is process start-up, which the engines see from
/// different points), with what legitimately differs between two runs
/// masked: addresses and handle values (all hex), and times.
fn comparable_calls(run: &Run, marker: &str) -> Vec<String> {
    let calls: Vec<&str> = run.lines().into_iter().filter(|l| is_call(l)).collect();
    let Some(start) = calls.iter().position(|l| l.contains(marker)) else { return Vec::new() };
    calls[start..].iter().map(|l| mask(l)).collect()
}

/// Replaces hex numbers by `0x_` and ISO-8601 times by `TIME`.
fn mask(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if line[i..].starts_with("0x") {
            let digits = line[i + 2..].bytes().take_while(u8::is_ascii_hexdigit).count();
            if digits > 0 {
                out.push_str("0x_");
                i += 2 + digits;
                continue;
            }
        }
        // 2026-11-26T17:34:28.3992986Z
        let time = line[i..].bytes().take_while(|b| b.is_ascii_digit() || b"-:.T".contains(b)).count();
        if time >= 19 && line[i + time..].starts_with('Z') && line.as_bytes()[i + 4] == b'-' {
            out.push_str("TIME");
            i += time + 1;
            continue;
        }
        let c = line[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[test]
fn masking_keeps_names_and_drops_addresses_and_times() {
    assert_eq!(
        mask("NtX(A=0x21f3f8, T=[2026-11-26T17:34:28.3992986Z], N=12) = 0xc0000034 STATUS_X"),
        "NtX(A=0x_, T=[TIME], N=12) = 0x_ STATUS_X"
    );
}

/// Runs `args` under both engines and returns the two comparable traces
/// and the program's output under each.
fn under_both_engines(
    program: &str,
    args: &[&str],
    marker: &str,
    before_each: impl Fn(),
) -> [(Vec<String>, Run); 2] {
    ["debug", "inject"].map(|engine| {
        before_each();
        let mut all = vec!["--engine", engine, program];
        all.extend_from_slice(args);
        let run = winstrace(&all);
        (comparable_calls(&run, marker), run)
    })
}

fn assert_engines_agree(program: &str, args: &[&str], marker: &str, before_each: impl Fn()) {
    let [(debug, debug_run), (inject, inject_run)] = under_both_engines(program, args, marker, before_each);
    assert!(debug.len() >= 2, "{args:?}: nothing to compare under the debugger engine:\n{}", debug_run.trace);
    assert_eq!(debug_run.stdout, inject_run.stdout, "{args:?}");
    assert_eq!(debug_run.code(), inject_run.code(), "{args:?}");
    if debug != inject {
        let first =
            debug.iter().zip(&inject).position(|(d, i)| d != i).unwrap_or(debug.len().min(inject.len()));
        panic!(
            "{args:?}: the engines disagree at call {first} of {} / {}:\n debug:  {:?}\n inject: {:?}",
            debug.len(),
            inject.len(),
            debug.get(first),
            inject.get(first)
        );
    }
}

#[test]
fn both_engines_show_the_same_calls_for_the_test_programs() {
    let file = r"C:\users\Public\wst-engines-agree.txt";
    let remove = || {
        let _ = std::fs::remove_file(file);
    };
    assert_engines_agree(TESTPROG, &["file", file, "hello from both engines"], "wst-engines-agree", remove);
    assert_engines_agree(
        TESTPROG,
        &["missing", r"C:\wst-engines-agree-missing.txt"],
        "wst-engines-agree",
        || {},
    );
    assert_engines_agree(
        TESTPROG,
        &["reg", r"Software\winstrace-engines-agree", "Greeting", "hello registry", "--cleanup"],
        "winstrace-engines-agree",
        || {},
    );
    assert_engines_agree(TESTPROG, &["event", "wst-engines-agree-event"], "wst-engines-agree-event", || {});
    assert_engines_agree(TESTPROG, &["loop", "20"], "wst-loop-probe", || {});
    remove();
}

#[test]
fn both_engines_show_the_same_calls_for_wines_cmd() {
    let file = r"C:\users\Public\wst-engines-agree-cmd.txt";
    std::fs::write(file, "typed by cmd\r\n").unwrap();
    let cmd = r"C:\windows\system32\cmd.exe";
    assert_engines_agree(cmd, &["/c", "type", file], "wst-engines-agree-cmd", || {});
    let _ = std::fs::remove_file(file);
}

#[test]
fn dash_f_injects_the_children_too() {
    let run = trace_injected_with(&["-f"], &["child", "5"]);
    assert_eq!(run.stdout, "child exited with 5\n");
    assert_eq!(run.code(), 0, "the first process's code, not the child's: {}", run.trace);
    let lines: Vec<(Option<(u32, u32)>, &str)> = run.trace.lines().map(strip_ids).collect();
    let starts: Vec<_> = lines.iter().filter(|(_, l)| l.starts_with("--- process started ")).collect();
    assert_eq!(starts.len(), 2, "{}", run.trace);
    let child_pid = starts[1].0.expect("ids once two processes exist").0;
    assert!(starts[1].1.ends_with(" exit 5\" ---"), "{}", starts[1].1);
    // The parent's NtCreateUserProcess comes first, then the child's start.
    // (The parent's call is shown unfinished when the child's start
    // interrupts it.)
    let create = lines.iter().position(|(_, l)| l.starts_with("NtCreateUserProcess("));
    let child_start = lines
        .iter()
        .position(|(ids, l)| ids.map(|i| i.0) == Some(child_pid) && l.starts_with("--- process started"));
    assert!(create.is_some() && create < child_start, "{}", run.trace);
    let child_lines: Vec<&str> =
        lines.iter().filter(|(ids, _)| ids.map(|i| i.0) == Some(child_pid)).map(|(_, l)| *l).collect();
    assert!(
        child_lines.iter().any(|l| l.starts_with("NtTerminateProcess(") && l.contains("ExitStatus=0x5")),
        "{}",
        run.trace
    );
    assert_eq!(*child_lines.last().unwrap(), "+++ exited with 5 +++");
    assert_eq!(lines.last().unwrap().1, "+++ exited with 0 +++");
}

#[test]
fn dash_f_waits_for_children_that_outlive_the_first_process() {
    let run = trace_injected_with(&["-f"], &["orphan", "6", "1500"]);
    assert_eq!(run.code(), 6, "{}", run.trace);
    let exits: Vec<&str> = run.lines().into_iter().filter(|l| l.starts_with("+++ exited with ")).collect();
    assert_eq!(exits, ["+++ exited with 6 +++", "+++ exited with 0 +++"], "{}", run.trace);
    assert!(!run.calls("NtDelayExecution").is_empty(), "the child's sleep is traced: {}", run.trace);
}

#[test]
fn without_dash_f_children_are_not_injected() {
    let run = trace_injected(&["child", "5"]);
    assert_eq!(run.stdout, "child exited with 5\n");
    assert_eq!(run.trace.matches("--- process started ").count(), 1, "{}", run.trace);
}
