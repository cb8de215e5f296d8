//! `-y` for the in-process engine.
//!
//! The debugger engine names a handle by duplicating it into the tracer
//! while the target is stopped. The in-process engine decodes a call after
//! the target has moved on, when a short-lived handle may be closed
//! already; so it names handles mostly by *watching them being made*, as
//! strace does for file descriptors: a successful create or open call with
//! an OBJECT_ATTRIBUTES hands out a handle whose name is in the arguments
//! (relative to the Root handle's, when there is one). Handles it never saw
//! made (opened before tracing, inherited, duplicated) are looked up the
//! debugger engine's way, through the `lookup` the caller passes, which
//! works for the long-lived ones. A closed handle is forgotten.

use std::collections::HashMap;

use winstrace_core::event::{Call, CallResult};
use winstrace_core::value::Value;

/// Handle names of one process, learned from its calls.
#[derive(Debug, Default)]
pub struct HandleTracker {
    names: HashMap<u64, Option<String>>,
}

/// What kind of object a create/open function makes, for its name's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    File,
    Key,
    Other,
}

fn made_by(function: &str) -> Made {
    let f = function.strip_prefix("Zw").map_or(function, |rest| rest);
    let f = f.strip_prefix("Nt").unwrap_or(f);
    match f {
        "CreateFile" | "OpenFile" | "CreateNamedPipeFile" | "CreateMailslotFile" => Made::File,
        _ if f.contains("Key") => Made::Key,
        _ => Made::Other,
    }
}

/// `\??\C:\x` -> `C:\x`, `\??\UNC\server\share` -> `\\server\share`: the
/// DOS form of an NT path in the DOS devices directory; anything else as is.
fn dos_path(nt: &str) -> String {
    match nt.strip_prefix("\\??\\").or_else(|| nt.strip_prefix("\\DosDevices\\")) {
        Some(rest) => match rest.strip_prefix("UNC\\") {
            Some(unc) => format!("\\\\{unc}"),
            None => rest.to_string(),
        },
        None => nt.to_string(),
    }
}

impl HandleTracker {
    pub fn new() -> HandleTracker {
        HandleTracker::default()
    }

    /// Names the handles in `call`'s arguments (in place) and learns from
    /// it. `lookup` names a handle the tracker never saw made; `user_sid`
    /// turns the user's hive into `HKCU`.
    pub fn name_call(
        &mut self,
        call: &mut Call,
        user_sid: Option<&str>,
        lookup: &mut dyn FnMut(u64) -> Option<String>,
    ) {
        let succeeded = matches!(call.result, CallResult::Returned(s) if (s as u32) & 0x8000_0000 == 0);
        let made = if succeeded { self.made_handle(call, user_sid, lookup) } else { None };
        if let Some((handle, name)) = made {
            self.names.insert(handle, Some(name));
        }
        for arg in &mut call.args {
            self.name_in(&mut arg.value, lookup);
        }
        if &*call.function == "NtClose" && call.result == CallResult::Returned(0) {
            if let Some(arg) = call.args.first() {
                self.names.remove(&arg.raw);
            }
        }
    }

    fn name_of(&mut self, handle: u64, lookup: &mut dyn FnMut(u64) -> Option<String>) -> Option<String> {
        // NULL and the pseudo-handles (-1 .. -6) name themselves.
        if handle == 0 || handle >= (-6i64) as u64 {
            return None;
        }
        self.names.entry(handle).or_insert_with(|| lookup(handle)).clone()
    }

    fn name_in(&mut self, value: &mut Value, lookup: &mut dyn FnMut(u64) -> Option<String>) {
        match value {
            Value::Handle(handle) => {
                let handle = *handle;
                if let Some(name) = self.name_of(handle, lookup) {
                    *value = Value::NamedHandle { raw: handle, name };
                }
            }
            Value::Pointer(inner) => self.name_in(inner, lookup),
            Value::Struct(fields) => {
                for field in fields {
                    self.name_in(&mut field.value, lookup);
                }
            }
            Value::Array { items, .. } => {
                for item in items {
                    self.name_in(item, lookup);
                }
            }
            _ => {}
        }
    }

    /// The handle a successful create/open call handed out and its name:
    /// the first out-parameter holding a handle, named from the call's
    /// OBJECT_ATTRIBUTES.
    fn made_handle(
        &mut self,
        call: &Call,
        user_sid: Option<&str>,
        lookup: &mut dyn FnMut(u64) -> Option<String>,
    ) -> Option<(u64, String)> {
        let handle = call.args.iter().filter(|a| a.out).find_map(|a| match &a.value {
            Value::Pointer(inner) => match **inner {
                Value::Handle(h) => Some(h),
                _ => None,
            },
            _ => None,
        })?;
        let attributes = call.args.iter().find_map(|a| match (&a.value, a.name) {
            (Value::Struct(fields), Some("ObjectAttributes")) => Some(fields),
            _ => None,
        })?;
        let field = |name: &str| attributes.iter().find(|f| f.name == name).map(|f| &f.value);
        let Some(Value::Str { text, truncated: false, .. }) = field("Name") else { return None };
        let root = match field("Root") {
            Some(Value::Handle(h)) | Some(Value::NamedHandle { raw: h, .. }) => Some(*h),
            _ => None,
        };
        let kind = made_by(&call.function);
        let name = match root {
            Some(root) => {
                let base = self.name_of(root, lookup)?;
                if text.is_empty() {
                    base
                } else {
                    format!("{}\\{text}", base.trim_end_matches('\\'))
                }
            }
            None => match kind {
                Made::File => dos_path(text),
                Made::Key => winstrace_engine_debug::handle_display_name("Key", text, None, None, user_sid)?,
                Made::Other => text.clone(),
            },
        };
        (!name.is_empty()).then_some((handle, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use winstrace_core::event::Arg;
    use winstrace_core::value::Field;

    fn call(function: &str, status: u64, args: Vec<Arg>) -> Call {
        Call {
            function: Arc::from(function),
            id: 1,
            args,
            args_complete: true,
            result: CallResult::Returned(status),
            resumed: false,
            entry_time: None,
            duration: None,
        }
    }

    fn arg(name: &'static str, out: bool, value: Value) -> Arg {
        let raw = match value {
            Value::Handle(h) => h,
            _ => 0x1000,
        };
        Arg { name: Some(name), ty: None, out, raw, value }
    }

    fn attributes(root: Option<u64>, name: &str) -> Value {
        let mut fields = Vec::new();
        if let Some(root) = root {
            fields.push(Field { name: "Root", value: Value::Handle(root) });
        }
        fields.push(Field {
            name: "Name",
            value: Value::Str { text: name.into(), truncated: false, notes: vec![] },
        });
        Value::Struct(fields)
    }

    fn text(call: &Call) -> String {
        winstrace_decode::args_text(&call.args)
    }

    #[test]
    fn a_created_file_is_named_until_closed() {
        let mut t = HandleTracker::new();
        let lookups = std::cell::RefCell::new(Vec::new());
        let mut lookup = |h: u64| {
            lookups.borrow_mut().push(h);
            None
        };
        let mut create = call(
            "NtCreateFile",
            0,
            vec![
                arg("FileHandle", true, Value::Pointer(Box::new(Value::Handle(0x4c)))),
                arg("ObjectAttributes", false, attributes(None, "\\??\\C:\\users\\x.txt")),
            ],
        );
        t.name_call(&mut create, None, &mut lookup);
        assert_eq!(
            text(&create),
            r#"FileHandle=[0x4c<C:\users\x.txt>], ObjectAttributes={Name="\\??\\C:\\users\\x.txt"}"#
        );
        let mut write = call("NtWriteFile", 0, vec![arg("FileHandle", false, Value::Handle(0x4c))]);
        t.name_call(&mut write, None, &mut lookup);
        assert_eq!(text(&write), r"FileHandle=0x4c<C:\users\x.txt>");
        let mut close = call("NtClose", 0, vec![arg("Handle", false, Value::Handle(0x4c))]);
        t.name_call(&mut close, None, &mut lookup);
        assert_eq!(text(&close), r"Handle=0x4c<C:\users\x.txt>");
        assert!(lookups.borrow().is_empty(), "{lookups:?}");
        // Closed: a later handle with the same value is asked about.
        let mut again = call("NtWriteFile", 0, vec![arg("FileHandle", false, Value::Handle(0x4c))]);
        t.name_call(&mut again, None, &mut lookup);
        assert_eq!(text(&again), "FileHandle=0x4c");
        assert_eq!(*lookups.borrow(), vec![0x4c]);
    }

    #[test]
    fn keys_relative_to_a_looked_up_root_and_absolute_ones() {
        let mut t = HandleTracker::new();
        let mut lookup = |h: u64| (h == 0x28).then(|| "HKCU".to_string());
        let mut create = call(
            "NtCreateKey",
            0,
            vec![
                arg("KeyHandle", true, Value::Pointer(Box::new(Value::Handle(0x50)))),
                arg("ObjectAttributes", false, attributes(Some(0x28), "Software\\X")),
            ],
        );
        t.name_call(&mut create, Some("S-1-5-21-1"), &mut lookup);
        assert_eq!(
            text(&create),
            r#"KeyHandle=[0x50<HKCU\Software\X>], ObjectAttributes={Root=0x28<HKCU>, Name="Software\\X"}"#
        );
        let mut open = call(
            "NtOpenKey",
            0,
            vec![
                arg("KeyHandle", true, Value::Pointer(Box::new(Value::Handle(0x54)))),
                arg("ObjectAttributes", false, attributes(None, "\\Registry\\User\\S-1-5-21-1\\Environment")),
            ],
        );
        t.name_call(&mut open, Some("S-1-5-21-1"), &mut lookup);
        assert!(text(&open).starts_with(r"KeyHandle=[0x54<HKCU\Environment>]"), "{}", text(&open));
    }

    #[test]
    fn failed_calls_make_nothing_and_pseudo_handles_are_left_alone() {
        let mut t = HandleTracker::new();
        let mut lookup = |_: u64| Some("looked up".to_string());
        // A failed call's out-parameters decode as the raw pointer.
        let mut failed = call(
            "NtOpenFile",
            0xc000_0034,
            vec![
                arg("FileHandle", true, Value::Hex(0x5000)),
                arg("ObjectAttributes", false, attributes(None, "\\??\\C:\\gone")),
            ],
        );
        t.name_call(&mut failed, None, &mut lookup);
        assert!(t.names.is_empty(), "{:?}", t.names);
        let mut current =
            call("NtQueryInformationProcess", 0, vec![arg("ProcessHandle", false, Value::Handle(u64::MAX))]);
        t.name_call(&mut current, None, &mut lookup);
        assert_eq!(text(&current), "ProcessHandle=NtCurrentProcess()");
        assert_eq!(dos_path("\\??\\UNC\\srv\\share\\f"), "\\\\srv\\share\\f");
        assert_eq!(dos_path("\\Device\\NamedPipe\\x"), "\\Device\\NamedPipe\\x");
        assert_eq!(made_by("ZwOpenKeyEx"), Made::Key);
        assert_eq!(made_by("NtCreateEvent"), Made::Other);
    }
}
