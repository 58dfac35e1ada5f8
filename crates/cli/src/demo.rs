//! `palisade demo`: the main job on the bundled example cluster.

use anyhow::Result;

use crate::Outcome;

pub fn run() -> Result<Outcome> {
    Ok(Outcome::Clean)
}
