//! winstrace's in-process agent.
//!
//! Loaded into a process, [`winstrace_agent_attach`] hooks every Nt* system-call stub of
//! ntdll with [`winstrace_hook::inline`] trampolines and writes one
//! [`record::CallRecord`] per call into a [`winstrace_ring`] ring that the
//! tracer drains. See README.md for how the hooks go in safely while other
//! threads run.
//!
//! Injected by the tracer (winstrace-engine-inject), the DLL attaches by
//! itself: its `DllMain`, on `DLL_PROCESS_ATTACH`, opens the file mapping
//! [`mapping::mapping_name`] of its own process id if there is one, attaches
//! to the ring in it and publishes the hooked functions' names there (see
//! [`mapping`]). Without such a mapping loading the DLL does nothing.
//!
//! [`record`] and [`mapping`] are platform-independent (the tracer decodes with it); the
//! hooking itself exists on Windows only.

pub mod mapping;
pub mod record;

use winstrace_decode::DecodeOptions;

/// `winstrace_agent_attach`'s error returns and what they mean (also what
/// the tracer prints when the agent reports one through the mapping).
pub const ATTACH_ERRORS: &[(i32, &str)] = &[
    (-1, "already attached (or an attach is in progress)"),
    (-2, "the ring region is not an initialised ring"),
    (-3, "no thread-local slot for the reentrancy guard"),
    (-4, "ntdll is not loaded"),
    (-5, "ntdll's exports are unreadable"),
    (-6, "no system-call stub recognised"),
    (-7, "assembling the trampolines failed"),
    (-8, "no memory for the trampolines within 2 GiB of ntdll"),
    (-9, "changing a page protection failed"),
    (-10, "no vectored exception handler for the memory probe"),
];

/// What the tracer asks of the agent. The tracer writes it into the shared
/// mapping ([`mapping`]); a DLL attached without one uses the default:
/// every Nt* stub, `-s 32`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentConfig {
    /// How the tracer decodes, hence what the agent captures (nothing with
    /// `raw`).
    pub decode: DecodeOptions,
    /// Hook only these functions (sorted); `None`: every stub found. What
    /// `-e trace=` filters out is then not hooked at all and runs at full
    /// speed.
    pub only: Option<Vec<String>>,
}

impl AgentConfig {
    /// Whether function `name` is to be hooked.
    pub fn wants(&self, name: &str) -> bool {
        self.only.as_ref().map_or(true, |only| only.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
    }
}

#[cfg(all(windows, target_arch = "x86_64"))]
mod windows;

#[cfg(all(windows, target_arch = "x86_64"))]
pub use windows::{
    winstrace_agent_attach, winstrace_agent_function_index, winstrace_agent_set_thread_traced,
};
