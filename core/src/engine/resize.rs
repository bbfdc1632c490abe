//! `strata resize -n NAME SIZE`: a container's rootfs grown or shrunk
//! through its backend's [`crate::backend::Resize`] (an image or device
//! size, a quota), under the container's lock. Each backend makes its own
//! change kill -9 safe (a copy renamed into place, one ioctl or one tool
//! call); a backend without one is refused, naming it.

use super::clone::Params;
use super::deps::{live_dependents, locked, need, refuse_dependents, Step};
use super::Engine;
use crate::backend::BackendOpts;
use crate::err;
use crate::error::Result;
use crate::store::{Container, ContainerRef, Store};

impl Engine {
    pub(super) fn do_resize(&self, r: &ContainerRef, bytes: u64) -> Result<u64> {
        crate::names::validate(&r.name)?;
        locked(std::slice::from_ref(r), || {
            const OP: &str = "resize";
            let store = Store::new(&r.lxcpath);
            if !store.exists(&r.name) {
                return Err(err!(NotFound, OP, "container {} does not exist", r.name));
            }
            let c = store.load(&r.name)?;
            let b = self.backend_of(&c.rootfs)?;
            let Some(rz) = b.resizer() else {
                return Err(err!(
                    Unsupported,
                    OP,
                    "strata cannot resize a {} rootfs (loop, lvm, rbd, zfs, btrfs with quotas on and dir on ext4 or xfs with project quotas can be)",
                    b.kind()
                ));
            };
            let running = crate::state::is_running(r);
            let by_copy = if running {
                None
            } else {
                rz.shrinks_by_copy(&c.rootfs, bytes)?
            };
            if let Some(fstype) = by_copy {
                let new = step!(self.shrink_by_copy(&c, bytes, fstype));
                return Ok(Step::Done(rz.size(&new.rootfs)?.unwrap_or(bytes)));
            }
            rz.resize(&c.rootfs, bytes, running)?;
            Ok(Step::Done(rz.size(&c.rootfs)?.unwrap_or(bytes)))
        })
    }

    /// Shrink `c`'s rootfs by copying its files into a new one of `bytes`
    /// (built under a temp name, refused before anything is made when they
    /// do not fit), swapped in under the restore journal: a kill before the
    /// journal leaves the container as it was and a staging dir reconcile
    /// removes, after it the next command finishes the swap.
    fn shrink_by_copy(&self, c: &Container, bytes: u64, fstype: String) -> Result<Step<Container>> {
        const OP: &str = "resize";
        let r = &c.r;
        if let Some(n) = need(crate::depfile::depends_on(r)?) {
            return Ok(n);
        }
        let snaps = Store::new(&r.lxcpath).snaps_path(&r.name);
        let deps: Vec<_> = live_dependents(r)?.into_iter().filter(|d| d.lxcpath != snaps).collect();
        refuse_dependents(OP, r, &deps)?;
        let b = self.backend_of(&c.rootfs)?;
        b.check_destroy(&c.rootfs)?;
        let opts = BackendOpts {
            fssize: Some(bytes),
            fstype: Some(fstype),
            ..BackendOpts::default()
        };
        // Files that do not fit: said as for a resize, not a new container's --fssize.
        let staged = self.stage_clone(&Params::shrink_copy(c, &opts)).map_err(|mut e| {
            if let Some(m) = e.msg.strip_suffix("give a larger --fssize") {
                e.msg = format!("{m}{} stays as it is", r.name);
            }
            e
        });
        let st = step!(staged);
        self.swap_in(r, c, st).map(Step::Done)
    }
}
