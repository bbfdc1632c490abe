//! Many lxc-* commands at once on one base, and commands killed with
//! SIGKILL part-way (root, real overlay mounts and loop devices).
//!
//! Afterwards the dependency files (`lxc_snapshots`) must name exactly the
//! containers whose rootfs needs the base, every container must be whole,
//! and nothing a killed command held (mounts, loop devices, temp files,
//! staging dirs) may outlive the next command.

mod common;

use common::Env;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

fn run_all(env: &Env, cmds: Vec<(&'static str, Vec<String>)>) -> Vec<Output> {
    std::thread::scope(|s| {
        let hs: Vec<_> = cmds
            .iter()
            .map(|(tool, args)| {
                s.spawn(move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    env.run(tool, &a)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ok_out(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Containers in `lxcpath` and in their `snaps/`, by directory.
fn containers(lxcpath: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(lxcpath).unwrap().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') || !p.join("config").is_file() {
            continue;
        }
        if let Ok(rd) = std::fs::read_dir(p.join("snaps")) {
            for s in rd.flatten() {
                if s.path().join("config").is_file() {
                    out.push(s.path());
                }
            }
        }
        out.push(p);
    }
    out.sort();
    out
}

fn rootfs_of(dir: &Path) -> String {
    let cfg = std::fs::read_to_string(dir.join("config")).unwrap();
    common::config_value(&cfg, "lxc.rootfs.path").unwrap()
}

/// `lxcpath/name` pairs of a dependency file.
fn dep_file(p: &Path) -> BTreeSet<PathBuf> {
    let Ok(t) = std::fs::read_to_string(p) else {
        return BTreeSet::new();
    };
    let l: Vec<&str> = t.lines().collect();
    assert!(l.len().is_multiple_of(2), "{}: {t:?}", p.display());
    l.chunks(2).map(|c| Path::new(c[0]).join(c[1])).collect()
}

/// The dependency files say exactly what the configs say, and no container
/// is missing the container its lower lives in. Returns a description of
/// every mismatch.
fn dep_mismatches(lxcpath: &Path) -> Vec<String> {
    let all = containers(lxcpath);
    let mut want: BTreeMap<PathBuf, BTreeSet<PathBuf>> = all.iter().map(|c| (c.clone(), BTreeSet::new())).collect();
    let mut bad = Vec::new();
    for c in &all {
        let spec = rootfs_of(c);
        let Some(rest) = spec.strip_prefix("overlay:") else {
            continue;
        };
        let (lower, upper) = rest.rsplit_once(':').unwrap();
        if !Path::new(upper).is_dir() {
            bad.push(format!("{}: upper {upper} missing", c.display()));
        }
        let owner = Path::new(lower).parent().unwrap().to_path_buf();
        if owner == *c {
            continue;
        }
        match want.get_mut(&owner) {
            Some(s) => {
                s.insert(c.clone());
            }
            None => bad.push(format!(
                "{}: its lower's container {} is gone",
                c.display(),
                owner.display()
            )),
        }
        if !dep_file(&c.join("lxc_rdepends")).contains(&owner) {
            bad.push(format!(
                "{}: lxc_rdepends does not name {}",
                c.display(),
                owner.display()
            ));
        }
    }
    for (owner, w) in &want {
        let have = dep_file(&owner.join("lxc_snapshots"));
        if &have != w {
            bad.push(format!(
                "{}: lxc_snapshots lists {:?}, clones are {:?}",
                owner.display(),
                have,
                w
            ));
        }
    }
    bad
}

/// Every container whole: its config names a rootfs that is there.
fn assert_whole(lxcpath: &Path) {
    for c in containers(lxcpath) {
        let spec = rootfs_of(&c);
        let paths: Vec<&str> = match spec.strip_prefix("overlay:") {
            Some(rest) => rest.split(':').collect(),
            None => vec![spec.strip_prefix("dir:").unwrap_or(&spec)],
        };
        for p in paths {
            assert!(Path::new(p).is_dir(), "{}: {p} missing", c.display());
        }
    }
}

/// Leftovers of killed or crashed commands in the lxcpath.
fn leftovers(lxcpath: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(lxcpath.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if n.starts_with(".strata-") || n.contains(".strata-tmp-") {
                out.push(p.clone());
            }
            // Container dirs, snaps and snapshot dirs: not into rootfs or overlay.
            if depth < 3 && e.file_type().unwrap().is_dir() && n != "rootfs" && n != "overlay" {
                stack.push((p, depth + 1));
            }
        }
    }
    out
}

/// Mount points below `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    t.lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| m.replace("\\040", " ")))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Unmounts and detaches whatever a failed test left under the scratch dir.
struct Cleanup<'a>(&'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let root = self.0.tmp.path();
        let mut m = mounts_under(root);
        m.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in m {
            let _ = std::process::Command::new("umount").arg("-l").arg(&p).status();
        }
        for d in strata_testkit::attached_under(root) {
            let _ = std::process::Command::new("losetup").arg("-d").arg(&d).status();
        }
    }
}

fn overlay_env() -> Option<Env> {
    if !strata_testkit::is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let env = Env::new();
    env.make_container("base");
    Some(env)
}

#[test]
fn parallel_snapshot_clones_are_all_recorded() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    let cmds = (0..32)
        .map(|i| ("lxc-copy", argv(&["-s", "-n", "base", "-N", &format!("c{i}")])))
        .collect();
    for (i, o) in run_all(&env, cmds).iter().enumerate() {
        ok_out(o, &format!("clone c{i}"));
    }
    let want: BTreeSet<PathBuf> = (0..32).map(|i| env.c(&format!("c{i}"))).collect();
    assert_eq!(dep_file(&env.c("base").join("lxc_snapshots")), want);
    assert_eq!(dep_mismatches(&env.lxcpath), Vec::<String>::new());
    assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
}

#[test]
fn parallel_snapshots_of_one_container_are_all_kept() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    let mut cmds = Vec::new();
    for i in 0..16 {
        let f = env.src.join(format!("comment{i}"));
        std::fs::write(&f, format!("marker {i}\n")).unwrap();
        cmds.push(("lxc-snapshot", argv(&["-n", "base", "-c", f.to_str().unwrap()])));
    }
    for (i, o) in run_all(&env, cmds).iter().enumerate() {
        ok_out(o, &format!("snapshot {i}"));
    }
    let snaps = env.c("base").join("snaps");
    let mut markers = BTreeSet::new();
    for i in 0..16 {
        let s = snaps.join(format!("snap{i}"));
        assert!(s.join("config").is_file(), "snap{i} missing");
        assert!(s.join("ts").is_file(), "snap{i}: no ts");
        assert!(s.join("rootfs/etc/os-release").is_file(), "snap{i}: no rootfs");
        markers.insert(std::fs::read_to_string(s.join("comment")).unwrap());
    }
    let want: BTreeSet<String> = (0..16).map(|i| format!("marker {i}\n")).collect();
    assert_eq!(markers, want, "a snapshot was overwritten");
    assert!(!snaps.join("snap16").exists());
    assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
}

/// Destroys of the base and of its clones against new clones of the base
/// and of its clones: a base with clones is never destroyed, and the list
/// in `lxc_snapshots` stays exact.
#[test]
fn destroy_of_base_against_clones_never_orphans_a_clone() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    let start = Instant::now();
    for round in 0..20 {
        if !env.c("base").exists() {
            env.make_container("base");
        }
        for n in ["y", "y2"] {
            if !env.c(n).exists() {
                env.ok("lxc-copy", &["-s", "-n", "base", "-N", n]);
            }
        }
        let cmds = vec![
            ("lxc-destroy", argv(&["-n", "y"])),
            ("lxc-copy", argv(&["-s", "-n", "base", "-N", &format!("x{round}")])),
            ("lxc-copy", argv(&["-s", "-n", "y2", "-N", &format!("z{round}")])),
            ("lxc-destroy", argv(&["-n", "y2"])),
            ("lxc-snapshot", argv(&["-n", "y2"])),
            ("lxc-destroy", argv(&["-n", "base"])),
        ];
        run_all(&env, cmds);
        let bad = dep_mismatches(&env.lxcpath);
        assert!(bad.is_empty(), "round {round}: {bad:#?}");
        assert_whole(&env.lxcpath);
        assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
        // Clear the clones so that the next round may destroy the base.
        if round % 4 == 3 {
            for c in containers(&env.lxcpath).iter().rev() {
                let n = c.file_name().unwrap().to_str().unwrap();
                if c.parent() == Some(&env.lxcpath) && n != "base" {
                    env.ok("lxc-destroy", &["-s", "-n", n]);
                }
            }
        }
    }
    eprintln!("20 rounds in {:?}", start.elapsed());
}

#[test]
fn restores_against_snapshots_and_clones() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    env.ok("lxc-copy", &["-s", "-n", "base", "-N", "c"]);
    env.ok("lxc-snapshot", &["-n", "c"]);
    for round in 0..8 {
        let cmds = vec![
            ("lxc-snapshot", argv(&["-n", "c", "-r", "snap0"])),
            ("lxc-snapshot", argv(&["-n", "c"])),
            (
                "lxc-snapshot",
                argv(&["-n", "c", "-r", "snap0", "-N", &format!("r{round}")]),
            ),
            ("lxc-copy", argv(&["-s", "-n", "base", "-N", &format!("k{round}")])),
            ("lxc-copy", argv(&["-s", "-n", "c", "-N", &format!("m{round}")])),
            ("lxc-destroy", argv(&["-n", &format!("k{}", round.max(1) - 1)])),
        ];
        let outs = run_all(&env, cmds);
        ok_out(&outs[2], "restore to a new name");
        ok_out(&outs[3], "clone of the base");
        let bad = dep_mismatches(&env.lxcpath);
        assert!(bad.is_empty(), "round {round}: {bad:#?}");
        assert_whole(&env.lxcpath);
        assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
    }
}

/// Many kinds of command on one family at once, then the books must balance.
#[test]
fn mixed_load_keeps_dependency_files_exact() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    env.ok("lxc-copy", &["-s", "-n", "base", "-N", "a"]);
    for round in 0..6 {
        let mut cmds = Vec::new();
        for i in 0..4 {
            cmds.push(("lxc-copy", argv(&["-s", "-n", "base", "-N", &format!("b{round}-{i}")])));
            cmds.push(("lxc-copy", argv(&["-s", "-n", "a", "-N", &format!("d{round}-{i}")])));
        }
        if round > 0 {
            for i in 0..4 {
                cmds.push(("lxc-destroy", argv(&["-s", "-n", &format!("b{}-{i}", round - 1)])));
                cmds.push(("lxc-destroy", argv(&["-n", &format!("d{}-{i}", round - 1)])));
            }
        }
        cmds.push(("lxc-snapshot", argv(&["-n", "a"])));
        cmds.push(("lxc-snapshot", argv(&["-n", &format!("b{round}-0")])));
        cmds.push(("lxc-destroy", argv(&["-n", "base"])));
        cmds.push(("lxc-snapshot", argv(&["-n", "a", "-d", "ALL"])));
        cmds.push(("lxc-ls", argv(&[])));
        run_all(&env, cmds);
        let bad = dep_mismatches(&env.lxcpath);
        assert!(bad.is_empty(), "round {round}: {bad:#?}");
        assert_whole(&env.lxcpath);
        assert!(
            env.c("base").join("config").is_file(),
            "the base went while clones need it"
        );
        assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
    }
}

// ------------------------------------------------------------------ kill -9

#[test]
fn reconcile_removes_temp_files_of_dead_writers_only() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    env.ok("lxc-copy", &["-s", "-n", "base", "-N", "c"]);
    env.ok("lxc-snapshot", &["-n", "base"]);
    // A pid above any pid_max: its writer is dead. This test's own pid: alive.
    let dead = env.c("base").join(".lxc_snapshots.strata-tmp-2147483646-1a2b");
    let in_snap = env.c("base").join("snaps/snap0/.ts.strata-tmp-2147483646-1a2c");
    let live = env
        .c("base")
        .join(format!(".lxc_snapshots.strata-tmp-{}-1a2d", std::process::id()));
    // As a killed command leaves them: noted in its entry of the in-flight
    // record before they were made. A temp file of a live writer named
    // there (a pid reused) stays.
    let entry = env.run_dir.join("inflight/op.2147483646-1");
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    let listed = format!("{}\n{}\n{}\n", dead.display(), in_snap.display(), live.display());
    std::fs::write(&entry, &listed).unwrap();
    for f in [&dead, &in_snap, &live] {
        std::fs::write(f, "half\n").unwrap();
    }
    env.ok("lxc-ls", &[]);
    assert!(!dead.exists() && !in_snap.exists(), "{:?}", leftovers(&env.lxcpath));
    assert!(live.exists(), "a live writer's temp file was removed");
    assert!(entry.exists(), "the entry went while a path it names is left");
    std::fs::remove_file(&live).unwrap();
    env.ok("lxc-ls", &[]);
    assert!(!entry.exists(), "the entry stayed once nothing it names is left");
    assert_eq!(dep_mismatches(&env.lxcpath), Vec::<String>::new());

    // Each command reads only that record, not every container: a leftover
    // nobody noted (a strata from before the record, a power cut) waits for
    // the first command after a boot, which empties the run dir.
    let unnoted = env.c("c").join(".config.strata-tmp-2147483646-1a2e");
    std::fs::write(&unnoted, "half\n").unwrap();
    env.ok("lxc-ls", &[]);
    assert!(unnoted.exists(), "every container was scanned again");
    std::fs::remove_dir_all(env.run_dir.join("inflight")).unwrap();
    env.ok("lxc-ls", &[]);
    assert!(!unnoted.exists(), "{:?}", leftovers(&env.lxcpath));
    assert_eq!(dep_mismatches(&env.lxcpath), Vec::<String>::new());
}

fn spawn(env: &Env, tool: &str, args: &[&str]) -> Child {
    let mut c = env.cmd(tool);
    c.arg("-P").arg(&env.lxcpath).args(args);
    c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// A pseudo-random sequence of delays spread over `span`, reproducible.
fn delays(n: u32, span: Duration) -> Vec<Duration> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Evenly spread, jittered within each slot.
            let slot = span.as_micros() as u64 / n as u64;
            Duration::from_micros(slot * i as u64 + x % slot.max(1))
        })
        .collect()
}

/// The source's rootfs tree, and its config and dependency list as text
/// (a rewrite of the same list is no change).
fn source_state(env: &Env) -> (BTreeMap<PathBuf, common::Entry>, (String, String)) {
    let b = env.c("base");
    let text = |n: &str| std::fs::read_to_string(b.join(n)).unwrap_or_default();
    // A loop container's rootfs is its image.
    let root = if b.join("rootdev").is_file() {
        b.join("rootdev")
    } else {
        b.join("rootfs")
    };
    (common::tree(&root), (text("config"), text("lxc_snapshots")))
}

/// Kill `args` at spread delays; after each kill `lxc-ls` must leave
/// nothing behind. Returns (kills that left something before lxc-ls, tries).
fn kill_loop(env: &Env, args: &[&str], dst: &str, tries: u32) -> (u32, u32) {
    let src = source_state(env);
    let t0 = Instant::now();
    env.ok(args[0], &args[1..]);
    let span = t0.elapsed();
    env.ok("lxc-destroy", &["-n", dst]);
    let mut dirty = 0;
    for d in delays(tries, span) {
        let mut child = spawn(env, args[0], &args[1..]);
        std::thread::sleep(d);
        let _ = child.kill();
        let _ = child.wait();
        let held =
            !mounts_under(env.tmp.path()).is_empty() || !strata_testkit::attached_under(env.tmp.path()).is_empty();
        if held || !leftovers(&env.lxcpath).is_empty() {
            dirty += 1;
        }
        env.ok("lxc-ls", &[]);
        assert_eq!(
            mounts_under(env.tmp.path()),
            Vec::<String>::new(),
            "after a kill at {d:?}"
        );
        strata_testkit::no_leak(env.tmp.path());
        assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new(), "after a kill at {d:?}");
        let tmp = env.run_dir.join("tmp");
        let scratch: Vec<_> = std::fs::read_dir(&tmp)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert_eq!(scratch, Vec::<PathBuf>::new(), "after a kill at {d:?}");
        let bad = dep_mismatches(&env.lxcpath);
        assert!(bad.is_empty(), "after a kill at {d:?}: {bad:#?}");
        // Killed too late to matter: made whole.
        if env.c(dst).exists() {
            env.ok("lxc-destroy", &["-n", dst]);
        }
        let now = source_state(env);
        common::assert_same_tree("source rootfs", &src.0, &now.0);
        assert_eq!(src.1, now.1, "source config and lxc_snapshots");
    }
    // The same command, not killed, succeeds.
    env.ok(args[0], &args[1..]);
    env.ok("lxc-destroy", &["-n", dst]);
    (dirty, tries)
}

#[test]
fn killed_loop_copy_leaves_nothing_behind() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    let (dirty, tries) = kill_loop(
        &env,
        &["lxc-copy", "-n", "base", "-N", "d", "-B", "loop", "--fssize", "64M"],
        "d",
        20,
    );
    eprintln!("loop copy: {dirty} of {tries} kills left something for reconcile");
}

/// A kill that lands between a tool's fork and its exec leaves a child that
/// still holds copies of the command's descriptors, its container locks
/// among them, until it reaches exec (on a loaded machine, long after the
/// command is gone). The next command must not take the leftover for a live
/// command's and leave it: it waits for the tool, then cleans up.
#[test]
fn a_kill_between_a_tools_fork_and_exec_leaves_nothing_behind() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    let args = ["-n", "base", "-N", "d", "-B", "loop", "--fssize", "64M"];
    let o = env
        .cmd("lxc-copy")
        .arg("-P")
        .arg(&env.lxcpath)
        .args(args)
        .env("STRATA_FAILPOINT", "tool-before-exec")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "not killed at its tool: {o:?}");
    assert!(
        !leftovers(&env.lxcpath).is_empty(),
        "killed before its staging dir was made"
    );
    env.ok("lxc-ls", &[]);
    assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
    assert_eq!(mounts_under(env.tmp.path()), Vec::<String>::new());
    strata_testkit::no_leak(env.tmp.path());
    assert!(!env.c("d").exists());
    env.ok("lxc-copy", &args);
    env.ok("lxc-destroy", &["-n", "d"]);
}

/// Runs `tool args` killed by the `tool-before-exec` failpoint at its
/// first tool (a template, a hook), then checks that the next command waits
/// for the child and cleans up, and that the retried command succeeds.
fn killed_before_exec_then_retried(env: &Env, tool: &str, args: &[&str], made: &str) {
    // Its output not read: the child shares it, and reading to its end
    // would wait for the child to finish.
    let st = env
        .cmd(tool)
        .arg("-P")
        .arg(&env.lxcpath)
        .args(args)
        .env("STRATA_FAILPOINT", "tool-before-exec")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "{tool}: not killed at its tool: {st:?}");
    assert!(
        !leftovers(&env.lxcpath).is_empty(),
        "{tool}: killed before its staging dir was made"
    );
    env.ok("lxc-ls", &[]);
    assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new(), "{tool}");
    assert_eq!(mounts_under(env.tmp.path()), Vec::<String>::new());
    strata_testkit::no_leak(env.tmp.path());
    assert!(!env.c(made).exists(), "{tool}: a killed build is in place");
    env.ok(tool, args);
    assert!(env.c(made).join("config").is_file());
}

/// A template's child and a clone hook's, killed in that window: the same
/// as a tool's (above). The template or hook, once exec'd, still writes to
/// the staging dir: the next command waits for it before removing it.
#[test]
fn a_kill_between_a_template_or_hooks_fork_and_exec_leaves_nothing_behind() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    use std::os::unix::fs::PermissionsExt;
    let tpl = env.tmp.path().join("tpl");
    std::fs::write(
        &tpl,
        "#!/bin/sh\nfor a; do case $a in --rootfs=*) r=${a#--rootfs=};; esac; done\n\
         mkdir -p \"$r/etc\" && echo templated > \"$r/etc/hostname\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&tpl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ["-n", "t1", "-t", tpl.to_str().unwrap()];
    killed_before_exec_then_retried(&env, "lxc-create", &args, "t1");
    assert_eq!(
        std::fs::read_to_string(env.c("t1").join("rootfs/etc/hostname")).unwrap(),
        "templated\n"
    );
    // A clone hook, run in the copy's staging dir.
    let hook = env.tmp.path().join("hook");
    std::fs::write(&hook, "#!/bin/sh\necho hooked > \"$LXC_ROOTFS_MOUNT/hooked\"\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = env.c("t1").join("config");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("lxc.hook.clone = {}\n", hook.display()));
    std::fs::write(&cfg, text).unwrap();
    killed_before_exec_then_retried(&env, "lxc-copy", &["-n", "t1", "-N", "h1"], "h1");
    assert!(
        env.c("h1").join("rootfs/hooked").is_file(),
        "the clone hook did not run"
    );
    env.ok("lxc-destroy", &["-n", "h1"]);
    env.ok("lxc-destroy", &["-n", "t1"]);
}

/// A killed `lxc-create` whose template (and the template's own child)
/// would run for minutes: the next command does not wait for them. It gives
/// the orphaned tools a short grace, kills them (their record and the lock
/// they hold prove them the killed command's), then undoes the build.
#[test]
fn a_killed_commands_long_template_is_killed_not_waited_for() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    use std::os::unix::fs::PermissionsExt;
    let pids = env.tmp.path().join("tpl-pids");
    let tpl = env.tmp.path().join("slow-tpl");
    std::fs::write(
        &tpl,
        format!(
            "#!/bin/sh\nfor a; do case $a in --rootfs=*) r=${{a#--rootfs=}};; esac; done\n\
             mkdir -p \"$r/etc\" && echo templated > \"$r/etc/hostname\"\n\
             sleep 300 & echo $! >> {p}\necho $$ >> {p}\necho started > {p}.done\nwait\n",
            p = pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tpl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut ch = env
        .cmd("lxc-create")
        .arg("-P")
        .arg(&env.lxcpath)
        .args(["-n", "t9", "-t", tpl.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !pids.with_extension("done").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "the template never started");
        assert!(
            ch.try_wait().unwrap().is_none(),
            "lxc-create ended before its template ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ch.kill().unwrap();
    ch.wait().unwrap();
    let tools: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
            .flatten()
            .is_some_and(|st| st != 'Z' && st != 'X')
    };
    assert!(tools.iter().all(|&p| alive(p)), "the template died with its command");
    let t = Instant::now();
    env.ok("lxc-ls", &[]);
    let took = t.elapsed();
    for &p in &tools {
        if alive(p) {
            // SAFETY: kill of a pid this test's template recorded; best effort cleanup.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    assert!(
        took < Duration::from_secs(20),
        "lxc-ls waited {took:?} for a leftover template"
    );
    let t = Instant::now();
    while tools.iter().any(|&p| alive(p)) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the killed command's template still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers(&env.lxcpath), Vec::<PathBuf>::new());
    assert_eq!(mounts_under(env.tmp.path()), Vec::<String>::new());
    strata_testkit::no_leak(env.tmp.path());
    assert!(!env.c("t9").exists(), "a killed build is in place");
    eprintln!("lxc-ls after the kill took {took:?}");
}

#[test]
fn killed_overlay_snapshot_clone_leaves_nothing_behind() {
    let Some(env) = overlay_env() else { return };
    let _c = Cleanup(&env);
    // A clone that stays, so that the base's lxc_snapshots is rewritten, not made.
    env.ok("lxc-copy", &["-s", "-n", "base", "-N", "keep"]);
    let (dirty, tries) = kill_loop(&env, &["lxc-copy", "-s", "-n", "base", "-N", "d"], "d", 20);
    eprintln!("overlay snapshot clone: {dirty} of {tries} kills left something for reconcile");
}

#[test]
fn killed_loop_image_copy_leaves_nothing_behind() {
    if !strata_testkit::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let env = Env::new();
    let _c = Cleanup(&env);
    let r = env.rootfs("tree");
    env.ok(
        "lxc-create",
        &[
            "-n",
            "base",
            "-B",
            "loop",
            "--fssize",
            "64M",
            "--rootfs-from",
            r.to_str().unwrap(),
        ],
    );
    // An image copy: a device attached before the data goes in, then an edit mount.
    let (dirty, tries) = kill_loop(&env, &["lxc-copy", "-n", "base", "-N", "d"], "d", 20);
    eprintln!("loop image copy: {dirty} of {tries} kills left something for reconcile");
}
