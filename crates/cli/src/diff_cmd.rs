//! `palisade diff`: what a change to the manifests does to connectivity.

use std::path::PathBuf;

use anyhow::Result;

use crate::input::{self, InputArgs};
use crate::render::{self, DiffFormat};
use crate::{FilterArgs, Outcome, SemanticsArgs};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The inventory before the change: a file or a directory.
    pub old: PathBuf,
    /// The inventory after the change: a file or a directory.
    pub new: PathBuf,
    /// Manifests shared by both sides (e.g. namespaces and workloads when
    /// only policies change); repeatable.
    #[arg(long, value_name = "PATH")]
    pub base: Vec<PathBuf>,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: DiffFormat,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn run(args: &DiffArgs, input_args: &InputArgs) -> Result<Outcome> {
    let side = |path: &PathBuf| {
        let mut paths = args.base.clone();
        paths.push(path.clone());
        input::load(&paths, input_args)
    };
    let old = side(&args.old)?;
    let new = side(&args.new)?;
    let entries = palisade_policy::diff(
        &old,
        &new,
        &args.semantics.settings(),
        &args.filter.filter(),
    );
    if entries.is_empty() && args.output == DiffFormat::Txt {
        eprintln!("no connectivity difference");
        return Ok(Outcome::Clean);
    }
    print!("{}", render::diff(&entries, args.output));
    Ok(if entries.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Found
    })
}
