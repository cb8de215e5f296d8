//! strace-style text output.
//!
//! One line per event. Calls look like
//! `NtOpenFile(0x5ff6a8, 0x100001, 0x5ff6b0, 0x5ff6c0, ...) = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND`;
//! lifecycle events are framed by `---` (things that happened) and `+++`
//! (the end of a process), as strace frames signals and exits. The format is
//! documented in README.md ("Reading the output").

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use crate::event::{Arg, Call, CallResult, Event, EventKind, EventSink, Tid};
use crate::ntstatus;
use crate::value::push_hex;

/// Which timestamp starts each line (strace's `-t`, `-tt`, `-ttt`, `-r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    #[default]
    None,
    /// `-t`: local wall-clock time, `15:04:05`.
    Seconds,
    /// `-tt`: with microseconds, `15:04:05.123456`.
    Micros,
    /// `-ttt`: seconds since the Unix epoch, `1764169445.123456`.
    Epoch,
    /// `-r`: seconds since the previous line, `     0.000123`.
    Relative,
}

/// How lines are decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextOptions {
    pub time: TimeFormat,
    /// `-T`: append the time spent in each call, ` <0.000123>`.
    pub durations: bool,
    /// Flush after every line: right for a terminal, where trace lines
    /// should interleave with the target's own output; too slow for a file.
    pub flush_each_line: bool,
}

/// Writes events as text lines.
pub struct TextSink<W: Write> {
    out: W,
    options: TextOptions,
    live_threads: HashSet<(u32, Tid)>,
    /// Set once more than one thread has been seen; from then on each line
    /// says which process and thread it belongs to, as strace does.
    show_ids: bool,
    previous_time: Option<SystemTime>,
    line: String,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, options: TextOptions) -> TextSink<W> {
        TextSink {
            out,
            options,
            live_threads: HashSet::new(),
            show_ids: false,
            previous_time: None,
            line: String::with_capacity(256),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_time(&mut self, time: SystemTime) {
        let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        match self.options.time {
            TimeFormat::None => {}
            TimeFormat::Seconds | TimeFormat::Micros => {
                let local = chrono::DateTime::<chrono::Local>::from(time);
                let _ = if self.options.time == TimeFormat::Seconds {
                    write!(self.line, "{} ", local.format("%H:%M:%S"))
                } else {
                    write!(self.line, "{} ", local.format("%H:%M:%S%.6f"))
                };
            }
            TimeFormat::Epoch => {
                let _ = write!(self.line, "{}.{:06} ", since_epoch.as_secs(), since_epoch.subsec_micros());
            }
            TimeFormat::Relative => {
                let delta = self
                    .previous_time
                    .and_then(|previous| time.duration_since(previous).ok())
                    .unwrap_or_default();
                let _ = write!(self.line, "{:6}.{:06} ", delta.as_secs(), delta.subsec_micros());
            }
        }
        self.previous_time = Some(time);
    }
}

impl<W: Write> EventSink for TextSink<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        match event.kind {
            EventKind::ThreadStart { .. } | EventKind::ProcessStart(_) => {
                self.live_threads.insert((event.pid, event.tid));
                if self.live_threads.len() > 1 {
                    self.show_ids = true;
                }
            }
            _ => {}
        }
        self.line.clear();
        if self.show_ids {
            // Process-wide events (a detach) belong to no thread: tid 0.
            let _ = match event.tid {
                0 => write!(self.line, "[pid {}] ", event.pid),
                tid => write!(self.line, "[pid {} tid {tid}] ", event.pid),
            };
        }
        self.write_time(event.time);
        format_event_body(&mut self.line, event);
        if let (true, EventKind::Call(Call { duration: Some(d), .. })) = (self.options.durations, &event.kind)
        {
            write_duration(&mut self.line, *d);
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        match event.kind {
            EventKind::ThreadExit { .. } => {
                self.live_threads.remove(&(event.pid, event.tid));
            }
            EventKind::ProcessExit { .. } | EventKind::Detached => {
                self.live_threads.retain(|(pid, _)| *pid != event.pid);
            }
            _ => {}
        }
        if self.options.flush_each_line || !matches!(event.kind, EventKind::Call(_)) {
            self.out.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// ` <0.000123>`: seconds with microseconds, as strace's `-T`.
fn write_duration(line: &mut String, d: Duration) {
    let _ = write!(line, " <{}.{:06}>", d.as_secs(), d.subsec_micros());
}

/// Appends the text of `event`, without ids or newline, to `line`.
pub fn format_event_body(line: &mut String, event: &Event) {
    match &event.kind {
        EventKind::Call(call) => format_call(line, call),
        EventKind::CallStart(call) => format_call_start(line, call),
        EventKind::ProcessStart(start) => {
            let verb = if start.attached { "attached to process" } else { "process started" };
            let _ = write!(line, "--- {verb} {}: image ", event.pid);
            push_quoted(line, &start.image);
            line.push_str(", command line ");
            push_quoted(line, &start.command_line);
            line.push_str(" ---");
        }
        EventKind::ProcessExit { code } => {
            let _ = write!(line, "+++ exited with {code} +++");
        }
        EventKind::ThreadStart { start_address } => {
            let _ = write!(line, "--- thread {} started at {start_address:#x} ---", event.tid);
        }
        EventKind::ThreadExit { code } => {
            let _ = write!(line, "--- thread {} exited with {code} ---", event.tid);
        }
        EventKind::DllLoad { path, base } => {
            line.push_str("--- dll loaded ");
            push_quoted(line, path);
            let _ = write!(line, " at {base:#x} ---");
        }
        EventKind::DllUnload { base } => {
            let _ = write!(line, "--- dll unloaded at {base:#x} ---");
        }
        EventKind::Exception { code, address, first_chance } => {
            let _ = write!(line, "--- exception {code:#x}");
            if let Some(name) = ntstatus::name(*code) {
                let _ = write!(line, " {name}");
            }
            let chance = if *first_chance { "first chance" } else { "second chance" };
            let _ = write!(line, " at {address:#x}, {chance} ---");
        }
        EventKind::DebugOutput { text } => {
            line.push_str("--- debug output ");
            push_quoted(line, text);
            line.push_str(" ---");
        }
        EventKind::Detached => line.push_str("+++ detached +++"),
    }
}

/// Where a call's arguments split when it is interrupted: the in-arguments
/// print before `<unfinished ...>`, the rest after `resumed>`.
fn split_point(call: &Call) -> usize {
    call.args.iter().position(|a| a.out).unwrap_or(call.args.len())
}

fn push_args(line: &mut String, args: &[Arg]) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        format_arg(line, arg);
    }
}

/// `NtX(a, b <unfinished ...>`: the part of a call known at its entry.
pub fn format_call_start(line: &mut String, call: &Call) {
    line.push_str(&call.function);
    line.push('(');
    let split = split_point(call);
    push_args(line, &call.args[..split]);
    if split > 0 {
        line.push_str(if split < call.args.len() || !call.args_complete { ", " } else { " " });
    }
    line.push_str("<unfinished ...>");
}

/// `NtX(a, b, ...) = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND`, or for a call
/// whose start was printed before, `<... NtX resumed>c, d) = 0x0 STATUS_SUCCESS`.
pub fn format_call(line: &mut String, call: &Call) {
    let args = if call.resumed {
        line.push_str("<... ");
        line.push_str(&call.function);
        line.push_str(" resumed>");
        &call.args[split_point(call)..]
    } else {
        line.push_str(&call.function);
        line.push('(');
        &call.args[..]
    };
    push_args(line, args);
    if !call.args_complete {
        line.push_str(if args.is_empty() { "..." } else { ", ..." });
    }
    line.push_str(") = ");
    match call.result {
        CallResult::NoReturn => line.push('?'),
        CallResult::Returned(value) => {
            push_hex(line, value);
            if let Some(name) = u32::try_from(value).ok().and_then(ntstatus::name) {
                line.push(' ');
                line.push_str(name);
            }
        }
    }
}

fn format_arg(line: &mut String, arg: &Arg) {
    if let Some(name) = arg.name {
        line.push_str(name);
        line.push('=');
    }
    arg.value.write_text(line);
}

/// Appends `text` in double quotes with C-style escapes, so that a line
/// never breaks and control characters are visible.
pub fn push_quoted(line: &mut String, text: &str) {
    line.push('"');
    // Copy runs that need no escape in one go; most text is such a run.
    let needs_escape = |b: u8| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\';
    let mut rest = text;
    while let Some(at) = rest.bytes().position(needs_escape) {
        line.push_str(&rest[..at]);
        let c = rest.as_bytes()[at];
        match c {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            c => {
                let _ = write!(line, "\\x{c:02x}");
            }
        }
        // The escaped byte is ASCII, so `at + 1` is a char boundary.
        rest = &rest[at + 1..];
    }
    line.push_str(rest);
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ProcessStart;

    fn ev(tid: u32, kind: EventKind) -> Event {
        Event { pid: 10, tid, time: SystemTime::UNIX_EPOCH, kind }
    }

    fn render(events: &[Event]) -> String {
        let mut sink = TextSink::new(Vec::new(), TextOptions::default());
        for e in events {
            sink.event(e).unwrap();
        }
        String::from_utf8(sink.into_inner()).unwrap()
    }

    fn call(function: &str, args: &[u64], complete: bool, result: CallResult) -> EventKind {
        EventKind::Call(Call {
            function: function.into(),
            id: 0,
            args: args.iter().copied().map(Arg::raw).collect(),
            args_complete: complete,
            result,
            resumed: false,
            entry_time: None,
            duration: None,
        })
    }

    #[test]
    fn call_with_unknown_arg_count_shows_register_args_and_ellipsis() {
        let out = render(&[ev(
            1,
            call(
                "NtOpenFile",
                &[0x5ff6a8, 0x100001, 0x5ff6b0, 0x5ff6c0],
                false,
                CallResult::Returned(0xc000_0034),
            ),
        )]);
        assert_eq!(
            out,
            "NtOpenFile(0x5ff6a8, 0x100001, 0x5ff6b0, 0x5ff6c0, ...) = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND\n"
        );
    }

    #[test]
    fn success_unknown_status_and_no_return() {
        let out = render(&[
            ev(1, call("NtClose", &[0x24], true, CallResult::Returned(0))),
            ev(1, call("NtFoo", &[], true, CallResult::Returned(0x1234_5678))),
            ev(1, call("NtTerminateProcess", &[u64::MAX, 3], true, CallResult::NoReturn)),
        ]);
        assert_eq!(
            out,
            "NtClose(0x24) = 0x0 STATUS_SUCCESS\nNtFoo() = 0x12345678\n\
             NtTerminateProcess(0xffffffffffffffff, 0x3) = ?\n"
        );
    }

    #[test]
    fn lifecycle_lines() {
        let out = render(&[
            ev(
                1,
                EventKind::ProcessStart(ProcessStart {
                    image: "C:\\t\\a.exe".into(),
                    command_line: "a.exe \"x y\"".into(),
                    attached: false,
                }),
            ),
            ev(1, EventKind::DllLoad { path: "C:\\windows\\system32\\ntdll.dll".into(), base: 0x7b000000 }),
            ev(1, EventKind::Exception { code: 0xc000_0005, address: 0x401000, first_chance: true }),
            ev(1, EventKind::DebugOutput { text: "hi\n".into() }),
            ev(1, EventKind::ProcessExit { code: 3 }),
        ]);
        assert_eq!(
            out,
            "--- process started 10: image \"C:\\\\t\\\\a.exe\", command line \"a.exe \\\"x y\\\"\" ---\n\
             --- dll loaded \"C:\\\\windows\\\\system32\\\\ntdll.dll\" at 0x7b000000 ---\n\
             --- exception 0xc0000005 STATUS_ACCESS_VIOLATION at 0x401000, first chance ---\n\
             --- debug output \"hi\\n\" ---\n\
             +++ exited with 3 +++\n"
        );
    }

    #[test]
    fn ids_appear_once_a_second_thread_exists() {
        let out = render(&[
            ev(1, call("NtA", &[], true, CallResult::Returned(0))),
            ev(2, EventKind::ThreadStart { start_address: 0x1000 }),
            ev(2, call("NtB", &[], true, CallResult::Returned(0))),
        ]);
        // The first thread's start was never seen here, so only the second
        // thread counts as live: no ids yet.
        assert_eq!(
            out,
            "NtA() = 0x0 STATUS_SUCCESS\n--- thread 2 started at 0x1000 ---\nNtB() = 0x0 STATUS_SUCCESS\n"
        );
        let out = render(&[
            ev(1, EventKind::ThreadStart { start_address: 0 }),
            ev(2, EventKind::ThreadStart { start_address: 0x1000 }),
            ev(2, call("NtB", &[], true, CallResult::Returned(0))),
        ]);
        assert!(out.ends_with("[pid 10 tid 2] NtB() = 0x0 STATUS_SUCCESS\n"), "{out}");
        let out = render(&[
            ev(1, EventKind::ThreadStart { start_address: 0 }),
            ev(2, EventKind::ThreadStart { start_address: 0 }),
            ev(0, EventKind::Detached),
        ]);
        assert!(out.ends_with("\n[pid 10] +++ detached +++\n"), "{out}");
    }

    fn named(name: &'static str, out: bool, raw: u64) -> Arg {
        Arg { name: Some(name), ty: None, out, raw, value: crate::value::Value::Hex(raw) }
    }

    #[test]
    fn interrupted_call_prints_in_args_then_resumes_with_out_args() {
        let call = Call {
            function: "NtReadFile".into(),
            id: 7,
            args: vec![
                named("FileHandle", false, 0x24),
                named("IoStatusBlock", true, 0x100),
                named("Length", false, 5),
            ],
            args_complete: true,
            result: CallResult::Returned(0),
            resumed: true,
            entry_time: None,
            duration: None,
        };
        let out = render(&[ev(1, EventKind::CallStart(call.clone())), ev(1, EventKind::Call(call.clone()))]);
        assert_eq!(
            out,
            "NtReadFile(FileHandle=0x24, <unfinished ...>\n\
             <... NtReadFile resumed>IoStatusBlock=0x100, Length=0x5) = 0x0 STATUS_SUCCESS\n"
        );
        // Nothing out: the start has every argument, the end only the result.
        let mut closing = call.clone();
        closing.function = "NtWaitForSingleObject".into();
        closing.args.truncate(1);
        let out = render(&[ev(1, EventKind::CallStart(closing.clone())), ev(1, EventKind::Call(closing))]);
        assert_eq!(
            out,
            "NtWaitForSingleObject(FileHandle=0x24 <unfinished ...>\n<... NtWaitForSingleObject resumed>) = 0x0 STATUS_SUCCESS\n"
        );
    }

    #[test]
    fn timestamps_and_durations() {
        let at = |micros: u64| SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_169_445_000_000 + micros);
        let mut call = match call("NtClose", &[0x24], true, CallResult::Returned(0)) {
            EventKind::Call(c) => c,
            _ => unreachable!(),
        };
        call.duration = Some(Duration::from_micros(1234));
        let events = [
            Event { pid: 1, tid: 1, time: at(5), kind: EventKind::Call(call.clone()) },
            Event { pid: 1, tid: 1, time: at(250), kind: EventKind::Call(call) },
        ];
        let render_with = |options: TextOptions| {
            let mut sink = TextSink::new(Vec::new(), options);
            for e in &events {
                sink.event(e).unwrap();
            }
            String::from_utf8(sink.into_inner()).unwrap()
        };
        let epoch =
            render_with(TextOptions { time: TimeFormat::Epoch, durations: true, ..Default::default() });
        assert_eq!(
            epoch,
            "1764169445.000005 NtClose(0x24) = 0x0 STATUS_SUCCESS <0.001234>\n\
             1764169445.000250 NtClose(0x24) = 0x0 STATUS_SUCCESS <0.001234>\n"
        );
        let relative = render_with(TextOptions { time: TimeFormat::Relative, ..Default::default() });
        assert_eq!(
            relative,
            "     0.000000 NtClose(0x24) = 0x0 STATUS_SUCCESS\n     0.000245 NtClose(0x24) = 0x0 STATUS_SUCCESS\n"
        );
        // Wall-clock forms depend on the local time zone: check their shape.
        let micros = render_with(TextOptions { time: TimeFormat::Micros, ..Default::default() });
        let stamp = micros.lines().next().unwrap().split(' ').next().unwrap();
        assert_eq!(stamp.len(), "15:04:05.000005".len(), "{stamp}");
        assert!(stamp.ends_with(":05.000005"), "{stamp}");
        let seconds = render_with(TextOptions { time: TimeFormat::Seconds, ..Default::default() });
        assert!(seconds.lines().next().unwrap().split(' ').next().unwrap().ends_with(":05"));
    }

    #[test]
    fn quoting_escapes_controls_quotes_and_backslashes() {
        let mut s = String::new();
        push_quoted(&mut s, "a\"b\\c\x01\u{e9}");
        assert_eq!(s, "\"a\\\"b\\\\c\\x01\u{e9}\"");
    }
}
