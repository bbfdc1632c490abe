//! `strata resize -n NAME SIZE`: a container's rootfs grown or shrunk
//! through its backend's [`crate::backend::Resize`] (an image or device
//! size, a quota), under the container's lock. Each backend makes its own
//! change kill -9 safe (a copy renamed into place, one ioctl or one tool
//! call); a backend without one is refused, naming it.

use super::deps::{locked, Step};
use super::Engine;
use crate::err;
use crate::error::Result;
use crate::store::{ContainerRef, Store};

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
                    "strata cannot resize a {} rootfs (loop, lvm, zfs, btrfs with quotas on and dir on ext4 or xfs with project quotas can be)",
                    b.kind()
                ));
            };
            let running = crate::state::is_running(r);
            rz.resize(&c.rootfs, bytes, running)?;
            Ok(Step::Done(rz.size(&c.rootfs)?.unwrap_or(bytes)))
        })
    }
}
