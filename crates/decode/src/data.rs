//! The decoders' data files (`crates/decode/data/`), compiled in with
//! `include_str!` and parsed once, on first use.
//!
//! The files are part of the program: a malformed line is a bug, reported by
//! a panic naming the file and line (the unit tests load every file, so such
//! a bug cannot get past `cargo test`). Nothing in them comes from a target.

use std::collections::HashMap;
use std::sync::OnceLock;

use winstrace_signatures::Dir;

use crate::spec::Spec;

const PARAMS: &str = include_str!("../data/params.tsv");
const ACCESS: &str = include_str!("../data/access.tsv");
const BUFFERS: &str = include_str!("../data/buffers.tsv");
const CLASSES: &str = include_str!("../data/classes.tsv");
const STRUCTS: &str = include_str!("../data/structs.txt");

/// A row of params.tsv.
#[derive(Debug)]
pub(crate) struct ParamRule {
    pub spec: Option<Spec>,
    pub dir: Option<Dir>,
}

/// A row of access.tsv.
#[derive(Debug)]
pub(crate) struct AccessRule {
    pub object: &'static str,
    /// (parameter, mask, object): use `object` when the parameter has a bit
    /// of `mask` set.
    pub switch: Option<(&'static str, u64, &'static str)>,
}

/// Where a buffer's length comes from (buffers.tsv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LenSource {
    Param(&'static str),
    Deref(&'static str),
    Iosb(&'static str),
}

/// What a buffer holds (buffers.tsv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    Bytes,
    /// Registry data; the REG_* type is this parameter.
    RegData(&'static str),
    /// The information class in this parameter selects the layout.
    Class(&'static str),
}

#[derive(Debug)]
pub(crate) struct BufferRule {
    pub length: Option<LenSource>,
    pub max: Option<LenSource>,
    pub content: Content,
}

#[derive(Debug)]
pub(crate) struct FieldDef {
    pub name: &'static str,
    pub offset: u64,
    pub spec: Spec,
    pub omit: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct StructDef {
    pub name: &'static str,
    pub size: u64,
    pub fields: Vec<FieldDef>,
}

impl StructDef {
    pub(crate) fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

struct Rules {
    /// function (or `*`) -> parameter -> rule
    params: HashMap<&'static str, HashMap<&'static str, ParamRule>>,
    access: HashMap<&'static str, AccessRule>,
    /// function -> buffer parameter -> rule
    buffers: HashMap<&'static str, HashMap<&'static str, BufferRule>>,
    /// class enum type -> value -> spec
    classes: HashMap<&'static str, HashMap<u64, Spec>>,
    structs: HashMap<&'static str, StructDef>,
}

/// Non-comment, non-blank lines with their 1-based numbers.
fn lines(text: &'static str) -> impl Iterator<Item = (usize, &'static str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

fn bad(file: &str, line: usize, why: impl std::fmt::Display) -> ! {
    panic!("crates/decode/data/{file}:{line}: {why}")
}

fn parse_int(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_len(file: &str, n: usize, text: &'static str) -> Option<LenSource> {
    if text == "-" {
        return None;
    }
    Some(match text.split_once(':') {
        Some(("param", p)) => LenSource::Param(p),
        Some(("deref", p)) => LenSource::Deref(p),
        Some(("iosb", p)) => LenSource::Iosb(p),
        _ => bad(file, n, format!("bad length source `{text}`")),
    })
}

fn parse_dir(file: &str, n: usize, text: &str) -> Option<Dir> {
    match text {
        "-" => None,
        "in" => Some(Dir::In),
        "out" => Some(Dir::Out),
        "inout" => Some(Dir::InOut),
        _ => bad(file, n, format!("bad direction `{text}`")),
    }
}

fn spec(file: &str, n: usize, text: &'static str) -> Spec {
    Spec::parse(text).unwrap_or_else(|e| bad(file, n, e))
}

fn load_structs() -> HashMap<&'static str, StructDef> {
    let mut out: HashMap<&'static str, StructDef> = HashMap::new();
    let mut current: Option<StructDef> = None;
    for (n, l) in lines(STRUCTS) {
        if let Some(head) = l.strip_prefix('[') {
            let head = head.strip_suffix(']').unwrap_or_else(|| bad("structs.txt", n, "want [NAME SIZE]"));
            let (name, size) =
                head.split_once(' ').unwrap_or_else(|| bad("structs.txt", n, "want [NAME SIZE]"));
            let size = parse_int(size).unwrap_or_else(|| bad("structs.txt", n, "bad size"));
            if let Some(done) = current.replace(StructDef { name, size, fields: Vec::new() }) {
                out.insert(done.name, done);
            }
            continue;
        }
        let Some(def) = current.as_mut() else { bad("structs.txt", n, "field before any [NAME SIZE]") };
        let cols: Vec<&'static str> = l.split('\t').collect();
        if cols.len() < 3 || cols.len() > 4 {
            bad("structs.txt", n, "want offset, name, spec[, omit=N]");
        }
        let offset = parse_int(cols[0]).unwrap_or_else(|| bad("structs.txt", n, "bad offset"));
        let omit = cols.get(3).map(|o| {
            o.strip_prefix("omit=")
                .and_then(parse_int)
                .unwrap_or_else(|| bad("structs.txt", n, "want omit=N"))
        });
        def.fields.push(FieldDef { name: cols[1], offset, spec: spec("structs.txt", n, cols[2]), omit });
    }
    if let Some(done) = current {
        out.insert(done.name, done);
    }
    out
}

fn rules() -> &'static Rules {
    static R: OnceLock<Rules> = OnceLock::new();
    R.get_or_init(|| {
        let mut params = HashMap::new();
        for (n, l) in lines(PARAMS) {
            let cols: Vec<&'static str> = l.split('\t').collect();
            let [function, param, spec_text, dir] = cols[..] else { bad("params.tsv", n, "want 4 columns") };
            let spec = (spec_text != "-").then(|| spec("params.tsv", n, spec_text));
            let dir = parse_dir("params.tsv", n, dir);
            let rows: &mut HashMap<_, _> = params.entry(function).or_default();
            if rows.insert(param, ParamRule { spec, dir }).is_some() {
                bad("params.tsv", n, "duplicate row");
            }
        }
        let mut access = HashMap::new();
        for (n, l) in lines(ACCESS) {
            let cols: Vec<&'static str> = l.split('\t').collect();
            let (function, object, switch) = match cols[..] {
                [f, o] => (f, o, None),
                [f, o, s] => {
                    let parsed = s.split_once(':').and_then(|(p, rest)| {
                        let (mask, obj) = rest.split_once('=')?;
                        Some((p, parse_int(mask)?, obj))
                    });
                    (f, o, Some(parsed.unwrap_or_else(|| bad("access.tsv", n, "want PARAM:MASK=OBJECT"))))
                }
                _ => bad("access.tsv", n, "want 2 or 3 columns"),
            };
            access.insert(function, AccessRule { object, switch });
        }
        let mut buffers = HashMap::new();
        for (n, l) in lines(BUFFERS) {
            let cols: Vec<&'static str> = l.split('\t').collect();
            let [function, param, length, max, content] = cols[..] else {
                bad("buffers.tsv", n, "want 5 columns")
            };
            let content = match content.split_once(':') {
                None if content == "bytes" => Content::Bytes,
                Some(("regdata", p)) => Content::RegData(p),
                Some(("class", p)) => Content::Class(p),
                _ => bad("buffers.tsv", n, format!("bad content `{content}`")),
            };
            let rule = BufferRule {
                length: parse_len("buffers.tsv", n, length),
                max: parse_len("buffers.tsv", n, max),
                content,
            };
            buffers.entry(function).or_insert_with(HashMap::new).insert(param, rule);
        }
        let mut classes = HashMap::new();
        for (n, l) in lines(CLASSES) {
            let cols: Vec<&'static str> = l.split('\t').collect();
            if cols.len() < 3 {
                bad("classes.tsv", n, "want class type, value, spec");
            }
            let value = parse_int(cols[1]).unwrap_or_else(|| bad("classes.tsv", n, "bad value"));
            classes
                .entry(cols[0])
                .or_insert_with(HashMap::new)
                .insert(value, spec("classes.tsv", n, cols[2]));
        }
        Rules { params, access, buffers, classes, structs: load_structs() }
    })
}

/// The params.tsv rule for `param` of `function`: the function's own row,
/// else the `*` row.
pub(crate) fn param_rule(function: &str, param: &str) -> Option<&'static ParamRule> {
    let r = rules();
    let row = |f: &str| r.params.get(f).and_then(|rows| rows.get(param));
    row(function).or_else(|| row("*"))
}

pub(crate) fn access_rule(function: &str) -> Option<&'static AccessRule> {
    rules().access.get(function)
}

pub(crate) fn buffer_rule(function: &str, param: &str) -> Option<&'static BufferRule> {
    rules().buffers.get(function)?.get(param)
}

/// The spec of the buffer that information class `value` of enum type
/// `class_type` selects.
pub(crate) fn class_spec(class_type: &str, value: u64) -> Option<&'static Spec> {
    rules().classes.get(class_type)?.get(&value)
}

pub(crate) fn structure(name: &str) -> Option<&'static StructDef> {
    rules().structs.get(name)
}

/// For the tests: every rule, to check them against the signatures.
#[cfg(test)]
pub(crate) mod all {
    use super::*;

    pub(crate) fn params() -> impl Iterator<Item = (&'static str, &'static str, &'static ParamRule)> {
        rules().params.iter().flat_map(|(f, rows)| rows.iter().map(|(p, r)| (*f, *p, r)))
    }
    pub(crate) fn access() -> impl Iterator<Item = (&'static str, &'static AccessRule)> {
        rules().access.iter().map(|(f, r)| (*f, r))
    }
    pub(crate) fn buffers() -> impl Iterator<Item = (&'static str, &'static str, &'static BufferRule)> {
        rules().buffers.iter().flat_map(|(f, rows)| rows.iter().map(|(p, r)| (*f, *p, r)))
    }
    pub(crate) fn classes() -> impl Iterator<Item = (&'static str, u64, &'static Spec)> {
        rules().classes.iter().flat_map(|(t, rows)| rows.iter().map(|(v, s)| (*t, *v, s)))
    }
    pub(crate) fn structs() -> impl Iterator<Item = &'static StructDef> {
        rules().structs.values()
    }
}
