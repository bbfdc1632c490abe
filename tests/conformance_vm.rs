//! The conformance suite (`strata_testkit::conformance`) for LVM thin,
//! zfs and Ceph RBD: runs inside the QEMU guest, where `STRATA_VM=1`, the VG
//! `$STRATA_VM_VG` with thin pool `pool` and the pool `$STRATA_VM_POOL`
//! exist (and, for rbd, the Ceph pool `$STRATA_VM_RBD_POOL` of a running
//! one-node cluster). Elsewhere each test says it was skipped and passes. Leaks
//! include the VG's LVs and the pool's datasets (and snapshots) that no
//! config names, and mounts of them. `STRATA_VM_STRATA` names the strata
//! binary to run (the guest's copy in memory: one from the 9p share takes
//! seconds per process under TCG).

use std::path::{Path, PathBuf};
use strata_core::Backends;
use strata_testkit::conformance::{self, pool::Pool, Fixture};

fn vm() -> bool {
    let on = std::env::var_os("STRATA_VM").is_some_and(|v| v == "1");
    if !on {
        eprintln!("SKIPPED: needs the guest tier (tests/vm/run sets STRATA_VM=1)");
    }
    on
}

fn backends() -> Backends {
    let mut b = Backends::new();
    b.register(strata_dir::backend());
    b.register(strata_overlay::backend());
    b.register(strata_lvm::backend());
    b.register(strata_zfs::backend());
    b.register(strata_rbd::backend());
    b
}

fn fixture(label: &str, backend: &str, root: &Path) -> Fixture {
    let strata = std::env::var_os("STRATA_VM_STRATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata")));
    Fixture::new(label, backend, root, &strata, backends())
}

#[test]
fn conformance_lvm_thin() {
    if !vm() {
        return;
    }
    let vg = std::env::var("STRATA_VM_VG").unwrap_or_else(|_| "strata_vg".into());
    let t = tempfile::Builder::new()
        .prefix("conf-lvm")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut fx = fixture("lvm thin", "lvm", t.path()).with_pool(Pool::Lvm(vg.clone()));
    fx.create_args = ["--vgname", &vg, "--thinpool", "pool", "--fssize", "64M"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    fx.opts.vgname = Some(vg);
    fx.opts.thinpool = Some("pool".into());
    fx.opts.fssize = Some(64 << 20);
    fx.snapshot = true;
    conformance::run_all(&fx);
}

#[test]
fn conformance_zfs() {
    if !vm() {
        return;
    }
    let pool = std::env::var("STRATA_VM_POOL").unwrap_or_else(|_| "strata_tank".into());
    let t = tempfile::Builder::new()
        .prefix("conf-zfs")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut fx = fixture("zfs", "zfs", t.path()).with_pool(Pool::Zfs(pool.clone()));
    fx.create_args = vec!["--zfsroot".into(), pool.clone()];
    fx.opts.zfsroot = Some(pool);
    fx.snapshot = true;
    conformance::run_all(&fx);
}

#[test]
fn conformance_rbd() {
    if !vm() {
        return;
    }
    let Ok(pool) = std::env::var("STRATA_VM_RBD_POOL") else {
        eprintln!("SKIPPED: no Ceph cluster in this guest (STRATA_VM_RBD_POOL unset)");
        return;
    };
    let t = tempfile::Builder::new()
        .prefix("conf-rbd")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut fx = fixture("rbd", "rbd", t.path()).with_pool(Pool::Rbd(pool.clone()));
    fx.create_args = ["--rbdpool", &pool, "--fssize", "64M"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    fx.opts.defaults.insert(strata_rbd::KEY_POOL.into(), pool);
    fx.opts.fssize = Some(64 << 20);
    fx.snapshot = true;
    conformance::run_all(&fx);
}
