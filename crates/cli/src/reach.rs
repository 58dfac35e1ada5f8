//! `palisade reach`: the connectivity map.

use std::path::PathBuf;

use anyhow::Result;
use palisade_policy::{ConnectivityMap, Engine, MapFilter};

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
    /// One line per maximal run of external ranges with the same
    /// connections, instead of roxctl's one line per range its policies cut.
    #[arg(long)]
    pub merge_ranges: bool,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn run(args: &ReachArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.paths, input_args)?;
    let engine = Engine::new(&inventory, &args.semantics.settings());
    let filter = MapFilter {
        merge_ranges: args.merge_ranges,
        ..args.filter.filter()
    };
    let map = ConnectivityMap::from_engine(&engine, &filter);
    print!("{}", render::map(&map, args.output));
    Ok(Outcome::Clean)
}
