//! winstrace's platform-independent core.
//!
//! Engines turn what happens in a traced process into [`event::Event`]s;
//! sinks (text, JSON, summary) consume them. Nothing here touches Windows:
//! it all builds and tests on Linux.

pub mod event;
pub mod json;
pub mod memory;
pub mod ntstatus;
pub mod summary;
pub mod text;
pub mod value;
