//! A non-root user's containers on a real btrfs (a loop file root makes,
//! mounted with user_subvol_rm_allowed), through the CLI as the test user
//! (scripts/setup-test-user) with its default id map: the rootfs is a
//! subvolume owned by the mapped ids, clones and snapshots are subvolume
//! snapshots, restores, an ephemeral run, and a destroy of everything; on a
//! btrfs mounted without user_subvol_rm_allowed a destroy is refused in one
//! line and the container stays as it was. Run as root.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_core::idmap::SubIds;
use strata_testkit::{sh, LoopFs};
use unpriv::*;

const PHASE: &str = "STRATA_BTRFS_PHASE";
const RM_OPT: &str = "user_subvol_rm_allowed";

fn subvolumes(mnt: &Path) -> Vec<String> {
    sh(&["btrfs", "subvolume", "list", "-o", mnt.to_str().unwrap()])
        .lines()
        .filter_map(|l| l.split(" path ").nth(1).map(String::from))
        .collect()
}

/// A field of `btrfs subvolume show` (as root).
fn subvolume_field(p: &Path, field: &str) -> String {
    sh(&["btrfs", "subvolume", "show", p.to_str().unwrap()])
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {field} for {}", p.display()))
}

#[test]
fn btrfs_as_test_user() {
    if let Ok(phase) = std::env::var(PHASE) {
        assert!(!is_root(), "must run as the test user");
        match phase.as_str() {
            "make" => make_body(),
            "use" => use_body(),
            "refused" => refused_body(),
            p => panic!("unknown phase {p}"),
        }
        return;
    }
    let Some(u) = root_side_ready() else {
        return;
    };
    for tool in ["newuidmap", "mkfs.btrfs"] {
        if strata_core::idmap::find_in_path(tool).is_none() {
            eprintln!("skipped: no {tool}");
            return;
        }
    }
    let (uid, gid) = (u.uid.as_raw(), u.gid.as_raw());
    let area = UserArea(
        tempfile::Builder::new()
            .prefix("strata-ubtrfs-")
            .tempdir_in("/var/tmp")
            .unwrap()
            .keep(),
    );
    std::fs::set_permissions(&area.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A btrfs the user can reach (the area is 0755), unmounted and detached on
    // drop, also when the test fails.
    let fs = LoopFs::new("btrfs", 512 << 20, Some(&area.0.join("mnt")), RM_OPT);
    let lxcpath = fs.mnt().join("lxc");
    // Root's input: a busybox tree with files of a container user, as a tarball.
    let src = area.0.join("src");
    helpers::make_rootfs(&src);
    std::fs::write(src.join("etc/hostname"), "src\n").unwrap();
    std::fs::create_dir_all(src.join("home/alice")).unwrap();
    std::fs::write(src.join("home/alice/f"), "alice\n").unwrap();
    std::os::unix::fs::chown(src.join("home/alice/f"), Some(1000), Some(100)).unwrap();
    sh(&[
        "tar",
        "--numeric-owner",
        "-cpf",
        area.0.join("rootfs.tar").to_str().unwrap(),
        "-C",
        src.to_str().unwrap(),
        ".",
    ]);
    // The user's own: a home with its default map, the lxcpath, a run dir.
    let s = SubIds::load(USER, uid, gid, Path::new("/etc/subuid"), Path::new("/etc/subgid"))
        .unwrap()
        .widest_first();
    let home = area.0.join("home");
    std::fs::create_dir_all(home.join(".config/lxc")).unwrap();
    std::fs::write(
        home.join(".config/lxc/default.conf"),
        format!(
            "lxc.idmap = u 0 {} 65536\nlxc.idmap = g 0 {} 65536\n",
            s.uids[0].0, s.gids[0].0
        ),
    )
    .unwrap();
    for d in [
        &home,
        &home.join(".config"),
        &home.join(".config/lxc"),
        &lxcpath,
        &area.0.join("run"),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(home.join(".config/lxc/default.conf"), Some(uid), Some(gid)).unwrap();
    let dir = area.0.display().to_string();
    let run_dir = format!("{dir}/run");
    let as_test_user = |phase: &str| {
        let out = as_user(
            "btrfs_as_test_user",
            &[
                (PHASE, phase),
                ("HOME", &format!("{dir}/home")),
                ("STRATA_TEST_AREA", &dir),
                ("STRATA_RUN_DIR", &run_dir),
            ],
        );
        let so = String::from_utf8_lossy(&out.stdout);
        let se = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{phase} as {USER}:\n{so}\n{se}");
        assert!(so.contains("1 passed"), "{phase} as {USER}:\n{so}\n{se}");
    };

    as_test_user("make");
    // What only root can see: the clone is a snapshot of the original's
    // subvolume, the container's snapshot a read-only one.
    let uuid = subvolume_field(&lxcpath.join("b1/rootfs"), "UUID");
    assert_eq!(subvolume_field(&lxcpath.join("b2/rootfs"), "Parent UUID"), uuid);
    let snap = lxcpath.join("b1/snaps/snap0/rootfs");
    assert_eq!(subvolume_field(&snap, "Parent UUID"), uuid);
    assert_eq!(subvolume_field(&snap, "Flags"), "readonly");

    as_test_user("use");
    assert_eq!(subvolumes(fs.mnt()), Vec::<String>::new(), "subvolumes left");
    assert_eq!(std::fs::read_dir(&lxcpath).unwrap().count(), 0, "lxcpath not empty");

    fs.mount_again("");
    assert!(!fs.options().iter().any(|o| o == RM_OPT), "{:?}", fs.options());
    as_test_user("refused");
    assert_eq!(
        subvolumes(fs.mnt()),
        ["lxc/k1/rootfs", "lxc/k1/snaps/snap0/rootfs"],
        "the refused destroy changed the subvolumes"
    );
    assert_eq!(
        helpers::listing(&lxcpath)
            .iter()
            .filter(|l| l.starts_with(".strata"))
            .count(),
        0
    );
    drop(fs);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&dir),
        "left mounted"
    );
}

struct UserEnv {
    area: PathBuf,
    bin: PathBuf,
    lxcpath: PathBuf,
}

impl UserEnv {
    fn new() -> UserEnv {
        let area = PathBuf::from(std::env::var("STRATA_TEST_AREA").unwrap());
        let home = area.join("home");
        let bin = home.join("bin");
        if !bin.exists() {
            tool_dir(&home);
        }
        UserEnv {
            bin,
            lxcpath: area.join("mnt/lxc"),
            area,
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["-P", self.lxcpath.to_str().unwrap()];
        a.extend_from_slice(args);
        a
    }

    fn ok(&self, tool: &str, args: &[&str]) -> String {
        ok(&self.bin, tool, &self.args(args))
    }

    fn fails(&self, tool: &str, args: &[&str]) -> String {
        let a = self.args(args);
        one_line_failure(&tool_output(&self.bin, tool, &a), tool, &a)
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let m = p.symlink_metadata().unwrap();
    (m.uid(), m.gid())
}

/// Create from root's tarball, a snapshot clone and a snapshot: subvolumes
/// owned by the mapped ids, in container dirs laid out as LXC does.
fn make_body() {
    let e = UserEnv::new();
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let (_, gid) = own_ids();
    let tar = e.area.join("rootfs.tar");
    e.ok(
        "lxc-create",
        &["-n", "b1", "-B", "btrfs", "--rootfs-from", tar.to_str().unwrap()],
    );
    let cfg = std::fs::read_to_string(e.lxcpath.join("b1/config")).unwrap();
    assert!(cfg.contains(&format!("lxc.idmap = u 0 {u0} 65536")), "{cfg}");
    assert!(cfg.contains("lxc.rootfs.path = btrfs:"), "{cfg}");
    let root = e.lxcpath.join("b1/rootfs");
    assert!(strata_btrfs::is_subvolume(&root), "not a subvolume");
    assert_eq!(owner(&root), (u0, g0));
    assert_eq!(owner(&root.join("bin/busybox")), (u0, g0));
    assert_eq!(owner(&root.join("home/alice/f")), (u0 + 1000, g0 + 100));
    let d = e.lxcpath.join("b1").symlink_metadata().unwrap();
    assert_eq!((d.uid(), d.gid(), d.mode() & 0o7777), (u0, gid, 0o770));

    e.ok("lxc-copy", &["-n", "b1", "-N", "b2", "-s"]);
    let root2 = e.lxcpath.join("b2/rootfs");
    assert!(strata_btrfs::is_subvolume(&root2), "not a subvolume");
    assert_eq!(std::fs::read_to_string(root2.join("etc/hostname")).unwrap(), "b2\n");
    assert_eq!(owner(&root2.join("home/alice/f")), (u0 + 1000, g0 + 100));
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "src\n");

    e.ok("lxc-snapshot", &["-n", "b1"]);
    let snap = e.lxcpath.join("b1/snaps/snap0/rootfs");
    assert!(strata_btrfs::is_subvolume(&snap), "not a subvolume");
    assert_eq!(owner(&snap.join("home/alice/f")), (u0 + 1000, g0 + 100));
}

/// Restores, an ephemeral run, and the destroy of everything.
fn use_body() {
    let e = UserEnv::new();
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let root = e.lxcpath.join("b1/rootfs");
    // A change made inside, gone after a restore in place.
    e.ok("lxc-execute", &["-n", "b1", "--", "/bin/touch", "/etc/changed"]);
    assert_eq!(owner(&root.join("etc/changed")), (u0, g0));
    e.ok("lxc-snapshot", &["-n", "b1", "-r", "snap0"]);
    assert!(strata_btrfs::is_subvolume(&root), "not a subvolume");
    assert!(!root.join("etc/changed").exists(), "not restored");
    assert_eq!(owner(&root.join("home/alice/f")), (u0 + 1000, g0 + 100));
    e.ok("lxc-snapshot", &["-n", "b1", "-r", "snap0", "-N", "b3"]);
    let root3 = e.lxcpath.join("b3/rootfs");
    assert!(strata_btrfs::is_subvolume(&root3), "not a subvolume");
    assert_eq!(std::fs::read_to_string(root3.join("etc/hostname")).unwrap(), "b3\n");

    let out = e.ok(
        "lxc-copy",
        &["-n", "b2", "-N", "e1", "-e", "--", "/bin/sh", "-c", "id -u; hostname"],
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "e1"]);
    assert!(!e.lxcpath.join("e1").exists(), "the ephemeral clone is left");

    e.ok("lxc-snapshot", &["-n", "b3"]);
    e.ok("lxc-snapshot", &["-n", "b3", "-d", "snap0"]);
    for n in ["b1", "b2", "b3"] {
        e.ok("lxc-destroy", &["-n", n, "-s"]);
    }
    assert_eq!(std::fs::read_dir(&e.lxcpath).unwrap().count(), 0);
}

/// Without user_subvol_rm_allowed: every way to delete a subvolume is
/// refused in one line, before anything moves.
fn refused_body() {
    let e = UserEnv::new();
    let tar = e.area.join("rootfs.tar");
    e.ok(
        "lxc-create",
        &["-n", "k1", "-B", "btrfs", "--rootfs-from", tar.to_str().unwrap()],
    );
    e.ok("lxc-snapshot", &["-n", "k1"]);
    let before = helpers::listing(&e.lxcpath);
    for (tool, args) in [
        ("lxc-destroy", &["-n", "k1", "-s"][..]),
        ("lxc-snapshot", &["-n", "k1", "-d", "snap0"]),
        ("lxc-snapshot", &["-n", "k1", "-r", "snap0"]),
        ("lxc-copy", &["-n", "k1", "-N", "e1", "-e", "--", "/bin/true"]),
    ] {
        let err = e.fails(tool, args);
        assert!(err.contains(RM_OPT), "{tool} {args:?}: {err}");
        assert_eq!(
            helpers::listing(&e.lxcpath),
            before,
            "{tool} {args:?} changed the lxcpath"
        );
    }
    assert!(strata_btrfs::is_subvolume(&e.lxcpath.join("k1/rootfs")));
    let ls = e.ok("lxc-ls", &[]);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["k1"]);
}
