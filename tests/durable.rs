//! Which flush rule strata picks on real filesystems (root only): no fsync
//! wait only where the journal orders data before the rename that publishes
//! it, file fsyncs alone where metadata commits in order (btrfs), fsync
//! everywhere else; and clones work the same under every rule.

mod common;

use common::Env;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::durable::{self, Flush};

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A filesystem on a sparse file, loop-mounted; unmounted on drop.
struct Fs {
    mnt: PathBuf,
}

impl Fs {
    fn new(dir: &Path, mnt: &Path, mkfs: &[&str], opts: &str) -> Fs {
        let img = dir.join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(512 << 20).unwrap();
        let mnt = mnt.to_path_buf();
        let mut argv = mkfs.to_vec();
        argv.push(img.to_str().unwrap());
        sh(&argv);
        let o = if opts.is_empty() {
            "loop".to_string()
        } else {
            format!("loop,{opts}")
        };
        sh(&["mount", "-o", &o, img.to_str().unwrap(), mnt.to_str().unwrap()]);
        Fs { mnt }
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.mnt).status();
    }
}

#[test]
fn flush_rule_follows_the_filesystem() {
    let cases: [(&str, &[&str], &str, Flush); 7] = [
        ("ordered", &["mkfs.ext4", "-q", "-F"], "", Flush::Ordered),
        ("journal", &["mkfs.ext4", "-q", "-F"], "data=journal", Flush::Ordered),
        ("nobarrier", &["mkfs.ext4", "-q", "-F"], "nobarrier", Flush::Wait),
        ("writeback", &["mkfs.ext4", "-q", "-F"], "data=writeback", Flush::Wait),
        (
            "nojournal",
            &["mkfs.ext4", "-q", "-F", "-O", "^has_journal"],
            "",
            Flush::Wait,
        ),
        ("xfs", &["mkfs.xfs", "-q", "-f"], "", Flush::Wait),
        ("btrfs", &["mkfs.btrfs", "-q", "-f"], "", Flush::FileSync),
    ];
    for (name, mkfs, opts, want) in cases {
        let env = Env::new();
        let fs = Fs::new(env.tmp.path(), &env.lxcpath, mkfs, opts);
        assert_eq!(durable::mode(&fs.mnt), want, "{name}");
        {
            let _v = durable::volatile();
            assert_eq!(
                durable::mode(&fs.mnt),
                Flush::Volatile,
                "{name} in a throwaway operation"
            );
        }
        // The same user-visible result under either rule.
        let lp = fs.mnt.clone();
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
