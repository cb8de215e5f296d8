//! Ctrl-C detaches from an attached process: tested from Linux, where Wine
//! turns a real SIGINT into the CTRL_C_EVENT a Windows console would send.
//! (Inside Wine, test processes have no console whose events they could
//! raise.) The Windows binaries come from the cross build; `./dev test`
//! points WINSTRACE_WINDOWS_BIN at them and runs this test after the Wine
//! suite.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn windows_bin() -> PathBuf {
    PathBuf::from(std::env::var_os("WINSTRACE_WINDOWS_BIN").expect(
        "WINSTRACE_WINDOWS_BIN must name the folder of the cross-built winstrace.exe and \
         wst-testprog.exe (./dev test sets it)",
    ))
}

fn wine(exe: &Path, args: &[&str], stdout: &Path, stderr: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    // The project's runner picks its Wine prefix (with the ProcessPrng shim).
    // Output goes to files: wineserver may hold pipes open after exit.
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/wine-runner"))
        .arg(exe)
        .args(args)
        // Each in a process group of its own, as a program attached to
        // with -p runs apart from the terminal winstrace runs in: a SIGINT
        // that reaches a whole group (as a terminal's Ctrl-C does) must
        // not reach the target too. (Seen once in CI: the target died of
        // a SIGINT meant for winstrace.)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("running wine")
}

fn wait(child: &mut Child, limit: Duration, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sigint_detaches_the_debugger_engine_from_an_attached_process_which_then_finishes() {
    sigint_detaches("debug");
}

#[test]
fn sigint_detaches_the_in_process_engine_from_an_attached_process_which_then_finishes() {
    sigint_detaches("inject");
}

fn sigint_detaches(engine: &str) {
    let bin = windows_bin();
    let dir = std::env::temp_dir().join(format!("wst-ctrlc-{engine}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name);

    // The target sleeps in 10 ms steps for 12 s (room for a slow attach), then makes 25 probe calls and
    // prints a line. Its image name is unique to this test run.
    let image = format!("wst-ctrlc-{engine}.exe");
    let target_exe = dir.join(&image);
    std::fs::copy(bin.join("wst-testprog.exe"), &target_exe).unwrap();
    let mut target =
        wine(&target_exe, &["wait-then-loop", "12000", "25"], &file("target.out"), &file("target.err"));
    std::thread::sleep(Duration::from_millis(1500));

    let trace = file("trace.txt");
    let trace_arg = trace.to_str().unwrap().to_string();
    let mut tracer = wine(
        &bin.join("winstrace.exe"),
        &["--engine", engine, "-o", &format!("Z:{}", trace_arg.replace('/', "\\")), "-p", &image],
        &file("tracer.out"),
        &file("tracer.err"),
    );
    // The attach line is flushed at once (call lines sit in the file
    // buffer until some other event or the end); then let it trace a while.
    let attached = wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("--- attached to process "))
    });
    std::thread::sleep(Duration::from_millis(1000));
    // What a terminal sends on Ctrl-C.
    let killed = Command::new("kill").args(["-INT", &tracer.id().to_string()]).status().unwrap();
    let tracer_code = wait(&mut tracer, Duration::from_secs(60), "winstrace after SIGINT");
    let target_code = wait(&mut target, Duration::from_secs(60), "the detached target");

    let trace_text = std::fs::read_to_string(&trace).unwrap_or_default();
    let tracer_err = std::fs::read_to_string(file("tracer.err")).unwrap_or_default();
    let target_out = std::fs::read_to_string(file("target.out")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(attached, "the tracer never attached: {trace_text}\n{tracer_err}");
    assert!(trace_text.matches("NtDelayExecution(").count() >= 3, "the sleeps were traced: {trace_text}");
    assert!(killed.success());
    assert_eq!(tracer_code, 0, "{tracer_err}");
    let lines: Vec<&str> = trace_text.lines().collect();
    assert!(lines[0].starts_with("--- attached to process "), "{}", lines[0]);
    assert!(lines[0].contains(&image), "{}", lines[0]);
    let last = *lines.last().unwrap();
    assert!(
        last == "+++ detached +++" || last.ends_with("] +++ detached +++"),
        "the trace does not end in a detach:\n{trace_text}\ntracer: {tracer_err}\ntarget ({target_code}): {target_out}"
    );
    // The probes run after the detach: none is in the trace, and the target
    // finished on its own with its normal output and exit code.
    assert_eq!(trace_text.matches("NtQueryAttributesFile(").count(), 0, "{trace_text}");
    assert_eq!(target_code, 0);
    assert_eq!(target_out, "finished after loop 25\n");
}
