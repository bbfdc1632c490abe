//! As the non-root test user (scripts/setup-test-user): per-user paths,
//! subordinate-range checks, maps written with newuidmap/newgidmap, the
//! clear errors for a map outside the ranges, a user without ranges and a
//! missing newuidmap, and files made in a user namespace. Run as root: each
//! test re-runs itself in this test binary as the test user, and is skipped
//! (with a message) without that user. The user's flows are
//! `unpriv_flows.rs`, its refusals `unpriv_refusals.rs`, LXC on its
//! containers `unpriv_lxc.rs`.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;
#[path = "common/xattr.rs"]
mod xattr;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use strata_core::idmap::{write_maps, IdMap, SubIds};
use strata_core::{paths, ErrorKind};
use unpriv::*;

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
