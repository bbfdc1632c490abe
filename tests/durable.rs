//! Which flush rule strata picks on real filesystems (root only): no fsync
//! wait only where the journal orders data before the rename that publishes
//! it, file fsyncs alone where metadata commits in order (btrfs), fsync
//! everywhere else; and clones work the same under every rule.

mod common;

use common::Env;
use strata_core::durable::{self, Flush};
use strata_testkit::LoopFs;

#[test]
fn flush_rule_follows_the_filesystem() {
    let cases: [(&str, &str, &[&str], &str, Flush); 7] = [
        ("ordered", "ext4", &[], "", Flush::Ordered),
        ("journal", "ext4", &[], "data=journal", Flush::Ordered),
        ("nobarrier", "ext4", &[], "nobarrier", Flush::Wait),
        ("writeback", "ext4", &[], "data=writeback", Flush::Wait),
        ("nojournal", "ext4", &["-O", "^has_journal"], "", Flush::Wait),
        ("xfs", "xfs", &[], "", Flush::Wait),
        ("btrfs", "btrfs", &[], "", Flush::FileSync),
    ];
    for (name, kind, mkfs_args, opts, want) in cases {
        let env = Env::new();
        let fs = LoopFs::with_mkfs(kind, mkfs_args, 512 << 20, Some(&env.lxcpath), opts);
        assert_eq!(durable::mode(fs.mnt()), want, "{name}");
        {
            let _v = durable::volatile();
            assert_eq!(
                durable::mode(fs.mnt()),
                Flush::Volatile,
                "{name} in a throwaway operation"
            );
        }
        // The same user-visible result under either rule.
        let lp = fs.mnt().to_path_buf();
        let rootfs = lp.join("c1/rootfs");
        common::make_rootfs(&rootfs);
        std::fs::write(
            lp.join("c1/config"),
            format!("lxc.uts.name = c1\nlxc.rootfs.path = dir:{}\n", rootfs.display()),
        )
        .unwrap();
        env.ok("lxc-copy", &["-n", "c1", "-N", "c2", "-s"]);
        env.ok("lxc-snapshot", &["-n", "c1"]);
        let cfg = std::fs::read_to_string(lp.join("c2/config")).unwrap();
        assert!(cfg.contains("lxc.uts.name = c2"), "{name}: {cfg}");
        assert_eq!(
            std::fs::read_to_string(lp.join("c1/lxc_snapshots"))
                .unwrap()
                .lines()
                .count(),
            2
        );
        assert!(lp.join("c1/snaps/snap0/config").is_file(), "{name}");
        env.ok("lxc-destroy", &["-n", "c2"]);
        env.ok("lxc-destroy", &["-n", "c1", "-s"]);
        assert!(!lp.join("c1").exists() && !lp.join("c2").exists(), "{name}");
    }
}
