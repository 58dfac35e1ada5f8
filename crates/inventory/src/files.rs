//! Finding manifest files: explicit files are always read; directories are
//! walked recursively for `.yaml`, `.yml` and `.json`, in sorted order so runs
//! are reproducible.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Expands the given paths into the manifest files to read. Unreadable
/// directories and missing paths are errors for the caller to report; the
/// files that were found are still returned.
pub fn collect_manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut errors),
            Ok(_) => files.push(path.clone()),
            Err(source) => errors.push(LoadError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            errors.push(LoadError::Io {
                path: dir.display().to_string(),
                source,
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        // file_type of the entry itself: symlinked directories are not
        // followed, which rules out cycles.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => walk(&path, files, errors),
            Ok(_) if is_manifest(&path) => files.push(path),
            _ => {}
        }
    }
}
