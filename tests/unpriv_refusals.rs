//! What the test user is refused: bad input as one line that changes
//! nothing, and root's and another user's lxcpath. Run as root: each test
//! re-runs itself as the test user.

#[path = "runtime_helpers.rs"]
mod helpers;
#[path = "common/unpriv.rs"]
#[macro_use]
mod unpriv;
#[path = "common/xattr.rs"]
mod xattr;

use std::path::Path;
use std::process::Command;
use strata_core::idmap::SubIds;
use unpriv::*;
use xattr::tree;

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
