//! Machine-readable output: JSON Lines, one object per event.
//!
//! The first line is a header naming the schema and its version; every
//! other line is one [`Event`]. The schema is documented in
//! `docs/json-schema.md` and formally in `docs/winstrace-events.schema.json`.
//!
//! Versioning: [`SCHEMA_VERSION`] stays the same while changes are additive
//! (new event types, new fields), so consumers must ignore what they don't
//! know; renaming or removing a field, or changing its type or meaning,
//! bumps it.
//!
//! Numbers that can exceed 2^53 (addresses, raw register values, return
//! values) are written as `"0x..."` strings, since many JSON readers parse
//! every number as a double and would silently round them.
//!
//! The records below mirror the event model but are private to this module,
//! so that the event model itself needs no serde.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::event::{Arg, Call, CallResult, Event, EventKind, EventSink};
use crate::ntstatus;

/// The `schema` field of the header line.
pub const SCHEMA_NAME: &str = "winstrace-events";
/// The `schema_version` field of the header line (see the module docs).
pub const SCHEMA_VERSION: u32 = 1;

/// Writes events as JSON Lines.
pub struct JsonSink<W: Write> {
    out: W,
    tool_version: String,
    flush_each_line: bool,
    /// The header goes out with the first event (or at finish, so that even
    /// an empty trace says what it is): `new` cannot report a write error.
    header_written: bool,
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    /// `tool_version` goes into the header, e.g. `env!("CARGO_PKG_VERSION")`
    /// of the program that traces.
    pub fn new(out: W, tool_version: &str) -> JsonSink<W> {
        JsonSink {
            out,
            tool_version: tool_version.to_owned(),
            flush_each_line: false,
            header_written: false,
            line: Vec::with_capacity(512),
        }
    }

    /// Flush after every line, as for a terminal or a pipe read live;
    /// otherwise lines are flushed at lifecycle events and at the end.
    pub fn flush_each_line(mut self, flush: bool) -> JsonSink<W> {
        self.flush_each_line = flush;
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        let header = Header {
            ty: "header",
            schema: SCHEMA_NAME,
            schema_version: SCHEMA_VERSION,
            tool: "winstrace",
            tool_version: &self.tool_version,
        };
        write_line(&mut self.out, &mut self.line, &header)
    }
}

/// Writes `record` and a newline in one `write_all`, through `line` (kept
/// between calls so that its allocation is reused).
fn write_line<T: Serialize>(out: &mut impl Write, line: &mut Vec<u8>, record: &T) -> io::Result<()> {
    line.clear();
    // Serializing these records cannot fail (string keys, finite numbers);
    // should it ever, it is reported like a write error.
    serde_json::to_writer(&mut *line, record).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(line)
}

impl<W: Write> EventSink for JsonSink<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        self.write_header()?;
        write_line(&mut self.out, &mut self.line, &Record::new(event))?;
        if self.flush_each_line || !matches!(event.kind, EventKind::Call(_)) {
            self.out.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write_header()?;
        self.out.flush()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    schema: &'static str,
    schema_version: u32,
    tool: &'static str,
    tool_version: &'a str,
}

/// One event line: the fields every event has, then those of its kind.
#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    pid: u32,
    tid: u32,
    timestamp: String,
    duration: Option<f64>,
    #[serde(flatten)]
    body: Body<'a>,
}

/// The kind-specific fields. Untagged: the `type` field of [`Record`]
/// already says which kind it is.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    ProcessStart {
        image: &'a str,
        command_line: &'a str,
        attached: bool,
    },
    /// Process and thread exit codes are plain numbers, as they print in
    /// decimal in the text output too.
    Exit {
        code: u32,
    },
    ThreadStart {
        start_address: String,
    },
    DllLoad {
        path: &'a str,
        base: String,
    },
    DllUnload {
        base: String,
    },
    /// Exception codes are NTSTATUS values: hex like `return`, plus the name.
    Exception {
        code: String,
        name: Option<&'static str>,
        address: String,
        first_chance: bool,
    },
    DebugOutput {
        text: &'a str,
    },
    CallStart {
        function: &'a str,
        id: u64,
        args: Vec<ArgRecord>,
        args_complete: bool,
        entry_timestamp: Option<String>,
    },
    Call {
        function: &'a str,
        id: u64,
        args: Vec<ArgRecord>,
        args_complete: bool,
        #[serde(rename = "return")]
        returned: Option<String>,
        status: Option<&'static str>,
        resumed: bool,
        entry_timestamp: Option<String>,
    },
    Nothing {},
}

#[derive(Serialize)]
struct ArgRecord {
    name: Option<&'static str>,
    #[serde(rename = "type")]
    ty: Option<&'static str>,
    direction: &'static str,
    value: String,
    raw: String,
}

impl<'a> Record<'a> {
    fn new(event: &'a Event) -> Record<'a> {
        let (ty, duration, body) = match &event.kind {
            EventKind::ProcessStart(start) => (
                "process_start",
                None,
                Body::ProcessStart {
                    image: &start.image,
                    command_line: &start.command_line,
                    attached: start.attached,
                },
            ),
            EventKind::ProcessExit { code } => ("process_exit", None, Body::Exit { code: *code }),
            EventKind::ThreadStart { start_address } => {
                ("thread_start", None, Body::ThreadStart { start_address: hex(*start_address) })
            }
            EventKind::ThreadExit { code } => ("thread_exit", None, Body::Exit { code: *code }),
            EventKind::DllLoad { path, base } => ("dll_load", None, Body::DllLoad { path, base: hex(*base) }),
            EventKind::DllUnload { base } => ("dll_unload", None, Body::DllUnload { base: hex(*base) }),
            EventKind::Exception { code, address, first_chance } => (
                "exception",
                None,
                Body::Exception {
                    code: hex(u64::from(*code)),
                    name: ntstatus::name(*code),
                    address: hex(*address),
                    first_chance: *first_chance,
                },
            ),
            EventKind::DebugOutput { text } => ("debug_output", None, Body::DebugOutput { text }),
            // Unfinished: no duration yet, whatever the engine filled in.
            EventKind::CallStart(call) => (
                "call_start",
                None,
                // Out-arguments are read only when the call returns: at its
                // start their values mean nothing yet.
                Body::CallStart {
                    function: &call.function,
                    id: call.id,
                    args: call.args.iter().filter(|a| !a.out).map(ArgRecord::new).collect(),
                    args_complete: call.args_complete,
                    entry_timestamp: call.entry_time.map(timestamp),
                },
            ),
            EventKind::Call(call) => ("call", call.duration, call_body(call)),
            EventKind::Detached => ("detached", None, Body::Nothing {}),
        };
        Record {
            ty,
            pid: event.pid,
            tid: event.tid,
            timestamp: timestamp(event.time),
            duration: duration.map(|d: Duration| d.as_secs_f64()),
            body,
        }
    }
}

/// A finished call carries every argument, so that a consumer can ignore
/// `call_start` lines altogether.
fn call_body(call: &Call) -> Body<'_> {
    let (returned, status) = match call.result {
        CallResult::NoReturn => (None, None),
        CallResult::Returned(value) => (Some(hex(value)), u32::try_from(value).ok().and_then(ntstatus::name)),
    };
    Body::Call {
        function: &call.function,
        id: call.id,
        args: call.args.iter().map(ArgRecord::new).collect(),
        args_complete: call.args_complete,
        returned,
        status,
        resumed: call.resumed,
        entry_timestamp: call.entry_time.map(timestamp),
    }
}

impl ArgRecord {
    fn new(arg: &Arg) -> ArgRecord {
        let mut value = String::new();
        arg.value.write_text(&mut value);
        ArgRecord {
            name: arg.name,
            ty: arg.ty,
            direction: if arg.out { "out" } else { "in" },
            value,
            raw: hex(arg.raw),
        }
    }
}

fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// RFC 3339 in UTC with microseconds: `2026-11-26T15:04:05.123456Z`. UTC,
/// unlike the text output's local time, so that lines compare across
/// machines and time zones.
fn timestamp(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use serde_json::Value as Json;

    use super::*;
    use crate::event::ProcessStart;
    use crate::value::{Field, Value};

    const SCHEMA: &str = include_str!("../../../docs/winstrace-events.schema.json");
    const DOC: &str = include_str!("../../../docs/json-schema.md");

    /// 2026-11-26T15:04:05Z plus `micros`.
    fn at(micros: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_705_445_000_000 + micros)
    }

    fn ev(kind: EventKind) -> Event {
        Event { pid: 4242, tid: 17, time: at(123_456), kind }
    }

    fn read_file_call() -> Call {
        Call {
            function: Arc::from("NtReadFile"),
            id: 9,
            args: vec![
                Arg {
                    name: Some("FileHandle"),
                    ty: Some("HANDLE"),
                    out: false,
                    raw: 0x24,
                    value: Value::Handle(0x24),
                },
                Arg {
                    name: Some("IoStatusBlock"),
                    ty: Some("PIO_STATUS_BLOCK"),
                    out: true,
                    raw: 0x5ff6a8,
                    value: Value::Struct(vec![
                        Field { name: "Status", value: Value::Status(0) },
                        Field { name: "Information", value: Value::Unsigned(5) },
                    ]),
                },
                Arg {
                    name: Some("Buffer"),
                    ty: Some("PVOID"),
                    out: true,
                    raw: 0xffff_ffff_ffff_fff0,
                    value: Value::Bytes { bytes: b"hi\"\n\x01".to_vec(), truncated: false },
                },
                Arg::raw(5),
            ],
            args_complete: true,
            result: CallResult::Returned(0),
            resumed: true,
            entry_time: Some(at(100_000)),
            duration: Some(Duration::from_micros(23_456)),
        }
    }

    /// One event of every kind, in a plausible order.
    fn every_kind() -> Vec<Event> {
        let call = read_file_call();
        let mut no_return = call.clone();
        no_return.function = Arc::from("NtTerminateProcess");
        no_return.args = vec![Arg::raw(u64::MAX), Arg::raw(3)];
        no_return.args_complete = false;
        no_return.result = CallResult::NoReturn;
        no_return.resumed = false;
        no_return.entry_time = None;
        no_return.duration = None;
        vec![
            ev(EventKind::ProcessStart(ProcessStart {
                image: "C:\\t\\a.exe".into(),
                command_line: "a.exe \"x y\"".into(),
                attached: false,
            })),
            ev(EventKind::ThreadStart { start_address: 0x7ff6_1234_5678 }),
            ev(EventKind::DllLoad {
                path: "C:\\windows\\system32\\ntdll.dll".into(),
                base: 0x7ffd_0000_0000,
            }),
            ev(EventKind::CallStart(call.clone())),
            ev(EventKind::Exception { code: 0xc000_0005, address: 0x401000, first_chance: true }),
            ev(EventKind::Exception { code: 0x1234_5678, address: 0, first_chance: false }),
            ev(EventKind::DebugOutput { text: "hi\n\u{e9}".into() }),
            ev(EventKind::Call(call)),
            ev(EventKind::DllUnload { base: 0x7ffd_0000_0000 }),
            ev(EventKind::ThreadExit { code: 0 }),
            ev(EventKind::Call(no_return)),
            ev(EventKind::ProcessExit { code: 3 }),
            Event { pid: 4242, tid: 0, time: at(123_456), kind: EventKind::Detached },
        ]
    }

    fn render(events: &[Event]) -> String {
        let mut sink = JsonSink::new(Vec::new(), "0.1.0");
        for e in events {
            sink.event(e).unwrap();
        }
        sink.finish().unwrap();
        String::from_utf8(sink.into_inner()).unwrap()
    }

    fn compile_schema() -> (boon::Schemas, boon::SchemaIndex) {
        let schema: Json = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.add_resource("file:///winstrace-events.schema.json", schema).unwrap();
        let index = compiler
            .compile("file:///winstrace-events.schema.json", &mut schemas)
            .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        (schemas, index)
    }

    fn assert_valid(schemas: &boon::Schemas, index: boon::SchemaIndex, instance: &Json) {
        if let Err(e) = schemas.validate(instance, index) {
            panic!("{instance} does not match the schema: {e:#}");
        }
    }

    #[test]
    fn call_line_is_exact() {
        let out = render(&[ev(EventKind::Call(read_file_call()))]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"type":"header","schema":"winstrace-events","schema_version":1,"tool":"winstrace","tool_version":"0.1.0"}"#,
                concat!(
                    r#"{"type":"call","pid":4242,"tid":17,"timestamp":"2026-11-26T15:04:05.123456Z","duration":0.023456,"#,
                    r#""function":"NtReadFile","id":9,"args":["#,
                    r#"{"name":"FileHandle","type":"HANDLE","direction":"in","value":"0x24","raw":"0x24"},"#,
                    r#"{"name":"IoStatusBlock","type":"PIO_STATUS_BLOCK","direction":"out","#,
                    r#""value":"{Status=0x0 STATUS_SUCCESS, Information=5}","raw":"0x5ff6a8"},"#,
                    r#"{"name":"Buffer","type":"PVOID","direction":"out","value":"\"hi\\\"\\n\\x01\"","#,
                    r#""raw":"0xfffffffffffffff0"},"#,
                    r#"{"name":null,"type":null,"direction":"in","value":"0x5","raw":"0x5"}],"#,
                    r#""args_complete":true,"return":"0x0","status":"STATUS_SUCCESS","resumed":true,"#,
                    r#""entry_timestamp":"2026-11-26T15:04:05.100000Z"}"#
                ),
            ]
        );
    }

    #[test]
    fn lifecycle_and_partial_lines_are_exact() {
        let events = every_kind();
        let out = render(&events);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), events.len() + 1);
        let common = r#""pid":4242,"tid":17,"timestamp":"2026-11-26T15:04:05.123456Z","duration":null"#;
        assert_eq!(
            lines[1],
            format!(
                r#"{{"type":"process_start",{common},"image":"C:\\t\\a.exe","command_line":"a.exe \"x y\"","attached":false}}"#
            )
        );
        assert_eq!(
            lines[2],
            format!(r#"{{"type":"thread_start",{common},"start_address":"0x7ff612345678"}}"#)
        );
        assert_eq!(
            lines[4],
            format!(
                r#"{{"type":"call_start",{common},"function":"NtReadFile","id":9,"args":[{{"name":"FileHandle","type":"HANDLE","direction":"in","value":"0x24","raw":"0x24"}},{{"name":null,"type":null,"direction":"in","value":"0x5","raw":"0x5"}}],"args_complete":true,"entry_timestamp":"2026-11-26T15:04:05.100000Z"}}"#
            )
        );
        assert_eq!(
            lines[5],
            format!(
                r#"{{"type":"exception",{common},"code":"0xc0000005","name":"STATUS_ACCESS_VIOLATION","address":"0x401000","first_chance":true}}"#
            )
        );
        assert_eq!(
            lines[6],
            format!(
                r#"{{"type":"exception",{common},"code":"0x12345678","name":null,"address":"0x0","first_chance":false}}"#
            )
        );
        assert_eq!(lines[7], format!("{{\"type\":\"debug_output\",{common},\"text\":\"hi\\n\u{e9}\"}}"));
        assert_eq!(
            lines[11],
            format!(
                r#"{{"type":"call","pid":4242,"tid":17,"timestamp":"2026-11-26T15:04:05.123456Z","duration":null,"function":"NtTerminateProcess","id":9,"args":[{{"name":null,"type":null,"direction":"in","value":"0xffffffffffffffff","raw":"0xffffffffffffffff"}},{{"name":null,"type":null,"direction":"in","value":"0x3","raw":"0x3"}}],"args_complete":false,"return":null,"status":null,"resumed":false,"entry_timestamp":null}}"#
            )
        );
        assert_eq!(lines[12], format!(r#"{{"type":"process_exit",{common},"code":3}}"#));
        assert_eq!(
            lines[13],
            r#"{"type":"detached","pid":4242,"tid":0,"timestamp":"2026-11-26T15:04:05.123456Z","duration":null}"#
        );
    }

    #[test]
    fn empty_trace_still_has_the_header() {
        let out = render(&[]);
        assert_eq!(
            out,
            "{\"type\":\"header\",\"schema\":\"winstrace-events\",\"schema_version\":1,\"tool\":\"winstrace\",\"tool_version\":\"0.1.0\"}\n"
        );
    }

    #[test]
    fn every_line_parses_and_matches_the_schema() {
        let (schemas, index) = compile_schema();
        let out = render(&every_kind());
        let mut types = BTreeSet::new();
        for line in out.lines() {
            let value: Json = serde_json::from_str(line).unwrap();
            assert_valid(&schemas, index, &value);
            types.insert(value["type"].as_str().unwrap().to_owned());
        }
        let expected = [
            "call",
            "call_start",
            "debug_output",
            "detached",
            "dll_load",
            "dll_unload",
            "exception",
            "header",
            "process_exit",
            "process_start",
            "thread_exit",
            "thread_start",
        ];
        assert_eq!(types.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    }

    /// The schema accepts unknown fields (additions keep the version), so
    /// validation alone would not notice a field the sink writes but the
    /// schema does not declare: check the field names against the schema.
    #[test]
    fn sink_writes_exactly_the_fields_the_schema_declares() {
        let schema: Json = serde_json::from_str(SCHEMA).unwrap();
        let common = &schema["$defs"]["event"];
        for line in render(&every_kind()).lines() {
            let value: Json = serde_json::from_str(line).unwrap();
            let ty = value["type"].as_str().unwrap();
            let branch = schema["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| resolve(&schema, b))
                .find(|b| b["properties"]["type"]["const"] == ty)
                .unwrap_or_else(|| panic!("no branch for {ty}"));
            let mut declared: BTreeSet<&str> = keys(&branch["properties"]);
            let mut required: BTreeSet<&str> = strings(&branch["required"]);
            if branch.get("$ref").and_then(Json::as_str) == Some("#/$defs/event") {
                declared.extend(keys(&common["properties"]));
                required.extend(strings(&common["required"]));
            }
            let written: BTreeSet<&str> = keys(&value);
            assert_eq!(written, declared, "{ty}: written vs declared");
            assert_eq!(written, required, "{ty}: every field is required");
            if let Some(args) = value.get("args") {
                let arg_def = &schema["$defs"]["arg"];
                for arg in args.as_array().unwrap() {
                    assert_eq!(keys(arg), keys(&arg_def["properties"]));
                    assert_eq!(keys(arg), strings(&arg_def["required"]));
                }
            }
        }
    }

    fn resolve<'s>(schema: &'s Json, branch: &'s Json) -> &'s Json {
        match branch.get("$ref").and_then(Json::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) if branch.as_object().is_some_and(|o| o.len() == 1) => &schema["$defs"][name],
            _ => branch,
        }
    }

    fn keys(object: &Json) -> BTreeSet<&str> {
        object.as_object().unwrap().keys().map(String::as_str).collect()
    }

    /// The strings of a `required` array; none when it is absent.
    fn strings(array: &Json) -> BTreeSet<&str> {
        array.as_array().into_iter().flatten().map(|s| s.as_str().unwrap()).collect()
    }

    /// So that the check above can fail: objects the sink would never write
    /// must not pass.
    #[test]
    fn schema_rejects_broken_events() {
        let (schemas, index) = compile_schema();
        let out = render(&every_kind());
        let call_line = out.lines().find(|l| l.starts_with(r#"{"type":"call","#)).unwrap();
        let call: Json = serde_json::from_str(call_line).unwrap();
        assert_valid(&schemas, index, &call);
        let broken = |edit: &dyn Fn(&mut serde_json::Map<String, Json>)| {
            let mut value = call.clone();
            edit(value.as_object_mut().unwrap());
            value
        };
        let cases = [
            (
                "missing status",
                broken(&|o| {
                    o.remove("status");
                }),
            ),
            (
                "missing timestamp",
                broken(&|o| {
                    o.remove("timestamp");
                }),
            ),
            (
                "return as a number",
                broken(&|o| {
                    o.insert("return".into(), Json::from(0));
                }),
            ),
            (
                "unknown type",
                broken(&|o| {
                    o.insert("type".into(), Json::from("syscall"));
                }),
            ),
            (
                "local timestamp",
                broken(&|o| {
                    o.insert("timestamp".into(), Json::from("2026-11-26T15:04:05"));
                }),
            ),
            (
                "arg without raw",
                broken(&|o| {
                    o["args"][0].as_object_mut().unwrap().remove("raw");
                }),
            ),
            ("bad direction", broken(&|o| o["args"][0]["direction"] = Json::from("inout"))),
        ];
        for (what, value) in &cases {
            assert!(schemas.validate(value, index).is_err(), "{what} passed: {value}");
        }
        let header: Json = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_valid(&schemas, index, &header);
        let mut wrong_version = header.clone();
        wrong_version["schema_version"] = Json::from(2);
        assert!(schemas.validate(&wrong_version, index).is_err());
        // A non-call event with a duration is not version 1.
        let exit: Json = serde_json::from_str(out.lines().nth(12).unwrap()).unwrap();
        assert_valid(&schemas, index, &exit);
        let mut timed_exit = exit.clone();
        timed_exit["duration"] = Json::from(0.5);
        assert!(schemas.validate(&timed_exit, index).is_err());
    }

    /// The documentation's examples are real: each one-line JSON object in
    /// docs/json-schema.md matches the schema.
    #[test]
    fn documented_examples_match_the_schema() {
        let (schemas, index) = compile_schema();
        let mut types = BTreeSet::new();
        let mut in_json = false;
        for line in DOC.lines() {
            match line.trim() {
                "```json" => in_json = true,
                "```" => in_json = false,
                example if in_json && example.starts_with('{') => {
                    let value: Json = serde_json::from_str(example)
                        .unwrap_or_else(|e| panic!("documented example is not JSON ({e}): {example}"));
                    assert_valid(&schemas, index, &value);
                    types.insert(value["type"].as_str().unwrap().to_owned());
                }
                _ => {}
            }
        }
        assert_eq!(types.len(), 12, "an example of every type: {types:?}");
    }

    #[test]
    fn flushes_at_lifecycle_events_or_every_line_when_asked() {
        /// Counts what reached the underlying writer through flushes.
        #[derive(Default)]
        struct Buffered {
            pending: Vec<u8>,
            flushed: Vec<u8>,
        }
        impl Write for Buffered {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.pending.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.flushed.append(&mut self.pending);
                Ok(())
            }
        }
        let call = ev(EventKind::Call(read_file_call()));
        let mut sink = JsonSink::new(Buffered::default(), "0.1.0");
        sink.event(&call).unwrap();
        assert!(sink.out.flushed.is_empty());
        sink.event(&ev(EventKind::ThreadExit { code: 0 })).unwrap();
        assert!(sink.out.pending.is_empty());
        sink.event(&call).unwrap();
        sink.finish().unwrap();
        assert!(sink.out.pending.is_empty());
        assert_eq!(sink.out.flushed.iter().filter(|&&b| b == b'\n').count(), 4);

        let mut sink = JsonSink::new(Buffered::default(), "0.1.0").flush_each_line(true);
        sink.event(&call).unwrap();
        assert!(sink.out.pending.is_empty());
    }
}
