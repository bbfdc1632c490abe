//! LXC's own tools on the test user's strata containers: their dirs laid
//! out as LXC's lxc-create and lxc-snapshot make them, and LXC's
//! lxc-execute, lxc-start and state tools acting on them. Skipped without
//! LXC. Run as root: each test re-runs itself as the test user.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;
#[path = "common/xattr.rs"]
mod xattr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata_core::idmap::SubIds;
use strata_testkit::lxc::LXC_BIN;
use unpriv::*;

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
    strata_testkit::lxc::succeeded(tool, args, &lxc(tool, args))
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
