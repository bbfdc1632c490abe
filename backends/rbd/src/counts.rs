//! How many `rbd` processes each lxc-* operation costs, pinned: each one
//! costs seconds on a slow machine (2 to 10 s under emulation), so they
//! are what an operation on rbd costs. A double of a one-pool cluster and
//! of the kernel's mappings records every command; each test calls the
//! backend as the engine does for one operation (core/src/engine:
//! create.rs, clone.rs, restore.rs, destroy.rs; a mount of the rootfs is
//! [`RbdBackend::map`] then the mount, its unmount the unmount then
//! [`RbdBackend::detach`]) and checks the commands it ran.

use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc as StdArc, Mutex};
use strata_core::{BackendOpts, Target};

#[derive(Clone, Default)]
struct Img {
    size: u64,
    /// (name, protected)
    snaps: Vec<(String, bool)>,
    /// (image, snapshot), in the same pool
    parent: Option<(String, String)>,
    meta: BTreeMap<String, String>,
}

/// Pool `lxc` and the kernel's mappings, as the commands leave them.
#[derive(Default)]
struct Sim {
    images: BTreeMap<String, Img>,
    maps: BTreeMap<u32, String>,
    /// Every command: `rbd ARGS` (without the options every one gets),
    /// `kernel add IMAGE`, `kernel remove ID`, or another tool's argv.
    log: Vec<String>,
}

#[derive(Clone, Default)]
struct Cluster(StdArc<Mutex<Sim>>);

fn out(ok: bool, stdout: &str, stderr: &str) -> Out {
    Out {
        ok,
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

impl Sim {
    fn ls(&self) -> String {
        let mut v = Vec::new();
        for (n, i) in &self.images {
            let mut e = serde_json::json!({"image": n, "size": i.size, "format": 2});
            if let Some((pi, ps)) = &i.parent {
                e["parent"] = serde_json::json!({"pool": "lxc", "image": pi, "snapshot": ps});
            }
            v.push(e);
            for (s, p) in &i.snaps {
                v.push(serde_json::json!({"image": n, "snapshot": s, "protected": p.to_string(), "size": i.size}));
            }
        }
        serde_json::to_string(&v).unwrap()
    }

    fn children(&self, image: &str, snap: &str) -> usize {
        let want = Some((image.to_string(), snap.to_string()));
        self.images.values().filter(|i| i.parent == want).count()
    }

    fn rbd(&mut self, a: &[&str]) -> Out {
        let name = |full: &str| full.strip_prefix("lxc/").unwrap_or(full).to_string();
        let at = |full: &str| {
            let (i, s) = name(full)
                .split_once('@')
                .map(|(i, s)| (i.to_string(), s.to_string()))
                .unwrap();
            (i, s)
        };
        let enoent = out(false, "", "rbd: error opening image: (2) No such file or directory\n");
        match a {
            ["ls", "-l", "--format", "json", "--pool", "lxc"] => out(true, &self.ls(), ""),
            ["create", "--pool", "lxc", n, "--size", mb] => {
                if self.images.contains_key(*n) {
                    return out(false, "", "rbd: create error: (17) File exists\n");
                }
                let size = mb.parse::<u64>().unwrap() << 20;
                self.images.insert(n.to_string(), Img { size, ..Img::default() });
                out(true, "", "")
            }
            ["image-meta", "set", full, k, v] => match self.images.get_mut(&name(full)) {
                Some(i) => {
                    i.meta.insert(k.to_string(), v.to_string());
                    out(true, "", "")
                }
                None => enoent,
            },
            ["image-meta", "get", full, k] => match self.images.get(&name(full)).and_then(|i| i.meta.get(*k)) {
                Some(v) => out(true, &format!("{v}\n"), ""),
                None => enoent,
            },
            ["info", "--format", "json", full] => out(self.images.contains_key(&name(full)), "{}", ""),
            ["rename", from, to] => {
                let (from, to) = (name(from), name(to));
                if self.images.contains_key(&to) {
                    return out(false, "", "rbd: rename error: (17) File exists\n");
                }
                let Some(i) = self.images.remove(&from) else {
                    return enoent;
                };
                self.images.insert(to.clone(), i);
                for i in self.images.values_mut() {
                    if let Some((pi, _)) = &mut i.parent {
                        if *pi == from {
                            *pi = to.clone();
                        }
                    }
                }
                out(true, "", "")
            }
            ["snap", "create", "--no-progress", full] => {
                let (i, s) = at(full);
                self.images.get_mut(&i).unwrap().snaps.push((s, false));
                out(true, "", "")
            }
            ["snap", verb @ ("protect" | "unprotect"), full] => {
                let (i, s) = at(full);
                if *verb == "unprotect" && self.children(&i, &s) > 0 {
                    return out(
                        false,
                        "",
                        "rbd: unprotecting snap failed: (16) Device or resource busy\n",
                    );
                }
                let sn = self
                    .images
                    .get_mut(&i)
                    .unwrap()
                    .snaps
                    .iter_mut()
                    .find(|x| x.0 == s)
                    .unwrap();
                sn.1 = *verb == "protect";
                out(true, "", "")
            }
            ["snap", "rm", full] => {
                let (i, s) = at(full);
                let img = self.images.get_mut(&i).unwrap();
                assert!(
                    img.snaps.iter().any(|x| x.0 == s && !x.1),
                    "snap rm of a protected or missing {full}"
                );
                img.snaps.retain(|x| x.0 != s);
                out(true, "", "")
            }
            ["snap", "purge", "--no-progress", full] => {
                let img = self.images.get_mut(&name(full)).unwrap();
                assert!(img.snaps.iter().all(|x| !x.1), "purge of protected snapshots of {full}");
                img.snaps.clear();
                out(true, "", "")
            }
            ["clone", from, to] => {
                let (i, s) = at(from);
                let src = &self.images[&i];
                assert!(
                    src.snaps.iter().any(|x| x.0 == s && x.1),
                    "clone of an unprotected {from}"
                );
                let c = Img {
                    size: src.size,
                    parent: Some((i, s)),
                    ..Img::default()
                };
                self.images.insert(name(to), c);
                out(true, "", "")
            }
            ["flatten", "--no-progress", full] => {
                self.images.get_mut(&name(full)).unwrap().parent = None;
                out(true, "", "")
            }
            ["rm", "--no-progress", full] => {
                let n = name(full);
                let img = &self.images[&n];
                assert!(img.snaps.is_empty(), "rm of {full} with snapshots");
                assert!(!self.maps.values().any(|m| *m == n), "rm of mapped {full}");
                self.images.remove(&n);
                out(true, "", "")
            }
            ["map", "--options", "noudev,mount_timeout=30,osd_request_timeout=60", "--pool", "lxc", n] => {
                if !self.images.contains_key(*n) {
                    return enoent;
                }
                let id = (0..).find(|i| !self.maps.contains_key(i)).unwrap();
                self.maps.insert(id, n.to_string());
                out(true, &format!("/dev/rbd{id}\n"), "")
            }
            other => panic!("rbd command the double does not know: {other:?}"),
        }
    }
}

impl Runner for Cluster {
    fn run(&self, argv: &[String]) -> Result<Out> {
        let mut sim = self.0.lock().unwrap();
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        if a[0] != "rbd" {
            sim.log.push(a.join(" "));
            return Ok(out(true, if a[0] == "blkid" { "ext4\n" } else { "" }, ""));
        }
        // Past the options every command gets.
        let i = a.iter().position(|x| *x == "--rados_osd_op_timeout").unwrap() + 2;
        sim.log.push(format!("rbd {}", a[i..].join(" ")));
        Ok(sim.rbd(&a[i..]))
    }

    fn pipe(&self, _: &[String], _: &[String]) -> Result<Out> {
        unreachable!()
    }
}

impl Kernel for Cluster {
    fn mappings(&self) -> Result<Vec<Mapping>> {
        let sim = self.0.lock().unwrap();
        Ok(sim
            .maps
            .iter()
            .map(|(id, image)| Mapping {
                pool: "lxc".into(),
                image: image.clone(),
                snap: "-".into(),
                device: format!("/dev/rbd{id}"),
            })
            .collect())
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        let mut sim = self.0.lock().unwrap();
        sim.log.push(format!("kernel remove {id}"));
        match sim.maps.remove(&id.parse().unwrap()) {
            Some(_) => Ok(()),
            None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn add_options(&self, user: Option<&str>, _: &Timeouts) -> Option<String> {
        Some(format!(
            "127.0.0.1:6789 name={},secret=QUFBQQ==",
            user.unwrap_or("admin")
        ))
    }

    fn add(&self, _: &str, pool: &str, image: &str) -> std::io::Result<()> {
        let mut sim = self.0.lock().unwrap();
        sim.log.push(format!("kernel add {image}"));
        if pool != "lxc" || !sim.images.contains_key(image) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        let id = (0..).find(|i| !sim.maps.contains_key(i)).unwrap();
        sim.maps.insert(id, image.to_string());
        Ok(())
    }

    fn locked(&self, _: &str) -> bool {
        false
    }
}

struct World {
    c: Cluster,
    lp: PathBuf,
    opts: BackendOpts,
}

impl World {
    fn new() -> World {
        World {
            c: Cluster::default(),
            lp: PathBuf::from("/l"),
            opts: BackendOpts {
                fssize: Some(64 << 20),
                ..BackendOpts::default()
            },
        }
    }

    /// A backend as one strata command has it: a process of its own.
    fn backend(&self) -> RbdBackend {
        RbdBackend::with_kernel(Box::new(self.c.clone()), Box::new(self.c.clone()))
            .with_user(None)
            .with_timeouts(crate::Timeouts::default())
    }

    /// What `f` ran, as one command: its rbd commands and its kernel writes.
    fn op(&self, f: impl FnOnce(&RbdBackend)) -> (Vec<String>, Vec<String>) {
        self.c.0.lock().unwrap().log.clear();
        f(&self.backend());
        let log = std::mem::take(&mut self.c.0.lock().unwrap().log);
        let rbd = log.iter().filter(|l| l.starts_with("rbd ")).cloned().collect();
        let kernel = log.iter().filter(|l| l.starts_with("kernel ")).cloned().collect();
        (rbd, kernel)
    }

    fn target<'a>(&'a self, name: &'a str, lxcpath: &'a Path, dir: &'a Path) -> Target<'a> {
        Target {
            name,
            lxcpath,
            dir,
            build_dir: dir,
            opts: &self.opts,
        }
    }

    /// The engine's mount and unmount of a rootfs (Opened::open, close).
    fn mount_cycle(b: &RbdBackend, spec: &RootfsSpec) {
        let (pool, image) = parse_spec(spec).unwrap();
        b.map(&pool, &image).unwrap();
        b.detach(spec).unwrap();
    }

    /// `lxc-create -n NAME -B rbd` (create.rs): plan, create, mount to fill it.
    fn create(&self, name: &str) -> (Vec<String>, Vec<String>) {
        self.op(|b| {
            let staging = self.lp.join(format!(".strata-tmp.{name}.x"));
            let t = self.target(name, &self.lp, &staging);
            let spec = b.plan(&t, None).unwrap();
            b.create(&spec, &t).unwrap();
            Self::mount_cycle(b, &spec);
        })
    }

    /// A clone by snapshot (clone.rs) of `src` as `name` in `lxcpath`:
    /// plan, snapshot, and for a new name (not a `lxc-snapshot` or a
    /// restore, which keep theirs) a mount to write its hostname.
    fn snap_clone(&self, src: &str, name: &str, lxcpath: &Path, mount: bool) -> (Vec<String>, Vec<String>) {
        self.op(|b| {
            let staging = lxcpath.join(format!(".strata-tmp.{name}.x"));
            let t = self.target(name, lxcpath, &staging);
            let src = spec_for("lxc", src);
            let spec = b.plan(&t, Some(&src)).unwrap();
            b.snapshot(&src, &spec, &t, false).unwrap();
            if mount {
                Self::mount_cycle(b, &spec);
            }
        })
    }

    fn images(&self) -> Vec<String> {
        self.c.0.lock().unwrap().images.keys().cloned().collect()
    }
}

fn rbd_verbs(rbd: &[String]) -> Vec<String> {
    rbd.iter()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').skip(1).collect();
            match w[0] {
                "snap" | "image-meta" => format!("{} {}", w[0], w[1]),
                v => v.to_string(),
            }
        })
        .collect()
}

/// Every operation of the conformance flows, one after the other on one
/// pool, with the rbd commands each runs (LXC's own: a create is `rbd
/// create` and `rbd map`, a destroy `rbd unmap` and `rbd rm`).
#[test]
fn rbd_processes_per_operation() {
    let w = World::new();

    // lxc-create: three (LXC's two, and the build's mark and rename that
    // make it safe from kill -9 and from a same-name build elsewhere); the
    // map and the unmap are the kernel's.
    let (rbd, k) = w.create("c1");
    assert_eq!(rbd_verbs(&rbd), ["create", "image-meta set", "rename"], "{rbd:?}");
    assert_eq!(k, ["kernel add c1", "kernel remove 0"]);

    // lxc-copy -s: the plan's listing (taken again by the clone), snap
    // create, protect, clone, mark, rename; the clone mapped for its new
    // filesystem UUID, then for the engine's mount that writes its hostname.
    let (rbd, k) = w.snap_clone("c1", "c2", &w.lp, true);
    assert_eq!(
        rbd_verbs(&rbd),
        ["ls", "snap create", "snap protect", "clone", "image-meta set", "rename"],
        "{rbd:?}"
    );
    assert_eq!(k.len(), 4, "{k:?}");

    // lxc-snapshot: the same without the mount (a snapshot keeps its name).
    let snaps = w.lp.join("c1/snaps");
    let (rbd, k) = w.snap_clone("c1", "snap0", &snaps, false);
    assert_eq!(rbd.len(), 6, "{rbd:?}");
    assert_eq!(k.len(), 2, "{k:?}");
    assert!(w.images().contains(&"c1_snap0".to_string()), "{:?}", w.images());

    // lxc-snapshot -r snap0 (in place, restore.rs): the new rootfs cloned
    // from the snapshot's image under a name of its own, then the old one
    // destroyed: its snapshot's clone (snap0's image) flattened first so
    // that it loses nothing, its origin snapshots unprotected and purged,
    // rm. One listing for all of it: each change made is taken into it.
    let (rbd, _) = w.op(|b| {
        let staging = w.lp.join(".strata-tmp.c1.x");
        let t = w.target("c1", &w.lp, &staging);
        let src = spec_for("lxc", "c1_snap0");
        let spec = b.plan(&t, Some(&src)).unwrap();
        assert_eq!(spec, spec_for("lxc", "c1_1"));
        b.snapshot(&src, &spec, &t, false).unwrap();
        b.destroy(&spec_for("lxc", "c1")).unwrap();
    });
    assert_eq!(
        rbd_verbs(&rbd),
        [
            "ls",
            "snap create",
            "snap protect",
            "clone",
            "image-meta set",
            "rename",
            "flatten",
            "flatten",
            "snap unprotect",
            "snap unprotect",
            "snap purge",
            "rm",
        ],
        "{rbd:?}"
    );
    assert!(!w.images().contains(&"c1".to_string()));

    // lxc-destroy of a clone with no dependents (destroy.rs): the check of
    // dependents lists, the destroy takes that listing; rm, and the origin
    // snapshot made for it goes with it.
    let (rbd, k) = w.op(|b| {
        let spec = spec_for("lxc", "c1_1");
        assert!(b.dependents(&spec).unwrap().is_empty());
        b.destroy(&spec).unwrap();
    });
    assert_eq!(rbd_verbs(&rbd), ["ls", "rm", "snap unprotect", "snap rm"], "{rbd:?}");
    assert!(k.is_empty(), "{k:?}");

    // lxc-destroy of a plain container: LXC's rm, and one listing.
    let (rbd, _) = w.op(|b| {
        let spec = spec_for("lxc", "c2");
        assert!(b.dependents(&spec).unwrap().is_empty());
        b.destroy(&spec).unwrap();
    });
    assert_eq!(rbd_verbs(&rbd), ["ls", "rm"], "{rbd:?}");
    assert_eq!(w.images(), ["c1_snap0"]);
    assert!(w.c.0.lock().unwrap().maps.is_empty(), "left mapped");
}

/// A kernel that refuses the map (an unusual config, a feature it lacks):
/// `rbd map` does it (and, failing, says why in its own words).
#[test]
fn a_map_the_kernel_refuses_is_rbd_maps() {
    struct NoAdd(Cluster);
    impl Kernel for NoAdd {
        fn mappings(&self) -> Result<Vec<Mapping>> {
            self.0.mappings()
        }
        fn remove(&self, id: &str) -> std::io::Result<()> {
            self.0.remove(id)
        }
        fn add_options(&self, u: Option<&str>, t: &Timeouts) -> Option<String> {
            self.0.add_options(u, t)
        }
        fn add(&self, _: &str, _: &str, _: &str) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::ENXIO))
        }
        fn locked(&self, d: &str) -> bool {
            self.0.locked(d)
        }
    }
    let c = Cluster::default();
    c.0.lock().unwrap().images.insert("c1".into(), Img::default());
    let b = RbdBackend::with_kernel(Box::new(c.clone()), Box::new(NoAdd(c.clone())))
        .with_user(None)
        .with_timeouts(crate::Timeouts::default());
    assert_eq!(b.map("lxc", "c1").unwrap(), "/dev/rbd0");
    assert!(c.0.lock().unwrap().log.iter().any(|l| l.starts_with("rbd map ")));
}

/// A map the kernel gave up on (its mount_timeout or osd_request_timeout,
/// passed in its options): the cluster did not answer, and `rbd map` would
/// wait as long again. One error naming the image; no `rbd` after it.
#[test]
fn a_map_the_kernel_timed_out_is_no_answer() {
    struct Silent(Cluster);
    impl Kernel for Silent {
        fn mappings(&self) -> Result<Vec<Mapping>> {
            self.0.mappings()
        }
        fn remove(&self, id: &str) -> std::io::Result<()> {
            self.0.remove(id)
        }
        fn add_options(&self, u: Option<&str>, t: &Timeouts) -> Option<String> {
            self.0.add_options(u, t)
        }
        fn add(&self, _: &str, _: &str, _: &str) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT))
        }
        fn locked(&self, d: &str) -> bool {
            self.0.locked(d)
        }
    }
    let c = Cluster::default();
    c.0.lock().unwrap().images.insert("c1".into(), Img::default());
    let b = RbdBackend::with_kernel(Box::new(c.clone()), Box::new(Silent(c.clone())))
        .with_user(None)
        .with_timeouts(crate::Timeouts::default());
    let e = b.map("lxc", "c1").unwrap_err();
    assert_eq!(e.kind(), strata_core::ErrorKind::Unavailable);
    assert!(
        e.to_string()
            .contains("rbd map lxc/c1: got no answer from the ceph cluster"),
        "{e}"
    );
    let e = b.pool_state("list", "lxc").unwrap_err();
    assert!(e.to_string().contains("not asked"), "{e}");
    assert!(!c.0.lock().unwrap().log.iter().any(|l| l.starts_with("rbd ")));
}

/// A running container's rootfs is mapped without the kernel's
/// `osd_request_timeout` (its I/O waits out an outage, as LXC's does),
/// the map itself bounded instead; a command's own map keeps the kernel's
/// bound on every request.
#[test]
fn a_running_containers_map_leaves_its_io_to_wait() {
    type Seen = StdArc<Mutex<Vec<(String, Option<std::time::Duration>)>>>;
    struct Rec(Cluster, Seen);
    impl Kernel for Rec {
        fn mappings(&self) -> Result<Vec<Mapping>> {
            self.0.mappings()
        }
        fn remove(&self, id: &str) -> std::io::Result<()> {
            self.0.remove(id)
        }
        fn add_options(&self, u: Option<&str>, t: &Timeouts) -> Option<String> {
            Some(format!("{},{}", self.0.add_options(u, t)?, t.kernel()))
        }
        fn add(&self, o: &str, p: &str, i: &str) -> std::io::Result<()> {
            self.1.lock().unwrap().push((o.to_string(), None));
            self.0.add(o, p, i)
        }
        fn add_within(&self, o: &str, p: &str, i: &str, w: std::time::Duration) -> std::io::Result<()> {
            self.1.lock().unwrap().push((o.to_string(), Some(w)));
            self.0.add(o, p, i)
        }
        fn locked(&self, d: &str) -> bool {
            self.0.locked(d)
        }
    }
    let c = Cluster::default();
    for i in ["c1", "c2"] {
        c.0.lock().unwrap().images.insert(i.into(), Img::default());
    }
    let seen = Seen::default();
    let b = RbdBackend::with_kernel(Box::new(c.clone()), Box::new(Rec(c.clone(), seen.clone())))
        .with_user(None)
        .with_timeouts(crate::Timeouts::default());
    b.map("lxc", "c1").unwrap();
    b.map_for("lxc", "c2", true).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].0.ends_with(",mount_timeout=30,osd_request_timeout=60"),
        "{seen:?}"
    );
    assert_eq!(seen[0].1, None);
    assert!(seen[1].0.ends_with(",mount_timeout=30"), "{seen:?}");
    assert!(!seen[1].0.contains("osd_request_timeout"), "{seen:?}");
    assert_eq!(seen[1].1, Some(std::time::Duration::from_secs(90)));
}

/// The bound on a map through sysfs is kept though the kernel's write
/// never returns (here the add file is a fifo nobody reads: the open
/// blocks as a write to a silent cluster does).
#[test]
fn a_map_that_never_returns_is_given_up_on() {
    let d = tempfile::tempdir().unwrap();
    let devices = d.path().join("devices");
    std::fs::create_dir(&devices).unwrap();
    let fifo = std::ffi::CString::new(d.path().join("add_single_major").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let t0 = std::time::Instant::now();
    let e = crate::Sysfs(devices)
        .add_within("opts", "lxc", "c1", std::time::Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}
