//! A count of calls per function, printed at the end as strace's `-c` table;
//! and [`TeeSink`], which feeds several sinks at once (strace's `-C`: trace
//! and summary).
//!
//! The table looks like strace's, with `function` where strace says
//! `syscall`:
//!
//! ```text
//! % time     seconds  usecs/call     calls    errors function
//! ------ ----------- ----------- --------- --------- ----------------
//!  62.50    0.000050          25         2         1 NtClose
//!  37.50    0.000030          10         3           NtReadFile
//! ------ ----------- ----------- --------- --------- ----------------
//! 100.00    0.000080                     5         1 total
//! ```
//!
//! As in strace, an error count of zero is left blank, and the total row
//! has no time per call.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::event::{CallResult, Event, EventKind, EventSink};
use crate::ntstatus;

/// The order of the table's rows (strace's `-S`). Ties go by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Total time in the function, longest first.
    #[default]
    Time,
    /// Number of calls, most first.
    Calls,
    /// Function name, alphabetically.
    Name,
    /// Number of failed calls, most first.
    Errors,
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    calls: u64,
    errors: u64,
    time: Duration,
}

/// Counts calls and prints the table at [`EventSink::finish`].
pub struct SummarySink<W: Write> {
    out: W,
    sort: SortBy,
    /// Keyed by function over all processes, as strace sums over all traced
    /// processes.
    stats: HashMap<Arc<str>, Stats>,
}

impl<W: Write> SummarySink<W> {
    pub fn new(out: W, sort: SortBy) -> SummarySink<W> {
        SummarySink { out, sort, stats: HashMap::new() }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn table(&self) -> String {
        let mut rows: Vec<(&str, &Stats)> = self.stats.iter().map(|(name, s)| (&**name, s)).collect();
        rows.sort_by(|a, b| compare(self.sort, a, b));
        let total = rows.iter().fold(Stats::default(), |sum, (_, s)| Stats {
            calls: sum.calls + s.calls,
            errors: sum.errors + s.errors,
            time: sum.time + s.time,
        });
        let separator = "------ ----------- ----------- --------- --------- ----------------\n";
        let mut table = String::with_capacity(separator.len() * (rows.len() + 4));
        let _ = writeln!(
            table,
            "{:>6} {:>11} {:>11} {:>9} {:>9} function",
            "% time", "seconds", "usecs/call", "calls", "errors"
        );
        table.push_str(separator);
        let total_nanos = total.time.as_nanos();
        for (name, s) in &rows {
            // With no time measured at all every share is 0, not NaN.
            let percent =
                if total_nanos == 0 { 0.0 } else { 100.0 * s.time.as_nanos() as f64 / total_nanos as f64 };
            let per_call = s.time.as_nanos() / u128::from(s.calls.max(1)) / 1000;
            let _ = writeln!(
                table,
                "{percent:6.2} {:>11} {per_call:11} {:9} {:>9} {name}",
                seconds(s.time),
                s.calls,
                blank_if_zero(s.errors)
            );
        }
        table.push_str(separator);
        // strace prints 100.00 here even when nothing took measurable time.
        let _ = writeln!(
            table,
            "{:>6} {:>11} {:>11} {:9} {:>9} total",
            "100.00",
            seconds(total.time),
            "",
            total.calls,
            blank_if_zero(total.errors)
        );
        table
    }
}

fn compare(sort: SortBy, (a_name, a): &(&str, &Stats), (b_name, b): &(&str, &Stats)) -> Ordering {
    let key = match sort {
        SortBy::Time => b.time.cmp(&a.time),
        SortBy::Calls => b.calls.cmp(&a.calls),
        SortBy::Name => Ordering::Equal,
        SortBy::Errors => b.errors.cmp(&a.errors),
    };
    key.then_with(|| a_name.cmp(b_name))
}

/// Seconds with six decimals, rounded to the microsecond: `0.000050`.
fn seconds(d: Duration) -> String {
    let micros = (d.as_nanos() + 500) / 1000;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn blank_if_zero(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        n.to_string()
    }
}

impl<W: Write> EventSink for SummarySink<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        // Only finished calls: a CallStart is followed by its Call, which
        // would otherwise count twice.
        let EventKind::Call(call) = &event.kind else { return Ok(()) };
        let stats = self.stats.entry(call.function.clone()).or_default();
        stats.calls += 1;
        // A value that does not fit 32 bits is no NTSTATUS, so no error; a
        // call that never returns has no result to fail with.
        if let CallResult::Returned(value) = call.result {
            if u32::try_from(value).is_ok_and(ntstatus::is_failure) {
                stats.errors += 1;
            }
        }
        stats.time += call.duration.unwrap_or_default();
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let table = self.table();
        self.out.write_all(table.as_bytes())?;
        self.out.flush()
    }
}

/// Hands every event, and the finish, to each of its sinks in order.
#[derive(Default)]
pub struct TeeSink<'a> {
    sinks: Vec<Box<dyn EventSink + 'a>>,
}

impl<'a> TeeSink<'a> {
    pub fn new(sinks: Vec<Box<dyn EventSink + 'a>>) -> TeeSink<'a> {
        TeeSink { sinks }
    }

    pub fn push(&mut self, sink: impl EventSink + 'a) {
        self.sinks.push(Box::new(sink));
    }
}

impl EventSink for TeeSink<'_> {
    /// Every sink sees the event even when an earlier one fails (a closed
    /// trace pipe should not cost the summary its counts); the first error
    /// is returned.
    fn event(&mut self, event: &Event) -> io::Result<()> {
        let mut result = Ok(());
        for sink in &mut self.sinks {
            let r = sink.event(event);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for sink in &mut self.sinks {
            let r = sink.finish();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::{Arg, Call};
    use crate::text::{TextOptions, TextSink};

    fn call(function: &str, result: CallResult, micros: Option<u64>) -> Call {
        Call {
            function: function.into(),
            id: 0,
            args: vec![Arg::raw(0x24)],
            args_complete: true,
            result,
            resumed: false,
            entry_time: None,
            duration: micros.map(Duration::from_micros),
        }
    }

    fn ev(kind: EventKind) -> Event {
        Event { pid: 1, tid: 1, time: SystemTime::UNIX_EPOCH, kind }
    }

    const OK: CallResult = CallResult::Returned(0);
    /// STATUS_INVALID_HANDLE.
    const FAIL: CallResult = CallResult::Returned(0xc000_0008);

    /// NtClose 2 calls 50 us 1 error; NtReadFile 3 calls 30 us (one
    /// STATUS_PENDING, a success); NtTerminateProcess no return, no time;
    /// NtQueryKey 3 calls, 2 warnings (STATUS_BUFFER_OVERFLOW), no time.
    fn sample() -> Vec<Event> {
        vec![
            ev(EventKind::Call(call("NtClose", OK, Some(20)))),
            ev(EventKind::Call(call("NtReadFile", OK, Some(10)))),
            // Counted once, by its Call.
            ev(EventKind::CallStart(call("NtReadFile", OK, None))),
            ev(EventKind::Call(call("NtReadFile", CallResult::Returned(0x103), Some(15)))),
            ev(EventKind::ThreadExit { code: 0 }),
            ev(EventKind::Call(call("NtClose", FAIL, Some(30)))),
            ev(EventKind::Call(call("NtReadFile", OK, Some(5)))),
            ev(EventKind::Call(call("NtQueryKey", CallResult::Returned(0x8000_0005), None))),
            ev(EventKind::Call(call("NtQueryKey", CallResult::Returned(0x8000_0005), Some(0)))),
            ev(EventKind::Call(call("NtQueryKey", OK, None))),
            ev(EventKind::Call(call("NtTerminateProcess", CallResult::NoReturn, None))),
        ]
    }

    fn summarize(events: &[Event], sort: SortBy) -> String {
        let mut sink = SummarySink::new(Vec::new(), sort);
        for e in events {
            sink.event(e).unwrap();
        }
        sink.finish().unwrap();
        String::from_utf8(sink.into_inner()).unwrap()
    }

    const HEAD: &str = "% time     seconds  usecs/call     calls    errors function\n\
                        ------ ----------- ----------- --------- --------- ----------------\n";
    const SEP: &str = "------ ----------- ----------- --------- --------- ----------------\n";
    const TOTAL: &str = "100.00    0.000080                     9         3 total\n";

    const CLOSE: &str = " 62.50    0.000050          25         2         1 NtClose\n";
    const READ: &str = " 37.50    0.000030          10         3           NtReadFile\n";
    const QUERY: &str = "  0.00    0.000000           0         3         2 NtQueryKey\n";
    const TERMINATE: &str = "  0.00    0.000000           0         1           NtTerminateProcess\n";

    fn table(rows: &[&str]) -> String {
        format!("{HEAD}{}{SEP}{TOTAL}", rows.concat())
    }

    #[test]
    fn sorted_by_time_by_default() {
        assert_eq!(summarize(&sample(), SortBy::default()), table(&[CLOSE, READ, QUERY, TERMINATE]));
    }

    #[test]
    fn sorted_by_calls() {
        assert_eq!(summarize(&sample(), SortBy::Calls), table(&[QUERY, READ, CLOSE, TERMINATE]));
    }

    #[test]
    fn sorted_by_name() {
        assert_eq!(summarize(&sample(), SortBy::Name), table(&[CLOSE, QUERY, READ, TERMINATE]));
    }

    #[test]
    fn sorted_by_errors() {
        assert_eq!(summarize(&sample(), SortBy::Errors), table(&[QUERY, CLOSE, READ, TERMINATE]));
    }

    #[test]
    fn nothing_timed_and_nothing_called() {
        let events =
            [ev(EventKind::Call(call("NtB", OK, None))), ev(EventKind::Call(call("NtA", OK, Some(0))))];
        assert_eq!(
            summarize(&events, SortBy::Time),
            format!(
                "{HEAD}  0.00    0.000000           0         1           NtA\n\
                 \x20 0.00    0.000000           0         1           NtB\n\
                 {SEP}100.00    0.000000                     2           total\n"
            )
        );
        assert_eq!(
            summarize(&[], SortBy::Time),
            format!("{HEAD}{SEP}100.00    0.000000                     0           total\n")
        );
    }

    #[test]
    fn long_times_round_to_microseconds_and_widen_no_column() {
        let events = [
            ev(EventKind::Call(call("NtDelayExecution", OK, Some(2_500_000)))),
            ev(EventKind::Call(call("NtWaitForSingleObject", CallResult::Returned(0x102), Some(1_000_000)))),
            ev(EventKind::Call(Call {
                duration: Some(Duration::from_nanos(1_499)),
                ..call("NtWaitForSingleObject", OK, None)
            })),
        ];
        assert_eq!(
            summarize(&events, SortBy::Time),
            format!(
                "{HEAD} 71.43    2.500000     2500000         1           NtDelayExecution\n\
                 \x2028.57    1.000001      500000         2           NtWaitForSingleObject\n\
                 {SEP}100.00    3.500001                     3           total\n"
            )
        );
    }

    #[test]
    fn tee_feeds_trace_and_summary() {
        let mut trace = Vec::new();
        let mut summary = Vec::new();
        {
            let mut tee = TeeSink::new(vec![Box::new(TextSink::new(&mut trace, TextOptions::default()))]);
            tee.push(SummarySink::new(&mut summary, SortBy::Time));
            tee.event(&ev(EventKind::Call(call("NtClose", OK, Some(20))))).unwrap();
            tee.event(&ev(EventKind::Call(call("NtClose", FAIL, Some(30))))).unwrap();
            tee.finish().unwrap();
        }
        assert_eq!(
            String::from_utf8(trace).unwrap(),
            "NtClose(0x24) = 0x0 STATUS_SUCCESS\nNtClose(0x24) = 0xc0000008 STATUS_INVALID_HANDLE\n"
        );
        assert_eq!(
            String::from_utf8(summary).unwrap(),
            format!(
                "{HEAD}100.00    0.000050          25         2         1 NtClose\n\
                 {SEP}100.00    0.000050                     2         1 total\n"
            )
        );
    }

    #[test]
    fn tee_reaches_every_sink_and_reports_the_first_error() {
        struct Failing;
        impl EventSink for Failing {
            fn event(&mut self, _: &Event) -> io::Result<()> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "trace pipe closed"))
            }
            fn finish(&mut self) -> io::Result<()> {
                Err(io::Error::other("finish failed"))
            }
        }
        let mut summary = Vec::new();
        {
            let mut tee = TeeSink::default();
            tee.push(Failing);
            tee.push(SummarySink::new(&mut summary, SortBy::Time));
            let e = tee.event(&ev(EventKind::Call(call("NtClose", OK, Some(20))))).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            assert_eq!(tee.finish().unwrap_err().to_string(), "finish failed");
        }
        assert!(String::from_utf8(summary).unwrap().contains("         1           NtClose\n"));
    }
}
