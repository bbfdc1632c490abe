//! `lxc-snapshot`: a read-only clone in the container's `snaps` dir.

use super::clone::Params;
use super::deps::{locked, Step};
use super::rootfs::may_snapshot_running;
use super::staging::mkdir;
use super::Engine;
use crate::error::Result;
use crate::store::{ContainerRef, Store};
use crate::{err, names};

/// LXC's `ts`: local time `%Y:%m:%d %H:%M:%S` (of [`crate::clock::now`]).
pub(super) fn timestamp() -> String {
    crate::clock::format_ts(crate::clock::now())
}

/// strata's file beside a snapshot's `ts` and `comment`: when it expires,
/// in Unix seconds (`strata snapshot prune` removes it after that).
pub const EXPIRE_FILE: &str = "expire";

impl Engine {
    pub(super) fn do_snapshot(&self, r: &ContainerRef, comment: Option<&str>, expire: Option<i64>) -> Result<String> {
        names::validate(&r.name)?;
        locked(std::slice::from_ref(r), || self.snapshot_locked(r, comment, expire))
    }

    fn snapshot_locked(&self, r: &ContainerRef, comment: Option<&str>, expire: Option<i64>) -> Result<Step<String>> {
        const OP: &str = "snapshot";
        let store = Store::new(&r.lxcpath);
        if !store.exists(&r.name) {
            return Err(err!(NotFound, OP, "container {} does not exist", r.name));
        }
        let src = store.load(&r.name)?;
        let snaps = store.snaps_path(&r.name);
        let probe = ContainerRef::new(&snaps, "snap0");
        let params = Params::snapshot(&src, &probe, vec![]);
        if crate::state::is_running(r) {
            let (b, snap) = self.choose(&params)?;
            if !may_snapshot_running(b, snap, &src.rootfs, self.freezer.is_some()) {
                return Err(err!(Busy, OP, "container {} is running; stop it first", r.name));
            }
        }
        let made_snaps = !snaps.is_dir();
        if made_snaps {
            mkdir(&snaps, 0o755)?;
        }
        let name = store.next_snapshot_name(&r.name)?;
        let dst = ContainerRef::new(&snaps, &name);
        let mut files = vec![("ts", timestamp())];
        if let Some(c) = comment {
            files.push(("comment", c.to_string()));
        }
        // In the staging dir with the rest: the snapshot appears with it.
        if let Some(t) = expire {
            files.push((EXPIRE_FILE, format!("{t}\n")));
        }
        let params = Params {
            dst: &dst,
            files,
            ..params
        };
        let res = self.stage_clone(&params).and_then(|st| match st {
            Step::Done(st) => self.finish_staged(st, &dst).map(|_| Step::Done(name)),
            Step::Need(v) => Ok(Step::Need(v)),
        });
        if made_snaps && !matches!(res, Ok(Step::Done(_))) {
            let _ = std::fs::remove_dir(&snaps);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::random_mac;
    use super::*;

    #[test]
    fn macs_and_timestamps_have_lxc_shapes() {
        let m = random_mac();
        assert!(m.starts_with("00:16:3e:") && m.len() == 17, "{m}");
        let t = timestamp();
        let b = t.as_bytes();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!((b[4], b[7], b[10], b[13], b[16]), (b':', b':', b' ', b':', b':'));
    }
}
