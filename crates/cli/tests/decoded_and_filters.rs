//! Decoded arguments and strace's filters, on real traces under Wine.

#![cfg(windows)]

mod support;

use support::*;

const NOT_FOUND: &str = " = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND";

/// The NT path the test program's Win32 path becomes: `\??\C:\...`, with
/// backslashes escaped as the trace quotes them.
fn nt_path_quoted(win32: &str) -> String {
    format!("\"\\\\??\\\\{}\"", win32.replace('\\', "\\\\"))
}

#[test]
fn create_write_close_show_path_bytes_and_handle() {
    let path = temp_path("decoded.txt");
    let path = path.to_str().unwrap();
    let run = trace_testprog(&["file", path, "hello"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let _ = std::fs::remove_file(path);
    let name = format!("ObjectAttributes={{Name={}, Attributes=OBJ_CASE_INSENSITIVE}}", nt_path_quoted(path));
    let create: Vec<_> = run.calls("NtCreateFile").into_iter().filter(|l| l.contains(&name)).collect();
    assert_eq!(create.len(), 1, "{}", run.trace);
    let create = create[0];
    assert!(create.starts_with("NtCreateFile(FileHandle=[0x"), "{create}");
    assert!(create.contains("CreateDisposition=FILE_OVERWRITE_IF"), "{create}");
    assert!(
        create.contains("IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=FILE_CREATED}"),
        "{create}"
    );
    assert!(create.ends_with(" = 0x0 STATUS_SUCCESS"));
    let handle = &create["NtCreateFile(FileHandle=[".len()..create.find(']').unwrap()];
    let write = run
        .calls("NtWriteFile")
        .into_iter()
        .find(|l| l.starts_with(&format!("NtWriteFile(FileHandle={handle},")))
        .expect("a write to the new file's handle");
    assert!(write.contains(", Buffer=\"hello\", Length=5,"), "{write}");
    assert!(write.contains("IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=5}"), "{write}");
    assert!(run
        .calls("NtClose")
        .contains(&format!("NtClose(Handle={handle}) = 0x0 STATUS_SUCCESS").as_str()));
}

#[test]
fn missing_path_and_its_status_share_a_line() {
    let path = temp_path("absent.txt");
    let path = path.to_str().unwrap();
    let run = trace_testprog(&["missing", path]);
    let quoted = nt_path_quoted(path);
    let lines: Vec<_> = run.calls("NtCreateFile").into_iter().filter(|l| l.contains(&quoted)).collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with(NOT_FOUND), "{}", lines[0]);
    // The call failed, so its out-parameters show as the pointers passed.
    assert!(lines[0].starts_with("NtCreateFile(FileHandle=0x"), "{}", lines[0]);
}

#[test]
fn registry_key_path_value_name_type_and_data() {
    let key = format!("Software\\wst-decoded-{}", std::process::id());
    let run = trace_testprog(&["reg", &key, "Greeting", "hello there", "--cleanup"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let escaped = key.replace('\\', "\\\\");
    let create = run.calls("NtCreateKey");
    let create: Vec<_> = create.iter().filter(|l| l.contains(&format!("Name=\"{escaped}\""))).collect();
    assert_eq!(create.len(), 1, "{}", run.trace);
    assert!(create[0].starts_with("NtCreateKey(KeyHandle=[0x"));
    assert!(create[0].contains("DesiredAccess=KEY_SET_VALUE"));
    // (Wine's own start-up writes a few values too.)
    let set: Vec<_> = run.calls("NtSetValueKey").into_iter().filter(|l| l.contains("\"Greeting\"")).collect();
    assert_eq!(set.len(), 1);
    assert!(
        set[0].contains(
            "ValueName=\"Greeting\", TitleIndex=0, Type=REG_SZ, Data=\"hello there\", DataSize=24)"
        ),
        "{}",
        set[0]
    );
}

#[test]
fn dash_s_cuts_strings_and_dash_x_raw_prints_numbers() {
    let key = format!("Software\\wst-s-{}", std::process::id());
    let run = winstrace(&[
        "-s",
        "4",
        "-e",
        "trace=NtSetValueKey",
        TESTPROG,
        "reg",
        &key,
        "Greeting",
        "hello",
        "--cleanup",
    ]);
    let set: Vec<_> = run.calls("NtSetValueKey").into_iter().filter(|l| l.contains("\"Greeting\"")).collect();
    assert_eq!(set.len(), 1, "{}", run.trace);
    // Data is cut at -s; names are shown whole, as strace shows file names.
    assert!(set[0].contains("ValueName=\"Greeting\", "), "{}", set[0]);
    assert!(set[0].contains("Data=\"hell\"..., "), "{}", set[0]);
    let run = winstrace(&[
        "-X",
        "raw",
        "-e",
        "trace=NtSetValueKey",
        TESTPROG,
        "reg",
        &key,
        "Greeting",
        "hello",
        "--cleanup",
    ]);
    let set: Vec<_> =
        run.calls("NtSetValueKey").into_iter().filter(|l| l.contains(", DataSize=0xc)")).collect();
    assert_eq!(set.len(), 1, "{}", run.trace);
    assert!(set[0].starts_with("NtSetValueKey(KeyHandle=0x"), "{}", set[0]);
    assert!(set[0].contains(", Type=0x1, ") && set[0].contains(", DataSize=0xc)"), "{}", set[0]);
    assert!(!set[0].contains('"'));
}

/// The distinct functions among the call lines of a trace.
fn functions(run: &Run) -> std::collections::BTreeSet<String> {
    run.lines()
        .into_iter()
        .filter(|l| l.starts_with("Nt") || l.starts_with("<... "))
        .map(|l| l.trim_start_matches("<... ").split(['(', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn trace_by_names() {
    for engine in ENGINES {
        trace_by_names_on(engine);
    }
}

fn trace_by_names_on(engine: &str) {
    let run = winstrace_on(
        engine,
        &[
            "-e",
            "trace=NtCreateFile,NtWriteFile",
            TESTPROG,
            "file",
            temp_path("n.txt").to_str().unwrap(),
            "x",
        ],
    );
    assert_eq!(functions(&run), ["NtCreateFile", "NtWriteFile"].map(String::from).into());
    let run = winstrace_on(engine, &["-e", "NtQueryAttributesFile", TESTPROG, "loop", "7"]);
    assert_eq!(functions(&run), ["NtQueryAttributesFile"].map(String::from).into());
    assert!(run.calls("NtQueryAttributesFile").iter().filter(|l| l.ends_with(NOT_FOUND)).count() >= 7);
}

#[test]
fn trace_by_regex() {
    let run = winstrace(&["-e", "trace=/^NtQuery.*File$", TESTPROG, "loop", "3"]);
    let names = functions(&run);
    assert!(names.contains("NtQueryAttributesFile"));
    assert!(names.iter().all(|n| n.starts_with("NtQuery") && n.ends_with("File")), "{names:?}");
}

#[test]
fn trace_by_class() {
    let key = format!("Software\\wst-class-{}", std::process::id());
    let run = winstrace(&["-e", "trace=%registry", TESTPROG, "reg", &key, "V", "x", "--cleanup"]);
    let names = functions(&run);
    for expected in ["NtCreateKey", "NtSetValueKey", "NtDeleteKey"] {
        assert!(names.contains(expected), "{names:?}");
    }
    assert!(names.iter().all(|n| n.contains("Key")), "{names:?}");
    assert!(!names.contains("NtClose"));
}

#[test]
fn negated_set_traces_everything_else() {
    let run = winstrace(&["-e", "trace=!%file,NtClose", TESTPROG, "loop", "3"]);
    let names = functions(&run);
    assert!(!names.iter().any(|n| n.contains("File") || n == "NtClose"), "{names:?}");
    assert!(
        names.contains("NtAllocateVirtualMemory") || names.contains("NtProtectVirtualMemory"),
        "{names:?}"
    );
    assert_eq!(run.stdout, "loop done 3\n");
}

#[test]
fn failed_only_and_successful_only() {
    for engine in ENGINES {
        failed_only_and_successful_only_on(engine);
    }
}

fn failed_only_and_successful_only_on(engine: &str) {
    let failed = winstrace_on(engine, &["-Z", TESTPROG, "loop", "5"]);
    let calls: Vec<&str> = failed.lines().into_iter().filter(|l| l.starts_with("Nt")).collect();
    assert!(calls.len() >= 5);
    for line in &calls {
        let status = line.rsplit_once(" = 0x").unwrap().1;
        let code = u32::from_str_radix(status.split(' ').next().unwrap(), 16).unwrap();
        assert!(code & 0x8000_0000 != 0, "-Z showed a success: {line}");
    }
    assert!(
        calls.iter().filter(|l| l.starts_with("NtQueryAttributesFile(") && l.ends_with(NOT_FOUND)).count()
            >= 5
    );

    let ok = winstrace_on(engine, &["-z", TESTPROG, "loop", "5"]);
    let calls: Vec<&str> = ok.lines().into_iter().filter(|l| l.starts_with("Nt")).collect();
    assert!(calls.len() > 10);
    for line in &calls {
        let status = line.rsplit_once(" = ").unwrap().1;
        assert!(
            status.starts_with("0x") && !status.starts_with("0xc") && !status.starts_with("0x8"),
            "{line}"
        );
    }
    assert!(!ok.trace.contains(NOT_FOUND));
    assert!(!ok.trace.contains(" = ?"));
}

#[test]
fn bad_filters_are_one_line_errors() {
    let (code, _, stderr) = winstrace_plain(&["-e", "trace=%nope", TESTPROG, "loop", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("winstrace: -e trace=%nope: unknown class '%nope' (classes: %file, "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    let (code, _, stderr) = winstrace_plain(&["-e", "trace=/(", TESTPROG, "loop", "1"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("winstrace: -e trace=/(: bad regular expression '('"), "{stderr}");
}

#[test]
fn every_function_of_wines_ntdll_has_a_signature_at_run_time() {
    let (code, stdout, stderr) = winstrace_plain(&[
        "--stats",
        "-o",
        temp_path("cov.txt").to_str().unwrap(),
        "cmd.exe",
        "/c",
        "echo",
        "hi",
    ]);
    assert_eq!((code, stdout.as_str()), (0, "hi\r\n"));
    let stats = stderr.lines().find(|l| l.contains(" functions hooked, ")).expect("the --stats line");
    // Every Nt* stub of Wine 8's ntdll is hooked (228 of them) and known.
    assert!(stats.contains(" functions hooked, 0 without a signature, peak memory "), "{stats}");
    let hooked: u32 =
        stats.split(" functions hooked").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(hooked >= 200, "{stats}");
}

#[test]
fn traced_lines_never_fall_back_to_raw_arguments() {
    let run = winstrace(&["cmd.exe", "/c", "echo", "hi"]);
    let raw: Vec<&str> =
        run.lines().into_iter().filter(|l| l.contains(", ...) = ") || l.contains("(...) = ")).collect();
    assert!(raw.is_empty(), "{raw:?}");
    assert!(run.lines().iter().filter(|l| l.starts_with("Nt")).count() > 100);
}
