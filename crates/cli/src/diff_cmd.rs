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
    #[arg(long, short, value_enum, default_value_t)]
    pub output: DiffFormat,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn run(args: &DiffArgs, input_args: &InputArgs) -> Result<Outcome> {
    let old = input::load(std::slice::from_ref(&args.old), input_args)?;
    let new = input::load(std::slice::from_ref(&args.new), input_args)?;
    let entries = palisade_policy::diff(
        &old,
        &new,
        &args.semantics.settings(),
        &args.filter.filter(),
    );
    print!("{}", render::diff(&entries, args.output));
    if entries.is_empty() {
        if args.output == DiffFormat::Txt {
            eprintln!("no connectivity difference");
        }
        Ok(Outcome::Clean)
    } else {
        Ok(Outcome::Found)
    }
}
