//! The conformance suite (`strata_testkit::conformance`) for the host's
//! backends, each on its own filesystem: dir, overlay and loop on ext4,
//! btrfs on btrfs, loop on btrfs (reflink snapshot clones). Root only.

use std::path::{Path, PathBuf};
use strata_core::Backends;
use strata_testkit::conformance::{self, Fixture};
use strata_testkit::LoopFs;

fn backends() -> Backends {
    let mut b = Backends::new();
    b.register(strata_dir::backend());
    b.register(strata_overlay::backend());
    b.register(strata_btrfs::backend());
    b.register(strata_loop::backend());
    b
}

fn fixture(label: &str, backend: &str, fs: &LoopFs) -> Fixture {
    Fixture::new(
        label,
        backend,
        fs.mnt(),
        Path::new(env!("CARGO_BIN_EXE_strata")),
        backends(),
    )
}

fn sized(mut fx: Fixture) -> Fixture {
    fx.create_args = vec!["--fssize".into(), "64M".into()];
    fx.opts.fssize = Some(64 << 20);
    fx
}

#[test]
fn failpoint_list_matches_the_code() {
    let core = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("core/src");
    let mut want: Vec<String> = conformance::FAILPOINTS
        .iter()
        .chain(conformance::OTHER_FAILPOINTS)
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(conformance::failpoints_in_source(&core), want);
}

#[test]
fn conformance_dir() {
    strata_testkit::need_root!();
    let fs = LoopFs::new("ext4", 512 << 20, None, "");
    conformance::run_all(&fixture("dir", "dir", &fs));
}

#[test]
fn conformance_overlay() {
    strata_testkit::need_root!();
    let fs = LoopFs::new("ext4", 512 << 20, None, "");
    conformance::run_all(&fixture("overlay", "overlay", &fs));
}

#[test]
fn conformance_btrfs() {
    strata_testkit::need_root!();
    let fs = LoopFs::new("btrfs", 512 << 20, None, "");
    conformance::run_all(&fixture("btrfs", "btrfs", &fs));
}

#[test]
fn conformance_loop() {
    strata_testkit::need_root!();
    let fs = LoopFs::new("ext4", 3 << 30, None, "");
    let mut fx = sized(fixture("loop on ext4", "loop", &fs));
    fx.snapshot = false;
    conformance::run_all(&fx);
}

#[test]
fn conformance_loop_reflink() {
    strata_testkit::need_root!();
    let fs = LoopFs::new("btrfs", 3 << 30, None, "");
    let mut fx = sized(fixture("loop on btrfs", "loop", &fs));
    fx.snapshot = true;
    conformance::run_all(&fx);
}
