//! The agent DLL of the in-process engine, embedded in winstrace.exe (see
//! `build.rs`) and written out when a trace needs it.
//!
//! It goes to `%TEMP%\winstrace-<version>-<digest>\winstrace_agent.dll`:
//! the digest of its bytes names the directory, so a file there with that
//! name is this very DLL and is reused, and two versions of winstrace
//! never share one. It is written to a temporary name and renamed into
//! place, so a concurrent winstrace never loads a half-written file.

use std::path::PathBuf;

/// The DLL's bytes (empty when winstrace was built for a non-Windows target).
pub const AGENT_DLL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/winstrace_agent.dll"));

/// FNV-1a over the bytes: a name for this build of the DLL, not a
/// security measure (the directory is the user's own).
fn digest(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Writes the DLL out (once per version) and returns its path.
pub fn write_out() -> Result<PathBuf, String> {
    if AGENT_DLL.is_empty() {
        return Err("this build of winstrace has no agent DLL".into());
    }
    let dir = std::env::temp_dir().join(format!(
        "winstrace-{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        digest(AGENT_DLL)
    ));
    let path = dir.join("winstrace_agent.dll");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == AGENT_DLL.len() as u64) {
        return Ok(path);
    }
    let fail = |e: std::io::Error| format!("cannot write the agent DLL to '{}': {e}", dir.display());
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let partial = dir.join(format!("winstrace_agent.{}.partial", std::process::id()));
    std::fs::write(&partial, AGENT_DLL).map_err(fail)?;
    if let Err(e) = std::fs::rename(&partial, &path) {
        let _ = std::fs::remove_file(&partial);
        // Another winstrace put it there meanwhile (and may have it loaded).
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() == AGENT_DLL.len() as u64) {
            return Err(fail(e));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_builds_apart() {
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[cfg(windows)]
    #[test]
    fn the_embedded_dll_is_a_dll_and_is_written_out_once() {
        assert_eq!(&AGENT_DLL[..2], b"MZ");
        let path = write_out().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), AGENT_DLL);
        assert_eq!(write_out().unwrap(), path);
    }
}
