//! The spool: a file of wire lines not yet acknowledged by the server, and
//! beside it the byte offset of the first one that is still pending. An
//! acknowledgement moves the offset (a small file replaced atomically);
//! once everything is acknowledged the spool is emptied. A crash between
//! the server's commit and the offset's move sends those alerts again,
//! which the server's upsert by id absorbs.
//!
//! The spool is locked while open, so two senders sharing one never send
//! the same lines twice at once.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::SendError;

pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    file: File,
    /// Pending lines, oldest first, and the byte offset where each ends.
    pending: Vec<String>,
    ends: Vec<u64>,
    /// Offset of the first pending line.
    start: u64,
}

impl Spool {
    pub fn open(path: &Path) -> Result<Spool, SendError> {
        let fail = |reason: String| SendError::Spool {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        file.lock().map_err(|e| fail(format!("cannot lock: {e}")))?;
        let offset_path = sibling(path, "offset");
        let start = match std::fs::read_to_string(&offset_path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("{}: not an offset", offset_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(fail(e.to_string())),
        };
        let mut spool = Spool {
            path: path.to_path_buf(),
            offset_path,
            file,
            pending: Vec::new(),
            ends: Vec::new(),
            start,
        };
        spool.load().map_err(|e| fail(e.to_string()))?;
        Ok(spool)
    }

    /// Reads the pending lines; a last line without its newline (a write
    /// cut short by a crash) is dropped from the file, as it was never
    /// handed to the server.
    fn load(&mut self) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if self.start > len {
            self.start = len;
        }
        let mut reader = BufReader::new(&self.file);
        reader.seek(SeekFrom::Start(self.start))?;
        let mut at = self.start;
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                self.file.set_len(at)?;
                break;
            }
            at += n as u64;
            let text = line.trim_end();
            if !text.is_empty() {
                self.pending.push(text.to_string());
                self.ends.push(at);
            }
        }
        Ok(())
    }

    pub fn pending(&self) -> &[String] {
        &self.pending
    }

    /// Adds lines and makes them durable before anything is sent.
    pub fn append(&mut self, lines: &[String]) -> Result<(), SendError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut at = self.ends.last().copied().unwrap_or(self.start);
        let mut buffer = Vec::new();
        for line in lines {
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
            at += line.len() as u64 + 1;
            self.pending.push(line.clone());
            self.ends.push(at);
        }
        self.file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(e))
    }

    /// The oldest `n` pending lines were committed by the server.
    pub fn acknowledge(&mut self, n: usize) -> Result<(), SendError> {
        let n = n.min(self.pending.len());
        if n == 0 {
            return Ok(());
        }
        self.start = self.ends[n - 1];
        self.pending.drain(..n);
        self.ends.drain(..n);
        if self.pending.is_empty() {
            // Everything is delivered: empty the file, then forget the
            // offset (in this order, so a crash between leaves an offset
            // past the end, which `load` clamps).
            self.file.set_len(0).map_err(|e| self.error(e))?;
            self.file.sync_data().map_err(|e| self.error(e))?;
            self.start = 0;
            return match std::fs::remove_file(&self.offset_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error(e)),
                _ => Ok(()),
            };
        }
        self.write_offset().map_err(|e| self.error(e))
    }

    fn write_offset(&self) -> std::io::Result<()> {
        let tmp = sibling(&self.path, "offset.tmp");
        let mut file = File::create(&tmp)?;
        writeln!(file, "{}", self.start)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &self.offset_path)
    }

    fn error(&self, e: std::io::Error) -> SendError {
        SendError::Spool {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("palisade-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("spool.jsonl")
    }

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    #[test]
    fn what_is_not_acknowledged_is_still_there_after_a_reopen() {
        let path = scratch("reopen");
        {
            let mut spool = Spool::open(&path).unwrap();
            spool.append(&lines(0..5)).unwrap();
            spool.acknowledge(2).unwrap();
        }
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), &lines(2..5)[..]);
        spool.append(&lines(5..6)).unwrap();
        spool.acknowledge(1).unwrap();
        drop(spool);
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), &lines(3..6)[..]);
        spool.acknowledge(3).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "emptied");
        drop(spool);
        assert!(Spool::open(&path).unwrap().pending().is_empty());
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped() {
        let path = scratch("torn");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"n\":0}\n{\"n\":1}\n{\"n\"").unwrap();
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), &lines(0..2)[..]);
        spool.append(&lines(2..3)).unwrap();
        drop(spool);
        assert_eq!(Spool::open(&path).unwrap().pending(), &lines(0..3)[..]);
    }
}
