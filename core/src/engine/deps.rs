//! Dependency files (`lxc_snapshots`, `lxc_rdepends`) and the locks that
//! guard them: an operation runs under [`locked`], asks for the locks of
//! the origins it will edit (a [`Step::Need`]) before it changes anything.

use crate::depfile;
use crate::err;
use crate::error::Result;
use crate::lock::{self, LockSet};
use crate::store::ContainerRef;
use std::path::Path;

/// What a step run under [`locked`] found: done, or more containers whose
/// locks it needs before it may change anything.
pub(super) enum Step<T> {
    Done(T),
    Need(Vec<ContainerRef>),
}

/// Those of `refs` whose locks this thread does not hold (and could take).
pub(super) fn unlocked(refs: impl IntoIterator<Item = ContainerRef>) -> Vec<ContainerRef> {
    let mut v: Vec<ContainerRef> = refs
        .into_iter()
        .filter(|r| lock::lockable(r) && !lock::held(r))
        .collect();
    v.dedup();
    v
}

/// `Need` of those of `refs` not locked yet, if any.
pub(super) fn need<T>(refs: impl IntoIterator<Item = ContainerRef>) -> Option<Step<T>> {
    let v = unlocked(refs);
    (!v.is_empty()).then_some(Step::Need(v))
}

/// Run `f` holding the locks of `base` and of every container `f` asks for
/// (its `Need`): all are taken afresh, in one global order ([`LockSet`]),
/// so that no two operations deadlock, and `f` runs again from the start
/// (what it checked may have changed while no lock was held). `f` asks
/// before it changes anything.
pub(super) fn locked<T>(base: &[ContainerRef], mut f: impl FnMut() -> Result<Step<T>>) -> Result<T> {
    let mut want: Vec<ContainerRef> = base.to_vec();
    for _ in 0..16 {
        let _locks = LockSet::acquire(&want)?;
        match f()? {
            Step::Done(t) => return Ok(t),
            Step::Need(more) => {
                let n = want.len();
                for m in more {
                    if !want.contains(&m) {
                        want.push(m);
                    }
                }
                if want.len() == n {
                    break;
                }
                tracing::debug!("relocking with {} containers", want.len());
            }
        }
    }
    Err(err!(
        Busy,
        "lock containers",
        "the containers this operation depends on kept changing; try again"
    ))
}

/// The containers `r` and its snapshots depend on (their `lxc_rdepends`).
pub(super) fn origins_of(r: &ContainerRef) -> Vec<ContainerRef> {
    let mut v = depfile::depends_on(r).unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(r.dir().join("snaps")) {
        let snaps = r.dir().join("snaps");
        for e in rd.flatten() {
            let s = ContainerRef::new(&snaps, e.file_name().to_string_lossy());
            v.extend(depfile::depends_on(&s).unwrap_or_default());
        }
    }
    v.retain(|o| !o.is_unknown());
    v.sort();
    v.dedup();
    v
}

/// Dependency files are rewritten only under the lock of the container
/// that holds them: a read-modify-write without it loses others' updates.
fn guarded(origin: &ContainerRef, op: &str) -> Result<()> {
    if !lock::lockable(origin) || lock::held(origin) {
        return Ok(());
    }
    Err(err!(Busy, op, "internal error: {origin} is not locked"))
}

/// [`depfile::add_dependency`], with the origin's lock held.
pub(super) fn add_dep(origin: &ContainerRef, clone: &ContainerRef, clone_dir: &Path) -> Result<()> {
    guarded(origin, "record dependency")?;
    depfile::add_dependency(origin, clone, clone_dir)
}

/// [`depfile::remove_dependency`], with the origin's lock held.
pub(super) fn remove_dep(origin: &ContainerRef, clone: &ContainerRef) -> Result<()> {
    guarded(origin, "update dependencies")?;
    depfile::remove_dependency(origin, clone)
}

/// Containers that depend on `r` and still exist.
pub(super) fn live_dependents(r: &ContainerRef) -> Result<Vec<ContainerRef>> {
    Ok(depfile::dependents(r)?
        .into_iter()
        .filter(|d| d.is_unknown() || d.config_path().is_file())
        .collect())
}

fn describe(origin: &ContainerRef, deps: &[ContainerRef]) -> String {
    deps.iter()
        .map(|d| {
            if d.is_unknown() {
                d.to_string()
            } else if d.lxcpath == origin.lxcpath {
                d.name.clone()
            } else if d.lxcpath.file_name().is_some_and(|n| n == "snaps") {
                let owner = d.lxcpath.parent().and_then(|p| p.file_name()).unwrap_or_default();
                format!("{} (snapshot of {})", d.name, owner.to_string_lossy())
            } else {
                d.dir().display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn refuse_dependents(op: &str, r: &ContainerRef, deps: &[ContainerRef]) -> Result<()> {
    if deps.is_empty() {
        return Ok(());
    }
    Err(err!(
        HasDependents,
        op,
        "container {} has dependents: {}",
        r.name,
        describe(r, deps)
    ))
}
