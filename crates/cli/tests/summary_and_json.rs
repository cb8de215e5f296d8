//! `-c`, `-C`, `-S` and `--json` on real traces under Wine.

#![cfg(windows)]

mod support;

use support::*;

/// The rows of a summary table: (seconds, usecs/call, calls, errors, name).
fn rows(table: &str) -> Vec<(f64, u64, u64, u64, String)> {
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("% time")).expect("a summary header");
    lines[header + 2..]
        .iter()
        .take_while(|l| !l.starts_with("------"))
        .map(|l| {
            let name = l[51..].trim().to_string();
            let num = |range: std::ops::Range<usize>| l[range].trim().parse::<u64>().unwrap_or(0);
            (l[7..18].trim().parse().unwrap(), num(19..30), num(31..40), num(41..50), name)
        })
        .collect()
}

fn probe_row(table: &str) -> (u64, u64) {
    rows(table).iter().find(|r| r.4 == "NtQueryAttributesFile").map(|r| (r.2, r.3)).unwrap_or((0, 0))
}

#[test]
fn dash_c_counts_calls_and_errors_per_function() {
    for engine in ENGINES {
        dash_c_counts(engine);
    }
}

fn dash_c_counts(engine: &str) {
    let base = winstrace_on(engine, &["-c", TESTPROG, "loop", "0"]);
    let run = winstrace_on(engine, &["-c", TESTPROG, "loop", "25"]);
    assert_eq!(run.stdout, "loop done 25\n");
    assert!(!run.trace.contains("NtQueryAttributesFile("), "-c prints no trace");
    let (calls0, errors0) = probe_row(&base.trace);
    let (calls, errors) = probe_row(&run.trace);
    assert_eq!((calls - calls0, errors - errors0), (25, 25), "{}", run.trace);
    // Sorted by time, longest first; the total adds up.
    let table = rows(&run.trace);
    assert!(table.windows(2).all(|w| w[0].0 >= w[1].0), "{}", run.trace);
    let total = run.trace.lines().last().unwrap();
    assert!(total.starts_with("100.00 ") && total.ends_with(" total"), "{total}");
    let total_calls: u64 = total[31..40].trim().parse().unwrap();
    assert_eq!(total_calls, table.iter().map(|r| r.2).sum::<u64>());
}

#[test]
fn dash_capital_c_prints_trace_and_summary_and_dash_s_sorts() {
    for engine in ENGINES {
        dash_capital_c(engine);
    }
}

fn dash_capital_c(engine: &str) {
    let winstrace = |args: &[&str]| winstrace_on(engine, args);
    let run = winstrace(&["-C", "-S", "calls", TESTPROG, "loop", "5"]);
    let header = run.trace.find("% time").expect("the summary follows the trace");
    assert!(run.trace[..header].contains("NtQueryAttributesFile("));
    assert!(run.trace[..header].contains("+++ exited with 0 +++"));
    let by_calls = rows(&run.trace[header..]);
    assert!(by_calls.windows(2).all(|w| w[0].2 >= w[1].2), "{}", &run.trace[header..]);
    let run = winstrace(&["-c", "-S", "name", TESTPROG, "loop", "5"]);
    let by_name = rows(&run.trace);
    assert!(by_name.windows(2).all(|w| w[0].4 <= w[1].4));
    let run = winstrace(&["-c", "-S", "errors", TESTPROG, "loop", "5"]);
    let by_errors = rows(&run.trace);
    assert!(by_errors.windows(2).all(|w| w[0].3 >= w[1].3));
}

fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let text = include_str!("../../../docs/winstrace-events.schema.json");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("schema.json", serde_json::from_str(text).unwrap()).unwrap();
    let index = compiler.compile("schema.json", &mut schemas).unwrap();
    (schemas, index)
}

/// Parses JSON Lines output and checks each line against the schema.
fn validated(trace: &str) -> Vec<serde_json::Value> {
    let (schemas, index) = schema();
    trace
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Err(e) = schemas.validate(&v, index) {
                panic!("schema violation: {e}\n{l}");
            }
            v
        })
        .collect()
}

#[test]
fn json_lines_of_the_in_process_engine_match_the_schema() {
    let run = winstrace_on("inject", &["--json", TESTPROG, "loop", "3"]);
    assert_eq!(run.stdout, "loop done 3\n");
    let events = validated(&run.trace);
    assert_eq!(events[0]["type"], "header");
    let of_type = |t: &'static str| events.iter().filter(move |e| e["type"] == t);
    assert_eq!(of_type("process_start").count(), 1);
    assert_eq!(of_type("process_exit").map(|e| e["code"].clone()).collect::<Vec<_>>(), vec![0]);
    // The loader probes files too: the program's probes are those of its file.
    let probes: Vec<_> = of_type("call")
        .filter(|e| e["function"] == "NtQueryAttributesFile" && e.to_string().contains("wst-loop-probe.txt"))
        .collect();
    assert_eq!(probes.len(), 3, "{}", run.trace);
    for probe in probes {
        assert_eq!(probe["status"], "STATUS_OBJECT_NAME_NOT_FOUND");
        assert!(probe["duration"].as_f64().unwrap() >= 0.0);
        let name = &probe["args"][0];
        assert!(name.to_string().contains("wst-loop-probe.txt"), "{probe}");
    }
}

#[test]
fn json_lines_parse_and_match_the_schema() {
    for engine in ENGINES {
        json_lines_parse_and_match_the_schema_on(engine);
    }
}

fn json_lines_parse_and_match_the_schema_on(engine: &str) {
    let run = winstrace_on(engine, &["--json", TESTPROG, "thread"]);
    assert_eq!(run.stdout, "thread done\n");
    let (schemas, index) = schema();
    let events: Vec<serde_json::Value> = run
        .trace
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Err(e) = schemas.validate(&v, index) {
                panic!("schema violation: {e}\n{l}");
            }
            v
        })
        .collect();
    assert_eq!(events[0]["type"], "header");
    assert_eq!(events[0]["schema_version"], 1);
    let of_type = |t: &'static str| events.iter().filter(move |e| e["type"] == t);
    assert_eq!(of_type("process_start").count(), 1);
    let exit: Vec<_> = of_type("process_exit").collect();
    assert_eq!(exit.len(), 1);
    assert_eq!(exit[0]["code"], 0);
    let worker = of_type("thread_start").next().expect("the worker thread")["tid"].clone();
    assert_eq!(of_type("thread_exit").filter(|e| e["tid"] == worker).count(), 1);
    // The worker's probe: a call with its status, duration and times.
    let probe: Vec<_> =
        of_type("call").filter(|e| e["tid"] == worker && e["function"] == "NtQueryAttributesFile").collect();
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0]["return"], "0xc0000034");
    assert_eq!(probe[0]["status"], "STATUS_OBJECT_NAME_NOT_FOUND");
    assert!(probe[0]["duration"].as_f64().unwrap() >= 0.0);
    assert!(probe[0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["raw"].as_str().unwrap().starts_with("0x")));
    // Every event carries pid, tid and timestamp.
    for e in &events[1..] {
        assert!(e["pid"].is_u64() && e["tid"].is_u64() && e["timestamp"].is_string(), "{e}");
    }
    // An interrupted call appears as call_start, then as a resumed call.
    let started: Vec<_> = of_type("call_start").collect();
    assert!(!started.is_empty());
    let resumed: Vec<_> = of_type("call").filter(|e| e["resumed"] == true).collect();
    assert!(!resumed.is_empty() && resumed.len() <= started.len());
    // A call_start and its call share pid and id.
    for call in resumed {
        assert!(started.iter().any(|s| s["pid"] == call["pid"] && s["id"] == call["id"]), "{call}");
    }
}
