//! `strata export`: a container as a `.tar.zst` archive file (the stream
//! of `strata send`, written by the engine under a recorded temp name).

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub stream: super::send::Args,
    /// The archive to write (refused if it exists)
    pub file: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    super::send::write_stream(&a.stream, "export", |engine, req| engine.export(req, &a.file))
}
