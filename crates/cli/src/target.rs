//! Turning `-p PID|NAME` into a process id.

/// Parses `spec` as a pid, or looks it up as an image name.
#[cfg(windows)]
pub fn resolve_pid(spec: &str) -> Result<u32, String> {
    use winstrace_engine_debug::{image_name_matches, list_processes};
    if let Ok(pid) = spec.parse::<u32>() {
        return Ok(pid);
    }
    let processes = list_processes().map_err(|e| e.to_string())?;
    let me = std::process::id();
    let matches: Vec<_> =
        processes.into_iter().filter(|p| p.pid != me && image_name_matches(spec, &p.image_name)).collect();
    match matches.as_slice() {
        [] => Err(format!("no process named '{spec}'")),
        [one] => Ok(one.pid),
        several => {
            let list: Vec<String> = several.iter().map(|p| format!("{} ({})", p.pid, p.image_name)).collect();
            Err(format!("several processes named '{spec}': {}; give a PID with -p", list.join(", ")))
        }
    }
}
