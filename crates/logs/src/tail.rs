//! Following log files as they grow: the node's `/var/log/pods` tree or
//! an audit log. It handles rotation and truncation, and it keeps its
//! place across restarts.
//!
//! Each file is known by its device and inode, not by its name. The kubelet
//! rotates `0.log` by renaming it (`0.log.20261130-100000`) and starting a
//! new `0.log`. The renamed file keeps its inode, so its last lines are
//! read before the new file's. A file that became shorter than the place
//! reached was truncated (`copytruncate`), and is read again from the
//! start. Only whole lines are handed out: a line still being written
//! waits for its newline.
//!
//! The place reached in each file is saved as JSON (`save`, written to a
//! temporary file and renamed, so a crash leaves the old or the new state).
//! On restart, a file whose inode is in the state resumes where it was. A
//! file seen for the first time starts at its end when the tailer starts,
//! because old history is not news, and at its beginning when it appears
//! later.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a file was left: its identity and the byte after the last whole
/// line handed out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Place {
    dev: u64,
    ino: u64,
    offset: u64,
    /// Lines before `offset`, so alerts name the line within the file.
    #[serde(default)]
    line: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// By path, as last seen.
    files: BTreeMap<PathBuf, Place>,
}

/// What one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    pub lines: u64,
    pub bytes: u64,
    pub truncated: u64,
    pub rotated: u64,
    /// Lines longer than `max_line`, handed out cut.
    pub cut: u64,
    /// Files that could not be read, with the reason.
    pub errors: Vec<(PathBuf, String)>,
}

pub struct Tailer {
    roots: Vec<PathBuf>,
    state: State,
    first_poll: bool,
    /// A line longer than this is cut there and counted (a runaway writer
    /// must not exhaust memory).
    pub max_line: usize,
}

fn is_log(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".log") || name.contains(".log.")
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if is_log(&p) {
                    out.push(p);
                }
            }
        }
        // A file root is followed itself, whatever its name.
        Err(_) if path.is_file() => out.push(path.to_path_buf()),
        Err(_) => {}
    }
}

impl Tailer {
    /// Follows the files under `roots` (directories walked, files taken as
    /// they are), resuming from `state` (the text `save` wrote) when given.
    pub fn new(roots: Vec<PathBuf>, state: Option<&str>) -> Result<Tailer, String> {
        let state = match state {
            Some(text) => serde_json::from_str(text).map_err(|e| format!("tail state: {e}"))?,
            None => State::default(),
        };
        Ok(Tailer {
            roots,
            state,
            first_poll: true,
            max_line: 1 << 20,
        })
    }

    /// The state to save, to resume from after a restart.
    pub fn save(&self) -> String {
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    /// Writes the state to `path` through a temporary file and a rename.
    pub fn save_to(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, self.save())?;
        std::fs::rename(&temporary, path)
    }

    /// Reads what was added since the last poll, handing each whole line
    /// (without its newline) to `sink` with its file and line number.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&Path, u64, &[u8])) -> PollStats {
        let mut stats = PollStats::default();
        let mut files = Vec::new();
        for root in &self.roots {
            walk(root, &mut files);
        }
        files.sort();
        // Rotated files (`x.log.N`) before the live one, so lines stay in
        // order across a rotation.
        files.sort_by_key(|p| !p.to_string_lossy().contains(".log."));
        let by_inode: BTreeMap<(u64, u64), Place> = self
            .state
            .files
            .values()
            .map(|p| ((p.dev, p.ino), p.clone()))
            .collect();
        let mut next = BTreeMap::new();
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            let known = by_inode.get(&id);
            let (mut offset, mut line) = match (known, self.state.files.get(&path)) {
                (Some(place), Some(old)) if old.ino != place.ino || old.dev != place.dev => {
                    stats.rotated += 1;
                    (place.offset, place.line)
                }
                (Some(place), None) => {
                    // The same inode under a new name: rotated.
                    stats.rotated += 1;
                    (place.offset, place.line)
                }
                (Some(place), _) => (place.offset, place.line),
                (None, _) if self.first_poll => match count_lines(&path) {
                    Ok(lines) => (meta.len(), lines),
                    Err(e) => {
                        stats.errors.push((path.clone(), e.to_string()));
                        continue;
                    }
                },
                (None, _) => (0, 0),
            };
            if meta.len() < offset {
                stats.truncated += 1;
                (offset, line) = (0, 0);
            }
            if meta.len() > offset {
                match self.read_lines(&path, offset, line, sink, &mut stats) {
                    Ok(reached) => (offset, line) = reached,
                    Err(e) => stats.errors.push((path.clone(), e.to_string())),
                }
            }
            next.insert(
                path,
                Place {
                    dev: id.0,
                    ino: id.1,
                    offset,
                    line,
                },
            );
        }
        self.state.files = next;
        self.first_poll = false;
        stats
    }

    /// Whole lines from `offset` (`line_number` lines precede it); the
    /// offset and line count after the last of them.
    fn read_lines(
        &self,
        path: &Path,
        offset: u64,
        mut line_number: u64,
        sink: &mut dyn FnMut(&Path, u64, &[u8]),
        stats: &mut PollStats,
    ) -> std::io::Result<(u64, u64)> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reached = offset;
        let mut buffer = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(end) = buffer[start..].iter().position(|&b| b == b'\n') {
                let line = &buffer[start..start + end];
                if line.len() > self.max_line {
                    stats.cut += 1;
                }
                line_number += 1;
                sink(path, line_number, &line[..line.len().min(self.max_line)]);
                stats.lines += 1;
                start += end + 1;
            }
            reached += start as u64;
            stats.bytes += start as u64;
            buffer.drain(..start);
            if buffer.len() > self.max_line {
                // A line with no end in sight: hand out its head, skip on.
                line_number += 1;
                sink(path, line_number, &buffer[..self.max_line]);
                stats.lines += 1;
                stats.cut += 1;
                reached += buffer.len() as u64;
                stats.bytes += buffer.len() as u64;
                buffer.clear();
            }
        }
        Ok((reached, line_number))
    }
}

/// The newlines in a file: the line number its end is at.
fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn lines(tailer: &mut Tailer) -> (Vec<String>, PollStats) {
        let mut out = Vec::new();
        let stats = tailer.poll(&mut |_, number, line| {
            out.push(format!("{number}:{}", String::from_utf8_lossy(line)))
        });
        (out, stats)
    }

    #[test]
    fn new_lines_only_whole_ones_and_history_skipped_at_start() {
        let root = dir("grow");
        let log = root.join("0.log");
        append(&log, "old history\n");
        let mut tailer = Tailer::new(vec![root.clone()], None).unwrap();
        assert!(lines(&mut tailer).0.is_empty(), "history is not news");
        append(&log, "one\ntw");
        assert_eq!(lines(&mut tailer).0, ["2:one"]);
        append(&log, "o\n");
        assert_eq!(lines(&mut tailer).0, ["3:two"]);
        // A file that appears later is read from its start.
        let later = root.join("ns_pod_uid/c/0.log");
        std::fs::create_dir_all(later.parent().unwrap()).unwrap();
        append(&later, "first\n");
        assert_eq!(lines(&mut tailer).0, ["1:first"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rotation_reads_the_rest_of_the_old_file_then_the_new_one() {
        let root = dir("rotate");
        let log = root.join("0.log");
        append(&log, "");
        let mut tailer = Tailer::new(vec![root.clone()], None).unwrap();
        lines(&mut tailer);
        append(&log, "a\n");
        assert_eq!(lines(&mut tailer).0, ["1:a"]);
        append(&log, "b\n");
        std::fs::rename(&log, root.join("0.log.20261130-100000")).unwrap();
        append(&log, "c\n");
        let (got, stats) = lines(&mut tailer);
        assert_eq!(got, ["2:b", "1:c"]);
        assert_eq!(stats.rotated, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn truncation_starts_again_and_the_place_survives_a_restart() {
        let root = dir("truncate");
        let log = root.join("audit.log");
        append(&log, "");
        let mut tailer = Tailer::new(vec![log.clone()], None).unwrap();
        lines(&mut tailer);
        append(&log, "one\ntwo\n");
        assert_eq!(lines(&mut tailer).0, ["1:one", "2:two"]);
        std::fs::write(&log, "x\n").unwrap();
        let (got, stats) = lines(&mut tailer);
        assert_eq!((got, stats.truncated), (vec!["1:x".to_string()], 1));
        // Saved, stopped, more written, restarted: nothing lost, nothing twice.
        let state = root.join("state.json");
        tailer.save_to(&state).unwrap();
        drop(tailer);
        append(&log, "y\n");
        let saved = std::fs::read_to_string(&state).unwrap();
        let mut restarted = Tailer::new(vec![log.clone()], Some(&saved)).unwrap();
        assert_eq!(lines(&mut restarted).0, ["2:y"]);
        assert!(Tailer::new(vec![], Some("{not json")).is_err());
        restarted.max_line = 4;
        append(&log, "0123456789\nok\n");
        let (got, stats) = lines(&mut restarted);
        assert_eq!(
            (got, stats.cut),
            (vec!["3:0123".to_string(), "4:ok".to_string()], 1)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
