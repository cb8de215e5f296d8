//! The event model: everything an engine reports about a traced process.
//!
//! Engines (the debugger engine today, an in-process engine later) produce
//! [`Event`]s; sinks (text now, JSON and summaries later) consume them. An
//! event is complete when it is handed over: decoding that needs the target's
//! memory has already happened, through [`crate::memory::TargetMemory`], so a
//! sink never needs the target.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::value::{Field, Value};

/// Process id, as Windows numbers processes.
pub type Pid = u32;
/// Thread id, as Windows numbers threads.
pub type Tid = u32;

/// One thing that happened in a traced process.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub pid: Pid,
    pub tid: Tid,
    /// When the tracer saw the event (for a call: when it returned).
    pub time: SystemTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A process came under tracing: launched by us, attached to, or a child.
    ProcessStart(ProcessStart),
    /// The process exited with this code.
    ProcessExit {
        code: u32,
    },
    /// A thread started (for an attach: a thread that already existed).
    ThreadStart {
        start_address: u64,
    },
    ThreadExit {
        code: u32,
    },
    /// A DLL was mapped at `base`. `path` is empty when it could not be found.
    DllLoad {
        path: String,
        base: u64,
    },
    DllUnload {
        base: u64,
    },
    /// An exception in the target, as the debugger saw it. `first_chance` is
    /// false on the second (last) chance, after the target's handlers declined.
    Exception {
        code: u32,
        address: u64,
        first_chance: bool,
    },
    /// Text the target passed to OutputDebugString.
    DebugOutput {
        text: String,
    },
    /// A call that another event interrupted before it returned: printed
    /// strace-style as `NtX(in-args <unfinished ...>`. Its [`EventKind::Call`]
    /// follows later with `resumed` set. Engines emit it only when some other
    /// event actually comes between a call's entry and its return.
    CallStart(Call),
    /// A native API call and its result.
    Call(Call),
    /// The tracer stopped tracing a process that goes on running (detach).
    Detached,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStart {
    pub image: String,
    pub command_line: String,
    /// True when the tracer attached to a running process.
    pub attached: bool,
}

/// One call of an ntdll function.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The ntdll export, e.g. `NtCreateFile`.
    pub function: Arc<str>,
    /// Tells one in-flight call of a process from another, so that a
    /// [`EventKind::CallStart`] and its [`EventKind::Call`] pair up.
    pub id: u64,
    pub args: Vec<Arg>,
    /// False when the engine does not know how many arguments the function
    /// takes and `args` holds only the register-passed ones; text output
    /// marks that with a trailing `...`.
    pub args_complete: bool,
    pub result: CallResult,
    /// True when a [`EventKind::CallStart`] for this call was emitted.
    pub resumed: bool,
    /// When the call was entered, if the engine knows.
    pub entry_time: Option<SystemTime>,
    /// Time spent in the call (entry to return), if the engine measured it.
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The call returned this value in RAX (an NTSTATUS for syscalls).
    Returned(u64),
    /// The call does not come back to its caller (NtTerminateProcess,
    /// NtContinue, ...); strace prints these as `= ?`.
    NoReturn,
}

/// One argument of a call: its raw register or stack value plus, once a
/// signature knows it, its name, type and decoded value.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// Parameter name from the signature, e.g. `FileHandle`.
    pub name: Option<&'static str>,
    /// C type from the signature, e.g. `PHANDLE`.
    pub ty: Option<&'static str>,
    /// True for out and in-out parameters: their value was read after the
    /// call returned. In interrupted calls they print after `resumed>`.
    pub out: bool,
    pub raw: u64,
    pub value: Value,
}

impl Arg {
    /// An argument of which only the raw value is known.
    pub fn raw(raw: u64) -> Arg {
        Arg { name: None, ty: None, out: false, raw, value: Value::Hex(raw) }
    }
}

/// Where events go: text, JSON, summaries. Engines call [`EventSink::event`]
/// for each event in the order they happened, then [`EventSink::finish`].
pub trait EventSink {
    fn event(&mut self, event: &Event) -> std::io::Result<()>;
    /// Called once when tracing ends, to flush and print any epilogue.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
