//! Reading the user's manifest paths into an inventory, reporting
//! diagnostics on stderr, and honouring `--strict` and `-v`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Result, bail};
use palisade_inventory::{
    Diagnostic, Diagnostics, Inventory, Loader, Source, collect_manifest_files,
};

/// Options shared by every command that reads manifests.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct InputArgs {
    /// Any diagnostic (unreadable file, invalid object) is an error (exit 1).
    #[arg(long, global = true)]
    pub strict: bool,
    /// List skipped object kinds and every diagnostic.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Loads manifests from files, directories (recursively) and `-` (stdin).
pub fn load(paths: &[PathBuf], args: &InputArgs) -> Result<Inventory> {
    load_versioned(paths, args).map(|(inventory, _)| inventory)
}

/// The inventory and its version: `files:` and a digest of every file's
/// name and bytes, so that alerts say which manifests judged them.
pub fn load_versioned(paths: &[PathBuf], args: &InputArgs) -> Result<(Inventory, String)> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    let mut loader = Loader::default();
    let (stdin, others): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| p.as_os_str() == "-");
    if !stdin.is_empty() {
        let mut text = String::new();
        match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => {
                digest.update(format!("<stdin> {}\n", text.len()));
                digest.update(text.as_bytes());
                loader.add_text("<stdin>", &text)
            }
            Err(e) => loader.add_diagnostic(io_diagnostic("<stdin>", &e)),
        }
    }
    let others: Vec<PathBuf> = others.into_iter().cloned().collect();
    let (files, errors) = collect_manifest_files(&others);
    let mut fatal = Vec::new();
    for e in errors {
        fatal.push(e.to_string());
    }
    for file in &files {
        let name = file.display().to_string();
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update(format!("{name} {}\n", bytes.len()));
                digest.update(&bytes);
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        loader.add_text(&name, text.strip_prefix('\u{feff}').unwrap_or(&text))
                    }
                    Err(_) => loader.add_diagnostic(Diagnostic::error(
                        source_of(&name),
                        "not UTF-8 text; skipped".to_string(),
                    )),
                }
            }
            Err(e) => loader.add_diagnostic(io_diagnostic(&name, &e)),
        }
    }
    if !fatal.is_empty() {
        bail!("{}", fatal.join("\n"));
    }
    let (inventory, diagnostics) = loader.finish();
    report_diagnostics(&diagnostics, args.verbose);
    report_skipped(&inventory, args.verbose);
    let problems = diagnostics.problems().count();
    if args.strict && problems > 0 {
        bail!("{problems} diagnostics and --strict is set");
    }
    if files.is_empty() && stdin.is_empty() {
        bail!("no manifest files (.yaml, .yml, .json) found in the given paths");
    }
    Ok((
        inventory,
        format!("files:{}", short_hex(&digest.finalize())),
    ))
}

/// A version made of these parts (`files:` and their digest).
pub fn version_of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for part in parts {
        digest.update(part.len().to_le_bytes());
        digest.update(part);
    }
    format!("files:{}", short_hex(&digest.finalize()))
}

/// The first 8 bytes of a digest in hex: enough to tell versions apart.
fn short_hex(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Warnings and errors are shown (the first 20 without `-v`); notes, values
/// read the way Kubernetes tooling reads them, only with `-v`.
pub fn report_diagnostics(diagnostics: &Diagnostics, verbose: bool) {
    if verbose {
        for d in diagnostics.items() {
            eprintln!("{d}");
        }
        return;
    }
    let shown = 20;
    let problems = diagnostics.problems().count();
    for d in diagnostics.problems().take(shown) {
        eprintln!("{d}");
    }
    if problems > shown {
        eprintln!(
            "... and {} more diagnostics (-v shows all)",
            problems - shown
        );
    }
    let notes = diagnostics.notes();
    if notes > 0 {
        eprintln!(
            "{notes} value(s) read as their field's type, e.g. a number as a label's text (-v lists them)"
        );
    }
}

fn report_skipped(inventory: &Inventory, verbose: bool) {
    let skipped = inventory.skipped_objects();
    if skipped == 0 {
        return;
    }
    if verbose {
        for (kind, n) in &inventory.skipped_kinds {
            eprintln!("skipped {n} object(s) of kind {kind}");
        }
    } else {
        eprintln!(
            "skipped {skipped} object(s) of {} kind(s) Palisade does not model (-v lists them)",
            inventory.skipped_kinds.len()
        );
    }
}

fn source_of(file: &str) -> Source {
    Source {
        file: file.into(),
        line: 1,
        column: 1,
    }
}

fn io_diagnostic(file: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(source_of(file), format!("cannot read: {e}"))
}
