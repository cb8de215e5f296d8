//! `-ff -o FILE`: one trace file per process, `FILE.PID`, as strace does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use winstrace_core::event::{Event, EventSink};
use winstrace_core::text::{TextOptions, TextSink};

/// Routes each process's events to its own text sink, opened on the
/// process's first event.
pub struct PerProcessSink {
    prefix: PathBuf,
    options: TextOptions,
    sinks: HashMap<u32, TextSink<BufWriter<File>>>,
}

impl PerProcessSink {
    pub fn new(prefix: PathBuf, options: TextOptions) -> PerProcessSink {
        PerProcessSink { prefix, options, sinks: HashMap::new() }
    }

    /// `FILE.PID`.
    pub fn path_for(&self, pid: u32) -> PathBuf {
        let mut name = self.prefix.clone().into_os_string();
        name.push(format!(".{pid}"));
        PathBuf::from(name)
    }
}

impl EventSink for PerProcessSink {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        if !self.sinks.contains_key(&event.pid) {
            let path = self.path_for(event.pid);
            let file = File::create(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create '{}': {e}", path.display())))?;
            self.sinks.insert(event.pid, TextSink::new(BufWriter::new(file), self.options));
        }
        self.sinks.get_mut(&event.pid).expect("inserted above").event(event)
    }

    fn finish(&mut self) -> io::Result<()> {
        for sink in self.sinks.values_mut() {
            sink.finish()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use winstrace_core::event::EventKind;

    #[test]
    fn each_process_gets_its_own_file() {
        let dir = std::env::temp_dir().join(format!("wst-ff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sink = PerProcessSink::new(dir.join("trace"), TextOptions::default());
        let exit = |pid, code| Event {
            pid,
            tid: 1,
            time: SystemTime::UNIX_EPOCH,
            kind: EventKind::ProcessExit { code },
        };
        sink.event(&exit(10, 3)).unwrap();
        sink.event(&exit(20, 4)).unwrap();
        sink.finish().unwrap();
        drop(sink); // Windows removes no file that is still open.
        assert_eq!(std::fs::read_to_string(dir.join("trace.10")).unwrap(), "+++ exited with 3 +++\n");
        assert_eq!(std::fs::read_to_string(dir.join("trace.20")).unwrap(), "+++ exited with 4 +++\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
