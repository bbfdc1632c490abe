//! The engine's flows through the lxc-* front ends, each checked against
//! the rootfs trees it must leave, the dependency files and leftovers.

use super::state::{self, dep_mismatches, leaks, state, state_diff, State};
use super::{Fixture, Report};
use crate::ensure;
use std::path::Path;

pub fn run(fx: &Fixture, rep: &mut Report) {
    let lx = fx.lxcpath("flows");
    let mut st = State::new();
    let steps: Vec<(&str, Step)> = vec![
        ("lxc-create", create),
        ("lxc-copy (copy clone)", copy),
        ("lxc-copy -s and lxc-clone -s (snapshot clones)", snapclone),
        ("lxc-snapshot, -L", snapshot),
        ("lxc-destroy with dependents", destroy_dependents),
        ("lxc-snapshot -r (in place)", restore),
        ("lxc-snapshot -r -N (to a new name)", restore_new),
        ("lxc-copy -R (rename)", rename),
        ("lxc-snapshot -d", destroy_snapshot),
        ("lxc-destroy, lxc-destroy -s", destroy),
    ];
    let mut broken = None;
    for (name, f) in steps {
        let case = format!("{}: flow: {name}", fx.label);
        if let Some(b) = &broken {
            rep.push(case, Err(format!("not run: {b} failed")));
            continue;
        }
        let r = f(fx, &lx, &mut st).and_then(|note| {
            check(fx, &lx, &st)?;
            Ok(note)
        });
        if r.is_err() {
            broken = Some(name);
        }
        rep.push(case, r);
    }
}

type Step = fn(&Fixture, &Path, &mut State) -> Result<String, String>;

/// The lxcpath holds exactly `want`, `lxc-ls` lists its containers, and
/// nothing is leaked or mis-recorded.
pub fn check(fx: &Fixture, lx: &Path, want: &State) -> Result<(), String> {
    let ls = fx.ok(lx, "lxc-ls", &["-1"])?;
    let listed: Vec<&str> = ls.lines().collect();
    let names: Vec<&str> = want.keys().filter(|n| !n.contains('@')).map(String::as_str).collect();
    ensure!(listed == names, "lxc-ls lists {listed:?}, want {names:?}");
    let now = state(fx, lx)?;
    ensure!(&now == want, "state differs: {:?}", state_diff(want, &now));
    let l = leaks(fx, lx);
    ensure!(l.is_empty(), "leaked: {l:?}");
    let d = dep_mismatches(lx);
    ensure!(d.is_empty(), "dependency files: {d:?}");
    Ok(())
}

fn kind_of(lx: &Path, name: &str) -> Result<String, String> {
    Ok(state::rootfs_spec(&lx.join(name))?.kind().to_string())
}

fn create(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    fx.create(lx, "c1")?;
    ensure!(kind_of(lx, "c1")? == fx.backend, "c1 is {}", kind_of(lx, "c1")?);
    st.insert("c1".into(), state::tree(&fx.tree));
    // A second create of the same name is refused and changes nothing.
    let argv = fx.create_argv("c1");
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    fx.refused(lx, "lxc-create", &a)?;
    Ok(String::new())
}

fn copy(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    fx.ok(lx, "lxc-copy", &["-n", "c1", "-N", "c2"])?;
    ensure!(kind_of(lx, "c2")? == fx.backend, "c2 is {}", kind_of(lx, "c2")?);
    st.insert("c2".into(), st["c1"].clone());
    let host = state::with_rootfs_rw(fx, &lx.join("c2"), |p| {
        std::fs::read_to_string(p.join("etc/hostname")).unwrap_or_default()
    });
    ensure!(host == "c2\n", "c2's etc/hostname is {host:?}");
    Ok(String::new())
}

fn snapclone(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    if !fx.snapshot {
        fx.refused(lx, "lxc-copy", &["-s", "-n", "c1", "-N", "s1"])?;
        return Ok("refused: no snapshot clones here".into());
    }
    fx.ok(lx, "lxc-copy", &["-s", "-n", "c1", "-N", "s1"])?;
    fx.ok(lx, "lxc-clone", &["-s", "-o", "c1", "-n", "s2"])?;
    st.insert("s1".into(), st["c1"].clone());
    st.insert("s2".into(), st["c1"].clone());
    // A snapshot clone of a snapshot clone.
    fx.ok(lx, "lxc-copy", &["-s", "-n", "s1", "-N", "s3"])?;
    st.insert("s3".into(), st["s1"].clone());
    // A write to the clone leaves the source alone.
    state::with_rootfs_rw(fx, &lx.join("s1"), |p| {
        std::fs::write(p.join("root/data"), "s1\n").unwrap()
    });
    st.insert(
        "s1".into(),
        state::rootfs_tree(fx, &state::rootfs_spec(&lx.join("s1"))?)?,
    );
    ensure!(st["s1"] != st["c1"], "the write to s1 is not seen");
    Ok(format!("clones are {}", kind_of(lx, "s1")?))
}

fn modify(fx: &Fixture, lx: &Path, name: &str, data: &str, st: &mut State) -> Result<(), String> {
    state::with_rootfs_rw(fx, &lx.join(name), |p| {
        std::fs::write(p.join("root/data"), data).unwrap();
        std::fs::write(p.join("var/log/new"), data).unwrap();
        let _ = std::fs::remove_file(p.join("usr/os-link"));
    });
    st.insert(
        name.into(),
        state::rootfs_tree(fx, &state::rootfs_spec(&lx.join(name))?)?,
    );
    // Overlay clones of a dir container see its rootfs as their lower (as in LXC).
    let own = lx.join(name);
    for (n, d) in state::container_dirs(lx) {
        let spec = state::rootfs_spec(&d)?;
        if spec
            .overlay_parts()
            .is_some_and(|(lower, _)| Path::new(lower).parent() == Some(own.as_path()))
        {
            st.insert(n, state::rootfs_tree(fx, &spec)?);
        }
    }
    Ok(())
}

fn snapshot(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    let out = fx.ok(lx, "lxc-snapshot", &["-n", "c1"])?;
    st.insert("c1@snap0".into(), st["c1"].clone());
    modify(fx, lx, "c1", "changed\n", st)?;
    fx.ok(lx, "lxc-snapshot", &["-n", "c1"])?;
    st.insert("c1@snap1".into(), st["c1"].clone());
    let l = fx.ok(lx, "lxc-snapshot", &["-n", "c1", "-L"])?;
    ensure!(l.contains("snap0") && l.contains("snap1"), "lxc-snapshot -L: {l:?}");
    Ok(out.trim().to_string())
}

fn restore(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    modify(fx, lx, "c1", "later\n", st)?;
    fx.ok(lx, "lxc-snapshot", &["-n", "c1", "-r", "snap0"])?;
    st.insert("c1".into(), st["c1@snap0"].clone());
    ensure!(
        kind_of(lx, "c1")? == fx.backend,
        "c1 is {} after restore",
        kind_of(lx, "c1")?
    );
    Ok(String::new())
}

fn restore_new(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    fx.ok(lx, "lxc-snapshot", &["-n", "c1", "-r", "snap1", "-N", "r1"])?;
    st.insert("r1".into(), st["c1@snap1"].clone());
    let cfg = std::fs::read_to_string(lx.join("r1/config")).unwrap_or_default();
    ensure!(
        state::config_value(&cfg, "lxc.uts.name").as_deref() == Some("r1"),
        "r1's lxc.uts.name: {:?}",
        state::config_value(&cfg, "lxc.uts.name")
    );
    Ok(String::new())
}

fn destroy_dependents(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    // c1 has snapshots: refused without -s.
    let e = fx.refused(lx, "lxc-destroy", &["-n", "c1"])?;
    // Its own snapshots may be listed too (overlay ones share its lower): -s takes those.
    let own = lx.join("c1/snaps");
    let mut deps = state::dep_file(&lx.join("c1/lxc_snapshots"))?;
    deps.retain(|d| !d.starts_with(&own));
    let mut note = format!("snapshots: {}", e.trim());
    if !deps.is_empty() {
        // Clones that need c1: destroy and restore refused, naming them.
        let e2 = fx.refused(lx, "lxc-destroy", &["-n", "c1", "-s"])?;
        let first = deps
            .iter()
            .next()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        ensure!(e2.contains(&first), "the refusal does not name {first}: {e2}");
        fx.refused(lx, "lxc-snapshot", &["-n", "c1", "-r", "snap0"])?;
        note = format!("{} dependents: {}", deps.len(), e2.trim());
    }
    check(fx, lx, st)?;
    // Without its dependents it may go (checked in the last step); the
    // clones go now, a clone of a clone first.
    for n in ["s3", "s2", "s1"] {
        if st.contains_key(n) {
            fx.ok(lx, "lxc-destroy", &["-n", n])?;
            st.remove(n);
        }
    }
    ensure!(
        state::dep_file(&lx.join("c1/lxc_snapshots"))?
            .iter()
            .all(|d| d.starts_with(&own)),
        "c1/lxc_snapshots still lists clones"
    );
    Ok(note)
}

fn rename(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    if !fx.rename {
        fx.refused(lx, "lxc-copy", &["-R", "-n", "c2", "-N", "c3"])?;
        return Ok("refused".into());
    }
    fx.ok(lx, "lxc-copy", &["-R", "-n", "c2", "-N", "c3"])?;
    let t = st.remove("c2").unwrap();
    st.insert("c3".into(), t);
    ensure!(!lx.join("c2").exists(), "c2 is still there");
    let spec = state::rootfs_spec(&lx.join("c3"))?;
    ensure!(!spec.to_string().contains("/c2/"), "c3's rootfs is {spec}");
    Ok(String::new())
}

fn destroy_snapshot(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    let mut note = String::new();
    let o = fx.run(lx, "lxc-snapshot", &["-n", "c1", "-d", "snap1"], None);
    if !o.status.success() {
        // Where a restore to a new name is a clone of the snapshot (zfs), the
        // snapshot has a dependent: refused in one line naming it, nothing
        // changed; once r1 is gone it may go.
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let r1 = state::rootfs_spec(&lx.join("r1"))?;
        ensure!(
            o.status.code() == Some(1) && err.lines().count() == 1 && err.contains(r1.source()),
            "lxc-snapshot -d snap1: {:?}: {err:?}",
            o.status
        );
        check(fx, lx, st)?;
        fx.ok(lx, "lxc-destroy", &["-n", "r1"])?;
        st.remove("r1");
        fx.ok(lx, "lxc-snapshot", &["-n", "c1", "-d", "snap1"])?;
        note = format!("refused while r1 lived: {}", err.trim());
    }
    st.remove("c1@snap1");
    Ok(note)
}

fn destroy(fx: &Fixture, lx: &Path, st: &mut State) -> Result<String, String> {
    for n in ["c3", "r1"] {
        if st.contains_key(n) {
            fx.ok(lx, "lxc-destroy", &["-n", n])?;
            st.remove(n);
        }
    }
    fx.ok(lx, "lxc-destroy", &["-n", "c1", "-s"])?;
    st.retain(|n, _| n != "c1" && !n.starts_with("c1@"));
    let rest: Vec<_> = std::fs::read_dir(lx)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(rest.is_empty(), "left in the lxcpath: {rest:?}");
    Ok(String::new())
}
