//! strace habits under Wine: -f, -ff, interleaved threads and the time
//! options, on the project's test program.

#![cfg(windows)]

mod support;

use support::*;

#[test]
fn dash_f_traces_the_child_from_its_first_call_and_exits_with_the_parents_code() {
    for engine in ENGINES {
        dash_f_traces_the_child_from_its_first_call_and_exits_with_the_parents_code_on(engine);
    }
}

fn dash_f_traces_the_child_from_its_first_call_and_exits_with_the_parents_code_on(engine: &str) {
    let run = winstrace_on(engine, &["-f", TESTPROG, "child", "5"]);
    assert_eq!(run.stdout, "child exited with 5\n");
    assert_eq!(run.code(), 0, "the first process's code, not the child's");
    let lines: Vec<(Option<(u32, u32)>, &str)> = run.trace.lines().map(strip_ids).collect();
    let starts: Vec<_> = lines.iter().filter(|(_, l)| l.starts_with("--- process started ")).collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let child_pid = starts[1].0.expect("ids once two processes exist").0;
    assert!(
        starts[1].1.contains(" exit 5\\\" ---") || starts[1].1.ends_with(" exit 5\" ---"),
        "{}",
        starts[1].1
    );
    // The child's own calls are traced, from the loader on, and it exits 5.
    let child_lines: Vec<&str> =
        lines.iter().filter(|(ids, _)| ids.map(|i| i.0) == Some(child_pid)).map(|(_, l)| *l).collect();
    assert!(child_lines.iter().filter(|l| l.starts_with("Nt")).count() > 20);
    assert_eq!(*child_lines.last().unwrap(), "+++ exited with 5 +++");
    assert_eq!(lines.last().unwrap().1, "+++ exited with 0 +++");
    // The parent waits for the child while the child runs: its wait is
    // interrupted by the child's lines and resumes afterwards.
    // The first lines came before ids were needed: read the pid from the text.
    let parent_pid: u32 =
        starts[0].1.trim_start_matches("--- process started ").split(':').next().unwrap().parse().unwrap();
    let parent_pid = Some(parent_pid);
    // Lines without ids came while the parent was the only process (the
    // child's start may be what interrupts the wait).
    let unfinished = lines
        .iter()
        .position(|(ids, l)| {
            ids.map_or(parent_pid, |i| Some(i.0)) == parent_pid
                && l.starts_with("NtWaitForMultipleObjects(")
                && l.ends_with("<unfinished ...>")
        })
        .unwrap_or_else(|| panic!("the parent's wait is unfinished ({engine}): {}", run.trace));
    let resumed = lines
        .iter()
        .position(|(ids, l)| {
            ids.map(|i| i.0) == parent_pid && l.starts_with("<... NtWaitForMultipleObjects resumed>")
        })
        .expect("and resumes");
    let child_exit = lines.iter().position(|(_, l)| *l == "+++ exited with 5 +++").unwrap();
    assert!(unfinished < child_exit && child_exit < resumed);
}

#[test]
fn without_dash_f_the_child_is_not_traced() {
    for engine in ENGINES {
        without_dash_f_the_child_is_not_traced_on(engine);
    }
}

fn without_dash_f_the_child_is_not_traced_on(engine: &str) {
    let run = winstrace_on(engine, &[TESTPROG, "child", "5"]);
    assert_eq!(run.stdout, "child exited with 5\n");
    assert_eq!(run.trace.matches("--- process started ").count(), 1);
    assert_eq!(run.trace.matches("+++ exited with").count(), 1);
}

#[test]
fn dash_ff_writes_one_file_per_process() {
    for engine in ENGINES {
        dash_ff(engine);
    }
}

fn dash_ff(engine: &str) {
    let prefix = temp_path("ff");
    let child = Command::new(WINSTRACE)
        .args(["--engine", engine, "-ff", "-o", prefix.to_str().unwrap(), TESTPROG, "child", "9"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, "winstrace -ff");
    assert_eq!(out.status.code(), Some(0));
    let dir = prefix.parent().unwrap();
    let name = prefix.file_name().unwrap().to_str().unwrap().to_string();
    let mut files: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let file_name = e.file_name().into_string().ok()?;
            let pid = file_name.strip_prefix(&format!("{name}."))?.parse().ok()?;
            Some((pid, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    for (pid, _) in &files {
        let _ = std::fs::remove_file(dir.join(format!("{name}.{pid}")));
    }
    files.sort_by_key(|(_, text)| text.contains(" exit 9"));
    assert_eq!(files.len(), 2, "{:?}", files.iter().map(|f| f.0).collect::<Vec<_>>());
    let (parent_pid, parent) = &files[0];
    let (child_pid, child) = &files[1];
    assert!(parent.contains(&format!("--- process started {parent_pid}: ")), "{parent}");
    assert!(child.contains(&format!("--- process started {child_pid}: ")));
    assert!(parent.trim_end().ends_with("+++ exited with 0 +++"));
    assert!(child.trim_end().ends_with("+++ exited with 9 +++"));
    assert!(!parent.contains(" exit 9\" ---"));
    assert!(child.lines().filter(|l| l.contains("NtTerminateProcess(")).count() >= 1);
}

use std::process::Command;

#[test]
fn two_threads_interleave_strace_style() {
    for engine in ENGINES {
        two_threads_interleave_strace_style_on(engine);
    }
}

fn two_threads_interleave_strace_style_on(engine: &str) {
    let run = winstrace_on(engine, &[TESTPROG, "thread"]);
    assert_eq!(run.stdout, "thread done\n");
    // The main thread waits for the worker: the wait is printed unfinished
    // before the worker's lines and resumed after them, with the same tid.
    let lines: Vec<(Option<(u32, u32)>, &str)> = run.trace.lines().map(strip_ids).collect();
    let start =
        lines.iter().position(|(_, l)| l.starts_with("--- thread ") && l.contains(" started at ")).unwrap();
    let worker = lines[start].0.unwrap().1;
    // Lines without ids came while the main thread was the only one (the
    // worker's start may be what interrupts the wait).
    let wait = lines[..]
        .iter()
        .position(|(ids, l)| {
            ids.map_or(true, |i| i.1 != worker)
                && l.starts_with("NtWaitForMultipleObjects(")
                && l.ends_with(" <unfinished ...>")
        })
        .unwrap_or_else(|| panic!("the main thread's wait is shown unfinished ({engine}): {}", run.trace));
    let main = lines[wait]
        .0
        .map_or_else(|| lines.iter().find_map(|(ids, _)| ids.filter(|i| i.1 != worker)).unwrap().1, |i| i.1);
    // Whether the worker's probe comes before or after the main thread
    // enters its wait is up to the scheduler; its exit always comes inside.
    let probe = lines
        .iter()
        .position(|(ids, l)| {
            ids.is_some_and(|i| i.1 == worker) && l.starts_with(&format!("--- thread {worker} exited"))
        })
        .expect("the worker's exit");
    let resumed = lines
        .iter()
        .position(|(ids, l)| {
            ids.is_some_and(|i| i.1 == main) && l.starts_with("<... NtWaitForMultipleObjects resumed>")
        })
        .expect("the wait resumes");
    assert!(wait < probe && probe < resumed, "{wait} {probe} {resumed}");
    assert!(lines[resumed].1.ends_with(") = 0x0 STATUS_SUCCESS"), "{}", lines[resumed].1);
    // Every unfinished call of a thread resumes exactly once.
    let unfinished = lines.iter().filter(|(_, l)| l.ends_with("<unfinished ...>")).count();
    let resumes = lines.iter().filter(|(_, l)| l.starts_with("<... ")).count();
    assert!(unfinished >= 1);
    assert!(resumes <= unfinished && unfinished - resumes <= 1, "{unfinished} {resumes}");
}

fn first_call_line(run: &Run) -> &str {
    run.trace.lines().find(|l| l.contains("NtQueryAttributesFile(")).expect("a probe call")
}

#[test]
fn time_of_day_prefixes() {
    for engine in ENGINES {
        time_of_day(engine);
    }
}

fn time_of_day(engine: &str) {
    let winstrace = |args: &[&str]| winstrace_on(engine, args);
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let run = winstrace(&["-t", TESTPROG, "loop", "1"]);
    let stamp = first_call_line(&run).split(' ').next().unwrap();
    let parts: Vec<&str> = stamp.split(':').collect();
    assert_eq!(parts.len(), 3, "{stamp}");
    assert!(parts.iter().all(|p| p.len() == 2 && digits(p)), "{stamp}");

    let run = winstrace(&["-tt", TESTPROG, "loop", "1"]);
    let stamp = first_call_line(&run).split(' ').next().unwrap();
    let (hms, micros) = stamp.split_once('.').expect("microseconds");
    assert_eq!(hms.len(), 8);
    assert!(micros.len() == 6 && digits(micros), "{stamp}");

    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let run = winstrace(&["-ttt", TESTPROG, "loop", "1"]);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let stamp: f64 = first_call_line(&run).split(' ').next().unwrap().parse().unwrap();
    assert!(stamp > before - 1.0 && stamp < after + 1.0, "{before} {stamp} {after}");
    // Calls are printed in order, and their times follow.
    let stamps: Vec<f64> = run.trace.lines().map(|l| l.split(' ').next().unwrap().parse().unwrap()).collect();
    assert!(stamps.windows(2).filter(|w| w[1] + 0.05 < w[0]).count() == 0, "times run backwards");
}

#[test]
fn relative_times_and_durations() {
    for engine in ENGINES {
        let run = winstrace_on(engine, &["-r", "-T", TESTPROG, "loop", "3"]);
        relative_times(&run);
    }
}

fn relative_times(run: &Run) {
    let calls: Vec<&str> = run.trace.lines().filter(|l| l.contains("NtQueryAttributesFile(")).collect();
    assert!(calls.len() >= 3);
    for line in &calls {
        // "     0.000123 NtX(...) = ... <0.000045>"
        let (delta, rest) = line.trim_start().split_once(' ').unwrap();
        let delta: f64 = delta.parse().unwrap();
        assert!((0.0..10.0).contains(&delta), "{line}");
        assert_eq!(line.find('.').unwrap(), 6, "the seconds are right-aligned in 6 columns: {line}");
        let took = rest.rsplit_once(" <").unwrap().1.strip_suffix('>').unwrap();
        let took: f64 = took.parse().unwrap();
        assert!((0.0..1.0).contains(&took), "{line}");
    }
}

#[test]
fn dash_f_waits_for_children_that_outlive_the_first_process() {
    let started = std::time::Instant::now();
    let run = winstrace(&["-f", TESTPROG, "orphan", "6", "1500"]);
    assert_eq!(run.stdout.lines().next(), Some("left a child sleeping 1500 ms"));
    // winstrace exits with the first process's code, once the last traced
    // process (the child) has exited.
    assert_eq!(run.code(), 6, "{}", run.trace);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    let exits: Vec<&str> = run.lines().into_iter().filter(|l| l.starts_with("+++ exited with ")).collect();
    assert_eq!(exits, ["+++ exited with 6 +++", "+++ exited with 0 +++"], "{}", run.trace);
    let last = run.trace.lines().last().unwrap();
    assert!(last.ends_with("] +++ exited with 0 +++"), "the child's exit ends the trace: {last}");
    assert!(!run.calls("NtDelayExecution").is_empty(), "the child's sleep is traced");
}
