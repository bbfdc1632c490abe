//! Copy clones between every pair of backends through `lxc-copy -B` and
//! `lxc-clone -B`: each source in {dir, overlay, btrfs, loop} into each
//! target in {dir, btrfs, loop}, on a tree with every kind of entry, compared entry by entry with
//! the source (owner, mode, times, xattrs, link targets, content, hardlinks).
//! Root only: the lxcpath is a real btrfs filesystem on a loop device.

mod common;

use common::special::{diff, special_tree, view, View};
use common::Env;
use std::path::Path;
use strata_core::{Backend, Opened, Store};
use strata_testkit::LoopFs;

fn backend(kind: &str) -> std::sync::Arc<dyn Backend> {
    match kind {
        "dir" => strata_dir::backend(),
        "overlay" => strata_overlay::backend(),
        "btrfs" => strata_btrfs::backend(),
        "loop" => strata_loop::backend(),
        k => panic!("{k}"),
    }
}

/// The view of a container's rootfs (mounted read-only where needed).
fn rootfs_view(env: &Env, name: &str) -> (String, View) {
    let spec = Store::new(&env.lxcpath).load(name).unwrap().rootfs;
    let b = backend(spec.kind());
    let o = Opened::open(b.as_ref(), &spec, true).unwrap();
    let v = view(o.path());
    // Sparse files stay sparse: 64 MiB with two small extents.
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(o.path().join("var/sparse")).unwrap());
    assert!(
        blocks * 512 < 1 << 20,
        "{name}: var/sparse has {blocks} blocks allocated"
    );
    o.close().unwrap();
    (spec.kind().to_string(), v)
}

#[test]
fn copy_clones_between_every_pair_of_backends() {
    let env = Env::new();
    // The lxcpath on a btrfs of its own, with every container mount below it
    // gone on drop.
    let _fs = LoopFs::new("btrfs", 4 << 30, Some(&env.lxcpath), "");
    let src = env.src.join("special");
    special_tree(&src);
    let input = view(&src);
    // The tree really has what the comparison must carry.
    let xattr_names =
        |p: &str| -> Vec<String> { input.entries[Path::new(p)].xattrs.iter().map(|x| x.0.clone()).collect() };
    assert!(xattr_names("bin/capped").contains(&"security.capability".to_string()));
    for x in ["system.posix_acl_access", "trusted.secret", "user.note"] {
        assert!(xattr_names("home/user/x").contains(&x.to_string()), "{x}");
    }
    assert!(xattr_names("home/user").contains(&"system.posix_acl_default".to_string()));
    assert_eq!(input.links.len(), 1);
    assert_eq!(input.links[0].len(), 3);
    for s in ["dir", "overlay", "btrfs", "loop"] {
        let name = format!("src-{s}");
        let mut args = vec!["-n", name.as_str(), "-B", s, "--rootfs-from", src.to_str().unwrap()];
        if s == "loop" {
            args.extend(["--fssize", "512M"]);
        }
        env.ok("lxc-create", &args);
        let (kind, v) = rootfs_view(&env, &name);
        assert_eq!(kind, s);
        // The root directory itself is the backend's (a fresh mkfs root, an overlay mount).
        let strip = |v: &View| View {
            entries: v
                .entries
                .iter()
                .filter(|(p, _)| !p.as_os_str().is_empty())
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect(),
            links: v.links.clone(),
        };
        diff(&format!("create -B {s} from the tree"), &strip(&input), &strip(&v));
        for t in ["dir", "btrfs", "loop"] {
            let clone = format!("{s}-to-{t}");
            env.ok("lxc-copy", &["-n", &name, "-N", &clone, "-B", t, "-K"]);
            let (kind, cv) = rootfs_view(&env, &clone);
            assert_eq!(kind, t, "{clone}");
            diff(&format!("lxc-copy -B {t} of a {s} container"), &v, &cv);
            env.ok("lxc-destroy", &["-n", &clone]);
            // LXC 1.x's interface, same engine.
            env.ok("lxc-clone", &["-o", &name, "-n", &clone, "-B", t, "-K"]);
            let (kind, cv) = rootfs_view(&env, &clone);
            assert_eq!(kind, t, "{clone}");
            diff(&format!("lxc-clone -B {t} of a {s} container"), &v, &cv);
            env.ok("lxc-destroy", &["-n", &clone]);
        }
    }
    for s in ["dir", "overlay", "btrfs", "loop"] {
        env.ok("lxc-destroy", &["-n", &format!("src-{s}")]);
    }
    assert!(std::fs::read_dir(&env.lxcpath).unwrap().next().is_none());
}
