//! The run dir keeps nothing for an lxcpath once nothing is held or
//! recorded in it (root, real commands, real files): not after commands in
//! several lxcpaths, not while many commands on one lxcpath take its locks
//! as their files and dirs come and go, not after a command killed part-way
//! once the next command has reconciled.

mod common;

use common::Env;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// Every path under the run dir, relative to it, with a `/` after a dir.
fn run_dir_listing(run: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![run.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(run).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// What of `lxcpaths` the run dir holds: entries named after one of them,
/// and any file at all (the shared dirs, `lock/` and the like, may stay).
fn kept_for(run: &Path, lxcpaths: &[PathBuf]) -> Vec<String> {
    let keys: Vec<String> = lxcpaths.iter().map(|l| strata_core::paths::lxcpath_key(l)).collect();
    run_dir_listing(run)
        .into_iter()
        .filter(|e| !e.ends_with('/') || keys.iter().any(|k| e.contains(k.as_str())))
        .collect()
}

fn run_in(env: &Env, lxcpath: &Path, tool: &str, args: &[&str]) -> Output {
    env.cmd(tool).arg("-P").arg(lxcpath).args(args).output().unwrap()
}

fn ok_in(env: &Env, lxcpath: &Path, tool: &str, args: &[&str]) {
    let o = run_in(env, lxcpath, tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?} in {}: {}",
        lxcpath.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn root_env() -> Option<Env> {
    if !strata_testkit::is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    Some(Env::new())
}

/// Containers made, copied (a full copy, an overlay snapshot clone),
/// snapshotted, renamed, run and stopped, and destroyed in four lxcpaths at
/// once: while one runs the run dir holds its record; once all are
/// destroyed, nothing of them.
#[test]
fn commands_in_several_lxcpaths_leave_nothing_of_them_in_the_run_dir() {
    let Some(env) = root_env() else { return };
    let src = env.rootfs("rootfs");
    let lxcpaths: Vec<PathBuf> = (0..4).map(|i| env.area.join(format!("lp{i}"))).collect();
    let src = src.to_str().unwrap();
    std::thread::scope(|s| {
        for lp in &lxcpaths {
            let env = &env;
            s.spawn(move || {
                ok_in(env, lp, "lxc-create", &["-n", "a", "--rootfs-from", src]);
                ok_in(env, lp, "lxc-copy", &["-n", "a", "-N", "b"]);
                ok_in(env, lp, "lxc-snapshot", &["-n", "a"]);
                ok_in(env, lp, "lxc-copy", &["-n", "a", "-N", "c", "-s", "-B", "overlay"]);
                ok_in(env, lp, "lxc-copy", &["-n", "b", "-N", "d", "-R"]);
                // A run: its record, console socket and lock while it runs.
                ok_in(
                    env,
                    lp,
                    "lxc-start",
                    &["-n", "d", "-d", "--", "/bin/busybox", "sleep", "100"],
                );
            });
        }
    });
    let held = kept_for(&env.run_dir, &lxcpaths);
    for lp in &lxcpaths {
        let key = strata_core::paths::lxcpath_key(lp);
        assert!(
            held.contains(&format!("state/{key}/d.json")),
            "no run record of {}: {held:?}",
            lp.display()
        );
    }
    std::thread::scope(|s| {
        for lp in &lxcpaths {
            let env = &env;
            s.spawn(move || ok_in(env, lp, "lxc-stop", &["-n", "d", "-k"]));
        }
    });
    std::thread::scope(|s| {
        for lp in &lxcpaths {
            let env = &env;
            s.spawn(move || {
                ok_in(env, lp, "lxc-destroy", &["-n", "c"]);
                ok_in(env, lp, "lxc-destroy", &["-n", "d"]);
                ok_in(env, lp, "lxc-destroy", &["-n", "a", "-s"]);
                // A command that only looks, in the empty lxcpath.
                ok_in(env, lp, "lxc-ls", &[]);
            });
        }
    });
    for lp in &lxcpaths {
        assert_eq!(std::fs::read_dir(lp).unwrap().count(), 0, "{}", lp.display());
    }
    assert_eq!(
        kept_for(&env.run_dir, &lxcpaths),
        Vec::<String>::new(),
        "left in the run dir (before: {held:?})"
    );
}

/// Many commands at once on one container, in one lxcpath, while others
/// come and go beside it: snapshots (each picks the next free `snapN`
/// under the container's lock, so two holders at once would pick one
/// name twice), and copies made and destroyed beside them: every lock
/// file is unlinked by its holder and made again by the next, all the
/// time. Every snapshot is kept under its own name, every command
/// succeeds, and afterwards nothing of the lxcpath is left in the run dir.
#[test]
fn commands_racing_on_one_lxcpath_keep_its_locks_exclusive() {
    let Some(env) = root_env() else { return };
    env.make_container("base");
    const ROUNDS: usize = 4;
    const SNAPS: usize = 6;
    for round in 0..ROUNDS {
        std::thread::scope(|s| {
            let env = &env;
            let mut hs = Vec::new();
            for _ in 0..SNAPS {
                hs.push(s.spawn(move || env.run("lxc-snapshot", &["-n", "base"])));
            }
            for i in 0..4 {
                hs.push(s.spawn(move || {
                    let n = format!("t{round}-{i}");
                    let o = env.run("lxc-copy", &["-n", "base", "-N", &n, "-s", "-B", "overlay"]);
                    if !o.status.success() {
                        return o;
                    }
                    env.run("lxc-destroy", &["-n", &n])
                }));
            }
            for h in hs {
                let o = h.join().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(env.c("base").join("snaps"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..ROUNDS * SNAPS).map(|i| format!("snap{i}")).collect();
    want.sort();
    assert_eq!(names, want, "one snapshot per command, each under its own name");
    env.ok("lxc-destroy", &["-n", "base", "-s"]);
    assert_eq!(
        kept_for(&env.run_dir, std::slice::from_ref(&env.lxcpath)),
        Vec::<String>::new()
    );
}

/// Commands killed part-way (at a failpoint, which exits as a kill -9
/// does, and with SIGKILL at spread delays) leave their locks' files and
/// their in-flight records in the run dir; the next command reconciles
/// what they left (a staging dir, a container moved aside) and removes
/// those files, and once the containers are destroyed nothing is left.
#[test]
fn killed_commands_are_reconciled_and_leave_nothing_in_the_run_dir() {
    let Some(env) = root_env() else { return };
    let _c = Cleanup(&env);
    env.make_container("base");
    let lp = std::slice::from_ref(&env.lxcpath);
    let at = |point: &str, args: &[&str]| {
        let o = env
            .cmd(args[0])
            .env("STRATA_FAILPOINT", point)
            .arg("-P")
            .arg(&env.lxcpath)
            .args(&args[1..])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(99),
            "{point}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // A clone killed before its rename: its staging dir and its locks stay.
    at("clone-before-rename", &["lxc-copy", "-n", "base", "-N", "k1"]);
    let left = kept_for(&env.run_dir, lp);
    assert!(left.iter().any(|e| e.starts_with("lock/")), "{left:?}");
    assert!(left.iter().any(|e| e.starts_with("inflight/op.")), "{left:?}");
    assert!(has_staging(&env.lxcpath));
    env.ok("lxc-ls", &[]);
    assert!(!has_staging(&env.lxcpath));
    assert!(!env.c("k1").exists());
    assert_eq!(kept_for(&env.run_dir, lp), scan_markers(&env), "after the reconcile");
    // A destroy killed once its container is moved aside: finished by the next command.
    env.ok("lxc-copy", &["-n", "base", "-N", "k2"]);
    at("destroy-after-rename", &["lxc-destroy", "-n", "k2"]);
    assert!(has_staging(&env.lxcpath));
    env.ok("lxc-ls", &[]);
    assert!(!has_staging(&env.lxcpath) && !env.c("k2").exists());
    assert_eq!(kept_for(&env.run_dir, lp), scan_markers(&env), "after the reconcile");
    // Killed with SIGKILL at spread delays through an overlay snapshot clone.
    let t0 = std::time::Instant::now();
    env.ok("lxc-copy", &["-n", "base", "-N", "k3", "-s", "-B", "overlay"]);
    let span = t0.elapsed();
    env.ok("lxc-destroy", &["-n", "k3"]);
    for i in 0..12u32 {
        let mut child = env
            .cmd("lxc-copy")
            .arg("-P")
            .arg(&env.lxcpath)
            .args(["-n", "base", "-N", "k3", "-s", "-B", "overlay"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(span * i / 12);
        let _ = child.kill();
        let _ = child.wait();
        env.ok("lxc-ls", &[]);
        assert!(!has_staging(&env.lxcpath), "after a kill at {i}/12");
        if env.c("k3").exists() {
            env.ok("lxc-destroy", &["-n", "k3"]);
        }
        assert_eq!(kept_for(&env.run_dir, lp), scan_markers(&env), "after a kill at {i}/12");
    }
    env.ok("lxc-destroy", &["-n", "base"]);
    assert_eq!(kept_for(&env.run_dir, lp), Vec::<String>::new());
}

/// The scan markers an lxcpath that holds containers keeps (see
/// `strata_core::inflight::scan_dir`): allowed while `base` exists.
fn scan_markers(env: &Env) -> Vec<String> {
    let dir = strata_core::paths::lxcpath_key(&env.lxcpath);
    let mut v = vec![
        format!("inflight/scanned/{dir}/"),
        format!("inflight/scanned/{dir}/ephemeral"),
        format!("inflight/scanned/{dir}/staging"),
    ];
    v.sort();
    v
}

fn has_staging(lxcpath: &Path) -> bool {
    std::fs::read_dir(lxcpath)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".strata-"))
}

/// Unmounts whatever a failed test left mounted under the scratch dir.
struct Cleanup<'a>(&'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut m: Vec<String> = t
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(self.0.tmp.path()))
            .collect();
        m.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in m {
            let _ = std::process::Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}
