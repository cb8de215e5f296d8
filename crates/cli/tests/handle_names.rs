//! `-y`: handles shown with what they refer to, under Wine.

#![cfg(windows)]

mod support;

use support::*;

#[test]
fn files_show_their_dos_path_from_creation_to_close() {
    for engine in ["debug", "inject"] {
        files_show_their_dos_path(engine);
    }
}

fn files_show_their_dos_path(engine: &str) {
    let path = temp_path("named.txt");
    let path = path.to_str().unwrap();
    let run = winstrace(&[
        "--engine",
        engine,
        "-y",
        "-e",
        "trace=NtCreateFile,NtWriteFile,NtClose",
        TESTPROG,
        "file",
        path,
        "hey",
    ]);
    let _ = std::fs::remove_file(path);
    let named = format!("<{path}>");
    let create = run.calls("NtCreateFile").into_iter().find(|l| l.contains(&named)).expect("the create");
    assert!(create.starts_with("NtCreateFile(FileHandle=[0x") && create.contains(&format!("{named}]")));
    let write = run.calls("NtWriteFile").into_iter().find(|l| l.contains(&named)).expect("the write");
    assert!(write.contains(", Buffer=\"hey\", Length=3,"), "{write}");
    let closes = run.calls("NtClose");
    assert_eq!(closes.iter().filter(|l| l.contains(&named)).count(), 1, "{closes:?}");
}

#[test]
fn registry_keys_show_hkcu_paths_even_for_handles_opened_before_tracing() {
    for engine in ["debug", "inject"] {
        registry_keys_show_hkcu_paths(engine);
    }
}

fn registry_keys_show_hkcu_paths(engine: &str) {
    let key = format!("Software\\wst-y-{engine}-{}", std::process::id());
    // NtOpenKey is not traced: the HKCU root handle the program opened at
    // start-up was never seen created, and is looked up.
    let run = winstrace(&[
        "--engine",
        engine,
        "-y",
        "-e",
        "trace=NtCreateKey,NtSetValueKey",
        TESTPROG,
        "reg",
        &key,
        "N",
        "v",
        "--cleanup",
    ]);
    let create = run
        .calls("NtCreateKey")
        .into_iter()
        .find(|l| l.contains(&format!("<HKCU\\{key}>]")))
        .unwrap_or_else(|| panic!("{}", run.trace));
    assert!(create.contains("ObjectAttributes={Root=0x"), "{create}");
    assert!(create.contains("<HKCU>, Name="), "{create}");
    let set = run.calls("NtSetValueKey");
    assert!(set.iter().any(|l| l.starts_with("NtSetValueKey(KeyHandle=0x")
        && l.contains(&format!("<HKCU\\{key}>, ValueName=\"N\""))));
}

#[test]
fn process_and_thread_handles_show_their_ids() {
    let run = winstrace(&["-f", "-y", "-e", "trace=NtCreateUserProcess", TESTPROG, "child", "4"]);
    assert_eq!(run.stdout, "child exited with 4\n");
    let child_pid: u32 = run
        .lines()
        .into_iter()
        .filter_map(|l| l.strip_prefix("--- process started "))
        .nth(1)
        .expect("the child")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The call returns (with its out-parameters) in one line, or, when the
    // child's start interrupts it, in its `resumed` line.
    let create: Vec<&str> = run
        .lines()
        .into_iter()
        .map(|l| strip_ids(l).1)
        .filter(|l| {
            l.starts_with("NtCreateUserProcess(") || l.starts_with("<... NtCreateUserProcess resumed>")
        })
        .filter(|l| !l.ends_with("<unfinished ...>"))
        .map(|l| {
            l.trim_start_matches("<... NtCreateUserProcess resumed>")
                .trim_start_matches("NtCreateUserProcess(")
        })
        .collect();
    assert_eq!(create.len(), 1, "{}", run.trace);
    assert!(create[0].starts_with("ProcessHandle=[0x"), "{}", create[0]);
    assert!(create[0].contains(&format!("<pid {child_pid}>], ThreadHandle=[0x")), "{}", create[0]);
    assert!(create[0].contains("<tid "), "{}", create[0]);
}

#[test]
fn named_objects_show_their_names() {
    let name = format!("wst-event-{}", std::process::id());
    let run = winstrace(&["-y", "-e", "trace=NtCreateEvent,NtSetEvent,NtClose", TESTPROG, "event", &name]);
    assert_eq!(run.stdout, format!("set event {name}\n"));
    let create = run.calls("NtCreateEvent");
    let create: Vec<_> = create.iter().filter(|l| l.contains(&name)).collect();
    assert_eq!(create.len(), 1, "{}", run.trace);
    // The handle shows the object's full NT name, ending in the event's own.
    assert!(create[0].starts_with("NtCreateEvent(EventHandle=[0x"), "{}", create[0]);
    assert!(create[0].contains(&format!("\\{name}>]")), "{}", create[0]);
    let set = run.calls("NtSetEvent");
    assert!(set.iter().any(|l| l.contains(&format!("\\{name}>"))), "{set:?}");
}
