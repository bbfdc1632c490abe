//! As the non-root test user (scripts/setup-test-user): per-user paths,
//! subordinate-range checks, maps written with newuidmap/newgidmap, and the
//! clear errors for a map outside the ranges, a user without ranges and a
//! missing newuidmap. Run as root: each test re-runs itself in this test
//! binary as the test user, and is skipped (with a message) without that user.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;
#[path = "common/xattr.rs"]
mod xattr;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata_core::idmap::{write_maps, IdMap, SubIds};
use strata_core::{paths, ErrorKind};
use unpriv::*;
use xattr::{acl_ids, lgetxattr};

/// A child in a new, unmapped user namespace (as the caller).
struct NsChild(std::process::Child);

impl NsChild {
    fn spawn() -> NsChild {
        let mut c = Command::new("/usr/bin/unshare")
            .args(["--user", "/bin/sleep", "60"])
            .process_group(0)
            .spawn()
            .unwrap();
        let me = std::fs::read_link("/proc/self/ns/user").unwrap();
        let p = format!("/proc/{}/ns/user", c.id());
        for _ in 0..500 {
            if std::fs::read_link(&p).is_ok_and(|l| l != me) {
                // unshare has switched; wait until it has exec'd sleep too.
                if std::fs::read_to_string(format!("/proc/{}/comm", c.id())).is_ok_and(|s| s.trim() == "sleep") {
                    return NsChild(c);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("unshare --user did not start");
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn map(&self, kind: &str) -> Vec<Vec<u64>> {
        std::fs::read_to_string(format!("/proc/{}/{kind}", self.pid()))
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
            .collect()
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

user_test!(per_user_paths, &[], {
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    assert_eq!(paths::builtin_lxcpath(), home.join(".local/share/lxc"));
    assert_eq!(paths::global_conf(), home.join(".config/lxc/lxc.conf"));
    assert_eq!(paths::default_conf(), home.join(".config/lxc/default.conf"));
    assert_eq!(paths::cache_dir(), home.join(".cache/lxc"));
    let run = paths::run_dir();
    assert!(!run.starts_with("/run/strata"), "{}", run.display());
    // Locks work without root, in the user's own run dir.
    let tmp = tempfile::tempdir().unwrap();
    let lock = strata_core::lock::ContainerLock::acquire(tmp.path(), "c1").unwrap();
    assert!(lock.path().starts_with(&run));
    // The CLI lists the (missing) per-user lxcpath as empty.
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("ls").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
});

user_test!(maps_checked_against_subordinate_ranges, &[], {
    let s = SubIds::for_caller().unwrap().widest_first();
    assert_eq!(s.name, USER);
    let (u0, c) = s.uids[0];
    let (g0, gc) = s.gids[0];
    let (uid, _) = own_ids();
    IdMap::parse([format!("u 0 {u0} {c}").as_str(), format!("g 0 {g0} {gc}").as_str()])
        .unwrap()
        .check_caller()
        .unwrap();
    // The hole: container 1005 is the user's own uid.
    IdMap::parse([
        format!("u 0 {u0} 1005").as_str(),
        format!("u 1005 {uid} 1").as_str(),
        format!("u 1006 {} {}", u0 + 1006, c - 1006).as_str(),
    ])
    .unwrap()
    .check_caller()
    .unwrap();
    // A host uid neither the user's own nor subordinate.
    let far = (1006..)
        .find(|&id| id != uid && !s.uids.iter().any(|&(f, c)| id >= f && id - f < c))
        .unwrap();
    let line = format!("u 1005 {far} 1");
    let e = IdMap::parse([line.as_str()]).unwrap().check_caller().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains(&format!("lxc.idmap = {line}")), "{e}");
    // One past the range.
    let line = format!("g 0 {g0} {}", gc + 1);
    let e = IdMap::parse([line.as_str()]).unwrap().check_caller().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains(&line), "{e}");
    // Overlapping ranges never get that far.
    let e = IdMap::parse([
        format!("u 0 {u0} 100").as_str(),
        format!("u 50 {} 10", u0 + 1000).as_str(),
    ])
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
});

user_test!(maps_written_with_newuidmap, &[], {
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, _) = s.uids[0];
    let (g0, _) = s.gids[0];
    let (uid, gid) = own_ids();
    let map = IdMap::parse([
        format!("u 0 {u0} 1005").as_str(),
        format!("u 1005 {uid} 1").as_str(),
        format!("g 0 {g0} 1000").as_str(),
        format!("g 1000 {gid} 1").as_str(),
    ])
    .unwrap();
    let child = NsChild::spawn();
    write_maps(child.pid(), &map).unwrap();
    assert_eq!(
        child.map("uid_map"),
        vec![vec![0, u0 as u64, 1005], vec![1005, uid as u64, 1]]
    );
    assert_eq!(
        child.map("gid_map"),
        vec![vec![0, g0 as u64, 1000], vec![1000, gid as u64, 1]]
    );
    // A user namespace fd for idmapped mounts, made the same way.
    strata_runtime::userns::userns_fd(&map).unwrap();
});

user_test!(map_outside_ranges_is_refused_and_nothing_written, &[], {
    let child = NsChild::spawn();
    let e = write_maps(child.pid(), &IdMap::parse(["u 0 5000 10"]).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("lxc.idmap = u 0 5000 10"), "{e}");
    assert!(child.map("uid_map").is_empty());
});

user_test!(
    user_without_ranges_gets_a_clear_error,
    &[("STRATA_SUBUID", "/dev/null"), ("STRATA_SUBGID", "/dev/null")],
    {
        let e = IdMap::parse(["b 0 100000 65536"]).unwrap().check_caller().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("has no subordinate ids"), "{e}");
        let child = NsChild::spawn();
        assert!(write_maps(child.pid(), &IdMap::parse(["b 0 100000 65536"]).unwrap()).is_err());
        assert!(child.map("uid_map").is_empty());
    }
);

user_test!(missing_newuidmap_is_a_clear_error, &[], {
    let s = SubIds::for_caller().unwrap().widest_first();
    let child = NsChild::spawn();
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", empty.path());
    let map = IdMap::parse([format!("b 0 {} 10", s.uids[0].0).as_str()]).unwrap();
    let e = write_maps(child.pid(), &map).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string()
            .contains("newuidmap not found: install the uidmap package"),
        "{e}"
    );
    assert!(child.map("uid_map").is_empty());
});

#[test]
fn root_writes_maps_directly() {
    if !is_root() || std::env::var_os(CHILD).is_some() {
        eprintln!("skipped: needs root");
        return;
    }
    let child = NsChild::spawn();
    // Root may map anything (no subordinate ranges needed).
    write_maps(child.pid(), &IdMap::parse(["u 0 500000 10", "g 0 600000 20"]).unwrap()).unwrap();
    assert_eq!(child.map("uid_map"), vec![vec![0, 500000, 10]]);
    assert_eq!(child.map("gid_map"), vec![vec![0, 600000, 20]]);
    let sg = std::fs::read_to_string(format!("/proc/{}/setgroups", child.pid())).unwrap();
    assert_eq!(sg.trim(), "allow");
}

// ------------------------------------------------------------ end to end

/// What a user compares of an entry: owner, mode, id-carrying xattrs,
/// content or link target, inode (hard links).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    uid: u32,
    gid: u32,
    mode: u32,
    ino: u64,
    acl: Option<Vec<u8>>,
    dacl: Option<Vec<u8>>,
    caps: Option<Vec<u8>>,
    data: Vec<u8>,
}

/// Every entry under `root` by relative path, never following a symlink.
fn tree(root: &Path) -> BTreeMap<PathBuf, Info> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let data = if md.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else if md.is_file() {
            // A private file of the container's root is out of the user's reach.
            std::fs::read(&p).unwrap_or_else(|_| b"(unreadable)".to_vec())
        } else {
            vec![]
        };
        let x = |n| (!md.file_type().is_symlink()).then(|| lgetxattr(&p, n)).flatten();
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            Info {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode(),
                ino: md.ino(),
                acl: x("system.posix_acl_access"),
                dacl: x("system.posix_acl_default"),
                caps: x("security.capability"),
                data,
            },
        );
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

/// Check every entry of `got` against the fixture tree `src` (container
/// ids, as root made it) under `map`: owner, mode, content, ACL entries,
/// capability root, hard links.
fn assert_mapped(what: &str, src: &BTreeMap<PathBuf, Info>, got: &BTreeMap<PathBuf, Info>, map: &IdMap) {
    let names = |t: &BTreeMap<PathBuf, Info>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(src), "{what}: entries");
    let root = map.root_uid().unwrap();
    for (rel, s) in src {
        let g = &got[rel];
        let at = format!("{what}: /{}", rel.display());
        assert_eq!(
            (g.uid, g.gid),
            (map.map_uid(s.uid).unwrap(), map.map_gid(s.gid).unwrap()),
            "{at}: owner"
        );
        assert_eq!(g.mode, s.mode, "{at}: mode");
        assert_eq!(g.data, s.data, "{at}: content");
        for (a, b) in [(&s.acl, &g.acl), (&s.dacl, &g.dacl)] {
            let want = a.as_deref().map(|v| {
                acl_ids(v)
                    .into_iter()
                    .map(|(t, id)| (t, if t == 2 { map.map_uid(id) } else { map.map_gid(id) }.unwrap()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(b.as_deref().map(acl_ids), want, "{at}: ACL");
        }
        // Set by host root (v2), the capability is the container root's now: v3 with its host uid.
        let want_caps = s.caps.as_ref().map(|c| {
            let mut v = c[..20].to_vec();
            v[3] = 3;
            v.extend_from_slice(&root.to_le_bytes());
            v
        });
        assert_eq!(g.caps, want_caps, "{at}: file capability");
    }
    let ino = |t: &BTreeMap<PathBuf, Info>, p: &str| t[Path::new(p)].ino;
    assert_eq!(ino(got, "etc/acl"), ino(got, "etc/acl-hardlink"), "{what}: hard link");
}

/// Root's fixture: a rootfs tree with every kind of owner, ACLs, a file
/// capability, setuid/setgid, a fifo, symlinks and a hard link, and its
/// tarball (numeric owners, xattrs, ACLs), readable by the test user.
fn make_fixture(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let src = dir.join("src");
    helpers::make_rootfs(&src);
    let sh = |cmd: &str| {
        let st = Command::new("sh")
            .arg("-ec")
            .arg(cmd)
            .current_dir(&src)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh("ln -s busybox bin/stat
        echo old > etc/hostname
        cp /bin/true bin/ping && chmod 4755 bin/ping && setcap cap_net_raw+ep bin/ping
        cp /bin/true bin/sgid && chown 0:42 bin/sgid && chmod 2755 bin/sgid
        chmod 1777 tmp
        mkdir -p home/alice home/hole var/www acl-dir
        echo alice > home/alice/f && chown -R 1000:100 home/alice
        echo hole > home/hole/f && chown -R 1005:1005 home/hole
        echo hi > var/www/index && chown -R 33:33 var/www
        echo x > etc/acl && setfacl -m u:1000:rwx,g:50:r etc/acl
        ln etc/acl etc/acl-hardlink
        setfacl -d -m u:33:rx,g:1005:rwx acl-dir && setfacl -m u:1005:rx acl-dir
        ln -s /etc/passwd etc/to-host && ln -s ../bin etc/rel && chown -h 1005:1005 etc/rel
        mkfifo dev/fifo");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-cpf"])
        .arg(dir.join("rootfs.tar"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// Top-level entries of the shared temp dirs owned by the user's subordinate ids.
fn mapped_owned_in_tmp(s: &SubIds) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let sub = |ranges: &[(u32, u32)], id: u32| ranges.iter().any(|&(f, c)| id >= f && id - f < c);
    let mut v: Vec<PathBuf> = ["/tmp", "/var/tmp"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
        .filter(|p| {
            p.symlink_metadata()
                .is_ok_and(|m| sub(&s.uids, m.uid()) || sub(&s.gids, m.gid()))
        })
        .collect();
    v.sort();
    v
}

/// End to end as the test user, through the CLI: create from a tarball
/// with a custom map (container uid 1005 is host uid 1005), conversion to
/// another map and back, snapshot clone, snapshots, restores, ephemeral
/// runs (id inside says root, ps on the host shows the mapped uid, the
/// clone is gone afterwards, also after a killed run), destroy; every
/// entry's owner, ACLs and capability checked; nothing outside the user's
/// paths changed.
#[test]
fn e2e_flows_as_test_user() {
    if std::env::var_os(CHILD).is_some() {
        e2e_body();
        return;
    }
    let Some(u) = root_side_ready() else {
        return;
    };
    if strata_core::idmap::find_in_path("newuidmap").is_none() {
        eprintln!("skipped: no newuidmap (install uidmap)");
        return;
    }
    let fx = tempfile::Builder::new()
        .prefix("strata-e2e-fixture-")
        .tempdir_in("/var/tmp")
        .unwrap();
    make_fixture(fx.path());
    let area = UserArea(
        tempfile::Builder::new()
            .prefix("strata-e2e-")
            .tempdir_in(&u.dir)
            .unwrap()
            .keep(),
    );
    std::os::unix::fs::chown(&area.0, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
    let subids = SubIds::load(
        USER,
        u.uid.as_raw(),
        u.gid.as_raw(),
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
    )
    .unwrap();
    let fixture_before = tree(fx.path());
    let tmp_before = mapped_owned_in_tmp(&subids);
    let dir = area.0.display().to_string();
    let out = as_user(
        "e2e_flows_as_test_user",
        &[
            ("STRATA_E2E_DIR", dir.as_str()),
            ("STRATA_E2E_FIXTURE", fx.path().to_str().unwrap()),
            ("STRATA_RUN_DIR", &format!("{dir}/run")),
        ],
    );
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "as {USER}:\n{so}\n{se}");
    assert!(so.contains("1 passed"), "as {USER}:\n{so}\n{se}");
    // Nothing outside the user's paths changed: root's fixture, the shared
    // temp dirs; nothing left mounted, running or recorded.
    assert_eq!(tree(fx.path()), fixture_before, "the fixture changed");
    assert_eq!(
        mapped_owned_in_tmp(&subids),
        tmp_before,
        "files of mapped ids left in /tmp or /var/tmp"
    );
    assert_eq!(helpers::mounts_below(&area.0), Vec::<String>::new());
    assert_eq!(
        walk_files(&area.0.join("run/state")),
        Vec::<PathBuf>::new(),
        "run records left"
    );
    assert_eq!(
        std::fs::read_dir(area.0.join("lxc")).unwrap().count(),
        0,
        "lxcpath not empty"
    );
}

fn e2e_body() {
    use std::os::unix::fs::MetadataExt;
    let dir = PathBuf::from(std::env::var("STRATA_E2E_DIR").unwrap());
    let fixture = PathBuf::from(std::env::var("STRATA_E2E_FIXTURE").unwrap());
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let names = helpers::names::all().chain(["strata"]);
    strata_testkit::link_tools(std::path::Path::new(env!("CARGO_BIN_EXE_strata")), &bin, names);
    let lxcpath = dir.join("lxc");
    std::fs::create_dir(&lxcpath).unwrap();
    let lp = lxcpath.to_str().unwrap();
    let run = |tool: &str, args: &[&str]| {
        let mut a = vec!["-P", lp];
        a.extend_from_slice(args);
        ok(&bin, tool, &a)
    };
    let s = SubIds::for_caller().unwrap().widest_first();
    let (uid, gid) = own_ids();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    assert!(
        s.uids[0].1 >= 65536 && s.gids[0].1 >= 65536,
        "the test user needs 65536 subordinate ids"
    );
    // Container uid 1005 is host uid 1005 where the user may map it (scripts/setup-test-user), else its own.
    let allowed = |v: &[(u32, u32)], id: u32| v.iter().any(|&(f, c)| id >= f && id - f < c);
    let hole_u = if allowed(&s.uids, 1005) { 1005 } else { uid };
    let hole_g = if allowed(&s.gids, 1005) { 1005 } else { gid };
    let hole: Vec<String> = vec![
        format!("u 0 {u0} 1005"),
        format!("u 1005 {hole_u} 1"),
        format!("u 1006 {} 31762", u0 + 1006),
        format!("g 0 {g0} 1005"),
        format!("g 1005 {hole_g} 1"),
        format!("g 1006 {} 31762", g0 + 1006),
    ];
    let other: Vec<String> = vec![format!("u 0 {} 32768", u0 + 32768), format!("g 0 {} 32768", g0 + 32768)];
    let hmap = IdMap::parse(hole.iter().map(String::as_str)).unwrap();
    let omap = IdMap::parse(other.iter().map(String::as_str)).unwrap();
    let conf = dir.join("h.conf");
    std::fs::write(
        &conf,
        hole.iter().map(|l| format!("lxc.idmap = {l}\n")).collect::<String>(),
    )
    .unwrap();
    let src = tree(&fixture.join("src"));

    // Create from root's tarball: stored owned by the mapped ids.
    run(
        "lxc-create",
        &[
            "-n",
            "h1",
            "-f",
            conf.to_str().unwrap(),
            "--rootfs-from",
            fixture.join("rootfs.tar").to_str().unwrap(),
        ],
    );
    let rootfs = lxcpath.join("h1/rootfs");
    let created = tree(&rootfs);
    assert_mapped("created", &src, &created, &hmap);
    assert_eq!(
        (
            created[Path::new("home/hole/f")].uid,
            created[Path::new("home/hole/f")].gid
        ),
        (hole_u, hole_g)
    );

    // Conversion to another map in the user's ranges and back: every entry each time.
    let mut args = vec!["convert", "-P", lp, "-n", "h1", "--to-unprivileged"];
    args.extend(other.iter().flat_map(|l| ["--map", l.as_str()]));
    ok(&bin, "strata", &args);
    assert_mapped("converted", &src, &tree(&rootfs), &omap);
    let cfg = std::fs::read_to_string(lxcpath.join("h1/config")).unwrap();
    assert!(cfg.contains(&format!("lxc.idmap = {}", other[0])), "{cfg}");
    let mut args = vec!["convert", "-P", lp, "-n", "h1", "--to-unprivileged"];
    args.extend(hole.iter().flat_map(|l| ["--map", l.as_str()]));
    ok(&bin, "strata", &args);
    assert_eq!(tree(&rootfs), created, "converted back");

    // Snapshot clone, snapshot, restore to a new container: the same owners.
    run("lxc-copy", &["-n", "h1", "-N", "s1", "-s", "-B", "overlay"]);
    let upper = lxcpath.join("s1/overlay/delta");
    let hn = upper.join("etc/hostname");
    assert_eq!(std::fs::read_to_string(&hn).unwrap(), "s1\n");
    assert_eq!((hn.metadata().unwrap().uid(), hn.metadata().unwrap().gid()), (u0, g0));
    run("lxc-snapshot", &["-n", "h1"]);
    run("lxc-snapshot", &["-n", "h1", "-r", "snap0", "-N", "r1"]);
    let mut restored = tree(&lxcpath.join("r1/rootfs"));
    assert_eq!(restored.remove(Path::new("etc/hostname")).unwrap().data, b"r1\n");
    let mut want = created.clone();
    want.remove(Path::new("etc/hostname"));
    for (rel, i) in want.iter_mut() {
        // Another copy: other inodes, the same everything else.
        i.ino = restored.get(rel).map_or(0, |r| r.ino);
    }
    assert_eq!(restored, want, "restored copy");
    // The fixture as a container named `n` has it: its own hostname.
    let named = |n: &str| {
        let mut t = src.clone();
        t.get_mut(Path::new("etc/hostname")).unwrap().data = format!("{n}\n").into_bytes();
        t
    };
    assert_mapped("restored", &named("r1"), &tree(&lxcpath.join("r1/rootfs")), &hmap);

    // A change made inside, then a restore in place: gone, owners as they were.
    run("lxc-snapshot", &["-n", "r1"]);
    run("lxc-execute", &["-n", "r1", "--", "/bin/touch", "/etc/changed"]);
    let changed = lxcpath.join("r1/rootfs/etc/changed");
    assert_eq!(
        changed.symlink_metadata().unwrap().uid(),
        u0,
        "made by the container's root"
    );
    run("lxc-snapshot", &["-n", "r1", "-r", "snap0"]);
    assert!(changed.symlink_metadata().is_err());
    assert_mapped(
        "restored in place",
        &named("r1"),
        &tree(&lxcpath.join("r1/rootfs")),
        &hmap,
    );
    // A snapshot of the overlay clone copies its upper as the container's root.
    run("lxc-snapshot", &["-n", "s1"]);
    let snap_hn = lxcpath.join("s1/snaps/snap0/overlay/delta/etc/hostname");
    assert_eq!(snap_hn.symlink_metadata().unwrap().uid(), u0);

    // Ephemeral runs: root inside, ids of the hole as the container sees them, the clone gone after.
    let out = run(
        "lxc-copy",
        &[
            "-n",
            "h1",
            "-N",
            "e1",
            "-e",
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g; hostname; stat -c '%u %g' /home/hole/f; touch /etc/e1-was-here",
        ],
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0", "e1", "1005 1005"]);
    assert!(!lxcpath.join("e1").exists(), "the ephemeral clone is left");
    let out = run("lxc-start-ephemeral", &["-o", "s1", "-n", "e2", "--", "/bin/hostname"]);
    assert_eq!(out.trim(), "e2");
    assert!(!lxcpath.join("e2").exists(), "the ephemeral clone is left");

    // A daemon run: ps on the host shows init as the mapped root.
    run("lxc-copy", &["-n", "h1", "-N", "e3", "-e"]);
    let mut pid = String::new();
    wait_until("e3 runs as the mapped root", || {
        pid = try_ok(&bin, "lxc-info", &["-P", lp, "-n", "e3", "-p", "-H"])
            .unwrap_or_default()
            .trim()
            .to_string();
        !pid.is_empty()
            && Command::new("ps")
                .args(["-o", "uid=,gid=", "-p", &pid])
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        == [u0.to_string(), g0.to_string()]
                })
    });
    run("lxc-stop", &["-n", "e3", "-k"]);
    wait_until("e3 destroyed", || !lxcpath.join("e3").exists());

    // A run whose monitor is killed: the next command removes what it left.
    let mut c = Command::new(bin.join("lxc-copy"))
        .args(["-P", lp, "-n", "s1", "-N", "e4", "-e", "--", "/bin/sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("e4 runs", || {
        let p = try_ok(&bin, "lxc-info", &["-P", lp, "-n", "e4", "-p", "-H"]).unwrap_or_default();
        !p.trim().is_empty() && lxcpath.join("e4/overlay/work/work").exists()
    });
    c.kill().unwrap();
    c.wait().unwrap();
    let ls = run("lxc-ls", &[]);
    assert!(!ls.contains("e4"), "{ls}");
    assert!(!lxcpath.join("e4").exists(), "the killed run's clone is left");

    // The user destroys all it made.
    for n in ["s1", "r1", "h1"] {
        run("lxc-destroy", &["-n", n, "-s"]);
    }
    assert_eq!(std::fs::read_dir(&lxcpath).unwrap().count(), 0);
}

user_test!(files_made_in_a_user_namespace_are_owned_by_mapped_ids, &[], {
    use std::os::unix::fs::MetadataExt;
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let (uid, gid) = own_ids();
    let map = IdMap::parse([
        format!("u 0 {u0} 1005").as_str(),
        format!("u 1005 {uid} 1").as_str(),
        format!("g 0 {g0} 1005").as_str(),
        format!("g 1005 {gid} 1").as_str(),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    strata_core::idmap::run_in_userns(&map, || {
        assert_eq!(nix::unistd::geteuid().as_raw(), 0, "root inside");
        std::fs::write(d.join("root-file"), b"x").unwrap();
        std::fs::write(d.join("f33"), b"x").unwrap();
        std::os::unix::fs::chown(d.join("f33"), Some(33), Some(44)).unwrap();
        std::fs::write(d.join("f1005"), b"x").unwrap();
        std::os::unix::fs::chown(d.join("f1005"), Some(1005), Some(1005)).unwrap();
        // An id outside the map cannot be used.
        let e = std::os::unix::fs::chown(d.join("f1005"), Some(2000), None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        Ok(())
    })
    .unwrap();
    let o = |n: &str| {
        let m = std::fs::metadata(dir.path().join(n)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(o("root-file"), (u0, g0));
    assert_eq!(o("f33"), (u0 + 33, g0 + 44));
    assert_eq!(o("f1005"), (uid, gid));
    // An error inside comes back as the call's error.
    let e = strata_core::idmap::run_in_userns(&map, || Err(strata_core::err!(NotFound, "probe", "nothing here")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "probe: nothing here");
    // Without a mapped root it is refused up front.
    let e = strata_core::idmap::run_in_userns(&IdMap::parse([format!("b 1 {u0} 10").as_str()]).unwrap(), || Ok(()));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
});

user_test!(user_files_readable_in_a_user_namespace_with_the_caller_mapped, &[], {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let map = IdMap::parse([format!("u 0 {u0} 65536").as_str(), format!("g 0 {g0} 65536").as_str()]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("secret"), b"mine").unwrap();
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
    // dst must be writable by the namespace's root: hand it over first.
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o777)).unwrap();
    let copy = || {
        let data =
            std::fs::read(src.join("secret")).map_err(|e| strata_core::Error::io("read", src.join("secret"), e))?;
        std::fs::write(dst.join("copy"), data).map_err(|e| strata_core::Error::io("write", dst.join("copy"), e))?;
        Ok(())
    };
    // Without the caller mapped, its 0600 file in a 0700 dir cannot be read.
    let e = strata_core::idmap::run_in_userns(&map, copy).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    strata_core::idmap::run_in_userns_with_caller(&map, copy).unwrap();
    let m = std::fs::metadata(dst.join("copy")).unwrap();
    assert_eq!((m.uid(), m.gid()), (u0, g0), "written by the mapped root");
    assert_eq!(std::fs::read(dst.join("copy")).unwrap(), b"mine");
    assert_eq!(strata_core::idmap::caller_inside_id(&map), 65536);
});

user_test!(user_converts_own_container_between_maps_in_its_ranges, &[], {
    use std::os::unix::fs::MetadataExt;
    use strata_core::shift;
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let a = IdMap::parse([format!("u 0 {u0} 2000").as_str(), format!("g 0 {g0} 2000").as_str()]).unwrap();
    let b = IdMap::parse([
        format!("u 0 {} 2000", u0 + 2000).as_str(),
        format!("g 0 {} 2000", g0 + 2000).as_str(),
    ])
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lxcpath = tmp.path().join("lxc");
    let rootfs = lxcpath.join("c1/rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut cfg = format!("lxc.uts.name = c1\nlxc.rootfs.path = dir:{}\n", rootfs.display());
    for v in a.config_values() {
        cfg.push_str(&format!("lxc.idmap = {v}\n"));
    }
    std::fs::write(lxcpath.join("c1/config"), &cfg).unwrap();
    // Fill the rootfs as the container's root would.
    let r0 = rootfs.clone();
    strata_core::idmap::run_in_userns_with_caller(&a, || {
        let io = |what: &'static str| move |e| strata_core::Error::io(what, "rootfs", e);
        std::os::unix::fs::chown(&r0, Some(0), Some(0)).map_err(io("chown rootfs"))?;
        std::fs::create_dir(r0.join("home")).map_err(io("mkdir home"))?;
        std::fs::write(r0.join("home/f"), b"x").map_err(io("write home/f"))?;
        std::os::unix::fs::chown(r0.join("home/f"), Some(1000), Some(100)).map_err(io("chown home/f"))?;
        std::os::unix::fs::symlink("/etc/passwd", r0.join("link")).map_err(io("symlink"))?;
        Ok(())
    })
    .unwrap();
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&rootfs.join("home/f")), (u0 + 1000, g0 + 100));
    let r = strata_core::ContainerRef::new(&lxcpath, "c1");
    let mut backends = strata_core::Backends::new();
    backends.register(strata_dir::backend());
    let convert = |r: &strata_core::ContainerRef, to: &IdMap| shift::convert(&backends, r, to);
    convert(&r, &b).unwrap();
    assert_eq!(owner(&rootfs), (u0 + 2000, g0 + 2000));
    assert_eq!(owner(&rootfs.join("home/f")), (u0 + 3000, g0 + 2100));
    assert_eq!(owner(&rootfs.join("link")), (u0 + 2000, g0 + 2000));
    let cfg = std::fs::read_to_string(lxcpath.join("c1/config")).unwrap();
    assert!(cfg.contains(&format!("lxc.idmap = u 0 {} 2000", u0 + 2000)), "{cfg}");
    assert!(!lxcpath.join("c1").join(shift::INTENT).exists());
    // Refused, with nothing changed: privileged, and a map outside the ranges.
    let e = convert(&r, &IdMap::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = convert(&r, &IdMap::parse(["b 0 5000 2000"]).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("lxc.idmap = b 0 5000 2000"), "{e}");
    assert_eq!(owner(&rootfs.join("home/f")), (u0 + 3000, g0 + 2100));
    assert_eq!(std::fs::read_to_string(lxcpath.join("c1/config")).unwrap(), cfg);
    // And back to the first map.
    convert(&r, &a).unwrap();
    assert_eq!(owner(&rootfs.join("home/f")), (u0 + 1000, g0 + 100));
    // Only the namespace's root can remove what it owns.
    strata_core::idmap::run_in_userns_with_caller(&a, || {
        std::fs::remove_dir_all(&lxcpath).map_err(|e| strata_core::Error::io("clean up", &lxcpath, e))
    })
    .unwrap();
});

/// Every entry's path, owner and mode: what a failed command must leave as it was.
fn state_of(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = tree(root)
        .into_iter()
        .map(|(p, i)| format!("{} {} {} {:o} {}", p.display(), i.uid, i.gid, i.mode, i.data.len()))
        .collect();
    v.sort();
    v
}

user_test!(bad_input_as_user_is_one_line_and_changes_nothing, &[], {
    let tmp = scratch();
    let bin = tool_dir(tmp.path());
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let lxcpath = tmp.path().join("lxc");
    let lp = lxcpath.to_str().unwrap().to_string();
    let src = tmp.path().join("src");
    helpers::make_rootfs(&src);
    let conf = |name: &str, lines: &[String]| {
        let p = tmp.path().join(name);
        std::fs::write(
            &p,
            lines.iter().map(|l| format!("lxc.idmap = {l}\n")).collect::<String>(),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = conf("good.conf", &[format!("u 0 {u0} 65536"), format!("g 0 {g0} 65536")]);
    let fails = |tool: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(bin.join(tool));
        c.args(args).stdin(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        one_line_failure(&c.output().unwrap(), tool, args)
    };
    let create = |conf: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut a = vec![
            "-P",
            lp.as_str(),
            "-n",
            "c1",
            "-f",
            conf,
            "--rootfs-from",
            src.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        fails("lxc-create", &a, env)
    };
    // Nothing is made, not even the lxcpath.
    let outside = conf("outside.conf", &["u 0 5000 65536".into(), format!("g 0 {g0} 65536")]);
    let e = create(&outside, &[], &[]);
    assert!(
        e.contains("lxc.idmap = u 0 5000 65536") && e.contains("not allowed"),
        "{e}"
    );
    assert!(!lxcpath.exists());
    let overlap = conf(
        "overlap.conf",
        &[
            format!("u 0 {u0} 65536"),
            format!("u 1000 {} 10", u0 + 70000),
            format!("g 0 {g0} 65536"),
        ],
    );
    let e = create(&overlap, &[], &[]);
    assert!(e.contains("overlap"), "{e}");
    assert!(!lxcpath.exists());
    let e = create(
        &good,
        &[],
        &[("STRATA_SUBUID", "/dev/null"), ("STRATA_SUBGID", "/dev/null")],
    );
    assert!(e.contains("has no subordinate ids"), "{e}");
    assert!(!lxcpath.exists());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = create(&good, &[], &[("PATH", empty.to_str().unwrap())]);
    assert!(e.contains("newuidmap not found: install the uidmap package"), "{e}");
    assert!(!lxcpath.exists());
    for b in ["loop", "lvm", "zfs"] {
        let e = create(&good, &["-B", b], &[]);
        assert!(e.contains(&format!("the {b} backend needs root")), "{e}");
        assert!(!lxcpath.exists());
    }
    // With a container there: a root-only backend for its copy changes nothing.
    ok(
        &bin,
        "lxc-create",
        &[
            "-P",
            &lp,
            "-n",
            "c1",
            "-f",
            &good,
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    let before = state_of(&lxcpath);
    let e = fails("lxc-copy", &["-P", &lp, "-n", "c1", "-N", "c2", "-B", "loop"], &[]);
    assert!(e.contains("the loop backend needs root"), "{e}");
    assert_eq!(state_of(&lxcpath), before);
    ok(&bin, "lxc-destroy", &["-P", &lp, "-n", "c1"]);
});

user_test!(user_creates_from_its_dir_a_template_and_another_container, &[], {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = scratch();
    let bin = tool_dir(tmp.path());
    let s = SubIds::for_caller().unwrap().widest_first();
    let (u0, g0) = (s.uids[0].0, s.gids[0].0);
    let lp = tmp.path().join("lxc").to_str().unwrap().to_string();
    let conf = tmp.path().join("c.conf");
    std::fs::write(
        &conf,
        format!("lxc.idmap = u 0 {u0} 65536\nlxc.idmap = g 0 {g0} 65536\n"),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    // The user's own tree (its files, one private): the container root's.
    let src = tmp.path().join("src");
    helpers::make_rootfs(&src);
    std::fs::write(src.join("root/secret"), b"s").unwrap();
    std::fs::set_permissions(src.join("root/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(
        &bin,
        "lxc-create",
        &[
            "-P",
            &lp,
            "-n",
            "d1",
            "-f",
            conf,
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    let d1 = PathBuf::from(&lp).join("d1");
    let t = tree(&d1.join("rootfs"));
    assert_eq!(t.len(), tree(&src).len());
    for (rel, i) in &t {
        assert_eq!((i.uid, i.gid), (u0, g0), "/{}", rel.display());
    }
    assert_eq!(t[Path::new("root/secret")].mode & 0o777, 0o600);
    // The config stays the user's.
    assert_eq!(std::fs::metadata(d1.join("config")).unwrap().uid(), own_ids().0);
    // A template runs as the container's root: what it makes and chowns is mapped.
    let tpl = tmp.path().join("tpl");
    std::fs::write(
        &tpl,
        "#!/bin/sh\nfor a; do case $a in --rootfs=*) R=${a#--rootfs=};; --path=*) P=${a#--path=};; esac; done\n\
         mkdir -p $R/home/alice $R/etc && echo t > $R/etc/motd && chown 1000:100 $R/home/alice\n\
         echo \"# template ran as $(id -u)\" >> $P/config\n",
    )
    .unwrap();
    std::fs::set_permissions(&tpl, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(
        &bin,
        "lxc-create",
        &["-P", &lp, "-n", "t1", "-f", conf, "-t", tpl.to_str().unwrap()],
    );
    let t1 = PathBuf::from(&lp).join("t1");
    let o = |p: &str| {
        let m = std::fs::symlink_metadata(t1.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(o("rootfs"), (u0, g0));
    assert_eq!(o("rootfs/etc/motd"), (u0, g0));
    assert_eq!(o("rootfs/home/alice"), (u0 + 1000, g0 + 100));
    let cfg = std::fs::read_to_string(t1.join("config")).unwrap();
    assert!(cfg.contains("# template ran as 0"), "{cfg}");
    // From another container's rootfs: the same container ids.
    ok(
        &bin,
        "lxc-create",
        &[
            "-P",
            &lp,
            "-n",
            "c2",
            "-f",
            conf,
            "--rootfs-from",
            t1.join("rootfs").to_str().unwrap(),
        ],
    );
    let strip = |t: BTreeMap<PathBuf, Info>| {
        t.into_iter()
            .map(|(p, i)| (p, (i.uid, i.gid, i.mode, i.data)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        strip(tree(&PathBuf::from(&lp).join("c2/rootfs"))),
        strip(tree(&t1.join("rootfs")))
    );
    let out = ok(
        &bin,
        "lxc-execute",
        &["-P", &lp, "-n", "d1", "--", "/bin/sh", "-c", "id -u; cat /root/secret"],
    );
    assert_eq!(out, "0\ns");
    for n in ["d1", "t1", "c2"] {
        ok(&bin, "lxc-destroy", &["-P", &lp, "-n", n]);
    }
    assert_eq!(std::fs::read_dir(&lp).unwrap().count(), 0);
});

/// Root's containers and those of another user (nobody here): a user
/// pointing -P at them gets one clear line, and nothing changes.
#[test]
fn another_users_lxcpath_is_refused() {
    if std::env::var_os(CHILD).is_some() {
        let tmp = scratch();
        let bin = tool_dir(tmp.path());
        let mine = tmp.path().join("lxc");
        let mine = mine.to_str().unwrap();
        ok(&bin, "lxc-create", &["-P", mine, "-n", "m1", "-t", "none"]);
        for (var, owner) in [("STRATA_ROOT_LXC", "root"), ("STRATA_OTHER_LXC", "nobody")] {
            let lp = std::env::var(var).unwrap();
            let other = format!("{lp}/new");
            let cases: Vec<(&str, Vec<&str>)> = vec![
                ("lxc-destroy", vec!["-P", &lp, "-n", "c1"]),
                ("lxc-snapshot", vec!["-P", &lp, "-n", "c1"]),
                ("lxc-copy", vec!["-P", &lp, "-n", "c1", "-N", "c2"]),
                (
                    "lxc-copy",
                    vec!["-P", &lp, "-n", "c1", "-N", "e1", "-e", "--", "/bin/true"],
                ),
                ("lxc-copy", vec!["-P", mine, "-n", "m1", "-N", "m2", "-p", &lp]),
                ("lxc-create", vec!["-P", &lp, "-n", "c3", "-t", "none"]),
                ("lxc-create", vec!["-P", &other, "-n", "c3", "-t", "none"]),
                ("lxc-start", vec!["-P", &lp, "-n", "c1", "-F", "--", "/bin/true"]),
                ("lxc-stop", vec!["-P", &lp, "-n", "c1"]),
                ("lxc-info", vec!["-P", &lp, "-n", "c1"]),
                ("lxc-ls", vec!["-P", &lp]),
                ("strata", vec!["convert", "-P", &lp, "-n", "c1", "--to-unprivileged"]),
            ];
            for (tool, args) in cases {
                let o = tool_output(&bin, tool, &args);
                let e = one_line_failure(&o, tool, &args);
                let what = format!("{lp} belongs to {owner}, not to {USER}");
                assert!(e.contains(&what), "{tool} {args:?}: {e}");
            }
        }
        ok(&bin, "lxc-destroy", &["-P", mine, "-n", "m1"]);
        return;
    }
    if !is_root() || test_user().is_none() {
        eprintln!("skipped: needs root and user {USER}");
        return;
    }
    let area = tempfile::Builder::new()
        .prefix("strata-others-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let bin = tool_dir(area.path());
    let (root_lxc, other_lxc) = (area.path().join("root-lxc"), area.path().join("nobody-lxc"));
    for lp in [&root_lxc, &other_lxc] {
        ok(
            &bin,
            "lxc-create",
            &["-P", lp.to_str().unwrap(), "-n", "c1", "-t", "none"],
        );
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", nobody.uid, nobody.gid))
        .arg(&other_lxc)
        .status()
        .unwrap();
    assert!(st.success());
    // Readable by all: the refusal must not depend on a permission error.
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(area.path())
        .status()
        .unwrap();
    assert!(st.success());
    let before = (state_of(&root_lxc), state_of(&other_lxc));
    let out = as_user(
        "another_users_lxcpath_is_refused",
        &[
            ("STRATA_ROOT_LXC", root_lxc.to_str().unwrap()),
            ("STRATA_OTHER_LXC", other_lxc.to_str().unwrap()),
        ],
    );
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && so.contains("1 passed"),
        "as {USER}:\n{so}\n{se}"
    );
    assert_eq!((state_of(&root_lxc), state_of(&other_lxc)), before, "changed");
}

const LXC_BIN: &str = "/usr/bin";

/// A minimal LXC template: a busybox rootfs.
fn lxc_template(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let t = dir.join("template");
    std::fs::write(
        &t,
        "#!/bin/sh\nfor a; do case $a in --rootfs=*) r=${a#--rootfs=};; esac; done\n\
         mkdir -p $r/bin $r/etc $r/proc $r/sys $r/dev $r/tmp\n\
         cp /bin/busybox $r/bin/ && ln -s busybox $r/bin/sh && ln -s busybox $r/bin/id\n",
    )
    .unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// Owner, group and mode of a container dir.
fn layout(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = p.symlink_metadata().unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn lxc(tool: &str, args: &[&str]) -> Output {
    Command::new(Path::new(LXC_BIN).join(tool))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn lxc_ok(tool: &str, args: &[&str]) -> String {
    let o = lxc(tool, args);
    assert!(
        o.status.success(),
        "LXC's {tool} {args:?}: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// A user's unprivileged containers made by strata (create, copy, snapshot
// clone, snapshot, restore to a new name) have their dirs laid out as LXC's
// own lxc-create and lxc-snapshot make them, and LXC's lxc-execute and
// lxc-start run them: the container's root gets through the dir to the rootfs.
user_test!(lxc_runs_a_users_strata_containers, &[], {
    if !Path::new(LXC_BIN).join("lxc-execute").exists() {
        eprintln!("skipped: LXC is not installed");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = scratch();
    // The container's root walks down to the lxcpath, as LXC wants of a user's.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let bin = tool_dir(tmp.path());
    let lxcpath = tmp.path().join("lxc");
    std::fs::create_dir(&lxcpath).unwrap();
    let lp = lxcpath.to_str().unwrap();
    let s = SubIds::for_caller().unwrap().widest_first();
    let conf = tmp.path().join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "lxc.idmap = u 0 {} 65536\nlxc.idmap = g 0 {} 65536\nlxc.net.0.type = empty\n",
            s.uids[0].0, s.gids[0].0
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let src = tmp.path().join("src");
    helpers::make_rootfs(&src);

    // LXC's own, for the layout to match.
    let tpl = lxc_template(tmp.path());
    lxc_ok(
        "lxc-create",
        &["-P", lp, "-n", "l1", "-f", conf, "-t", tpl.to_str().unwrap()],
    );
    lxc_ok("lxc-snapshot", &["-P", lp, "-n", "l1"]);
    let want = layout(&lxcpath.join("l1"));
    assert_eq!(want.0, s.uids[0].0, "LXC's dir belongs to the container's root");
    assert_eq!(layout(&lxcpath.join("l1/snaps/snap0")), want);
    // LXC runs its own container here, or cannot run a user's at all.
    let lxc_runs = lxc("lxc-execute", &["-P", lp, "-n", "l1", "--", "/bin/id", "-u"]);
    lxc_ok("lxc-destroy", &["-P", lp, "-n", "l1", "-s"]);

    let run = |tool: &str, args: &[&str]| {
        let mut a = vec!["-P", lp];
        a.extend_from_slice(args);
        ok(&bin, tool, &a)
    };
    run(
        "lxc-create",
        &["-n", "c1", "-f", conf, "--rootfs-from", src.to_str().unwrap()],
    );
    run("lxc-copy", &["-n", "c1", "-N", "c2"]);
    run("lxc-copy", &["-n", "c1", "-N", "c3", "-s", "-B", "overlay"]);
    run("lxc-snapshot", &["-n", "c1"]);
    run("lxc-snapshot", &["-n", "c1", "-r", "snap0", "-N", "c4"]);
    for d in ["c1", "c2", "c3", "c1/snaps/snap0", "c4"] {
        assert_eq!(layout(&lxcpath.join(d)), want, "{d}: not as LXC lays it out");
    }
    if !lxc_runs.status.success() {
        eprintln!(
            "LXC cannot run a user's container on this host, not checked: {}",
            String::from_utf8_lossy(&lxc_runs.stderr)
        );
    } else {
        assert_eq!(String::from_utf8_lossy(&lxc_runs.stdout).trim(), "0");
        for n in ["c1", "c2", "c4"] {
            let out = lxc_ok(
                "lxc-execute",
                &["-P", lp, "-n", n, "--", "/bin/sh", "-c", "id -u; hostname"],
            );
            assert_eq!(out.lines().collect::<Vec<_>>(), ["0", n], "{n}");
        }
        lxc_ok("lxc-start", &["-P", lp, "-n", "c2", "-F", "--", "/bin/true"]);
    }
    for n in ["c3", "c1", "c2", "c4"] {
        run("lxc-destroy", &["-n", n, "-s"]);
    }
    assert_eq!(std::fs::read_dir(&lxcpath).unwrap().count(), 0);
});

// A user's container strata runs is running for the user's LXC tools (its
// monitor answers LXC's command socket for its own user): lxc-info,
// lxc-attach into its user namespace, lxc-stop.
user_test!(lxc_tools_act_on_a_users_strata_run_container, &[], {
    if !Path::new(LXC_BIN).join("lxc-info").exists() {
        eprintln!("skipped: LXC is not installed");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = scratch();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let bin = tool_dir(tmp.path());
    let lxcpath = tmp.path().join("lxc");
    let lp = lxcpath.to_str().unwrap();
    let s = SubIds::for_caller().unwrap().widest_first();
    let conf = tmp.path().join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "lxc.idmap = u 0 {} 65536\nlxc.idmap = g 0 {} 65536\nlxc.net.0.type = empty\n",
            s.uids[0].0, s.gids[0].0
        ),
    )
    .unwrap();
    let src = tmp.path().join("src");
    helpers::make_rootfs(&src);
    let run = |tool: &str, args: &[&str]| {
        let mut a = vec!["-P", lp];
        a.extend_from_slice(args);
        ok(&bin, tool, &a)
    };
    run(
        "lxc-create",
        &[
            "-n",
            "u1",
            "-f",
            conf.to_str().unwrap(),
            "--rootfs-from",
            src.to_str().unwrap(),
        ],
    );
    run("lxc-start", &["-n", "u1", "-d"]);
    let pid = run("lxc-info", &["-n", "u1", "-p", "-H"]).trim().to_string();
    let stopped = || run("lxc-info", &["-n", "u1", "-s", "-H"]).trim() == "STOPPED";
    let res = std::panic::catch_unwind(|| {
        assert_eq!(
            lxc_ok("lxc-info", &["-P", lp, "-n", "u1", "-s", "-H"]).trim(),
            "RUNNING"
        );
        assert_eq!(lxc_ok("lxc-info", &["-P", lp, "-n", "u1", "-p", "-H"]).trim(), pid);
        let out = lxc_ok(
            "lxc-attach",
            &["-P", lp, "-n", "u1", "--", "/bin/sh", "-c", "id -u; hostname"],
        );
        assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "u1"]);
        lxc_ok("lxc-stop", &["-P", lp, "-n", "u1"]);
        assert!(stopped());
    });
    if res.is_err() {
        let _ = tool_output(&bin, "lxc-stop", &["-P", lp, "-n", "u1", "-k"]);
        std::panic::resume_unwind(res.unwrap_err());
    }
    run("lxc-destroy", &["-n", "u1"]);
});

/// Root's containers: a dir laid out as LXC's lxc-create makes it, with id
/// maps (the mapped root's) and without (root's); convert moves the owner.
#[test]
fn root_made_container_dirs_match_lxc() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    if !Path::new(LXC_BIN).join("lxc-create").exists() {
        eprintln!("skipped: LXC is not installed");
        return;
    }
    let tmp = scratch();
    let bin = tool_dir(tmp.path());
    let lxcpath = tmp.path().join("lxc");
    std::fs::create_dir(&lxcpath).unwrap();
    let lp = lxcpath.to_str().unwrap();
    let conf = tmp.path().join("c.conf");
    std::fs::write(&conf, "lxc.idmap = u 0 200000 65536\nlxc.idmap = g 0 300000 65536\n").unwrap();
    let conf = conf.to_str().unwrap();
    let tpl = lxc_template(tmp.path());
    let tpl = tpl.to_str().unwrap();
    lxc_ok("lxc-create", &["-P", lp, "-n", "l1", "-f", conf, "-t", tpl]);
    lxc_ok("lxc-create", &["-P", lp, "-n", "l2", "-t", tpl]);
    let (mapped, privileged) = (layout(&lxcpath.join("l1")), layout(&lxcpath.join("l2")));
    assert_eq!(mapped, (200000, 300000, 0o770));
    let src = tmp.path().join("src");
    helpers::make_rootfs(&src);
    let src = src.to_str().unwrap();
    let run = |tool: &str, args: &[&str]| {
        let mut a = vec!["-P", lp];
        a.extend_from_slice(args);
        ok(&bin, tool, &a)
    };
    run("lxc-create", &["-n", "c1", "-f", conf, "--rootfs-from", src]);
    run("lxc-create", &["-n", "c2", "--rootfs-from", src]);
    run("lxc-copy", &["-n", "c1", "-N", "c3"]);
    assert_eq!(layout(&lxcpath.join("c1")), mapped);
    assert_eq!(layout(&lxcpath.join("c3")), mapped);
    assert_eq!(layout(&lxcpath.join("c2")), privileged);
    let convert = |args: &[&str]| {
        let mut a = vec!["convert", "-P", lp, "-n", "c2"];
        a.extend_from_slice(args);
        ok(&bin, "strata", &a)
    };
    convert(&[
        "--to-unprivileged",
        "--map",
        "u 0 200000 65536",
        "--map",
        "g 0 300000 65536",
    ]);
    assert_eq!(layout(&lxcpath.join("c2")), mapped);
    convert(&["--to-privileged"]);
    assert_eq!(layout(&lxcpath.join("c2")), privileged);
}
