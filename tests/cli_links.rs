//! `strata install-links` and dispatch on the invoked name.

mod common;
use common::*;

#[test]
fn install_links_is_idempotent_and_careful() {
    let env = Env::new();
    let dir = env.tmp.path().join("links");
    std::fs::create_dir(&dir).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_strata")).unwrap();
    let o = env.cmd("strata").arg("install-links").arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<&str> = names::all().collect();
    for n in &names {
        assert_eq!(std::fs::read_link(dir.join(n)).unwrap(), exe, "{n}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len());
    // Again: nothing changes.
    let before = tree(&dir);
    let o = env
        .cmd("strata")
        .arg("install-links")
        .arg("-q")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_same_tree("second install-links", &before, &tree(&dir));
    // A stale symlink is replaced; a regular file is refused and left alone.
    std::fs::remove_file(dir.join("lxc-ls")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", dir.join("lxc-ls")).unwrap();
    std::fs::remove_file(dir.join("lxc-info")).unwrap();
    std::fs::write(dir.join("lxc-info"), "real tool\n").unwrap();
    let o = env.cmd("strata").arg("install-links").arg(&dir).output().unwrap();
    check_failure("strata", &["install-links"], &o);
    assert_eq!(std::fs::read_to_string(dir.join("lxc-info")).unwrap(), "real tool\n");
    assert_eq!(
        std::fs::read_link(dir.join("lxc-ls")).unwrap(),
        std::path::Path::new("/nonexistent")
    );
    std::fs::remove_file(dir.join("lxc-info")).unwrap();
    let o = env.cmd("strata").arg("install-links").arg(&dir).output().unwrap();
    assert!(o.status.success());
    assert_eq!(std::fs::read_link(dir.join("lxc-ls")).unwrap(), exe);
    // The installed names work.
    let o = std::process::Command::new(dir.join("lxc-ls"))
        .arg("-P")
        .arg(&env.lxcpath)
        .env("LXC_GLOBAL_CONF", &env.conf)
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn lxcpath_and_defaults_from_lxc_conf() {
    let env = Env::new();
    let other = env.area.join("from-conf");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        &env.conf,
        format!("lxc.lxcpath = {}\nlxc.bdev.lvm.vg = myvg\n", other.display()),
    )
    .unwrap();
    let src = env.rootfs("r");
    // No -P: the lxcpath comes from lxc.conf.
    let o = env
        .cmd("lxc-create")
        .args(["-n", "k1", "--rootfs-from", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(other.join("k1/config").is_file());
    let o = env.cmd("lxc-ls").arg("-1").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "k1\n");
}

#[test]
fn usage_errors_are_one_line() {
    let env = Env::new();
    for (tool, args) in [
        ("lxc-create", vec![]),
        ("lxc-snapshot", vec!["-C"]),
        ("lxc-destroy", vec!["-n"]),
        ("lxc-ls", vec!["--nope"]),
        ("lxc-clone", vec![]),
        ("strata", vec!["frobnicate"]),
    ] {
        let o = env.cmd(tool).args(&args).output().unwrap();
        check_failure(tool, &args, &o);
    }
    // Help goes to stdout with status 0.
    let o = env.cmd("lxc-copy").arg("--help").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--newname"));
}

#[test]
fn strata_subcommands() {
    let env = Env::new();
    let src = env.rootfs("r");
    env.ok("strata", &["create", "-n", "a", "--rootfs-from", src.to_str().unwrap()]);
    env.ok("strata", &["clone", "-n", "a", "-N", "b"]);
    env.ok("strata", &["copy", "-n", "a", "-N", "c", "-s"]);
    assert!(env.config_get("c", "lxc.rootfs.path").unwrap().starts_with("overlay:"));
    env.ok("strata", &["snapshot", "-n", "b"]);
    let list = env.ok("strata", &["snapshot", "-n", "b", "-L"]);
    assert!(list.starts_with("snap0 ("), "{list}");
    std::fs::write(env.c("b/rootfs/root/data"), "changed\n").unwrap();
    env.ok("strata", &["restore", "-n", "b", "snap0"]);
    assert_eq!(
        std::fs::read_to_string(env.c("b/rootfs/root/data")).unwrap(),
        "original\n"
    );
    assert_eq!(env.ok("strata", &["ls", "-1"]), "a\nb\nc\n");
    // Nothing to clean up: reconcile prints nothing and changes nothing.
    let before = tree(&env.area);
    assert_eq!(env.ok("strata", &["reconcile"]), "");
    assert_same_tree("reconcile with nothing to do", &before, &tree(&env.area));
    let msg = check_failure("strata", &["destroy"], &env.run("strata", &["destroy", "-n", "a"]));
    assert!(msg.starts_with("strata: a: ") && msg.contains('c'), "{msg}");
    env.ok("strata", &["destroy", "-n", "c"]);
    env.ok("strata", &["destroy", "-n", "b", "-s"]);
    env.ok("strata", &["destroy", "-n", "a"]);
    assert_eq!(std::fs::read_dir(&env.lxcpath).unwrap().count(), 0);
}
