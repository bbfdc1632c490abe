//! lxc-snapshot end to end: create with a comment, list, comments, restore
//! in place and to a new name, destroy one and ALL.

mod common;
use common::*;

fn read(p: impl AsRef<std::path::Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap()
}

fn is_ts(s: &str) -> bool {
    // %Y:%m:%d %H:%M:%S
    let b = s.as_bytes();
    s.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => *c == b':',
            10 => *c == b' ',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn snapshot_list_restore_destroy() {
    let env = Env::new();
    env.make_container("s1");
    assert_eq!(env.ok("lxc-snapshot", &["-n", "s1", "-L"]), "No snapshots\n");

    let comment = env.src.join("comment");
    std::fs::write(&comment, "first snapshot\nsecond line\n").unwrap();
    env.ok("lxc-snapshot", &["-n", "s1", "-c", comment.to_str().unwrap()]);
    assert!(env.c("s1/snaps/snap0/config").is_file());
    assert!(
        is_ts(&read(env.c("s1/snaps/snap0/ts"))),
        "{:?}",
        read(env.c("s1/snaps/snap0/ts"))
    );
    assert_eq!(read(env.c("s1/snaps/snap0/comment")), "first snapshot\nsecond line\n");

    std::fs::write(env.c("s1/rootfs/root/data"), "second\n").unwrap();
    env.ok("lxc-snapshot", &["-n", "s1"]);
    assert!(env.c("s1/snaps/snap1").is_dir());

    // -L: `snapN (LXCPATH/NAME/snaps) TIMESTAMP`, as LXC prints it.
    let snaps_dir = env.c("s1").join("snaps");
    let list = env.ok("lxc-snapshot", &["-n", "s1", "-L"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    for (i, l) in lines.iter().enumerate() {
        let prefix = format!("snap{i} ({}) ", snaps_dir.display());
        assert!(l.starts_with(&prefix), "{l:?} vs {prefix:?}");
        assert!(is_ts(&l[prefix.len()..]), "{l}");
    }
    // -C: the comment lines under their snapshot.
    let list = env.ok("lxc-snapshot", &["-n", "s1", "-L", "-C"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(lines[0].starts_with("snap0 "));
    assert_eq!(&lines[1..3], &["first snapshot", "second line"]);
    assert!(lines[3].starts_with("snap1 "));

    // Restore in place brings the old file back, and keeps the snapshots.
    std::fs::write(env.c("s1/rootfs/root/data"), "third\n").unwrap();
    std::fs::write(env.c("s1/rootfs/root/new-file"), "x").unwrap();
    env.ok("lxc-snapshot", &["-n", "s1", "-r", "snap0"]);
    assert_eq!(read(env.c("s1/rootfs/root/data")), "original\n");
    assert!(!env.c("s1/rootfs/root/new-file").exists());
    assert_eq!(env.config_get("s1", "lxc.uts.name").as_deref(), Some("s1"));
    assert!(env.c("s1/snaps/snap1").is_dir());

    // Restore to a new name.
    env.ok("lxc-snapshot", &["-n", "s1", "-r", "snap1", "-N", "s1b"]);
    assert_eq!(read(env.c("s1b/rootfs/root/data")), "second\n");
    assert_eq!(env.config_get("s1b", "lxc.uts.name").as_deref(), Some("s1b"));
    assert_eq!(read(env.c("s1/rootfs/root/data")), "original\n");

    // strata restore is the same operation.
    std::fs::write(env.c("s1/rootfs/root/data"), "fourth\n").unwrap();
    env.ok("strata", &["restore", "-n", "s1", "snap1"]);
    assert_eq!(read(env.c("s1/rootfs/root/data")), "second\n");

    // -d one, then the first free number is reused.
    env.ok("lxc-snapshot", &["-n", "s1", "-d", "snap0"]);
    assert!(!env.c("s1/snaps/snap0").exists());
    assert!(env.c("s1/snaps/snap1").is_dir());
    env.ok("lxc-snapshot", &["-n", "s1"]);
    assert!(env.c("s1/snaps/snap0").is_dir());
    env.ok("lxc-snapshot", &["-n", "s1"]);
    assert!(env.c("s1/snaps/snap2").is_dir());

    // -d ALL.
    env.ok("lxc-snapshot", &["-n", "s1", "-d", "ALL"]);
    assert_eq!(env.ok("lxc-snapshot", &["-n", "s1", "-L"]), "No snapshots\n");
    // With no snapshots left, a plain destroy works.
    env.ok("lxc-destroy", &["-n", "s1"]);
    assert!(!env.c("s1").exists());
}

#[test]
fn snapshot_of_overlay_clone() {
    let env = Env::new();
    env.make_container("base");
    env.ok("lxc-copy", &["-n", "base", "-N", "ov", "-s"]);
    std::fs::write(env.c("ov/overlay/delta/marker"), "in delta\n").unwrap();
    env.ok("strata", &["snapshot", "-n", "ov"]);
    let spec = common::config_value(&read(env.c("ov/snaps/snap0/config")), "lxc.rootfs.path").unwrap();
    assert!(spec.starts_with("overlay:"), "{spec}");
    std::fs::remove_file(env.c("ov/overlay/delta/marker")).unwrap();
    env.ok("lxc-snapshot", &["-n", "ov", "-r", "snap0"]);
    assert_eq!(read(env.c("ov/overlay/delta/marker")), "in delta\n");
    env.ok("lxc-destroy", &["-n", "ov", "-s"]);
    env.ok("lxc-destroy", &["-n", "base"]);
}
