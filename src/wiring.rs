//! The one place that names concrete backends.

use std::sync::Arc;
use strata_core::Backends;

pub fn backends() -> Backends {
    let mut b = Backends::new();
    let _ = Arc::new(());
    b.register_all_ready();
    b
}

trait RegisterReady {
    fn register_all_ready(&mut self);
}

impl RegisterReady for Backends {
    // Each backend crate exports `pub fn backend() -> Arc<dyn strata_core::Backend>`;
    // add one line per backend once it is ready. The first is the default (`lxc-create` without -B).
    fn register_all_ready(&mut self) {
        self.register(strata_dir::backend());
        self.register(strata_overlay::backend());
        self.register(strata_btrfs::backend());
        self.register(strata_loop::backend());
        self.register(strata_lvm::backend());
        self.register(strata_zfs::backend());
        self.register(strata_rbd::backend());
    }
}
