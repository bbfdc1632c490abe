//! `strata import` of other tools' archives: an Incus instance export (real
//! archives made by Incus 6.0.4, see scripts/make-incus-fixtures) and a
//! Proxmox vzdump of a container (built here as vzdump builds it: GNU tar
//! with vzdump's flags over etc/vzdump/pct.conf and the rootfs, gzip and
//! zstd). The imported containers start; owners, xattrs, capabilities,
//! hardlinks and config keys are as a user would check them; bad archives
//! fail in one line and leave nothing; a killed import leaves nothing after
//! reconcile. Root only.

mod common;

use common::special::{diff, special_tree, view, View};
use common::Env;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use strata_testkit::sh;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/incus")
        .join(name)
}

fn strata(env: &Env, args: &[&str]) -> std::process::Output {
    env.run("strata", args)
}

/// Succeeds; returns stderr (the settings not carried).
fn import_ok(env: &Env, args: &[&str]) -> String {
    let o = strata(env, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "strata {args:?}: {err}");
    err
}

/// Nothing but `names` in the lxcpath, no mount or loop device left.
fn clean(env: &Env, names: &[&str]) {
    let mut left: Vec<String> = std::fs::read_dir(&env.lxcpath)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(left, want, "entries of the lxcpath");
    strata_testkit::no_leak(&env.lxcpath);
}

fn rootfs(env: &Env, name: &str) -> PathBuf {
    env.c(name).join("rootfs")
}

fn getfattr(p: &Path, name: &str) -> String {
    sh(&["getfattr", "--only-values", "-n", name, p.to_str().unwrap()])
}

/// busybox as /bin/busybox of an imported rootfs (the Incus fixtures carry
/// only the /bin/sh link to it), owned by the container's root.
fn add_busybox(root: &Path, uid: u32) {
    let b = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &b).unwrap();
    std::os::unix::fs::chown(&b, Some(uid), Some(uid)).unwrap();
}

/// A cgroup limit under this host's key for it: cgroup2's, or v1's on a hybrid host.
fn cgroup_limit(env: &Env, name: &str, v2: &str, v1: &str) -> Option<String> {
    env.config_get(name, &format!("lxc.cgroup2.{v2}"))
        .or_else(|| env.config_get(name, &format!("lxc.cgroup.{v1}")))
}

fn config_all(env: &Env, name: &str, key: &str) -> Vec<String> {
    env.config(name)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn incus_exports_import_with_their_settings_and_start() {
    let env = Env::new();
    // Unprivileged, zstd, with a snapshot.
    let notes = import_ok(
        &env,
        &["import", fixture("c1.tar.zst").to_str().unwrap(), "-n", "inc-c1"],
    );
    for k in ["volatile.*", "image.*", "user.*", "profiles"] {
        assert!(notes.contains(&format!("not carried: {k}")), "{k} not named:\n{notes}");
    }
    let get = |k: &str| env.config_get("inc-c1", k);
    let cg = |v2: &str, v1: &str| cgroup_limit(&env, "inc-c1", v2, v1);
    assert_eq!(cg("memory.max", "memory.limit_in_bytes").as_deref(), Some("268435456"));
    assert_eq!(cg("cpuset.cpus", "cpuset.cpus").as_deref(), Some("0-1"));
    assert_eq!(cg("pids.max", "pids.max").as_deref(), Some("500"));
    assert_eq!(get("lxc.apparmor.allow_nesting").as_deref(), Some("1"));
    assert_eq!(get("lxc.start.auto").as_deref(), Some("1"));
    assert_eq!(get("lxc.cap.drop").as_deref(), Some("sys_time"));
    assert_eq!(get("lxc.environment").as_deref(), Some("FROM_RAW=1"));
    assert_eq!(get("lxc.net.0.type").as_deref(), Some("veth"));
    assert_eq!(get("lxc.net.0.link").as_deref(), Some("lxcbr0"));
    assert_eq!(get("lxc.net.0.hwaddr").as_deref(), Some("00:16:3e:aa:bb:cc"));
    assert_eq!(get("lxc.net.0.mtu").as_deref(), Some("1400"));
    assert_eq!(get("lxc.net.0.name").as_deref(), Some("eth0"));
    assert_eq!(get("lxc.uts.name").as_deref(), Some("inc-c1"));
    assert_eq!(
        get("lxc.mount.auto").as_deref(),
        Some("proc:mixed sys:mixed cgroup:mixed")
    );
    assert_eq!(
        config_all(&env, "inc-c1", "lxc.idmap"),
        ["u 0 100000 65536", "g 0 100000 65536"],
        "the map Incus chose (volatile.idmap.next)"
    );
    // Owners shifted into that map; xattrs, capabilities and hardlinks kept.
    let r = rootfs(&env, "inc-c1");
    let x = std::fs::metadata(r.join("home/user/x")).unwrap();
    assert_eq!((x.uid(), x.gid()), (101000, 100100));
    assert_eq!(std::fs::metadata(r.join("etc/passwd")).unwrap().uid(), 100000);
    assert_eq!(std::fs::metadata(r.join("home/user/x-link")).unwrap().ino(), x.ino());
    assert_eq!(getfattr(&r.join("home/user/x"), "user.note"), "hello");
    let caps = sh(&["getcap", r.join("bin/capped").to_str().unwrap()]);
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    assert_eq!(std::fs::read_to_string(r.join("etc/hostname")).unwrap(), "changed\n");
    // The snapshot, with Incus's creation time, and its own tree.
    let snaps = env.ok("lxc-snapshot", &["-n", "inc-c1", "-L"]);
    assert!(snaps.starts_with("snap0 "), "{snaps}");
    let (created, want_ts) = snapshot_created(&incus_index());
    assert_eq!(
        std::fs::read_to_string(env.c("inc-c1").join("snaps/snap0/ts"))
            .unwrap()
            .trim_end(),
        want_ts.trim_end(),
        "Incus's creation time {created}"
    );
    assert_eq!(
        std::fs::read_to_string(env.c("inc-c1").join("snaps/snap0/rootfs/etc/hostname")).unwrap(),
        "incus-c1\n"
    );
    // It runs as the unprivileged container it was.
    if Path::new("/bin/busybox").is_file() {
        add_busybox(&r, 100000);
        let out = env.ok(
            "strata",
            &[
                "execute",
                "-n",
                "inc-c1",
                "--",
                "/bin/sh",
                "-c",
                "stat -c %u:%g /home/user/x; cat /etc/hostname; cat /proc/self/uid_map; cat /sys/class/net/eth0/mtu",
            ],
        );
        let l: Vec<&str> = out.lines().collect();
        assert_eq!(l[0], "1000:100", "{out}");
        assert_eq!(l[1], "changed", "{out}");
        assert_eq!(
            l[2].split_whitespace().collect::<Vec<_>>(),
            ["0", "100000", "65536"],
            "{out}"
        );
        assert_eq!(l[3], "1400", "{out}");
    }
    // Privileged, gzip, instance only: owners as they were; a host path disk
    // becomes a bind mount; what LXC has no key for is named.
    let notes = import_ok(&env, &["import", fixture("p1.tar.gz").to_str().unwrap()]);
    for k in [
        "raw.idmap = both 1000 1000",
        "security.syscalls.intercept.mknod = true",
        "devices.eth1",
    ] {
        assert!(
            !notes.contains(k) || notes.contains(&format!("not carried: {k}")),
            "{notes}"
        );
    }
    assert!(notes.contains("not carried: raw.idmap"), "{notes}");
    assert!(
        notes.contains("not carried: security.syscalls.intercept.mknod"),
        "{notes}"
    );
    assert!(config_all(&env, "p1", "lxc.idmap").is_empty());
    assert_eq!(
        cgroup_limit(&env, "p1", "memory.max", "memory.limit_in_bytes").as_deref(),
        Some("134217728")
    );
    assert_eq!(env.config_get("p1", "lxc.start.order").as_deref(), Some("3"));
    assert_eq!(
        env.config_get("p1", "lxc.mount.entry").as_deref(),
        Some("/srv mnt/srv none bind,create=dir 0 0")
    );
    assert_eq!(env.config_get("p1", "lxc.net.0.type").as_deref(), Some("macvlan"));
    assert_eq!(
        env.config_get("p1", "lxc.net.0.macvlan.mode").as_deref(),
        Some("bridge")
    );
    // The notes are in the config too, as comments.
    assert!(
        env.config("p1").contains("# not carried: raw.idmap"),
        "{}",
        env.config("p1")
    );
    let x = std::fs::metadata(rootfs(&env, "p1").join("home/user/x")).unwrap();
    assert_eq!((x.uid(), x.gid()), (1000, 100));
    // -B and --map: another backend, another map.
    import_ok(
        &env,
        &[
            "import",
            fixture("c1.tar.zst").to_str().unwrap(),
            "-n",
            "inc-c2",
            "-B",
            "overlay",
            "--map",
            "b 0 300000 65536",
        ],
    );
    assert_eq!(
        config_all(&env, "inc-c2", "lxc.idmap"),
        ["u 0 300000 65536", "g 0 300000 65536"]
    );
    let spec = strata_core::Store::new(&env.lxcpath).load("inc-c2").unwrap().rootfs;
    assert_eq!(spec.kind(), "overlay");
    env.ok("lxc-destroy", &["-n", "inc-c2", "-s"]);
    env.ok("lxc-destroy", &["-n", "inc-c1", "-s"]);
    env.ok("lxc-destroy", &["-n", "p1"]);
    clean(&env, &[]);
}

/// An export whose index.yaml has no `config:` (as LXD and early Incus
/// wrote them): the settings are read from backup/container/backup.yaml,
/// which comes after the snapshots' trees.
#[test]
fn incus_export_with_a_bare_index_reads_backup_yaml() {
    let env = Env::new();
    let x = env.src.join("x");
    std::fs::create_dir(&x).unwrap();
    let tar = |args: &[&str]| {
        let mut a = vec!["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner"];
        a.extend(args);
        sh(&a);
    };
    tar(&[
        "--zstd",
        "-xpf",
        fixture("c1.tar.zst").to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
    ]);
    let index = std::fs::read_to_string(x.join("backup/index.yaml")).unwrap();
    let bare = &index[..index.find("\nconfig:").unwrap() + 1];
    std::fs::write(x.join("backup/index.yaml"), bare).unwrap();
    let file = env.src.join("bare.tar.gz");
    tar(&[
        "-czf",
        file.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
        "backup/index.yaml",
        "backup/snapshots",
        "backup/container",
    ]);
    import_ok(&env, &["import", file.to_str().unwrap()]);
    assert_eq!(
        cgroup_limit(&env, "c1", "memory.max", "memory.limit_in_bytes").as_deref(),
        Some("268435456")
    );
    assert_eq!(
        config_all(&env, "c1", "lxc.idmap"),
        ["u 0 100000 65536", "g 0 100000 65536"]
    );
    let x = std::fs::metadata(rootfs(&env, "c1").join("home/user/x")).unwrap();
    assert_eq!((x.uid(), x.gid()), (101000, 100100));
    assert_eq!(
        std::fs::read_to_string(env.c("c1").join("snaps/snap0/rootfs/etc/hostname")).unwrap(),
        "incus-c1\n"
    );
    env.ok("lxc-destroy", &["-n", "c1", "-s"]);
    clean(&env, &[]);
}

/// A vzdump archive as Proxmox writes it: GNU tar with vzdump's flags,
/// pct.conf and pct.fw from a scratch dir first, then `.` of the rootfs.
fn vzdump(env: &Env, root: &Path, conf: &str, compress: &str) -> PathBuf {
    let meta = env.src.join(format!("vzmeta-{compress}"));
    std::fs::create_dir_all(meta.join("etc/vzdump")).unwrap();
    std::fs::write(meta.join("etc/vzdump/pct.conf"), conf).unwrap();
    std::fs::write(meta.join("etc/vzdump/pct.fw"), "").unwrap();
    let tar = env
        .src
        .join(format!("vzdump-lxc-100-2026_01_01-00_00_00.tar.{compress}"));
    let prog = if compress == "zst" { "zstd" } else { "gzip" };
    sh(&[
        "sh",
        "-c",
        &format!(
            "tar cpf - --totals --sparse --numeric-owner --acls --xattrs --xattrs-include=user.* \
             --xattrs-include=security.capability --warning=no-file-ignored --warning=no-xattr-write \
             --one-file-system --directory={} ./etc/vzdump/pct.conf ./etc/vzdump/pct.fw --directory={} . \
             2>/dev/null | {prog} -q -c > {}",
            meta.display(),
            root.display(),
            tar.display()
        ),
    ]);
    tar
}

/// The rootfs a vzdump carries: every kind of entry (less the xattrs
/// vzdump's filter leaves out), busybox.
fn pve_tree(src: &Path) {
    special_tree(src);
    sh(&[
        "setfattr",
        "-x",
        "trusted.secret",
        src.join("home/user/x").to_str().unwrap(),
    ]);
    if Path::new("/bin/busybox").is_file() {
        std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
    }
}

/// Times to the second (vzdump's GNU format keeps no fractions).
fn seconds(mut v: View) -> View {
    for e in v.entries.values_mut() {
        e.mtime.1 = 0;
    }
    v
}

const PCT: &str = "#web%20server\n#second line\narch: amd64\ncores: 2\ncpulimit: 1.5\nfeatures: nesting=1,keyctl=1\n\
hostname: web1\nmemory: 512\nswap: 256\n\
net0: name=eth0,bridge=lxcbr0,hwaddr=BC:24:11:5E:00:01,ip=dhcp,type=veth,firewall=1\n\
onboot: 1\nostype: debian\nrootfs: local-lvm:vm-100-disk-0,size=8G\n\
mp0: local-lvm:vm-100-disk-1,mp=/data,backup=1\nmp1: /srv,mp=/mnt/srv\nstartup: order=2,up=5,down=30\n\
tags: web;prod\ntty: 2\nunprivileged: 1\nlxc.cap.drop: sys_time\n\n[before-upgrade]\nmemory: 256\n";

#[test]
fn proxmox_vzdumps_import_with_their_settings_and_start() {
    let env = Env::new();
    let src = env.src.join("pve");
    pve_tree(&src);
    let want = seconds(view(&src));
    // Unprivileged, zstd: ids in the archive are the container's, shifted
    // into Proxmox's default map on the way in.
    let zst = vzdump(&env, &src, PCT, "zst");
    let notes = import_ok(&env, &["import", zst.to_str().unwrap()]);
    for k in [
        "net0.ip = dhcp",
        "net0.firewall = 1",
        "rootfs = local-lvm:vm-100-disk-0,size=8G",
        "mp0 = local-lvm:vm-100-disk-1,mp=/data,backup=1",
        "features.keyctl = 1",
        "startup.down = 30",
        "tags = web;prod",
        "tty = 2",
        "ostype = debian",
        "description = web%20server second line",
        "snapshots = before-upgrade",
    ] {
        assert!(
            notes.contains(&format!("strata: web1: not carried: {k}")),
            "{k} not named:\n{notes}"
        );
    }
    assert!(notes.contains("not in the archive"), "{notes}");
    let get = |k: &str| env.config_get("web1", k);
    assert_eq!(get("lxc.uts.name").as_deref(), Some("web1"));
    assert_eq!(get("lxc.arch").as_deref(), Some("x86_64"));
    let cg = |v2: &str, v1: &str| cgroup_limit(&env, "web1", v2, v1);
    let v2 = get("lxc.cgroup2.memory.max").is_some();
    assert_eq!(cg("memory.max", "memory.limit_in_bytes").as_deref(), Some("536870912"));
    // cgroup2 limits swap alone, v1 memory and swap together.
    assert_eq!(
        cg("memory.swap.max", "memory.memsw.limit_in_bytes").as_deref(),
        Some(if v2 { "268435456" } else { "805306368" })
    );
    assert_eq!(cg("cpuset.cpus", "cpuset.cpus").as_deref(), Some("0-1"));
    assert_eq!(
        cg("cpu.max", "cpu.cfs_quota_us").as_deref(),
        Some(if get("lxc.cgroup2.cpu.max").is_some() {
            "150000 100000"
        } else {
            "150000"
        })
    );
    assert_eq!(get("lxc.apparmor.allow_nesting").as_deref(), Some("1"));
    assert_eq!(get("lxc.start.auto").as_deref(), Some("1"));
    assert_eq!(get("lxc.start.order").as_deref(), Some("2"));
    assert_eq!(get("lxc.start.delay").as_deref(), Some("5"));
    assert_eq!(get("lxc.cap.drop").as_deref(), Some("sys_time"));
    assert_eq!(get("lxc.net.0.link").as_deref(), Some("lxcbr0"));
    assert_eq!(get("lxc.net.0.hwaddr").as_deref(), Some("BC:24:11:5E:00:01"));
    assert_eq!(
        get("lxc.mount.entry").as_deref(),
        Some("/srv mnt/srv none bind,create=dir 0 0")
    );
    assert_eq!(
        config_all(&env, "web1", "lxc.idmap"),
        ["u 0 100000 65536", "g 0 100000 65536"]
    );
    // No snapshot: vzdump carries none.
    assert!(!env.c("web1").join("snaps").exists());
    let got = seconds(view(&rootfs(&env, "web1")));
    for (p, e) in &want.entries {
        let g = &got.entries[p];
        assert_eq!((g.uid, g.gid), (e.uid + 100000, e.gid + 100000), "{}", p.display());
        if e.kind != "dir" || p.as_os_str() != "" {
            assert_eq!(
                (g.kind, g.mode, g.size, g.hash),
                (e.kind, e.mode, e.size, e.hash),
                "{}",
                p.display()
            );
        }
    }
    assert_eq!(want.links, got.links);
    assert!(!rootfs(&env, "web1").join("etc/vzdump").exists());
    if Path::new("/bin/busybox").is_file() {
        let out = env.ok(
            "strata",
            &[
                "execute",
                "-n",
                "web1",
                "--",
                "/bin/sh",
                "-c",
                "stat -c %u:%g /home/user/x; hostname",
            ],
        );
        assert_eq!(out, "1000:100\nweb1\n");
    }
    // Privileged, gzip: the tree comes as it was, entry by entry (owners,
    // modes, times, xattrs, ACLs, capabilities, hardlinks, devices, sparse files).
    let conf = "arch: amd64\nhostname: web2\nmemory: 256\nnet0: name=eth0,bridge=lxcbr0,ip=10.0.3.77/24,gw=10.0.3.1\n";
    let gz = vzdump(&env, &src, conf, "gz");
    let notes = import_ok(&env, &["import", gz.to_str().unwrap(), "-n", "pve2"]);
    assert!(notes.is_empty(), "{notes}");
    assert!(config_all(&env, "pve2", "lxc.idmap").is_empty());
    assert_eq!(
        env.config_get("pve2", "lxc.net.0.ipv4.address").as_deref(),
        Some("10.0.3.77/24")
    );
    assert_eq!(
        env.config_get("pve2", "lxc.net.0.ipv4.gateway").as_deref(),
        Some("10.0.3.1")
    );
    diff("vzdump import", &want, &seconds(view(&rootfs(&env, "pve2"))));
    env.ok("lxc-destroy", &["-n", "web1"]);
    env.ok("lxc-destroy", &["-n", "pve2"]);
    clean(&env, &[]);
}

/// A tar.zst of `entries` (name, data) in that order.
fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if n.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_mode(0o644);
            h.set_size(d.len() as u64);
        }
        // Set by hand: the crate's own setter refuses the hostile names tested here.
        let name = &mut h.as_old_mut().name;
        name[..n.len()].copy_from_slice(n.as_bytes());
        h.set_cksum();
        b.append(&h, *d).unwrap();
    }
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

#[test]
fn bad_archives_fail_in_one_line_and_leave_nothing() {
    let env = Env::new();
    let f = |n: &str, d: &[u8]| {
        let p = env.src.join(n);
        std::fs::write(&p, d).unwrap();
        p
    };
    let fails = |p: &Path, args: &[&str]| {
        let mut a = vec!["import", p.to_str().unwrap()];
        a.extend(args);
        let e = env.fails("strata", &a);
        clean(&env, &[]);
        e
    };
    let c1 = std::fs::read(fixture("c1.tar.zst")).unwrap();
    let index = incus_index();

    let e = fails(&f("cut.tar.zst", &c1[..c1.len() / 2]), &["-n", "cut"]);
    assert!(e.contains("ends early") || e.contains("archive"), "{e}");
    let mut flipped = std::fs::read(fixture("p1.tar.gz")).unwrap();
    let n = flipped.len();
    flipped[n - 6] ^= 0xff; // the gzip trailer's CRC
    let e = fails(&f("crc.tar.gz", &flipped), &["-n", "crc"]);
    assert!(e.contains("archive"), "{e}");
    let e = fails(&f("x.tar.xz", b"\xfd7zXZ\x00\x00\x04rest"), &[]);
    assert!(e.contains("compressed with xz"), "{e}");
    let e = fails(&f("junk", b"just some text, not an archive\n"), &[]);
    assert!(e.contains("not a container archive"), "{e}");
    let e = fails(&f("other.tar.zst", &archive(&[("hello.txt", b"hi")])), &[]);
    assert!(e.contains("not a strata, Incus or Proxmox container archive"), "{e}");

    let optimized = index.replace("optimized: false", "optimized: true");
    let e = fails(
        &f(
            "opt.tar.zst",
            &archive(&[
                ("backup/index.yaml", optimized.as_bytes()),
                ("backup/container.bin", b"x"),
            ]),
        ),
        &[],
    );
    assert!(e.contains("--optimized-storage"), "{e}");
    let vm = index.replace("type: container", "type: virtual-machine");
    let e = fails(&f("vm.tar.zst", &archive(&[("backup/index.yaml", vm.as_bytes())])), &[]);
    assert!(e.contains("containers only"), "{e}");
    let raw = index.replace("raw.lxc: |-\n", "raw.lxc: |-\n        lxc.no.such.key = 1\n");
    assert_ne!(raw, index);
    let e = fails(
        &f("raw.tar.zst", &archive(&[("backup/index.yaml", raw.as_bytes())])),
        &[],
    );
    assert!(e.contains("lxc.no.such.key"), "{e}");
    let e = fails(
        &f("yaml.tar.zst", &archive(&[("backup/index.yaml", b"name: [unclosed")])),
        &[],
    );
    assert!(e.contains("backup/index.yaml"), "{e}");
    // Trees that try to leave the rootfs, or entries that belong nowhere.
    let hostile = |extra: (&str, &[u8])| {
        archive(&[
            ("backup/index.yaml", index.as_bytes()),
            ("backup/container/rootfs/", b""),
            ("backup/container/rootfs/etc/", b""),
            extra,
        ])
    };
    let e = fails(
        &f(
            "up.tar.zst",
            &hostile(("backup/container/rootfs/../../../../tmp/evil", b"x")),
        ),
        &["-n", "up"],
    );
    assert!(e.contains(".."), "{e}");
    let e = fails(
        &f("stray.tar.zst", &hostile(("backup/elsewhere/x", b"x"))),
        &["-n", "stray"],
    );
    assert!(e.contains("unexpected archive entry"), "{e}");
    // The snapshot the index lists is missing.
    let e = fails(
        &f("nosnap.tar.zst", &hostile(("backup/container/rootfs/etc/x", b"x"))),
        &["-n", "nosnap"],
    );
    assert!(e.contains("snap0"), "{e}");
    // A vzdump whose tree leaves `.`, and one without its config.
    let pve = |entries: &[(&str, &[u8])]| archive(entries);
    let e = fails(
        &f(
            "pve-up.tar.zst",
            &pve(&[
                ("./etc/vzdump/pct.conf", b"hostname: evil\n"),
                ("./", b""),
                ("../x", b"x"),
            ]),
        ),
        &[],
    );
    assert!(e.contains("unexpected archive entry"), "{e}");
    let e = fails(
        &f(
            "pve-bad.tar.zst",
            &pve(&[("./etc/vzdump/pct.conf", b"this is no config\n"), ("./", b"")]),
        ),
        &[],
    );
    assert!(e.contains("pct.conf"), "{e}");
    let e = fails(
        &f(
            "pve-raw.tar.zst",
            &pve(&[
                ("./etc/vzdump/pct.conf", b"hostname: h\nlxc.bogus.key: 1\n"),
                ("./", b""),
            ]),
        ),
        &[],
    );
    assert!(e.contains("lxc.bogus.key"), "{e}");
    // No name to give it.
    let e = fails(
        &f(
            "pve-noname.tar.zst",
            &pve(&[("./etc/vzdump/pct.conf", b"memory: 64\n"), ("./", b"")]),
        ),
        &[],
    );
    assert!(e.contains("name"), "{e}");
    // Whatever failed, a good import still works afterwards.
    import_ok(&env, &["import", fixture("p1.tar.gz").to_str().unwrap()]);
    env.ok("lxc-destroy", &["-n", "p1"]);
    clean(&env, &[]);
}

/// A file of a container's rootfs, whatever its backend.
fn read_in_rootfs(env: &Env, name: &str, file: &str) -> Vec<u8> {
    let spec = strata_core::Store::new(&env.lxcpath).load(name).unwrap().rootfs;
    let b = match spec.kind() {
        "dir" => strata_dir::backend(),
        "overlay" => strata_overlay::backend(),
        k => panic!("{k}"),
    };
    let o = strata_core::Opened::open(b.as_ref(), &spec, true).unwrap();
    let d = std::fs::read(o.path().join(file)).unwrap();
    o.close().unwrap();
    d
}

/// The first snapshot's `created_at` in an Incus index.yaml, and the same
/// time as strata's `snaps/NAME/ts` holds it (date(1)'s reading of it).
fn snapshot_created(index: &str) -> (String, String) {
    let at = index.find("\n  snapshots:\n").expect("config.snapshots in index.yaml");
    let created = index[at..]
        .split("created_at: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    let ts = sh(&["date", "-d", created, "+%Y:%m:%d %H:%M:%S"]);
    (created.to_string(), ts)
}

/// backup/index.yaml of the Incus fixture.
fn incus_index() -> String {
    let f = fixture("c1.tar.zst");
    String::from_utf8(sh_bytes(&[
        "sh",
        "-c",
        &format!("zstd -dc {} | tar -xO backup/index.yaml", f.display()),
    ]))
    .unwrap()
}

fn sh_bytes(argv: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(o.status.success(), "{argv:?}");
    o.stdout
}

#[test]
fn import_killed_anywhere_leaves_nothing_after_reconcile() {
    let env = Env::new();
    let src = env.src.join("big");
    pve_tree(&src);
    // Enough incompressible data that the import is still writing when killed.
    {
        use std::io::Read;
        let mut buf = vec![0u8; 48 << 20];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        std::fs::write(src.join("random"), &buf).unwrap();
    }
    let file = vzdump(&env, &src, "hostname: big\nunprivileged: 1\n", "zst");
    let mut rnd = std::process::id() as u64;
    let mut whole = 0;
    for (round, b) in ["dir", "overlay", "dir", "overlay", "dir"].iter().enumerate() {
        let mut c = env.cmd("strata");
        c.args(["import", "-P"])
            .arg(&env.lxcpath)
            .arg(&file)
            .args(["-B", b])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut ch = c.spawn().unwrap();
        rnd = rnd.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis((rnd >> 33) % 1500));
        let _ = ch.kill();
        ch.wait().unwrap();
        env.ok("strata", &["reconcile"]);
        if env.c("big").exists() {
            whole += 1;
            assert_eq!(
                read_in_rootfs(&env, "big", "random").len(),
                48 << 20,
                "round {round}: a whole import"
            );
            env.ok("lxc-destroy", &["-n", "big"]);
        }
        clean(&env, &[]);
    }
    eprintln!("{whole} of 5 imports finished before the kill");
    import_ok(&env, &["import", file.to_str().unwrap()]);
    let got = std::fs::read(rootfs(&env, "big").join("random")).unwrap();
    assert_eq!(got, std::fs::read(src.join("random")).unwrap());
    env.ok("lxc-destroy", &["-n", "big"]);
    clean(&env, &[]);
}

/// `strata import --json` of another tool's archive: JSON progress lines
/// as for strata's own, the ETA going by the archive file read so far
/// (its `archive_bytes` of `archive_size`), a last line with `"done": true`.
#[test]
fn foreign_imports_show_progress_as_json_lines() {
    let env = Env::new();
    let src = env.src.join("big");
    pve_tree(&src);
    {
        use std::io::Read;
        let mut buf = vec![0u8; 16 << 20];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        std::fs::write(src.join("random"), &buf).unwrap();
    }
    let pve = vzdump(&env, &src, "hostname: big\n", "gz");
    let incus = fixture("c1.tar.zst");
    for (file, name) in [(&pve, "pve"), (&incus, "inc")] {
        let err = import_ok(&env, &["import", file.to_str().unwrap(), "-n", name, "--json"]);
        let size = std::fs::metadata(file).unwrap().len();
        let lines: Vec<serde_json::Value> = err
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("{name}: no progress line in {err}"));
        assert_eq!(last["op"], "import", "{last}");
        assert_eq!(last["done"], true, "{last}");
        assert_eq!(last["archive_size"], size, "{last}");
        assert_eq!(last["archive_bytes"], size, "{last}");
        assert!(last["entries"].as_u64().unwrap() > 10, "{last}");
        let mut prev = 0;
        for l in &lines {
            let (read, bytes) = (l["archive_bytes"].as_u64().unwrap(), l["bytes"].as_u64().unwrap());
            assert!(read >= prev && read <= size, "{name}: {l}");
            prev = read;
            assert!(bytes > 0 || l["entries"].as_u64().unwrap() > 0, "{name}: {l}");
        }
        if name == "pve" {
            assert!(last["bytes"].as_u64().unwrap() >= 16 << 20, "{last}");
            // The first line comes with the first entries, long before the end: an ETA.
            let first = &lines[0];
            assert!(first["archive_bytes"].as_u64().unwrap() < size, "{first}");
            assert!(first["eta"].as_f64().is_some(), "{first}");
        }
        // The settings not carried are still named, beside the progress lines.
        if name == "inc" {
            assert!(err.contains("not carried: volatile.*"), "{err}");
        }
        env.ok("lxc-destroy", &["-n", name, "-s"]);
    }
    clean(&env, &[]);
}

/// An Incus `--optimized-storage` export of a btrfs container, built here
/// as Incus lays one out: `backup/index.yaml`, `backup/optimized_header.yaml`,
/// then each snapshot's volume as a btrfs send stream
/// (`backup/snapshots/NAME.bin`, the first whole, each next one from the
/// one before) and the container's (`backup/container.bin`, from the last
/// snapshot). A volume holds `rootfs/` beside `backup.yaml` and
/// `metadata.yaml`, with owners as they lie on Incus's disk. Made from the
/// trees of the c1 fixture (unprivileged, one snapshot, never started:
/// `volatile.last_state.idmap` is empty, its owners unshifted).
fn optimized_btrfs_export(work: &Path) -> PathBuf {
    let x = work.join("x");
    std::fs::create_dir_all(&x).unwrap();
    let f = fixture("c1.tar.zst");
    sh(&[
        "sh",
        "-c",
        &format!(
            "zstd -dc {} | tar -C {} --numeric-owner --xattrs --xattrs-include='*' -xpf -",
            f.display(),
            x.display()
        ),
    ]);
    let vol = work.join("vol");
    sh(&["btrfs", "subvolume", "create", vol.to_str().unwrap()]);
    let fill = |from: &Path| {
        sh(&[
            "sh",
            "-c",
            &format!(
                "rm -rf {v}/rootfs {v}/backup.yaml {v}/metadata.yaml && cd {f} && \
                 tar --numeric-owner --xattrs --xattrs-include='*' -cf - rootfs backup.yaml metadata.yaml \
                 | tar -C {v} --numeric-owner --xattrs --xattrs-include='*' -xpf -",
                v = vol.display(),
                f = from.display()
            ),
        ]);
    };
    let snap0 = work.join("snap0");
    let last = work.join("last");
    // The volume filled from `from`, then a read-only snapshot of it at `to`.
    let fill_and_snapshot = |from: &Path, to: &Path| {
        fill(from);
        sh(&[
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            vol.to_str().unwrap(),
            to.to_str().unwrap(),
        ]);
    };
    fill_and_snapshot(&x.join("backup/snapshots/snap0"), &snap0);
    fill_and_snapshot(&x.join("backup/container"), &last);
    let out = work.join("out/backup");
    std::fs::create_dir_all(out.join("snapshots")).unwrap();
    let send = |args: &[&str], to: &Path| {
        let o = std::process::Command::new("btrfs")
            .arg("send")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "btrfs send {args:?}");
        std::fs::write(to, o.stdout).unwrap();
    };
    send(&[snap0.to_str().unwrap()], &out.join("snapshots/snap0.bin"));
    send(
        &["-p", snap0.to_str().unwrap(), last.to_str().unwrap()],
        &out.join("container.bin"),
    );
    let index = std::fs::read_to_string(x.join("backup/index.yaml"))
        .unwrap()
        .replace("backend: dir", "backend: btrfs")
        .replace("optimized: false", "optimized: true")
        .replace("optimized_header: false", "optimized_header: true");
    std::fs::write(out.join("index.yaml"), index).unwrap();
    std::fs::write(
        out.join("optimized_header.yaml"),
        "subvolumes:\n- snapshot: snap0\n  path: /\n  readonly: true\n- snapshot: \"\"\n  path: /\n  readonly: false\n",
    )
    .unwrap();
    let file = work.join("c1-optimized.tar.gz");
    sh(&[
        "tar",
        "-C",
        work.join("out").to_str().unwrap(),
        "-czf",
        file.to_str().unwrap(),
        "backup/index.yaml",
        "backup/optimized_header.yaml",
        "backup/snapshots/snap0.bin",
        "backup/container.bin",
    ]);
    for s in [&last, &snap0, &vol] {
        sh(&["btrfs", "subvolume", "delete", s.to_str().unwrap()]);
    }
    file
}

/// An optimized Incus export of a btrfs container goes onto strata's btrfs
/// backend by btrfs receive: each tree as Incus had it (the volume's
/// `rootfs/` made the rootfs, Incus's files beside it left out), owners
/// shifted into the map Incus chose, the snapshot read-only with its own
/// tree; the container starts. Onto another backend it is refused in one
/// line; a bad stream inside leaves nothing.
#[test]
fn incus_optimized_btrfs_export_imports() {
    let env = Env::new();
    let _fs = strata_testkit::LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let work = env.src.join("incus-opt");
    std::fs::create_dir_all(&work).unwrap();
    let _src_fs = strata_testkit::LoopFs::new("btrfs", 512 << 20, Some(&work), "");
    let file = optimized_btrfs_export(&work);
    let f = file.to_str().unwrap();

    let e = env.fails("strata", &["import", f, "-n", "o-dir", "-B", "dir"]);
    assert!(e.contains("native btrfs"), "{e}");
    clean(&env, &[]);

    import_ok(&env, &["import", f, "-n", "o1"]);
    let spec = strata_core::Store::new(&env.lxcpath).load("o1").unwrap().rootfs;
    assert_eq!(spec.kind(), "btrfs", "{spec}");
    let r = spec.path();
    for gone in ["backup.yaml", "metadata.yaml", "rootfs"] {
        assert!(!r.join(gone).exists(), "{gone} left in the rootfs");
    }
    assert_eq!(std::fs::read_to_string(r.join("etc/hostname")).unwrap(), "changed\n");
    let x = std::fs::metadata(r.join("home/user/x")).unwrap();
    assert_eq!((x.uid(), x.gid()), (101000, 100100), "shifted into the map");
    assert_eq!(std::fs::metadata(r.join("home/user/x-link")).unwrap().ino(), x.ino());
    assert_eq!(getfattr(&r.join("home/user/x"), "user.note"), "hello");
    let caps = sh(&["getcap", r.join("bin/capped").to_str().unwrap()]);
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    // The same trees as a plain import of the same container.
    import_ok(
        &env,
        &["import", fixture("c1.tar.zst").to_str().unwrap(), "-n", "plain"],
    );
    let (root, plain_root) = (
        std::fs::metadata(&r).unwrap(),
        std::fs::metadata(rootfs(&env, "plain")).unwrap(),
    );
    assert_eq!(
        (root.uid(), root.gid(), root.mode(), root.mtime()),
        (
            plain_root.uid(),
            plain_root.gid(),
            plain_root.mode(),
            plain_root.mtime()
        ),
        "the rootfs dir's own owner, mode and time"
    );
    assert_eq!(view(&r), view(&rootfs(&env, "plain")), "rootfs as the plain export's");
    let snap = |n: &str| {
        strata_core::Store::new(env.c(n).join("snaps"))
            .load("snap0")
            .unwrap()
            .rootfs
            .path()
    };
    let s = snap("o1");
    assert_eq!(view(&s), view(&snap("plain")), "snapshot as the plain export's");
    let ro = sh(&["btrfs", "property", "get", s.to_str().unwrap(), "ro"]);
    assert_eq!(ro.trim(), "ro=true");
    assert_eq!(
        config_all(&env, "o1", "lxc.idmap"),
        ["u 0 100000 65536", "g 0 100000 65536"]
    );
    if Path::new("/bin/busybox").is_file() {
        add_busybox(&r, 100000);
        let out = env.ok(
            "strata",
            &["execute", "-n", "o1", "--", "/bin/sh", "-c", "cat /etc/hostname"],
        );
        assert_eq!(out, "changed\n");
    }

    // A stream cut inside: nothing left.
    let cut = work.join("cut.tar.gz");
    sh(&[
        "sh",
        "-c",
        &format!(
            "gzip -dc {f} | head -c $(( $(gzip -dc {f} | wc -c) - 20000 )) | gzip > {}",
            cut.display()
        ),
    ]);
    let e = env.fails("strata", &["import", cut.to_str().unwrap(), "-n", "o-cut"]);
    assert!(!e.is_empty());
    for n in ["o1", "plain"] {
        env.ok("lxc-destroy", &["-n", n, "-s"]);
    }
    clean(&env, &[]);
}

/// An optimized Incus btrfs import killed at points spread over its run
/// (each volume's btrfs receive, the shift, the snapshot, the rename):
/// after reconcile the lxcpath holds the whole container or nothing, no
/// subvolume, mount or loop device left.
#[test]
fn incus_optimized_btrfs_import_killed_leaves_nothing_after_reconcile() {
    let env = Env::new();
    let _fs = strata_testkit::LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let work = env.src.join("incus-opt-kill");
    std::fs::create_dir_all(&work).unwrap();
    let _src_fs = strata_testkit::LoopFs::new("btrfs", 512 << 20, Some(&work), "");
    let file = optimized_btrfs_export(&work);
    let import = || {
        let mut c = env.cmd("strata");
        c.args(["import", "-P"])
            .arg(&env.lxcpath)
            .arg(&file)
            .args(["-n", "ok"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // How long a whole import takes here, so the kills spread over it.
    let t = std::time::Instant::now();
    assert!(import().status().unwrap().success());
    let whole_ms = t.elapsed().as_millis() as u64;
    env.ok("lxc-destroy", &["-n", "ok", "-s"]);
    clean(&env, &[]);
    let mut whole = 0;
    for k in 1..=7u64 {
        let mut ch = import().spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(whole_ms * k / 8));
        let _ = ch.kill();
        ch.wait().unwrap();
        env.ok("strata", &["reconcile"]);
        if env.c("ok").exists() {
            whole += 1;
            let r = strata_core::Store::new(&env.lxcpath).load("ok").unwrap().rootfs.path();
            assert_eq!(
                std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
                "changed\n",
                "kill at {k}/8: a whole import"
            );
            env.ok("lxc-destroy", &["-n", "ok", "-s"]);
        }
        clean(&env, &[]);
        let subvols = sh(&["btrfs", "subvolume", "list", env.lxcpath.to_str().unwrap()]);
        assert!(subvols.trim().is_empty(), "kill at {k}/8 left subvolumes:\n{subvols}");
    }
    eprintln!("{whole} of 7 killed imports had finished (a whole one takes {whole_ms} ms)");
}

/// An archive made by a real Incus (6.0.4) with `incus export
/// --optimized-storage` from a btrfs pool (`scripts/make-incus-fixtures
/// btrfs`): an unprivileged container with a memory limit and nesting, its
/// snapshot snap0, then changed (hostname rewritten, a file added, a
/// hardlink removed). It imports onto btrfs as a user would check it: the
/// config keys, the rootfs and the snapshot each as Incus had them, owners
/// shifted into Incus's map, the snapshot read-only with Incus's creation
/// time; the container starts. Another backend is refused in one line.
#[test]
fn real_incus_optimized_btrfs_export_imports() {
    let env = Env::new();
    let _fs = strata_testkit::LoopFs::new("btrfs", 1 << 30, Some(&env.lxcpath), "");
    let f = fixture("c1-btrfs-optimized.tar.zst");
    let f = f.to_str().unwrap();
    let e = env.fails("strata", &["import", f, "-B", "dir"]);
    assert!(e.contains("native btrfs-send streams"), "{e}");
    clean(&env, &[]);

    let notes = import_ok(&env, &["import", f]);
    assert!(notes.contains("not carried: volatile.*"), "{notes}");
    let spec = strata_core::Store::new(&env.lxcpath).load("c1").unwrap().rootfs;
    assert_eq!(spec.kind(), "btrfs", "{spec}");
    let cg = cgroup_limit(&env, "c1", "memory.max", "memory.limit_in_bytes");
    assert_eq!(cg.as_deref(), Some("268435456"));
    assert_eq!(env.config_get("c1", "lxc.apparmor.allow_nesting").as_deref(), Some("1"));
    assert_eq!(
        config_all(&env, "c1", "lxc.idmap"),
        ["u 0 100000 65536", "g 0 100000 65536"],
        "the map Incus chose (volatile.idmap.next)"
    );
    let r = spec.path();
    for gone in ["backup.yaml", "metadata.yaml", "rootfs", "templates"] {
        assert!(!r.join(gone).exists(), "Incus's {gone} left in the rootfs");
    }
    assert_eq!(std::fs::read_to_string(r.join("etc/hostname")).unwrap(), "changed\n");
    assert_eq!(
        std::fs::read_to_string(r.join("home/user/new/file")).unwrap(),
        "after\n"
    );
    assert!(!r.join("home/user/x-link").exists(), "removed after the snapshot");
    let x = std::fs::metadata(r.join("home/user/x")).unwrap();
    assert_eq!((x.uid(), x.gid(), x.nlink()), (101000, 100100, 1));
    let new = std::fs::metadata(r.join("home/user/new/file")).unwrap();
    assert_eq!((new.uid(), new.gid()), (101000, 100100));
    assert_eq!(std::fs::metadata(r.join("etc/passwd")).unwrap().uid(), 100000);
    assert_eq!(getfattr(&r.join("home/user/x"), "user.note"), "hello");
    let caps = sh(&["getcap", r.join("bin/capped").to_str().unwrap()]);
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");

    let snaps = env.ok("lxc-snapshot", &["-n", "c1", "-L"]);
    assert!(snaps.starts_with("snap0 "), "{snaps}");
    let s = strata_core::Store::new(env.c("c1").join("snaps"))
        .load("snap0")
        .unwrap()
        .rootfs
        .path();
    assert_eq!(std::fs::read_to_string(s.join("etc/hostname")).unwrap(), "incus-c1\n");
    assert!(!s.join("home/user/new").exists());
    let sx = std::fs::metadata(s.join("home/user/x")).unwrap();
    assert_eq!((sx.uid(), sx.nlink()), (101000, 2));
    assert_eq!(std::fs::metadata(s.join("home/user/x-link")).unwrap().ino(), sx.ino());
    let ro = sh(&["btrfs", "property", "get", s.to_str().unwrap(), "ro"]);
    assert_eq!(ro.trim(), "ro=true");
    // Incus's creation time of the snapshot, from the archive's index.
    let index = sh(&["sh", "-c", &format!("zstd -dc {f} | tar -xOf - backup/index.yaml")]);
    let (_, want_ts) = snapshot_created(&index);
    assert_eq!(
        std::fs::read_to_string(env.c("c1").join("snaps/snap0/ts")).unwrap(),
        want_ts.trim()
    );
    if Path::new("/bin/busybox").is_file() {
        add_busybox(&r, 100000);
        let out = env.ok(
            "strata",
            &[
                "execute",
                "-n",
                "c1",
                "--",
                "/bin/sh",
                "-c",
                "cat /etc/hostname; cat /home/user/new/file",
            ],
        );
        assert_eq!(out, "changed\nafter\n");
    }
    env.ok("lxc-destroy", &["-n", "c1", "-s"]);
    clean(&env, &[]);
}
