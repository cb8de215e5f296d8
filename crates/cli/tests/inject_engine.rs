//! The in-process engine (`--engine inject`), end to end: winstrace injects
//! the agent into the test program and the tests check the trace.
//!
//! The agent DLL must be built: cargo builds it (as a dependency of the
//! engine) into the `deps` directory beside winstrace.exe, where the engine
//! also looks.

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
fn attaching_is_refused_in_one_line() {
    let (code, _, stderr) = winstrace_plain(&["--engine", "inject", "-p", "1234"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "winstrace: --engine inject cannot attach (-p): it only launches programs\n");
}

#[test]
fn options_it_cannot_honour_are_refused_not_ignored() {
    for option in [&["-e", "trace=NtClose"][..], &["-Z"], &["-z"], &["-y"]] {
        let mut args = vec!["--engine", "inject"];
        args.extend_from_slice(option);
        args.extend_from_slice(&[TESTPROG, "loop", "1"]);
        let (code, _, stderr) = winstrace_plain(&args);
        assert_eq!(code, 1, "{option:?}");
        assert_eq!(
            stderr,
            "winstrace: --engine inject does not support -e, -Z, -z or -y yet; use --engine debug\n"
        );
    }
}
