//! The JSON-lines sink: one request event per line in `observe.jsonl`, rotated by size
//! (`PATH` → `PATH.1` → … → `PATH.N`, the oldest dropped).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::event::RequestEvent;
use super::sinks::ObserveCallback;

/// The `observe.jsonl` sink: appends one JSON event per line, rotating by size.
pub struct JsonlSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Mutex<Option<(BufWriter<File>, u64)>>,
}

impl JsonlSink {
    /// Opens (or creates) the log at `path`, creating its folder; past `max_bytes` it rotates,
    /// keeping `keep` old files.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<JsonlSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonlSink {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            file: Mutex::new(Some((BufWriter::new(file), size))),
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self) -> std::io::Result<(BufWriter<File>, u64)> {
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok((BufWriter::new(file), 0))
    }

    fn write(&self, events: &[Arc<RequestEvent>]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            let mut line = serde_json::to_vec(e.as_ref()).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let needs_rotation = guard
                .as_ref()
                .is_some_and(|(_, size)| *size > 0 && size + line.len() as u64 > self.max_bytes);
            if needs_rotation {
                if let Some((mut w, _)) = guard.take() {
                    w.flush()?;
                }
                *guard = Some(self.rotate()?);
            }
            if let Some((w, size)) = guard.as_mut() {
                w.write_all(&line)?;
                *size += line.len() as u64;
            }
        }
        if let Some((w, _)) = guard.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

impl ObserveCallback for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        if let Err(e) = self.write(events) {
            tracing::error!(path = %self.path.display(), error = %e, "observe.jsonl: write failed");
        }
    }
}
