//! How many call events per second one core decodes and formats.
//!
//! The sample is a mix of calls as they appear in a real trace of the test
//! program (create, write and close a file; a failed attribute query; a
//! registry write; a memory query and allocation; a wait; a close), each
//! with the target memory its decoders read, laid out as byte images. Each
//! round decodes every call with `decode_call` and formats the whole line
//! as the text sink would. Run: `cargo bench -p winstrace-decode`.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use winstrace_core::event::{Call, CallResult};
use winstrace_core::memory::MemoryImage;
use winstrace_core::text::format_call;
use winstrace_decode::{decode_call, DecodeOptions};

struct Sample {
    function: Arc<str>,
    args: Vec<u64>,
    result: Option<u64>,
}

fn sample() -> (MemoryImage, Vec<Sample>) {
    let path = w("\\??\\C:\\users\\Public\\winstrace-demo.txt");
    let key = w("Software\\winstrace-bench");
    let value = w("Greeting");
    let data = wz("hello");
    let mut mbi = Vec::new();
    for q in [0x1_7003_4000u64, 0x1_7000_0000, 0x80, 0x35000, 0x1000_0000_0000_1000, 0x100_0000] {
        mbi.extend_from_slice(&q.to_le_bytes());
    }
    let mem = MemoryImage::new()
        .with(0x1000, oa(0, 0x1100, 0x40))
        .with(0x1100, ustr(path.len() as u16, path.len() as u16 + 2, 0x1200))
        .with(0x1200, path)
        .with(0x1400, 0x24u64.to_le_bytes())
        .with(0x1500, iosb(0, 2))
        .with(0x1600, b"hello, world\n".to_vec())
        .with(0x2000, oa(0x28, 0x2100, 0x40))
        .with(0x2100, ustr(key.len() as u16, key.len() as u16, 0x2200))
        .with(0x2200, key)
        .with(0x2400, ustr(value.len() as u16, value.len() as u16, 0x2500))
        .with(0x2500, value)
        .with(0x2600, data.clone())
        .with(0x3000, mbi)
        .with(0x3100, 0x2_0000_0000u64.to_le_bytes())
        .with(0x3200, 0x1_0000u64.to_le_bytes())
        .with(0x3300, (-100_000i64).to_le_bytes());
    let ok = Some(0);
    let calls = vec![
        ("NtCreateFile", vec![0x1400, 0x4010_0080, 0x1000, 0x1500, 0, 0x80, 1, 5, 0x60, 0, 0], ok),
        ("NtWriteFile", vec![0x24, 0, 0, 0, 0x1500, 0x1600, 13, 0, 0], ok),
        ("NtClose", vec![0x24], ok),
        ("NtQueryAttributesFile", vec![0x1000, 0x3000], Some(0xc000_0034)),
        ("NtSetValueKey", vec![0x30, 0x2400, 0, 1, 0x2600, data.len() as u64], ok),
        ("NtQueryVirtualMemory", vec![u64::MAX, 0x1_7003_4d90, 0, 0x3000, 48, 0], ok),
        ("NtAllocateVirtualMemory", vec![u64::MAX, 0x3100, 0, 0x3200, 0x3000, 4], ok),
        ("NtWaitForSingleObject", vec![0x44, 0, 0x3300], ok),
    ];
    let samples = calls
        .into_iter()
        .map(|(function, mut args, result)| {
            args.resize(17, 0);
            Sample { function: Arc::from(function), args, result }
        })
        .collect();
    (mem, samples)
}

fn main() {
    let (mem, samples) = sample();
    let opts = DecodeOptions::default();
    let mut line = String::with_capacity(1024);
    let mut run = |events: usize| {
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..events {
            let s = &samples[i % samples.len()];
            let (args, args_complete) = decode_call(&s.function, &s.args, s.result, &mem, &opts);
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
    println!("sample: {} calls; one line of the mix, e.g.:", samples.len());
    let (args, complete) =
        decode_call(&samples[0].function, &samples[0].args, samples[0].result, &mem, &opts);
    line.clear();
    let call = Call {
        function: samples[0].function.clone(),
        id: 0,
        args,
        args_complete: complete,
        result: CallResult::Returned(0),
        resumed: false,
        entry_time: None,
        duration: None,
    };
    format_call(&mut line, &call);
    println!("  {line}");
    println!(
        "decode+format: median {:.2} M events/s (min {:.2}, max {:.2}) over 5 runs of {events} events, one core",
        rates[2] / 1e6,
        rates[0] / 1e6,
        rates[4] / 1e6
    );
}
