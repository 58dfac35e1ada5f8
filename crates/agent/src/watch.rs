//! Knowing when the policy files changed: a fingerprint of every manifest
//! file under the given paths (name, size, modification time), compared
//! on each check. Polling, not inotify: it also sees files replaced by a
//! ConfigMap's symlink swap, and costs a few stat calls every two seconds.

use std::path::PathBuf;
use std::time::SystemTime;

use palisade_inventory::collect_manifest_files;

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

pub struct PolicyWatch {
    paths: Vec<PathBuf>,
    last: Fingerprint,
}

impl PolicyWatch {
    /// Watches `paths` as they are now.
    pub fn new(paths: Vec<PathBuf>) -> PolicyWatch {
        let last = fingerprint(&paths);
        PolicyWatch { paths, last }
    }

    /// Whether anything changed since the last call (or since `new`).
    pub fn changed(&mut self) -> bool {
        let now = fingerprint(&self.paths);
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let (files, _) = collect_manifest_files(paths);
    let mut print: Fingerprint = files
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (file, size, modified)
        })
        .collect();
    print.sort();
    print
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_edits_new_and_removed_files() {
        let dir = std::env::temp_dir().join(format!("palisade-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut watch = PolicyWatch::new(vec![dir.clone()]);
        assert!(!watch.changed());
        std::fs::write(&file, "a: 12\n").unwrap();
        assert!(watch.changed(), "size changed");
        assert!(!watch.changed());
        std::fs::write(dir.join("b.yml"), "b: 1\n").unwrap();
        assert!(watch.changed(), "new file");
        std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        assert!(!watch.changed(), "not a manifest file");
        std::fs::remove_file(&file).unwrap();
        assert!(watch.changed(), "removed file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
