//! The test user's own containers end to end, through the CLI as it: made
//! from a tarball, a template, a dir and another container, converted
//! between maps, cloned, snapshotted, restored, run and destroyed, every
//! entry's owner, ACLs and capability checked and nothing outside its paths
//! changed. Run as root: each test re-runs itself as the test user.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;
#[path = "common/xattr.rs"]
mod xattr;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::idmap::{IdMap, SubIds};
use strata_core::ErrorKind;
use unpriv::*;
use xattr::{acl_ids, tree, Info};

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
