//! The signature data format shared by generated.tsv, supplement.tsv and
//! supplement-review.tsv (crates/signatures/data/). One line per parameter,
//! tab-separated, so a diff or a grep for a function name shows all of it:
//!
//! function  return  pos  param  type  dir  opt  meta  basis
//!
//! pos is 1-based; a function without parameters has one line with pos 0 and
//! `-` in param/type/dir/opt/meta. `opt` is `opt` or `-`. `meta` is the
//! source's own spelling of the type (metadata type, ntapi Rust type) or `-`.
//! Lines starting with `#` are comments.

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: String,
    pub dir: &'static str,
    pub optional: bool,
    pub meta: String,
    pub basis: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub ret: String,
    pub params: Vec<Param>,
    /// Basis of a parameterless function (there's no parameter line to hold it).
    pub basis: String,
}

pub const COLUMNS: &str = "# function\treturn\tpos\tparam\ttype\tdir\topt\tmeta\tbasis\n";

/// Renders functions (sorted by name) in the line format.
pub fn render(header: &str, funcs: &BTreeMap<String, Function>) -> String {
    let mut out = String::new();
    for line in header.lines() {
        writeln!(out, "# {line}").unwrap();
    }
    out.push_str(COLUMNS);
    for f in funcs.values() {
        if f.params.is_empty() {
            writeln!(out, "{}\t{}\t0\t-\t-\t-\t-\t-\t{}", f.name, f.ret, f.basis).unwrap();
        }
        for (i, p) in f.params.iter().enumerate() {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                f.name,
                f.ret,
                i + 1,
                p.name,
                p.ty,
                p.dir,
                if p.optional { "opt" } else { "-" },
                if p.meta.is_empty() { "-" } else { &p.meta },
                p.basis
            )
            .unwrap();
        }
    }
    out
}

/// Parses the line format back (used to read the review file and for coverage).
pub fn parse(text: &str, what: &str) -> Result<BTreeMap<String, Function>, String> {
    let mut funcs: BTreeMap<String, Function> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("{what}:{}: {m}", n + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() != 9 {
            return Err(err("expected 9 tab-separated columns"));
        }
        let pos: usize = c[2].parse().map_err(|_| err("bad pos"))?;
        let f = funcs.entry(c[0].to_string()).or_insert_with(|| Function {
            name: c[0].to_string(),
            ret: c[1].to_string(),
            params: Vec::new(),
            basis: c[8].to_string(),
        });
        if pos == 0 {
            continue;
        }
        if pos != f.params.len() + 1 {
            return Err(err("parameters out of order"));
        }
        let dir = match c[5] {
            "in" => "in",
            "out" => "out",
            "inout" => "inout",
            _ => return Err(err("dir must be in, out or inout")),
        };
        f.params.push(Param {
            name: c[3].to_string(),
            ty: c[4].to_string(),
            dir,
            optional: match c[6] {
                "opt" => true,
                "-" => false,
                _ => return Err(err("opt must be opt or -")),
            },
            meta: if c[7] == "-" { String::new() } else { c[7].to_string() },
            basis: c[8].to_string(),
        });
    }
    Ok(funcs)
}
