//! `--fssize` and `strata resize` on zfs: the dataset's `refquota`, a
//! limit on what it refers to (its snapshots not counted, as LXC users
//! know it from Incus's `size` on zfs). One `zfs set`, online: a running
//! container's writes meet the new limit at once. Below what the dataset
//! refers to already it is refused, nothing changed.

use super::{parse_spec, s, ZfsBackend};
use strata_core::{err, Resize, Result, RootfsSpec};

const OP: &str = "zfs refquota";

impl Resize for ZfsBackend {
    fn what(&self) -> &'static str {
        "a zfs refquota"
    }

    fn resize(&self, spec: &RootfsSpec, bytes: u64, _running: bool) -> Result<()> {
        let ds = parse_spec(spec)?;
        let _span = tracing::info_span!("zfs refquota", ds = %ds, bytes).entered();
        if bytes == 0 {
            return Err(err!(InvalidArgument, OP, "a size of 0 would be no limit at all"));
        }
        let referenced: u64 = self.prop(&ds, "referenced")?.parse().unwrap_or(0);
        if referenced > bytes {
            return Err(err!(
                InvalidArgument,
                OP,
                "{ds} refers to {} MiB already: a limit of {} MiB is too small",
                referenced.div_ceil(1 << 20),
                bytes >> 20
            ));
        }
        self.tool(OP, s(&["zfs", "set", &format!("refquota={bytes}"), &ds]))?;
        Ok(())
    }

    fn size(&self, spec: &RootfsSpec) -> Result<Option<u64>> {
        let ds = parse_spec(spec)?;
        // 0 (zfs -p prints "0" for none): no limit.
        Ok(self.prop(&ds, "refquota")?.parse::<u64>().ok().filter(|v| *v != 0))
    }
}
