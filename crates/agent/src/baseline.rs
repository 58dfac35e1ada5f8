//! The per-workload process baseline: which executables open connections
//! in each workload. Learned live (`--learn-processes`) and kept in a YAML
//! file to review like code; with it, a process that never opened
//! connections in its workload and now does raises RUN-005.
//!
//! ```yaml
//! # palisade process baseline
//! version: 1
//! workloads:
//!   "shop/api[Deployment]":
//!   - "/usr/bin/api"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default)]
    workloads: BTreeMap<String, BTreeSet<String>>,
}

pub struct ProcessBaseline {
    path: PathBuf,
    /// Adding what is new instead of alerting on it.
    learning: bool,
    workloads: BTreeMap<String, BTreeSet<String>>,
    changed: bool,
}

/// What the baseline says of a process opening a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// New, and learned.
    Learned,
    /// New: alert.
    New,
}

impl ProcessBaseline {
    /// The baseline in `path` (empty when the file does not exist yet).
    pub fn open(path: &Path, learning: bool) -> Result<ProcessBaseline, String> {
        let workloads = match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: File = palisade_inventory::yaml::from_str(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if file.version != 1 {
                    return Err(format!(
                        "{}: process baseline version {} (this Palisade reads 1)",
                        path.display(),
                        file.version
                    ));
                }
                file.workloads
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(ProcessBaseline {
            path: path.to_path_buf(),
            learning,
            workloads,
            changed: false,
        })
    }

    pub fn check(&mut self, workload: &str, executable: &str) -> Verdict {
        if self
            .workloads
            .get(workload)
            .is_some_and(|known| known.contains(executable))
        {
            return Verdict::Known;
        }
        if !self.learning {
            return Verdict::New;
        }
        self.workloads
            .entry(workload.to_string())
            .or_default()
            .insert(executable.to_string());
        self.changed = true;
        Verdict::Learned
    }

    /// Writes the file if anything was learned since the last save (via a
    /// temporary file and a rename, so a crash leaves the old one whole).
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let temporary = self.path.with_extension("tmp");
        std::fs::write(&temporary, self.to_yaml())?;
        std::fs::rename(&temporary, &self.path)?;
        self.changed = false;
        Ok(())
    }

    fn to_yaml(&self) -> String {
        // JSON strings are YAML double-quoted scalars: any name is safe.
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut out = String::from(
            "# palisade process baseline: the executables that opened connections, per workload\nversion: 1\nworkloads:\n",
        );
        if self.workloads.is_empty() {
            out.truncate(out.len() - 1);
            out.push_str(" {}\n");
        }
        for (workload, executables) in &self.workloads {
            out.push_str(&format!("  {}:\n", quote(workload)));
            for executable in executables {
                out.push_str(&format!("  - {}\n", quote(executable)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("palisade-{name}-{}.yaml", std::process::id()))
    }

    #[test]
    fn learns_saves_and_then_alerts_on_what_is_new() {
        let file = path("baseline");
        let _ = std::fs::remove_file(&file);
        let mut learning = ProcessBaseline::open(&file, true).unwrap();
        assert_eq!(
            learning.check("shop/api[Deployment]", "/usr/bin/api"),
            Verdict::Learned
        );
        assert_eq!(
            learning.check("shop/api[Deployment]", "/usr/bin/api"),
            Verdict::Known
        );
        assert_eq!(
            learning.check("shop/a \"b\": c", "/bin/x y"),
            Verdict::Learned
        );
        learning.save().unwrap();
        let mut watching = ProcessBaseline::open(&file, false).unwrap();
        assert_eq!(
            watching.check("shop/api[Deployment]", "/usr/bin/api"),
            Verdict::Known
        );
        assert_eq!(
            watching.check("shop/a \"b\": c", "/bin/x y"),
            Verdict::Known
        );
        assert_eq!(
            watching.check("shop/api[Deployment]", "/bin/sh"),
            Verdict::New
        );
        assert_eq!(
            watching.check("shop/api[Deployment]", "/bin/sh"),
            Verdict::New
        );
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn a_bad_file_is_an_error_with_its_name() {
        let file = path("bad-baseline");
        std::fs::write(&file, "version: 2\n").unwrap();
        let error = ProcessBaseline::open(&file, false).err().unwrap();
        assert!(error.contains("version 2"), "{error}");
        std::fs::write(&file, "workloads: [\n").unwrap();
        assert!(ProcessBaseline::open(&file, false).is_err());
        let _ = std::fs::remove_file(&file);
        let empty = ProcessBaseline::open(&path("missing"), false).unwrap();
        assert!(empty.to_yaml().contains("workloads: {}"));
    }
}
