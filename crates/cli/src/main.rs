//! `winstrace`: the command line. It parses strace-style options, picks the
//! target and the output, and hands over to an engine. Everything else lives
//! in the library crates (see ARCHITECTURE.md).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

mod agent_dll;
mod per_process;
mod target;

use per_process::PerProcessSink;
use winstrace_core::event::EventSink;
use winstrace_core::json::JsonSink;
use winstrace_core::summary::{SortBy, SummarySink, TeeSink};
use winstrace_core::text::TextSink;
use winstrace_filter::{StatusFilter, TraceSet};

/// strace for Windows: trace the native API (ntdll Nt*) calls of a program.
#[derive(Parser, Debug)]
#[command(name = "winstrace", version, about)]
struct Cli {
    /// Write the trace to FILE instead of standard error.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Attach to a running process: a process id, or an image name
    /// (case-insensitive, ".exe" optional) that matches exactly one process.
    #[arg(short = 'p', long = "attach", value_name = "PID|NAME", conflicts_with = "program")]
    attach: Option<String>,

    /// Tracing engine.
    #[arg(long, value_enum, default_value_t = Engine::Inject)]
    engine: Engine,

    /// At exit, print engine statistics (debug events per traced call) to standard error.
    #[arg(long)]
    stats: bool,

    /// Follow child processes (and theirs) from their first call. Twice
    /// (-ff) with -o FILE: one trace file per process, FILE.PID.
    #[arg(short = 'f', action = clap::ArgAction::Count)]
    follow: u8,

    /// Prefix lines with the time of day; -tt adds microseconds, -ttt prints
    /// seconds since the epoch.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    timestamps: u8,

    /// Prefix lines with the time since the previous line.
    #[arg(short = 'r', conflicts_with = "timestamps")]
    relative: bool,

    /// Show the time spent in each call, as <seconds>.
    #[arg(short = 'T')]
    durations: bool,

    /// Which functions to trace: -e trace=SET, where SET is a comma-separated
    /// list of names (NtCreateFile), /REGEX and %CLASS, or all / none; a
    /// leading ! negates the set. Functions outside the set are not trapped.
    #[arg(short = 'e', value_name = "EXPR")]
    expressions: Vec<String>,

    /// Show what handles refer to: files, registry keys, processes, threads
    /// and named objects, as 0x24<C:\x.txt>.
    #[arg(short = 'y')]
    handle_names: bool,

    /// Show at most N characters of each string and N bytes of each buffer.
    #[arg(short = 's', value_name = "N", default_value_t = 32)]
    string_limit: usize,

    /// -X raw: print every argument as a raw number (names are kept).
    #[arg(short = 'X', value_enum, value_name = "FORMAT")]
    format: Option<ArgFormat>,

    /// Show only calls that failed (NTSTATUS warning or error severity).
    #[arg(short = 'Z', conflicts_with = "successful_only")]
    failed_only: bool,

    /// Show only calls that succeeded.
    #[arg(short = 'z')]
    successful_only: bool,

    /// Instead of the trace, print a summary at exit: time, calls and
    /// errors per function.
    #[arg(short = 'c', conflicts_with_all = ["summary_too", "json"])]
    summary_only: bool,

    /// Print the trace and, at exit, the summary.
    #[arg(short = 'C', conflicts_with = "json")]
    summary_too: bool,

    /// Sort the summary by time (the default), calls, name or errors.
    #[arg(short = 'S', value_enum, value_name = "SORTBY", default_value_t = SortKey::Time)]
    sort_by: SortKey,

    /// Record each call with the target memory its decoding read, for the
    /// decoding benchmark (see BENCHMARKS.md).
    #[arg(long, value_name = "FILE", hide = true)]
    record_sample: Option<PathBuf>,

    /// Write events as JSON Lines (schema: docs/json-schema.md) instead of text.
    #[arg(long)]
    json: bool,

    /// Program to start and trace, then its arguments.
    #[arg(value_name = "PROGRAM", required_unless_present = "attach")]
    program: Option<String>,

    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ArgFormat {
    /// Raw numbers.
    Raw,
    /// Decoded values (the default).
    Verbose,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum SortKey {
    Time,
    Calls,
    Name,
    Errors,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// The Windows debug API alone: traps each call's return (slow: one
    /// debug event per call).
    Debug,
    /// An agent DLL injected into the target records each call in shared
    /// memory (near-zero overhead); the debug API traces each process until
    /// the agent is in, and its threads, DLLs, exceptions and exits.
    Inject,
}

/// The text after the options in --help: the output format and the classes
/// of -e trace=%CLASS, listed from the filter crate's data.
fn after_help() -> String {
    let mut text = String::from(
        "Each call prints as NAME(ARGS...) = STATUS, e.g.\n  \
         NtOpenFile(0x5ff6a8, 0x100001, 0x5ff6b0, 0x5ff6c0, ...) = 0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND\n\n\
         Classes for -e trace=%CLASS:\n",
    );
    for class in winstrace_filter::classes() {
        text.push_str(&format!("  %{:<10} {}\n", class.name, class.description));
    }
    text.push_str(
        "\nCtrl-C detaches: the traps are removed and the target runs on.\n\
         winstrace exits with the target's exit code.",
    );
    text
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().after_help(after_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("winstrace: {message}");
            ExitCode::from(1)
        }
    }
}

/// The trace's destination: a file is buffered, standard error is written
/// line by line so that trace and program output interleave in order.
/// Returns a second writer to the same place when `twice` (for -C).
fn open_output(
    path: Option<&PathBuf>,
    twice: bool,
) -> Result<(Box<dyn Write>, Option<Box<dyn Write>>, bool), String> {
    match path {
        Some(path) => {
            let file = File::create(path).map_err(|e| format!("cannot create '{}': {e}", path.display()))?;
            let second: Option<Box<dyn Write>> = match twice {
                true => Some(Box::new(file.try_clone().map_err(|e| format!("'{}': {e}", path.display()))?)),
                false => None,
            };
            Ok((Box::new(BufWriter::with_capacity(1 << 16, file)), second, false))
        }
        None => {
            let second: Option<Box<dyn Write>> = twice.then(|| Box::new(io::stderr()) as Box<dyn Write>);
            Ok((Box::new(BufWriter::new(io::stderr())), second, true))
        }
    }
}

/// The trace set of the last `-e trace=` (all functions without one).
fn trace_set(cli: &Cli) -> Result<TraceSet, String> {
    match cli.expressions.last() {
        Some(expr) => TraceSet::parse_expression(expr).map_err(|e| format!("-e {expr}: {e}")),
        None => Ok(TraceSet::default()),
    }
}

/// The status filter of `-Z` / `-z`.
fn status_filter(cli: &Cli) -> StatusFilter {
    match (cli.failed_only, cli.successful_only) {
        (true, _) => StatusFilter::FailedOnly,
        (_, true) => StatusFilter::SuccessfulOnly,
        _ => StatusFilter::All,
    }
}

/// The sink the options ask for.
fn build_sink(cli: &Cli) -> Result<Box<dyn EventSink>, String> {
    let sort = match cli.sort_by {
        SortKey::Time => SortBy::Time,
        SortKey::Calls => SortBy::Calls,
        SortKey::Name => SortBy::Name,
        SortKey::Errors => SortBy::Errors,
    };
    if cli.follow >= 2 && !cli.json && !cli.summary_only {
        if let Some(prefix) = &cli.output {
            return Ok(Box::new(PerProcessSink::new(prefix.clone(), text_options(cli, false))));
        }
    }
    let (out, second, flush_each_line) = open_output(cli.output.as_ref(), cli.summary_too)?;
    if cli.summary_only {
        return Ok(Box::new(SummarySink::new(out, sort)));
    }
    if cli.json {
        return Ok(Box::new(JsonSink::new(out, env!("CARGO_PKG_VERSION")).flush_each_line(flush_each_line)));
    }
    let text = Box::new(TextSink::new(out, text_options(cli, flush_each_line)));
    match second {
        Some(second) => Ok(Box::new(TeeSink::new(vec![text, Box::new(SummarySink::new(second, sort))]))),
        None => Ok(text),
    }
}

fn text_options(cli: &Cli, flush_each_line: bool) -> winstrace_core::text::TextOptions {
    use winstrace_core::text::{TextOptions, TimeFormat};
    let time = match (cli.relative, cli.timestamps) {
        (true, _) => TimeFormat::Relative,
        (false, 0) => TimeFormat::None,
        (false, 1) => TimeFormat::Seconds,
        (false, 2) => TimeFormat::Micros,
        (false, _) => TimeFormat::Epoch,
    };
    TextOptions { time, durations: cli.durations, flush_each_line }
}

#[cfg(windows)]
fn run(cli: &Cli) -> Result<ExitCode, String> {
    use winstrace_engine_debug as engine;

    let target = match (&cli.attach, &cli.program) {
        (Some(spec), _) => engine::Target::Attach { pid: target::resolve_pid(spec)? },
        (None, Some(program)) => engine::Target::Launch { program: program.clone(), args: cli.args.clone() },
        (None, None) => unreachable!("clap requires PROGRAM unless -p is given"),
    };
    let mut sink = build_sink(cli)?;
    engine::install_ctrl_c_handler();
    let options = engine::Options {
        follow_children: cli.follow > 0,
        trace: trace_set(cli)?,
        status: status_filter(cli),
        handle_names: cli.handle_names,
        record_sample: cli.record_sample.clone(),
        decode: winstrace_decode::DecodeOptions {
            string_limit: cli.string_limit,
            raw: cli.format == Some(ArgFormat::Raw),
        },
    };
    // The in-process engine runs inside the debugger engine's session: the
    // debugger traces each process until the agent is in, and reports the
    // threads, DLLs, exceptions and exits throughout.
    let mut inject = match cli.engine {
        Engine::Inject => Some(
            winstrace_engine_inject::Inject::new(&winstrace_engine_inject::Options {
                agent_dll: agent_dll::write_out()?,
                decode: options.decode.clone(),
                trace: options.trace.clone(),
                status: options.status,
                handle_names: options.handle_names,
            })
            .map_err(|e| e.to_string())?,
        ),
        Engine::Debug => None,
    };
    let companion = inject.as_mut().map(|c| c as &mut dyn engine::Companion);
    let outcome =
        engine::trace_with(&target, &options, sink.as_mut(), companion).map_err(|e| e.to_string())?;
    let s = outcome.stats;
    if cli.stats {
        eprintln!(
            "winstrace: {} debug events for {} calls ({:.3} per call), {} functions hooked, {} without a signature, peak memory {}, {} records lost",
            s.debug_events,
            s.calls,
            s.events_per_call(),
            s.hooked_functions,
            s.functions_without_signature,
            peak_memory(),
            s.lost_records,
        );
    }
    if s.lost_records > 0 {
        eprintln!("winstrace: {} calls were not recorded (the ring lost them)", s.lost_records);
    }
    // Windows exit codes are 32-bit; ExitCode only carries 8 bits, so exit
    // directly with the full value.
    let code = outcome.exit_code.unwrap_or(0);
    drop(sink);
    std::process::exit(code as i32)
}

/// winstrace's own peak working set, for `--stats`.
#[cfg(windows)]
fn peak_memory() -> String {
    match winstrace_engine_debug::live::peak_working_set() {
        Some(bytes) => format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64),
        None => "unknown".into(),
    }
}

#[cfg(not(windows))]
fn run(cli: &Cli) -> Result<ExitCode, String> {
    let _ = (build_sink, trace_set, status_filter, agent_dll::write_out, cli);
    Err("winstrace traces Windows programs and runs only on Windows (or under Wine)".into())
}
