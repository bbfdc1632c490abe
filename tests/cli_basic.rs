//! The LXC front ends end to end: lxc-create, lxc-ls, lxc-copy, lxc-clone, lxc-destroy.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn create_from_dir_and_tarball() {
    let env = Env::new();
    let src = env.rootfs("base");
    env.ok("lxc-create", &["-n", "c1", "--rootfs-from", src.to_str().unwrap()]);
    let spec = env.config_get("c1", "lxc.rootfs.path").expect("lxc.rootfs.path");
    assert!(
        spec.ends_with(&format!("{}/c1/rootfs", env.lxcpath.display())),
        "{spec}"
    );
    assert_eq!(env.config_get("c1", "lxc.uts.name").as_deref(), Some("c1"));
    assert_eq!(read(env.c("c1").join("rootfs/root/data")), "original\n");
    assert_eq!(
        std::fs::read_link(env.c("c1").join("rootfs/usr/os-link")).unwrap(),
        Path::new("/etc/os-release")
    );
    // The source is left alone.
    assert_eq!(read(src.join("etc/hostname")), "base\n");

    let tarball = env.src.join("base.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    env.ok(
        "lxc-create",
        &["-n", "c2", "-B", "dir", "--rootfs-from", tarball.to_str().unwrap()],
    );
    assert_eq!(read(env.c("c2").join("rootfs/root/data")), "original\n");
    let mode = std::fs::metadata(env.c("c2").join("rootfs/tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o1777);
}

const TEMPLATE: &str = r#"#!/bin/sh
set -e
next=""
for a in "$@"; do
  if [ "$next" = rootfs ]; then rootfs="$a"; next=""; continue; fi
  case "$a" in
    --rootfs=*) rootfs="${a#--rootfs=}" ;;
    --rootfs) next=rootfs ;;
  esac
done
[ -n "$rootfs" ]
mkdir -p "$rootfs/etc"
printf '%s\n' "$@" > "$rootfs/etc/template-args"
echo from-template > "$rootfs/etc/hostname"
"#;

fn write_template(p: &Path) {
    std::fs::write(p, TEMPLATE).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn create_with_template_path_and_name() {
    let env = Env::new();
    let tpl = env.src.join("mytpl");
    write_template(&tpl);
    env.ok(
        "lxc-create",
        &["-n", "t1", "-t", tpl.to_str().unwrap(), "--", "--release", "x y"],
    );
    let args = read(env.c("t1").join("rootfs/etc/template-args"));
    let args: Vec<&str> = args.lines().collect();
    // As LXC calls templates: `--path=DIR --name=NAME --rootfs=ROOTFS`, then the arguments after `--`.
    assert!(args.contains(&"--name=t1"), "template got {args:?}");
    assert!(args.iter().any(|a| a.starts_with("--path=/")), "template got {args:?}");
    assert!(
        args.iter().any(|a| a.starts_with("--rootfs=/")),
        "template got {args:?}"
    );
    assert_eq!(&args[args.len() - 2..], &["--release", "x y"]);
    assert_eq!(read(env.c("t1").join("rootfs/etc/hostname")), "from-template\n");

    // By name: lxc-NAME in the template directory.
    write_template(&env.templates.join("lxc-tiny"));
    env.ok("lxc-create", &["-n", "t2", "-t", "tiny"]);
    assert!(read(env.c("t2").join("rootfs/etc/template-args"))
        .lines()
        .any(|l| l == "--name=t2" || l == "t2"));

    // An unknown template is refused and nothing is left.
    let msg = env.fails("lxc-create", &["-n", "t3", "-t", "nosuch"]);
    assert!(msg.contains("nosuch"), "{msg}");
    assert!(!env.c("t3").exists());
}

#[test]
fn ls_plain_fancy_json() {
    let env = Env::new();
    // An lxcpath with nothing in it lists nothing.
    assert_eq!(env.ok("lxc-ls", &[]), "");
    env.make_container("alpha");
    env.make_container("beta");
    let out = env.ok("lxc-ls", &[]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["alpha", "beta"]);
    assert_eq!(env.ok("lxc-ls", &["-1"]), "alpha\nbeta\n");

    assert_eq!(env.ok("lxc-ls", &["-1", "^b"]), "beta\n");
    assert_eq!(env.ok("lxc-ls", &["-1", "--filter", "ph"]), "alpha\n");
    let fancy = env.ok("lxc-ls", &["--fancy"]);
    let lines: Vec<Vec<&str>> = fancy.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["NAME", "STATE", "AUTOSTART", "GROUPS", "IPV4", "IPV6", "UNPRIVILEGED"]
    );
    assert_eq!(lines[1], ["alpha", "STOPPED", "0", "-", "-", "-", "false"]);
    assert_eq!(lines[2], ["beta", "STOPPED", "0", "-", "-", "-", "false"]);
    assert_eq!(lines.len(), 3);
    // Columns line up as in LXC: each padded to its widest cell plus one space.
    assert!(fancy.lines().next().unwrap().starts_with("NAME  STATE   "), "{fancy}");

    let ff = env.ok("lxc-ls", &["-F", "NAME,STATE"]);
    assert_eq!(
        ff.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(),
        ["alpha", "STOPPED"]
    );

    let json: serde_json::Value = serde_json::from_str(&env.ok("lxc-ls", &["--json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["name"], "alpha");
    assert_eq!(arr[0]["state"], "STOPPED");
    assert_eq!(arr[0]["backend"], "dir");
    assert!(arr[0]["rootfs"].as_str().unwrap().ends_with("/alpha/rootfs"));
    assert_eq!(arr[0]["snapshots"].as_array().unwrap().len(), 0);

    // strata ls is the same front end.
    let json2: serde_json::Value = serde_json::from_str(&env.ok("strata", &["ls", "--json"])).unwrap();
    assert_eq!(json2, json);
}

/// A listing long enough to be read on several threads gives every
/// container once, in order, each with its own files (config, dependents,
/// origins, snapshots), and the same as a short listing of the same ones.
#[test]
fn ls_json_over_many_containers() {
    let env = Env::new();
    env.make_container("c000");
    // Three snapshot clones of the first, one with a snapshot of its own.
    for n in ["c001", "c002", "c003"] {
        env.ok("lxc-copy", &["-n", "c000", "-N", n, "-s"]);
    }
    env.ok("lxc-snapshot", &["-n", "c002"]);
    // The rest written as LXC leaves them: a config and a rootfs dir each,
    // every seventh in group g7, every fifth set to autostart.
    let n = 300;
    for i in 4..n {
        let name = format!("c{i:03}");
        let dir = env.c(&name);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let mut cfg = format!(
            "lxc.uts.name = {name}\nlxc.rootfs.path = dir:{}\n",
            dir.join("rootfs").display()
        );
        if i % 7 == 0 {
            cfg.push_str("lxc.group = g7\n");
        }
        if i % 5 == 0 {
            cfg.push_str("lxc.start.auto = 1\n");
        }
        std::fs::write(dir.join("config"), cfg).unwrap();
    }
    let json: serde_json::Value = serde_json::from_str(&env.ok("lxc-ls", &["--json"])).unwrap();
    let arr = json.as_array().unwrap();
    let names: Vec<&str> = arr.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("c{i:03}")).collect();
    assert_eq!(names, want);
    let lp = env.lxcpath.display().to_string();
    let refs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let p = r["lxcpath"].as_str().unwrap();
                let at = p.strip_prefix(lp.as_str()).unwrap_or_else(|| panic!("{r}"));
                format!("{at}/{}", r["name"].as_str().unwrap())
            })
            .collect()
    };
    // The snapshot of c002 is an overlay on c000's rootfs too.
    assert_eq!(
        refs(&arr[0]["dependents"]),
        ["/c001", "/c002", "/c003", "/c002/snaps/snap0"]
    );
    for (i, row) in arr.iter().enumerate() {
        let name = &want[i];
        assert!(row["rootfs"].as_str().unwrap().contains(&format!("/{name}/")), "{row}");
        assert_eq!(row["state"], "STOPPED");
        let origin: Vec<String> = if (1..4).contains(&i) {
            vec!["/c000".into()]
        } else {
            vec![]
        };
        assert_eq!(refs(&row["depends_on"]), origin, "{name}");
        if i > 0 {
            assert!(refs(&row["dependents"]).is_empty(), "{name}");
        }
        let backend = if (1..4).contains(&i) { "overlay" } else { "dir" };
        assert_eq!(row["backend"], backend, "{name}");
        assert_eq!(
            row["snapshots"].as_array().unwrap().len(),
            usize::from(i == 2),
            "{name}"
        );
        let groups: Vec<&str> = if i >= 4 && i % 7 == 0 { vec!["g7"] } else { vec![] };
        assert_eq!(row["groups"], serde_json::json!(groups), "{name}");
        assert_eq!(row["autostart"], i >= 4 && i % 5 == 0, "{name}");
    }
    // A short listing (one thread) of some of them gives the same rows.
    let few: serde_json::Value = serde_json::from_str(&env.ok("lxc-ls", &["--json", "^c00[0-3]$"])).unwrap();
    assert_eq!(few.as_array().unwrap()[..], arr[..4]);
    let fancy = env.ok("lxc-ls", &["--fancy"]);
    let rows: Vec<&str> = fancy
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(rows, want);
    assert_eq!(
        env.ok("lxc-ls", &["-1", "-g", "g7"]).lines().count(),
        (4..n).filter(|i| i % 7 == 0).count()
    );
}

#[test]
fn copy_and_snapshot_clone() {
    let env = Env::new();
    env.make_container("c1");
    env.ok("lxc-copy", &["-n", "c1", "-N", "c2"]);
    assert_eq!(env.config_get("c2", "lxc.uts.name").as_deref(), Some("c2"));
    let spec = env.config_get("c2", "lxc.rootfs.path").unwrap();
    assert!(
        spec.ends_with(&format!("{}/c2/rootfs", env.lxcpath.display())),
        "{spec}"
    );
    assert_eq!(read(env.c("c2").join("rootfs/etc/hostname")).trim(), "c2");
    assert_eq!(read(env.c("c2").join("rootfs/root/data")), "original\n");
    // The copy is independent.
    std::fs::write(env.c("c2").join("rootfs/root/data"), "changed\n").unwrap();
    assert_eq!(read(env.c("c1").join("rootfs/root/data")), "original\n");

    // -K keeps the hostname.
    env.ok("lxc-copy", &["-n", "c1", "-N", "c2k", "-K"]);
    assert_eq!(read(env.c("c2k").join("rootfs/etc/hostname")), "base\n");

    // -s: an overlay snapshot clone.
    env.ok("lxc-copy", &["-n", "c1", "-N", "c3", "-s"]);
    let spec = env.config_get("c3", "lxc.rootfs.path").unwrap();
    let want = format!(
        "overlay:{}:{}",
        env.c("c1").join("rootfs").display(),
        env.c("c3").join("overlay/delta").display()
    );
    assert_eq!(spec, want);
    assert!(env.c("c3").join("overlay/delta").is_dir());
    let snaps = read(env.c("c1").join("lxc_snapshots"));
    assert!(snaps.contains("c3"), "{snaps}");
    let rdeps = read(env.c("c3").join("lxc_rdepends"));
    assert!(rdeps.contains("c1"), "{rdeps}");

    // -p: a copy into another lxcpath, same name.
    let other = env.area.join("other");
    std::fs::create_dir(&other).unwrap();
    env.ok("lxc-copy", &["-n", "c1", "-p", other.to_str().unwrap()]);
    assert!(other.join("c1/config").is_file());
    assert_eq!(read(other.join("c1/rootfs/root/data")), "original\n");

    // -R renames.
    env.ok("lxc-copy", &["-n", "c2k", "-N", "c2r", "-R"]);
    assert!(!env.c("c2k").exists());
    assert_eq!(env.config_get("c2r", "lxc.uts.name").as_deref(), Some("c2r"));

    // The origin of an overlay clone cannot be destroyed; the message names the clone.
    let msg = env.fails("lxc-destroy", &["-n", "c1"]);
    assert!(msg.contains("c3"), "{msg}");
    assert!(env.c("c1/config").is_file());
    env.ok("lxc-destroy", &["-n", "c3"]);
    assert!(!env.c("c3").exists());
    assert!(!env.c("c1").join("lxc_snapshots").exists() || !read(env.c("c1").join("lxc_snapshots")).contains("c3"));
    env.ok("lxc-destroy", &["-n", "c1"]);
    assert!(!env.c("c1").exists());
}

#[test]
fn lxc_clone_old_interface() {
    let env = Env::new();
    env.make_container("o1");
    let out = env.ok("lxc-clone", &["-o", "o1", "-n", "n1"]);
    assert_eq!(out, "Created container n1 as copy of o1\n");
    assert_eq!(env.config_get("n1", "lxc.uts.name").as_deref(), Some("n1"));
    let out = env.ok("lxc-clone", &["-o", "o1", "-n", "n2", "-s"]);
    assert_eq!(out, "Created container n2 as snapshot of o1\n");
    assert!(env.config_get("n2", "lxc.rootfs.path").unwrap().starts_with("overlay:"));
    // Positional ORIG NEW, and -P for the new lxcpath.
    let other = env.area.join("other");
    std::fs::create_dir(&other).unwrap();
    env.ok("lxc-clone", &["-P", other.to_str().unwrap(), "o1", "n3"]);
    assert!(other.join("n3/config").is_file());
}

#[test]
fn destroy_with_and_without_snapshots() {
    let env = Env::new();
    env.make_container("d1");
    env.ok("lxc-snapshot", &["-n", "d1"]);
    let msg = env.fails("lxc-destroy", &["-n", "d1"]);
    assert!(msg.starts_with("lxc-destroy: d1: "), "{msg}");
    assert!(env.c("d1/snaps/snap0").is_dir());
    env.ok("lxc-destroy", &["-n", "d1", "-s"]);
    assert!(!env.c("d1").exists());
    // Nothing else is left in the lxcpath.
    assert_eq!(std::fs::read_dir(&env.lxcpath).unwrap().count(), 0);

    env.make_container("d2");
    env.ok("strata", &["destroy", "-n", "d2"]);
    assert!(!env.c("d2").exists());
}

#[test]
fn strata_info() {
    let env = Env::new();
    env.make_container("i1");
    env.ok("lxc-copy", &["-n", "i1", "-N", "i2", "-s"]);
    env.ok("lxc-snapshot", &["-n", "i1"]);
    let out = env.ok("strata", &["info", "-n", "i1"]);
    assert!(out.contains("Backend:     dir"), "{out}");
    assert!(out.contains("snap0"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("Dependents:") && l.contains("i2")),
        "{out}"
    );
    let j: serde_json::Value = serde_json::from_str(&env.ok("strata", &["info", "-n", "i2", "--json"])).unwrap();
    assert_eq!(j["backend"], "overlay");
    assert_eq!(j["depends_on"][0]["name"], "i1");
}

#[test]
fn ls_shows_running_state() {
    let env = Env::new();
    env.make_container("up");
    env.make_container("down");
    // A run record naming a live process (this test) is what the runtime leaves for a running container.
    let lxcpath = std::fs::canonicalize(&env.lxcpath).unwrap();
    let pid = std::process::id() as i32;
    let rec = serde_json::json!({
        "init_pid": pid,
        "init_start": strata_core::state::proc_start_time(pid).unwrap(),
        "monitor_pid": null,
        "ephemeral": false,
    });
    let dir = env
        .run_dir
        .join("state")
        .join(strata_core::paths::lxcpath_key(&lxcpath));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("up.json"), rec.to_string()).unwrap();

    let out = env.ok("lxc-ls", &["-F", "NAME,STATE,PID"]);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[1], ["down", "STOPPED", "-"]);
    assert_eq!(lines[2], ["up", "RUNNING", pid.to_string().as_str()]);
    assert_eq!(env.ok("lxc-ls", &["-1", "--running"]), "up\n");
    assert_eq!(env.ok("lxc-ls", &["-1", "--stopped"]), "down\n");
}

/// `-B best` takes the first backend of LXC's order that can hold the
/// rootfs here: btrfs where the lxcpath is on btrfs, else (no zfs pool nor
/// VG on the test host) the default, dir.
#[test]
fn create_best_is_btrfs_on_btrfs_else_dir() {
    let plain = Env::new();
    let src = plain.rootfs("base");
    let args = ["-n", "b1", "-B", "best", "--rootfs-from", src.to_str().unwrap()];
    plain.ok("lxc-create", &args);
    let spec = plain.config_get("b1", "lxc.rootfs.path").unwrap();
    assert!(spec.starts_with("dir:"), "{spec}");
    let on_btrfs = Env::new();
    let _fs = strata_testkit::LoopFs::new("btrfs", 256 << 20, Some(&on_btrfs.lxcpath), "");
    on_btrfs.ok("lxc-create", &args);
    let spec = on_btrfs.config_get("b1", "lxc.rootfs.path").unwrap();
    assert!(spec.starts_with("btrfs:"), "{spec}");
    on_btrfs.ok("lxc-destroy", &["-n", "b1"]);
}
