//! Checks of the data files against each other and against the signatures.
//! (Decoder and whole-call tests are in `tests/`.)

use std::collections::HashSet;

use super::*;

fn sig(function: &str) -> &'static Signature {
    winstrace_signatures::lookup(function).unwrap_or_else(|| panic!("no signature for {function}"))
}

fn has_param(function: &str, param: &str) -> bool {
    sig(function).params.iter().any(|p| p.name == param)
}

/// Every spec reachable from `spec` names things that exist.
fn check_spec(spec: &Spec, inside: Option<&data::StructDef>, what: &str) {
    match spec {
        Spec::Ptr(inner) => check_spec(inner, None, what),
        Spec::Xlat { table, .. } | Spec::Access(Some(table)) => {
            assert!(xlat::has_table(table), "{what}: no xlat table {table}")
        }
        Spec::Struct(name) => {
            let def = data::structure(name).unwrap_or_else(|| panic!("{what}: no struct {name}"));
            assert!(Some(def.name) != inside.map(|d| d.name), "{what}: {name} contains itself");
        }
        Spec::WChars(f) | Spec::Bytes(f) => {
            let def = inside.unwrap_or_else(|| panic!("{what}: tail outside a structure"));
            assert!(def.field(f).is_some(), "{what}: no field {f}");
        }
        Spec::RegData { ty, len } => {
            let def = inside.unwrap_or_else(|| panic!("{what}: tail outside a structure"));
            assert!(def.field(ty).is_some() && def.field(len).is_some(), "{what}: no field {ty}/{len}");
        }
        _ => {}
    }
}

#[test]
fn params_rules_name_real_parameters() {
    let mut n = 0;
    for (function, param, rule) in data::all::params() {
        if let Some(spec) = &rule.spec {
            check_spec(spec, None, &format!("params.tsv {function} {param}"));
        }
        if function == "*" {
            let used = winstrace_signatures::all().iter().any(|s| s.params.iter().any(|p| p.name == param));
            assert!(used, "params.tsv: no function has a parameter {param}");
        } else {
            assert!(has_param(function, param), "params.tsv: {function} has no parameter {param}");
        }
        n += 1;
    }
    assert!(n > 30);
}

#[test]
fn access_rules_name_real_functions() {
    for (function, rule) in data::all::access() {
        let s = sig(function);
        assert!(s.params.iter().any(|p| p.ty == "ACCESS_MASK"), "access.tsv: {function} has no ACCESS_MASK");
        assert!(xlat::has_table(rule.object), "access.tsv: no xlat table {}", rule.object);
        if let Some((param, _, object)) = rule.switch {
            assert!(has_param(function, param), "access.tsv: {function} has no parameter {param}");
            assert!(xlat::has_table(object), "access.tsv: no xlat table {object}");
        }
    }
}

#[test]
fn buffer_rules_name_real_parameters() {
    for (function, param, rule) in data::all::buffers() {
        assert!(has_param(function, param), "buffers.tsv: {function} has no parameter {param}");
        for src in [rule.length, rule.max].into_iter().flatten() {
            let (LenSource::Param(p) | LenSource::Deref(p) | LenSource::Iosb(p)) = src;
            assert!(has_param(function, p), "buffers.tsv: {function} has no parameter {p}");
        }
        match rule.content {
            Content::RegData(p) | Content::Class(p) => {
                assert!(has_param(function, p), "buffers.tsv: {function} has no parameter {p}")
            }
            Content::Bytes => {}
        }
        assert!(rule.length.is_some() || rule.max.is_some(), "buffers.tsv: {function} {param}: no length");
    }
}

#[test]
fn class_specs_and_struct_fields_resolve() {
    let class_types: HashSet<&str> = winstrace_signatures::all()
        .iter()
        .flat_map(|s| s.params.iter())
        .filter(|p| p.ty.ends_with("CLASS"))
        .map(|p| p.ty)
        .collect();
    for (ty, value, spec) in data::all::classes() {
        assert!(class_types.contains(ty), "classes.tsv: no parameter has type {ty}");
        check_spec(spec, None, &format!("classes.tsv {ty} {value}"));
    }
    let mut n = 0;
    for def in data::all::structs() {
        for f in &def.fields {
            check_spec(&f.spec, Some(def), &format!("structs.txt {}.{}", def.name, f.name));
            // Fixed fields lie inside the fixed part; tails start at its end.
            assert!(
                f.offset + f.spec.width() <= def.size,
                "structs.txt {}.{}: past the end",
                def.name,
                f.name
            );
        }
        n += 1;
    }
    assert!(n >= 20, "{n} structures");
}

#[test]
fn every_signature_parameter_has_a_decoder() {
    // spec_for never fails; this makes sure it is total over the real
    // signatures without tripping over a malformed rule.
    for s in winstrace_signatures::all() {
        for p in s.params {
            // Information classes without a table are fine (they print in
            // hex); everything else must resolve.
            match spec_for(s.name, p) {
                Spec::Xlat { table, .. } if table.ends_with("CLASS") => {}
                spec => check_spec(&spec, None, &format!("{} {}", s.name, p.name)),
            }
        }
    }
}

#[test]
fn outs_valid_follows_nt_success() {
    assert!(outs_valid(0));
    assert!(outs_valid(0x102)); // STATUS_TIMEOUT: success severity
    assert!(!outs_valid(0x103)); // STATUS_PENDING
    assert!(outs_valid(0x4000_0000)); // informational
    assert!(outs_valid(0x8000_0005)); // STATUS_BUFFER_OVERFLOW: partial data
    assert!(!outs_valid(0x8000_001a)); // STATUS_NO_MORE_ENTRIES
    assert!(!outs_valid(0xc000_0022));
}
