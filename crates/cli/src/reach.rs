//! `palisade reach`: the connectivity map.

use std::path::PathBuf;

use anyhow::Result;
use palisade_policy::{ConnectivityMap, Engine};

use crate::input::{self, InputArgs};
use crate::render::{self, MapFormat};
use crate::{FilterArgs, Outcome, SemanticsArgs};

#[derive(clap::Args, Debug)]
pub struct ReachArgs {
    /// Manifest files or directories (recursive), or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: MapFormat,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn run(args: &ReachArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.paths, input_args)?;
    let engine = Engine::new(&inventory, &args.semantics.settings());
    let map = ConnectivityMap::from_engine(&engine, &args.filter.filter());
    print!("{}", render::map(&map, args.output));
    Ok(Outcome::Clean)
}
