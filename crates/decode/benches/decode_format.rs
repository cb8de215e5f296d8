//! How many call events per second one core decodes and formats.
//!
//! The sample (`sample.tsv`) was recorded from real traces under Wine with
//! `winstrace --record-sample`: each call's function, status and arguments,
//! and every byte of target memory its decoding read. Each round replays the
//! sample: `decode_call` over a memory image of those bytes, then the whole
//! line formatted as the text sink would. Run: `cargo bench -p winstrace-decode`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use winstrace_core::event::{Call, CallResult};
use winstrace_core::memory::MemoryImage;
use winstrace_core::text::format_call;
use winstrace_decode::{decode_call, DecodeOptions};

struct Sample {
    function: Arc<str>,
    args: Vec<u64>,
    result: Option<u64>,
    memory: MemoryImage,
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn sample() -> Vec<Sample> {
    include_str!("sample.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex");
            let mut memory = MemoryImage::new();
            for region in cols[3].split(';').filter(|r| !r.is_empty()) {
                let (address, bytes) = region.split_once(':').expect("address:bytes");
                memory = memory.with(hex(address), hex_bytes(bytes));
            }
            Sample {
                function: Arc::from(cols[0]),
                result: (cols[1] != "?").then(|| hex(cols[1])),
                args: cols[2].split(',').map(hex).collect(),
                memory,
            }
        })
        .collect()
}

fn main() {
    let samples = sample();
    let opts = DecodeOptions::default();
    let mut line = String::with_capacity(1024);
    let mut run = |events: usize| {
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..events {
            let s = &samples[i % samples.len()];
            let (args, args_complete) = decode_call(&s.function, &s.args, s.result, &s.memory, &opts);
            let call = Call {
                function: s.function.clone(),
                id: 0,
                args,
                args_complete,
                result: s.result.map_or(CallResult::NoReturn, CallResult::Returned),
                resumed: false,
                entry_time: None,
                duration: None,
            };
            line.clear();
            format_call(&mut line, black_box(&call));
            bytes += line.len();
        }
        (start.elapsed(), bytes)
    };
    run(100_000); // warm-up
                  // WINSTRACE_BENCH_EVENTS shortens the run, e.g. under a profiler.
    let events =
        std::env::var("WINSTRACE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let (took, bytes) = run(events);
            black_box(bytes);
            events as f64 / took.max(Duration::from_nanos(1)).as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    println!("sample: {} recorded calls (benches/sample.tsv)", samples.len());
    println!(
        "decode+format: median {:.2} M events/s (min {:.2}, max {:.2}) over 5 runs of {events} events, one core",
        rates[2] / 1e6,
        rates[0] / 1e6,
        rates[4] / 1e6
    );
}
