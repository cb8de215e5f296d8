//! Argument decoders: one per type, reading the target only through
//! [`winstrace_core::memory::TargetMemory`].

pub mod xlat;
