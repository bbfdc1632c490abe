//! Crash injection: each operation run with `STRATA_FAILPOINT` set to each
//! site its path may pass. The command dies at the site (exit 99, no
//! destructors); then `lxc-ls` runs (its reconcile) and the lxcpath must
//! hold the state before or after the operation: every listed container
//! has a config and a whole rootfs, the others are unchanged, nothing is
//! leaked, dependency files are exact; a rolled-back operation is retried
//! and must succeed.

use super::state::{self, configs, dep_mismatches, leaks, state, state_diff, State};
use super::{Fixture, Report, FAILPOINTS};
use crate::ensure;
use std::collections::BTreeMap;
use std::path::Path;

/// The operations under test, each on a prepared lxcpath ([`world`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Create,
    Copy,
    SnapClone,
    Snapshot,
    Restore,
    RestoreNew,
    Destroy,
    DestroyDependent,
    DestroySnapshot,
    Rename,
}

pub const OPS: &[Op] = &[
    Op::Create,
    Op::Copy,
    Op::SnapClone,
    Op::Snapshot,
    Op::Restore,
    Op::RestoreNew,
    Op::Destroy,
    Op::DestroyDependent,
    Op::DestroySnapshot,
    Op::Rename,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Copy => "copy",
            Op::SnapClone => "snapshot clone",
            Op::Snapshot => "lxc-snapshot",
            Op::Restore => "restore",
            Op::RestoreNew => "restore to a new name",
            Op::Destroy => "destroy -s",
            Op::DestroyDependent => "destroy of a clone",
            Op::DestroySnapshot => "snapshot destroy",
            Op::Rename => "rename",
        }
    }

    /// Whether the fixture can run it.
    pub fn applies(self, fx: &Fixture) -> bool {
        match self {
            Op::SnapClone | Op::DestroyDependent => fx.snapshot,
            Op::Rename => fx.rename,
            _ => true,
        }
    }

    /// The tool and its arguments.
    pub fn argv(self, fx: &Fixture) -> (&'static str, Vec<String>) {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Op::Create => ("lxc-create", fx.create_argv("n1")),
            Op::Copy => ("lxc-copy", v(&["-n", "c1", "-N", "n1"])),
            Op::SnapClone => ("lxc-copy", v(&["-s", "-n", "b0", "-N", "n1"])),
            Op::Snapshot => ("lxc-snapshot", v(&["-n", "c1"])),
            Op::Restore => ("lxc-snapshot", v(&["-n", "c1", "-r", "snap0"])),
            Op::RestoreNew => ("lxc-snapshot", v(&["-n", "c1", "-r", "snap0", "-N", "n1"])),
            Op::Destroy => ("lxc-destroy", v(&["-n", "c1", "-s"])),
            Op::DestroyDependent => ("lxc-destroy", v(&["-n", "k1"])),
            Op::DestroySnapshot => ("lxc-snapshot", v(&["-n", "c1", "-d", "snap0"])),
            Op::Rename => ("lxc-copy", v(&["-R", "-n", "r1", "-N", "n1"])),
        }
    }

    /// The failpoints its path may pass (a site it does not pass on some
    /// backend is reported as such, not as a failure).
    pub fn failpoints(self) -> &'static [&'static str] {
        const CLONE: &[&str] = &["clone-after-rootfs", "clone-before-rename"];
        match self {
            Op::Create => &["create-before-rename"],
            Op::Copy | Op::SnapClone | Op::Snapshot | Op::RestoreNew => CLONE,
            Op::Restore => &[
                "clone-after-rootfs",
                "clone-before-rename",
                "restore-after-journal",
                "restore-after-swap-out",
                "restore-after-swap-in",
            ],
            Op::Destroy | Op::DestroyDependent | Op::DestroySnapshot => &["destroy-after-rename"],
            Op::Rename => &[
                "rename-after-move",
                "rename-after-clone",
                "clone-after-rootfs",
                "clone-before-rename",
                "destroy-after-rename",
            ],
        }
    }

    /// The state once it has run on `before`.
    pub fn after(self, fx: &Fixture, before: &State) -> State {
        let mut s = before.clone();
        match self {
            Op::Create => {
                s.insert("n1".into(), state::tree(&fx.tree));
            }
            Op::Copy => {
                s.insert("n1".into(), before["c1"].clone());
            }
            Op::SnapClone => {
                s.insert("n1".into(), before["b0"].clone());
            }
            Op::Snapshot => {
                s.insert("c1@snap1".into(), before["c1"].clone());
            }
            Op::Restore => {
                s.insert("c1".into(), before["c1@snap0"].clone());
            }
            Op::RestoreNew => {
                s.insert("n1".into(), before["c1@snap0"].clone());
            }
            Op::Destroy => s.retain(|n, _| n != "c1" && !n.starts_with("c1@")),
            Op::DestroyDependent => {
                s.remove("k1");
            }
            Op::DestroySnapshot => {
                s.remove("c1@snap0");
            }
            Op::Rename => {
                let t = s.remove("r1").unwrap();
                s.insert("n1".into(), t);
            }
        }
        s
    }

    /// Containers whose config the operation may rewrite.
    fn touches(self) -> &'static [&'static str] {
        match self {
            Op::Restore => &["c1"],
            Op::Rename => &["r1"],
            _ => &[],
        }
    }
}

/// Prepares `lx` for `op`: `c1` with `snap0` taken before a change; for
/// the operations on a base with dependents (snapshot clone, destroy of a
/// clone), `b0` and its clone `k1`; `r1` for a rename. Only what the
/// operation needs: on LVM and zfs under emulation each container costs
/// seconds, and every case makes its own world.
pub fn world(fx: &Fixture, lx: &Path, op: Op) -> Result<(), String> {
    fx.create(lx, "c1")?;
    fx.ok(lx, "lxc-snapshot", &["-n", "c1"])?;
    state::with_rootfs_rw(fx, &lx.join("c1"), |p| {
        std::fs::write(p.join("root/data"), "changed\n").unwrap();
        std::fs::write(p.join("var/log/new"), "new\n").unwrap();
        std::fs::remove_file(p.join("usr/os-link")).unwrap();
    });
    if fx.snapshot && matches!(op, Op::SnapClone | Op::DestroyDependent) {
        fx.create(lx, "b0")?;
        fx.ok(lx, "lxc-copy", &["-s", "-n", "b0", "-N", "k1"])?;
    }
    if op == Op::Rename {
        fx.create(lx, "r1")?;
    }
    Ok(())
}

/// The cases a sample always runs: every failpoint site once, on the
/// operation that reaches it with the most at stake (a clone's dependency
/// files, a restore's three steps, a rename's two ways).
const SAMPLE: &[(Op, &str)] = &[
    (Op::Create, "create-before-rename"),
    (Op::Copy, "clone-after-rootfs"),
    (Op::SnapClone, "clone-before-rename"),
    (Op::Restore, "restore-after-journal"),
    (Op::Restore, "restore-after-swap-out"),
    (Op::Restore, "restore-after-swap-in"),
    (Op::DestroyDependent, "destroy-after-rename"),
    (Op::Rename, "rename-after-move"),
    (Op::Rename, "rename-after-clone"),
];

/// How many of the other cases a sample adds, drawn afresh each run.
const SAMPLE_EXTRA: usize = 2;

/// Which (operation, failpoint) cases run: all of them, or with
/// `STRATA_CONFORMANCE_CRASH=sample` (the guest tier in CI, where each case
/// costs tens of seconds under emulation) [`SAMPLE`] and [`SAMPLE_EXTRA`]
/// others drawn with the seed `STRATA_CONFORMANCE_SEED` (else the time),
/// printed so that a failure can be run again.
///
/// `STRATA_CONFORMANCE_CRASH_CASES=N` keeps N cases of the sample, drawn
/// with the same seed (where one case costs minutes, as on rbd under
/// emulation): each run reaches other sites, and the failpoint coverage
/// is not asked of it.
pub fn cases(fx: &Fixture) -> Vec<(Op, &'static str)> {
    if std::env::var("STRATA_CONFORMANCE_CRASH").as_deref() != Ok("sample") {
        return cases_of(fx, None);
    }
    let seed: u64 = std::env::var("STRATA_CONFORMANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    let sample = cases_of(fx, Some(seed));
    match limit() {
        Some(n) => {
            let few = draw(sample, n, seed);
            eprintln!(
                "{}: crash cases: {} of the sample ({few:?}; STRATA_CONFORMANCE_CRASH_CASES={n}, STRATA_CONFORMANCE_SEED={seed})",
                fx.label,
                few.len()
            );
            few
        }
        None => sample,
    }
}

/// `STRATA_CONFORMANCE_CRASH_CASES`, when set.
fn limit() -> Option<usize> {
    std::env::var("STRATA_CONFORMANCE_CRASH_CASES").ok()?.parse().ok()
}

/// `n` of `cases`, drawn with `seed` (another xorshift stream than the
/// sample's extra cases), in their order.
pub fn draw(mut cases: Vec<(Op, &'static str)>, n: usize, seed: u64) -> Vec<(Op, &'static str)> {
    let mut x = seed.rotate_left(29) | 1;
    let mut out = Vec::new();
    while out.len() < n && !cases.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(cases.remove((x % cases.len() as u64) as usize));
    }
    out.sort();
    out
}

/// Every case, or with a seed the sample it draws.
pub fn cases_of(fx: &Fixture, sample: Option<u64>) -> Vec<(Op, &'static str)> {
    let all: Vec<(Op, &'static str)> = OPS
        .iter()
        .filter(|op| op.applies(fx))
        .flat_map(|&op| op.failpoints().iter().map(move |&fp| (op, fp)))
        .collect();
    let Some(seed) = sample else { return all };
    let mut rest: Vec<_> = all.iter().filter(|c| !SAMPLE.contains(c)).copied().collect();
    let mut x = seed | 1;
    let mut out: Vec<_> = SAMPLE.iter().filter(|(op, _)| op.applies(fx)).copied().collect();
    for _ in 0..SAMPLE_EXTRA.min(rest.len()) {
        // xorshift: a fixed draw for a given seed.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(rest.remove((x % rest.len() as u64) as usize));
    }
    eprintln!(
        "{}: crash cases: a sample of {} of {} (STRATA_CONFORMANCE_SEED={seed}; STRATA_CONFORMANCE_CRASH=all runs every one)",
        fx.label,
        out.len(),
        all.len()
    );
    out.sort();
    out
}

/// Runs the (operation, failpoint) cases ([`cases`]) and checks that every
/// site in [`FAILPOINTS`] was reached by at least one operation.
pub fn run(fx: &Fixture, rep: &mut Report) {
    let mut hit: BTreeMap<&str, Vec<&str>> = FAILPOINTS.iter().map(|f| (*f, Vec::new())).collect();
    for &op in OPS {
        if !op.applies(fx) {
            rep.push(
                format!("{}: crash: {}", fx.label, op.name()),
                Ok("not applicable".into()),
            );
        }
    }
    for (op, fp) in cases(fx) {
        let case = format!("{}: crash: {} at {fp}", fx.label, op.name());
        let r = one(fx, op, fp);
        if let Ok(Outcome::Crashed(_)) = &r {
            hit.get_mut(fp).unwrap().push(op.name());
        }
        rep.push(case, r.map(|o| o.to_string()));
    }
    let missed: Vec<&str> = hit.iter().filter(|(_, v)| v.is_empty()).map(|(f, _)| *f).collect();
    let summary = hit
        .iter()
        .map(|(f, v)| format!("{f}: {}", if v.is_empty() { "-".into() } else { v.join(", ") }))
        .collect::<Vec<_>>()
        .join("; ");
    let r = if limit().is_some() && std::env::var("STRATA_CONFORMANCE_CRASH").as_deref() == Ok("sample") {
        Ok(format!("not asked of a run of a few cases ({summary})"))
    } else if missed.is_empty() || missed == ["rename-after-move"] || missed == ["rename-after-clone"] {
        Ok(summary)
    } else {
        Err(format!("never reached: {missed:?} ({summary})"))
    };
    rep.push(format!("{}: crash: failpoint coverage", fx.label), r);
}

/// What a crash case came to.
#[derive(Debug)]
pub enum Outcome {
    /// Died at the site; reconcile left the state before (rolled back,
    /// then retried) or after (rolled forward).
    Crashed(&'static str),
    /// The operation's path does not pass this site here; it succeeded.
    NotOnPath,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Outcome::Crashed(s) => write!(f, "{s}"),
            Outcome::NotOnPath => write!(f, "not on this backend's path"),
        }
    }
}

/// The invariants after a killed or crashed command and the next command
/// (`lxc-ls`): returns whether the state is the one before (`true`) or
/// after (`false`) the operation.
pub fn check_after_kill(
    fx: &Fixture,
    lx: &Path,
    op: Op,
    before: &State,
    after: &State,
    cfg_before: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let ls = fx.ok(lx, "lxc-ls", &["-1"])?;
    let l = leaks(fx, lx);
    ensure!(l.is_empty(), "leaked after lxc-ls: {l:?}");
    let now = state(fx, lx)?;
    let listed: Vec<&str> = ls.lines().collect();
    let names: Vec<&str> = now.keys().filter(|n| !n.contains('@')).map(String::as_str).collect();
    ensure!(listed == names, "lxc-ls lists {listed:?}, the lxcpath holds {names:?}");
    let rolled_back = if &now == before {
        true
    } else if &now == after {
        false
    } else {
        return Err(format!(
            "neither before ({:?}) nor after ({:?})",
            state_diff(before, &now),
            state_diff(after, &now)
        ));
    };
    let cfg_now = configs(lx);
    for (n, c) in cfg_before {
        if op.touches().contains(&n.as_str()) {
            continue;
        }
        if let Some(c2) = cfg_now.get(n) {
            ensure!(c == c2, "{n}: config changed");
        }
    }
    let d = dep_mismatches(lx);
    ensure!(d.is_empty(), "dependency files: {d:?}");
    Ok(rolled_back)
}

fn one(fx: &Fixture, op: Op, fp: &str) -> Result<Outcome, String> {
    let lx = fx.lxcpath(&format!("crash-{}-{fp}", op.name().replace(' ', "_")));
    world(fx, &lx, op)?;
    let before = state(fx, &lx)?;
    let after = op.after(fx, &before);
    let cfg_before = configs(&lx);
    let (tool, args) = op.argv(fx);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fx.run(&lx, tool, &a, Some(fp));
    match o.status.code() {
        Some(99) => {}
        Some(0) => {
            let now = state(fx, &lx)?;
            ensure!(now == after, "ran through, but: {:?}", state_diff(&after, &now));
            return Ok(Outcome::NotOnPath);
        }
        _ => {
            return Err(format!(
                "{tool} {args:?} with the failpoint: {:?}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim_end()
            ))
        }
    }
    let back = check_after_kill(fx, &lx, op, &before, &after, &cfg_before)?;
    if !back {
        return Ok(Outcome::Crashed("rolled forward"));
    }
    fx.ok(&lx, tool, &a).map_err(|e| format!("retry: {e}"))?;
    let now = state(fx, &lx)?;
    ensure!(now == after, "after the retry: {:?}", state_diff(&after, &now));
    let l = leaks(fx, &lx);
    ensure!(l.is_empty(), "leaked by the retry: {l:?}");
    let d = dep_mismatches(&lx);
    ensure!(d.is_empty(), "dependency files after the retry: {d:?}");
    Ok(Outcome::Crashed("rolled back, retried"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reaches_every_site_and_draws_by_its_seed() {
        let root = tempfile::tempdir().unwrap();
        let mut fx = Fixture::new(
            "t",
            "dir",
            root.path(),
            Path::new("/bin/true"),
            strata_core::Backends::new(),
        );
        fx.snapshot = true;
        let all = cases_of(&fx, None);
        assert_eq!(all.len(), 22);
        let s = cases_of(&fx, Some(7));
        assert_eq!(s.len(), SAMPLE.len() + SAMPLE_EXTRA);
        assert!(s.iter().all(|c| all.contains(c)), "{s:?}");
        for fp in FAILPOINTS {
            assert!(s.iter().any(|(_, f)| f == fp), "{fp} not in the sample {s:?}");
        }
        for (op, fp) in SAMPLE {
            assert!(op.failpoints().contains(fp), "{op:?} never passes {fp}");
        }
        assert_eq!(s, cases_of(&fx, Some(7)), "not reproducible from its seed");
        let draws: std::collections::BTreeSet<_> = (1..40u64).map(|x| cases_of(&fx, Some(x))).collect();
        assert!(draws.len() > 5, "the extra cases hardly vary: {}", draws.len());
        // A few of the sample: as many as asked, of it, by the seed.
        let few = draw(s.clone(), 2, 7);
        assert_eq!(few.len(), 2);
        assert!(few.iter().all(|c| s.contains(c)), "{few:?}");
        assert_eq!(few, draw(s.clone(), 2, 7));
        let sites: std::collections::BTreeSet<_> = (1..40u64)
            .flat_map(|x| draw(cases_of(&fx, Some(x)), 2, x))
            .map(|(_, f)| f)
            .collect();
        assert_eq!(sites.len(), FAILPOINTS.len(), "some site never drawn: {sites:?}");
        assert_eq!(draw(s.clone(), 99, 7).len(), s.len());
    }
}
