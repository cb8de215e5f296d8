//! The shared mapping between the tracer and an injected agent.
//!
//! The tracer creates a named file mapping, [`mapping_name`]`(pid)`, before
//! the traced process runs any code of its own; the agent, when its DLL is
//! loaded, opens the mapping of its own process id. All of it is native
//! (little-endian) `u64` words, offsets in bytes, nothing is a pointer:
//!
//! | word | field | written by |
//! | --- | --- | --- |
//! | 0 | magic `b"wsMAP\0\0\x03"` (the last byte is the layout version; stored last, Release) | tracer |
//! | 1 | ring offset (bytes, a multiple of 8) | tracer |
//! | 2 | ring size (bytes: header and data area, see winstrace-ring) | tracer |
//! | 3 | name table offset (bytes, a multiple of 8) | tracer |
//! | 4 | name table capacity (bytes, a multiple of 8) | tracer |
//! | 5 | agent state: 0 not yet, [`AGENT_ATTACHED`], [`AGENT_FAILED`] (stored last, Release) | agent |
//! | 6 | `winstrace_agent_attach`'s result (an `i32` sign-extended) | agent |
//! | 7 | name table length (bytes) | agent |
//! | 8 | string limit (`-s`) the tracer decodes with | tracer |
//! | 9 | options: bit 0 = raw decoding (capture nothing), bit 1 = hook only the functions of the request table | tracer |
//! | 10 | request table offset (bytes, a multiple of 8) | tracer |
//! | 11 | request table length (bytes) | tracer |
//! | 12 | address of `winstrace_agent_detach` in the agent's process (0 if none) | agent |
//! | 13 | processed: the ring position (bytes) up to which the tracer has handled the records, decoding included | tracer |
//! | 14 | address of the agent's in-flight table in its process (see `winstrace_hook::trampoline::SLOTS_BYTES`; 0 if none) | agent |
//! | 15.. | ring, then name table, then request table | |
//!
//! Both tables hold function names, ASCII, each followed by `\n`, packed
//! little-endian into the words. The name table lists the hooked
//! functions in record index order (the `function` field of a
//! [`crate::record::CallRecord`]); the agent fills it before it publishes
//! its state, and the tracer reads nothing of it until it has seen the
//! state with Acquire. The request table, sorted, is the tracer's
//! `-e trace=` set: the functions to hook.
//!
//! The agent's process can write anything anywhere in the mapping, so the
//! tracer checks everything it reads there ([`read_agent_state`] never
//! panics); the agent checks the tracer's words as well.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::AgentConfig;

/// Word 0: `wsMAP`, two zero bytes, layout version 3.
pub const MAGIC: u64 = u64::from_le_bytes(*b"wsMAP\0\0\x03");
/// Words of the header, before the ring.
pub const HEADER_WORDS: usize = 15;
/// Word 5 value: the agent attached; words 6 and 7 and the table are set.
pub const AGENT_ATTACHED: u64 = 1;
/// Word 5 value: the agent found the mapping but attaching failed (word 6
/// holds the error, see `ATTACH_ERRORS`).
pub const AGENT_FAILED: u64 = 2;

const W_MAGIC: usize = 0;
const W_RING_OFFSET: usize = 1;
const W_RING_BYTES: usize = 2;
const W_NAMES_OFFSET: usize = 3;
const W_NAMES_CAPACITY: usize = 4;
const W_AGENT_STATE: usize = 5;
const W_ATTACH_RESULT: usize = 6;
const W_NAMES_LENGTH: usize = 7;
const W_STRING_LIMIT: usize = 8;
const W_OPTIONS: usize = 9;
const W_REQUEST_OFFSET: usize = 10;
const W_REQUEST_LENGTH: usize = 11;
const W_DETACH_ROUTINE: usize = 12;
const W_PROCESSED: usize = 13;
const W_IN_FLIGHT_TABLE: usize = 14;

const OPTION_RAW: u64 = 1;
const OPTION_ONLY_REQUESTED: u64 = 2;

/// The mapping of process `pid`: a session-local name.
pub fn mapping_name(pid: u32) -> String {
    format!("Local\\winstrace-ring-{pid}")
}

/// Where the parts of a mapping are, in words from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub ring_offset: usize,
    pub ring_words: usize,
    pub names_offset: usize,
    pub names_words: usize,
    pub request_offset: usize,
    pub request_words: usize,
}

/// The names as a table: each followed by `\n`, in words.
fn table_bytes<'n>(names: impl Iterator<Item = &'n str>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in names {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

/// Reads `len` bytes of a table; `None` if they do not fit or are not ASCII.
fn read_table(table: &[AtomicU64], len: u64) -> Option<Vec<String>> {
    let len = usize::try_from(len).ok().filter(|&l| l <= table.len() * 8)?;
    let bytes: Vec<u8> =
        table.iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()).take(len).collect();
    let text = String::from_utf8(bytes).ok().filter(|t| t.is_ascii())?;
    Some(text.split_terminator('\n').map(str::to_string).collect())
}

impl Layout {
    /// A layout for a ring of `ring_words` words (see
    /// `winstrace_ring::Ring::region_words`), a name table of `names_bytes`
    /// bytes and a request table of `request_bytes` (rounded up to whole
    /// words).
    pub fn new(ring_words: usize, names_bytes: usize, request_bytes: usize) -> Layout {
        let names_offset = HEADER_WORDS + ring_words;
        let names_words = names_bytes.div_ceil(8);
        Layout {
            ring_offset: HEADER_WORDS,
            ring_words,
            names_offset,
            names_words,
            request_offset: names_offset + names_words,
            request_words: request_bytes.div_ceil(8),
        }
    }

    /// The layout for a config: room for its request table.
    pub fn for_config(ring_words: usize, names_bytes: usize, config: &AgentConfig) -> Layout {
        let request =
            config.only.as_ref().map_or(0, |only| table_bytes(only.iter().map(String::as_str)).len());
        Layout::new(ring_words, names_bytes, request)
    }

    /// Words of the whole mapping.
    pub fn total_words(&self) -> usize {
        self.request_offset + self.request_words
    }

    /// Writes the header and the config (tracer side, before the agent can
    /// run). The request table must fit: use [`Layout::for_config`].
    pub fn write_header(&self, region: &[AtomicU64], config: &AgentConfig) {
        let request = config.only.as_ref().map(|only| table_bytes(only.iter().map(String::as_str)));
        let request_len = request.as_ref().map_or(0, Vec::len).min(self.request_words * 8);
        if let Some(bytes) = &request {
            let table = &region[self.request_offset..self.request_offset + self.request_words];
            for (word, chunk) in table.iter().zip(bytes[..request_len].chunks(8)) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                word.store(u64::from_le_bytes(w), Ordering::Relaxed);
            }
        }
        let options = if config.decode.raw { OPTION_RAW } else { 0 }
            | if request.is_some() { OPTION_ONLY_REQUESTED } else { 0 };
        let values = [
            (W_RING_OFFSET, self.ring_offset * 8),
            (W_RING_BYTES, self.ring_words * 8),
            (W_NAMES_OFFSET, self.names_offset * 8),
            (W_NAMES_CAPACITY, self.names_words * 8),
            (W_AGENT_STATE, 0),
            (W_ATTACH_RESULT, 0),
            (W_NAMES_LENGTH, 0),
            (W_STRING_LIMIT, config.decode.string_limit),
            (W_OPTIONS, options as usize),
            (W_REQUEST_OFFSET, self.request_offset * 8),
            (W_REQUEST_LENGTH, request_len),
            (W_DETACH_ROUTINE, 0),
            (W_PROCESSED, 0),
        ];
        for (word, value) in values {
            region[word].store(value as u64, Ordering::Relaxed);
        }
        region[W_MAGIC].store(MAGIC, Ordering::Release);
    }

    /// Reads and checks the header of `region`: the parts must be aligned,
    /// after the header, apart, in order and inside the region.
    pub fn read_header(region: &[AtomicU64]) -> Option<Layout> {
        if region.len() < HEADER_WORDS || region[W_MAGIC].load(Ordering::Acquire) != MAGIC {
            return None;
        }
        let word_count = |w: usize| -> Option<usize> {
            let bytes = region[w].load(Ordering::Relaxed);
            (bytes % 8 == 0).then(|| usize::try_from(bytes / 8).ok()).flatten()
        };
        let request_bytes = region[W_REQUEST_LENGTH].load(Ordering::Relaxed);
        let layout = Layout {
            ring_offset: word_count(W_RING_OFFSET)?,
            ring_words: word_count(W_RING_BYTES)?,
            names_offset: word_count(W_NAMES_OFFSET)?,
            names_words: word_count(W_NAMES_CAPACITY)?,
            request_offset: word_count(W_REQUEST_OFFSET)?,
            request_words: usize::try_from(request_bytes.div_ceil(8)).ok()?,
        };
        let ring_end = layout.ring_offset.checked_add(layout.ring_words)?;
        let names_end = layout.names_offset.checked_add(layout.names_words)?;
        let request_end = layout.request_offset.checked_add(layout.request_words)?;
        let ok = layout.ring_offset >= HEADER_WORDS
            && layout.names_offset >= ring_end
            && layout.request_offset >= names_end
            && request_end <= region.len();
        ok.then_some(layout)
    }

    /// The ring's words.
    pub fn ring<'a>(&self, region: &'a [AtomicU64]) -> &'a [AtomicU64] {
        &region[self.ring_offset..self.ring_offset + self.ring_words]
    }
}

/// Agent side: the tracer's config, from a header [`Layout::read_header`]
/// accepted. A request table that makes no sense hooks nothing rather than
/// everything (the tracer asked for a subset).
pub fn read_config(region: &[AtomicU64], layout: &Layout) -> AgentConfig {
    let limit = region[W_STRING_LIMIT].load(Ordering::Relaxed);
    let options = region[W_OPTIONS].load(Ordering::Relaxed);
    let decode = winstrace_decode::DecodeOptions {
        string_limit: usize::try_from(limit).unwrap_or(usize::MAX),
        raw: options & OPTION_RAW != 0,
    };
    let only = (options & OPTION_ONLY_REQUESTED != 0).then(|| {
        let table = &region[layout.request_offset..layout.request_offset + layout.request_words];
        let mut names =
            read_table(table, region[W_REQUEST_LENGTH].load(Ordering::Relaxed)).unwrap_or_default();
        names.sort();
        names
    });
    AgentConfig { decode, only }
}

/// Tracer side: every record before ring position `position` is handled
/// (decoded, its handles named). Reading a record is not enough: the
/// process's exit waits for this (see the agent's `wait_for_tracer`), so
/// that what the tracer looks up in the living process is still there.
pub fn acknowledge_processed(region: &[AtomicU64], position: u64) {
    if let Some(word) = region.get(W_PROCESSED) {
        word.fetch_max(position, Ordering::Release);
    }
}

/// Agent side: the ring position up to which the tracer has handled the
/// records.
pub fn processed(region: &[AtomicU64]) -> u64 {
    region.get(W_PROCESSED).map_or(0, |w| w.load(Ordering::Acquire))
}

/// Agent side: writes the names (record index order), the attach result,
/// the addresses of its detach routine and of its in-flight table, then
/// publishes them. Names that do not fit, and non-ASCII or `\n`
/// characters, make the table end early (the tracer then shows such
/// functions by number).
pub fn publish_names<'n>(
    region: &[AtomicU64],
    layout: &Layout,
    names: impl Iterator<Item = &'n str>,
    attach_result: i32,
    detach_routine: u64,
    in_flight_table: u64,
) {
    let table = &region[layout.names_offset..layout.names_offset + layout.names_words];
    let capacity = table.len() * 8;
    let mut word = 0u64;
    let mut len = 0usize;
    let mut push = |byte: u8, len: &mut usize| {
        word |= u64::from(byte) << (8 * (*len % 8));
        *len += 1;
        if *len % 8 == 0 {
            table[*len / 8 - 1].store(word, Ordering::Relaxed);
            word = 0;
        }
    };
    for name in names {
        if len + name.len() + 1 > capacity || !name.bytes().all(|b| b.is_ascii_graphic()) {
            break;
        }
        for b in name.bytes() {
            push(b, &mut len);
        }
        push(b'\n', &mut len);
    }
    if len % 8 != 0 {
        table[len / 8].store(word, Ordering::Relaxed);
    }
    region[W_ATTACH_RESULT].store(attach_result as i64 as u64, Ordering::Relaxed);
    region[W_DETACH_ROUTINE].store(detach_routine, Ordering::Relaxed);
    region[W_IN_FLIGHT_TABLE].store(in_flight_table, Ordering::Relaxed);
    region[W_NAMES_LENGTH].store(len as u64, Ordering::Relaxed);
    let state = if attach_result >= 0 { AGENT_ATTACHED } else { AGENT_FAILED };
    // Release: a tracer that sees the state sees the table and result.
    region[W_AGENT_STATE].store(state, Ordering::Release);
}

/// Tracer side: where the agent's detach routine is in its process (to run
/// it with CreateRemoteThread), once the agent has attached; 0 if unknown.
/// The value comes from the target: running it can only run the target's
/// own code in the target.
pub fn detach_routine(region: &[AtomicU64]) -> u64 {
    match region.get(W_AGENT_STATE).map(|w| w.load(Ordering::Acquire)) {
        Some(AGENT_ATTACHED) => region[W_DETACH_ROUTINE].load(Ordering::Relaxed),
        _ => 0,
    }
}

/// Tracer side: where the agent's in-flight table is in its process, once
/// the agent has attached; 0 if unknown. Only ever read from there, with
/// ReadProcessMemory, and parsed as untrusted.
pub fn in_flight_table(region: &[AtomicU64]) -> u64 {
    match region.get(W_AGENT_STATE).map(|w| w.load(Ordering::Acquire)) {
        Some(AGENT_ATTACHED) => region[W_IN_FLIGHT_TABLE].load(Ordering::Relaxed),
        _ => 0,
    }
}

/// What the agent has published so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Nothing yet (the DLL has not run, or is still attaching).
    Pending,
    /// Attached: the names of the hooked functions in index order.
    Attached(Vec<String>),
    /// Attaching failed with this error (see `ATTACH_ERRORS`).
    Failed(i32),
    /// The agent's words make no sense.
    Invalid,
}

/// Tracer side: the agent's state and name table.
pub fn read_agent_state(region: &[AtomicU64], layout: &Layout) -> AgentState {
    match region[W_AGENT_STATE].load(Ordering::Acquire) {
        0 => AgentState::Pending,
        AGENT_FAILED => AgentState::Failed(region[W_ATTACH_RESULT].load(Ordering::Relaxed) as i32),
        AGENT_ATTACHED => {
            let table = &region[layout.names_offset..layout.names_offset + layout.names_words];
            match read_table(table, region[W_NAMES_LENGTH].load(Ordering::Relaxed)) {
                Some(names) => AgentState::Attached(names),
                None => AgentState::Invalid,
            }
        }
        _ => AgentState::Invalid,
    }
}

/// Reads a mapping as both sides do: the header, then the config (agent
/// side) and the agent's state (tracer side). For the fuzz target and the
/// tests: whatever `region` holds, this returns.
pub fn fuzz_mapping(region: &[AtomicU64]) {
    if let Some(layout) = Layout::read_header(region) {
        let _ = layout.ring(region);
        let _ = read_config(region, &layout);
        let _ = read_agent_state(region, &layout);
        let _ = detach_routine(region);
        let _ = in_flight_table(region);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(words: usize) -> Vec<AtomicU64> {
        (0..words).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn header_round_trips_and_is_checked() {
        let layout = Layout::new(100, 60, 0);
        assert_eq!(layout.names_words, 8);
        let r = region(layout.total_words());
        assert_eq!(Layout::read_header(&r), None);
        layout.write_header(&r, &AgentConfig::default());
        assert_eq!(Layout::read_header(&r), Some(layout));
        assert_eq!(layout.ring(&r).len(), 100);
        assert_eq!(read_config(&r, &layout), AgentConfig::default());
        // A region too small for what the header claims is refused.
        let short = region(layout.total_words() - 1);
        layout.write_header(&short, &AgentConfig::default());
        assert_eq!(Layout::read_header(&short), None);
        // Unaligned or overlapping parts are refused.
        r[W_RING_OFFSET].store(12, Ordering::Relaxed);
        assert_eq!(Layout::read_header(&r), None);
        r[W_RING_OFFSET].store(112, Ordering::Relaxed);
        r[W_NAMES_OFFSET].store(112, Ordering::Relaxed);
        assert_eq!(Layout::read_header(&r), None);
        r[W_NAMES_OFFSET].store(u64::MAX - 7, Ordering::Relaxed);
        assert_eq!(Layout::read_header(&r), None);
    }

    #[test]
    fn the_config_reaches_the_agent() {
        let config = AgentConfig {
            decode: winstrace_decode::DecodeOptions { string_limit: 200, raw: true },
            only: Some(vec!["NtClose".into(), "NtCreateFile".into(), "NtQueryAttributesFile".into()]),
        };
        let layout = Layout::for_config(16, 64, &config);
        let r = region(layout.total_words());
        layout.write_header(&r, &config);
        let read = Layout::read_header(&r).unwrap();
        assert_eq!(read, layout);
        let got = read_config(&r, &read);
        assert_eq!(got, config);
        assert!(got.wants("NtClose") && !got.wants("NtOpenFile"));
        assert!(AgentConfig::default().wants("NtOpenFile"));
        assert_eq!(processed(&r), 0);
        acknowledge_processed(&r, 4096);
        acknowledge_processed(&r, 1024);
        assert_eq!(processed(&r), 4096, "it only moves forward");
        // A request table with a non-ASCII byte hooks nothing.
        r[layout.request_offset].store(0xff, Ordering::Relaxed);
        assert_eq!(read_config(&r, &read).only, Some(vec![]));
    }

    #[test]
    fn names_are_published_in_order() {
        let layout = Layout::new(4, 64, 0);
        let r = region(layout.total_words());
        layout.write_header(&r, &AgentConfig::default());
        assert_eq!(read_agent_state(&r, &layout), AgentState::Pending);
        let names = ["NtClose", "NtCreateFile", "NtQueryAttributesFile"];
        assert_eq!(in_flight_table(&r), 0, "nothing before the agent attached");
        publish_names(&r, &layout, names.iter().copied(), 3, 0x7ff0_1234, 0x7ff0_8000);
        assert_eq!(
            read_agent_state(&r, &layout),
            AgentState::Attached(names.iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(detach_routine(&r), 0x7ff0_1234);
        assert_eq!(in_flight_table(&r), 0x7ff0_8000);
    }

    #[test]
    fn a_full_table_ends_early_and_failures_are_reported() {
        let layout = Layout::new(4, 16, 0);
        let r = region(layout.total_words());
        layout.write_header(&r, &AgentConfig::default());
        publish_names(&r, &layout, ["NtClose", "NtOpenFile", "NtX"].into_iter(), 3, 0, 0);
        assert_eq!(read_agent_state(&r, &layout), AgentState::Attached(vec!["NtClose".into()]));
        publish_names(&r, &layout, std::iter::empty(), -6, 0x1000, 0x2000);
        assert_eq!(read_agent_state(&r, &layout), AgentState::Failed(-6));
        assert_eq!(detach_routine(&r), 0, "only an attached agent has one");
    }

    #[test]
    fn hostile_agent_words_never_panic() {
        let layout = Layout::new(4, 16, 0);
        let r = region(layout.total_words());
        layout.write_header(&r, &AgentConfig::default());
        r[W_AGENT_STATE].store(AGENT_ATTACHED, Ordering::Relaxed);
        r[W_NAMES_LENGTH].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(read_agent_state(&r, &layout), AgentState::Invalid);
        r[W_NAMES_LENGTH].store(3, Ordering::Relaxed);
        r[layout.names_offset].store(0xff_ff_ff, Ordering::Relaxed);
        assert_eq!(read_agent_state(&r, &layout), AgentState::Invalid);
        r[W_AGENT_STATE].store(77, Ordering::Relaxed);
        assert_eq!(read_agent_state(&r, &layout), AgentState::Invalid);
    }

    /// Whatever the words of a mapping hold, reading it never panics: what
    /// `cargo fuzz run mapping` checks at length (see FUZZING.md).
    #[test]
    fn arbitrary_mappings_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let words = (x % 40) as usize;
            let r = region(words);
            for w in &r {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Small values often, so that offsets and lengths line up.
                w.store(if x % 3 == 0 { x } else { x % 128 }, Ordering::Relaxed);
            }
            if words > 0 && x % 2 == 0 {
                r[0].store(MAGIC, Ordering::Relaxed);
            }
            fuzz_mapping(&r);
        }
    }
}
