//! The engine's [`Freezer`]: the runtime's cgroup freezer (v1
//! `freezer.state` on a hybrid host, cgroup2 `cgroup.freeze`), which says
//! on stderr how long it held a container frozen.

use std::path::PathBuf;
use std::time::Duration;
use strata_core::freeze::Freezer;
use strata_core::{ContainerRef, Result};

/// How long a freeze or thaw may take before it is reported as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct CgroupFreezer;

impl Freezer for CgroupFreezer {
    fn freeze(&self, cgroups: &[PathBuf]) -> Result<()> {
        strata_runtime::cgroup::freeze(cgroups, TIMEOUT)
    }

    fn thaw(&self, cgroups: &[PathBuf]) -> Result<()> {
        strata_runtime::cgroup::thaw(cgroups, TIMEOUT)
    }

    fn is_frozen(&self, cgroups: &[PathBuf]) -> bool {
        strata_runtime::cgroup::is_frozen(cgroups)
    }

    fn report(&self, r: &ContainerRef, what: &str, took: Duration) {
        let tool = std::env::args_os()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "strata".into());
        eprintln!(
            "{tool}: {}: running container frozen for {:.1} ms while {what} was taken, then thawed",
            crate::message::one_line(&r.name),
            took.as_secs_f64() * 1e3
        );
    }
}
