//! Strict configs as LXC 5 reads them, and `lxc.include` that can never
//! hang or loop: each bad config refused with exit status 1, one line on
//! stderr naming the file (and the key), and the lxcpath and its parent
//! left byte for byte as they were. Every command is run under a 10 s
//! deadline so that a regression fails instead of hanging.

mod common;
use common::*;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Run like `Env::run`, but kill the command and fail if it takes over 10 s.
fn run_10s(env: &Env, tool: &str, args: &[&str]) -> Output {
    let mut c = env.cmd(tool);
    if tool == "lxc-clone" {
        c.arg("-p").arg(&env.lxcpath);
    } else {
        c.arg("-P").arg(&env.lxcpath);
    }
    let mut child = c
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{tool} {args:?} still running after 10 s; stderr so far: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Refused within 10 s, exit 1, one line; the area unchanged. Returns the line.
fn refused(env: &Env, tool: &str, args: &[&str]) -> String {
    let before = tree(&env.area);
    let o = run_10s(env, tool, args);
    let msg = check_failure(tool, args, &o);
    assert_same_tree(&format!("{tool} {args:?} ({msg})"), &before, &tree(&env.area));
    msg
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

#[test]
fn unknown_keys_in_f_are_refused_and_nothing_is_made() {
    let env = Env::new();
    let src = env.rootfs("r");
    let f = env.src.join("bad.conf");
    let inc = env.src.join("inc.conf");
    let main = env.src.join("main.conf");
    std::fs::write(&inc, "# shared\nlxc.cap.dorp = sys_time\n").unwrap();
    std::fs::write(&main, format!("lxc.arch = x86_64\nlxc.include = {}\n", inc.display())).unwrap();
    for (body, key, file) in [
        ("lxc.arch = x86_64\nlxc.cap.dorp = sys_time\n", "lxc.cap.dorp", &f),
        ("lxc.net.0.type = veth\nlxc.net.0.lnk = br0\n", "lxc.net.0.lnk", &f),
        ("lxc.utsname = old\n", "lxc.utsname", &f),
        ("lxc.network.type = veth\n", "lxc.network.type", &f),
        ("lxc.lxcpath = /elsewhere\n", "lxc.lxcpath", &f),
        ("", "lxc.cap.dorp", &inc),
    ] {
        let cfg = if body.is_empty() {
            &main
        } else {
            std::fs::write(&f, body).unwrap();
            &f
        };
        let msg = refused(
            &env,
            "lxc-create",
            &["-n", "fresh", "-f", s(cfg), "--rootfs-from", s(&src)],
        );
        assert!(msg.contains(&format!("{key:?}")), "{msg}");
        assert!(msg.contains(&format!("{}: line ", file.display())), "{msg}");
        if file == &inc {
            assert!(msg.contains(&format!("included from {}", main.display())), "{msg}");
        }
        if key == "lxc.utsname" {
            assert!(msg.contains("lxc.uts.name"), "names the LXC 5 key: {msg}");
        }
        // -t none too: nothing made either.
        refused(&env, "lxc-create", &["-n", "fresh", "-f", s(cfg), "-t", "none"]);
    }
    assert!(!env.c("fresh").exists());
}

#[test]
fn unknown_key_in_a_containers_config_refuses_copy() {
    let env = Env::new();
    env.make_container("c1");
    // A typo and a legacy name, directly and through an include.
    let inc = env.src.join("extra.conf");
    for (extra, key) in [
        ("lxc.cap.dorp = sys_time\n".to_string(), "lxc.cap.dorp"),
        ("lxc.id_map = u 0 100000 65536\n".to_string(), "lxc.id_map"),
        (format!("lxc.include = {}\n", inc.display()), "lxc.hook.bogus"),
    ] {
        std::fs::write(&inc, "lxc.hook.bogus = /bin/true\n").unwrap();
        let cfg = env.c("c1").join("config");
        let orig = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("{orig}{extra}")).unwrap();
        for args in [
            vec!["-n", "c1", "-N", "c2"],
            vec!["-n", "c1", "-N", "c2", "-s"],
            vec!["-n", "c1", "-N", "c2", "-R"],
        ] {
            let msg = refused(&env, "lxc-copy", &args);
            assert!(msg.contains(&format!("{key:?}")), "{msg}");
        }
        let msg = refused(&env, "lxc-clone", &["-o", "c1", "-n", "c2"]);
        assert!(msg.contains(key), "{msg}");
        std::fs::write(&cfg, orig).unwrap();
    }
    // Fixed: the copy goes ahead.
    env.ok("lxc-copy", &["-n", "c1", "-N", "c2"]);
}

#[test]
fn fifo_includes_never_hang() {
    let env = Env::new();
    env.make_container("c1");
    env.ok("lxc-snapshot", &["-n", "c1"]);
    let fifo = env.src.join("pipe.conf");
    mkfifo(&fifo);
    // One container with the rootfs in its own config, one that needs the include.
    let cfg = env.c("c1").join("config");
    let orig = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{orig}lxc.include = {}\n", fifo.display())).unwrap();
    std::fs::create_dir_all(env.c("c3").join("rootfs")).unwrap();
    std::fs::write(
        env.c("c3").join("config"),
        format!("lxc.uts.name = c3\nlxc.include = {}\n", fifo.display()),
    )
    .unwrap();
    // A directory include holding a fifo named *.conf.
    let d = env.src.join("conf.d");
    std::fs::create_dir(&d).unwrap();
    mkfifo(&d.join("10-pipe.conf"));
    std::fs::create_dir_all(env.c("c4").join("rootfs")).unwrap();
    std::fs::write(
        env.c("c4").join("config"),
        format!("lxc.uts.name = c4\nlxc.include = {}\n", d.display()),
    )
    .unwrap();
    for args in [vec!["-n", "c1", "-N", "x"], vec!["-n", "c1", "-N", "x", "-s"]] {
        let msg = refused(&env, "lxc-copy", &args);
        assert!(msg.contains("a fifo") && msg.contains(s(&fifo)), "{msg}");
    }
    for name in ["c3", "c4"] {
        for (tool, args) in [
            ("lxc-copy", vec!["-n", name, "-N", "x"]),
            ("lxc-copy", vec!["-n", name, "-N", "x", "-s"]),
            ("lxc-clone", vec!["-o", name, "-n", "x"]),
            ("lxc-snapshot", vec!["-n", name]),
            ("lxc-destroy", vec!["-n", name]),
        ] {
            let msg = refused(&env, tool, &args);
            assert!(msg.contains("a fifo"), "{tool} {args:?}: {msg}");
        }
        // Listing snapshots needs no config: it returns.
        run_10s(&env, "lxc-snapshot", &["-n", name, "-L"]);
    }
    // lxc-ls, lxc-snapshot -L and lxc-destroy on the container whose own
    // config names its rootfs return too.
    for (tool, args) in [
        ("lxc-ls", vec!["-1"]),
        ("lxc-ls", vec!["--fancy"]),
        ("lxc-snapshot", vec!["-n", "c1", "-L"]),
    ] {
        run_10s(&env, tool, &args);
    }
    let o = run_10s(&env, "lxc-destroy", &["-n", "c1", "-s"]);
    assert!(o.status.code().is_some(), "{o:?}");
    // Nothing ever opened the fifo for writing and it is still there.
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

/// The included file's bytes, a second file's (for a cycle), what the error says.
type Case<'a> = (Vec<u8>, Option<Vec<u8>>, &'a str);

#[test]
fn include_loops_and_bad_bytes_are_one_line_errors() {
    let env = Env::new();
    env.make_container("c1");
    let src = env.rootfs("r");
    let a = env.src.join("a.conf");
    let b = env.src.join("b.conf");
    let huge = env.src.join("huge.conf");
    std::fs::File::create(&huge).unwrap().set_len(17 << 20).unwrap();
    let long = format!("lxc.environment = A={}\n", "a".repeat(2 << 20));
    let cases: Vec<Case> = vec![
        (format!("lxc.include = {}\n", a.display()).into_bytes(), None, "cycle"),
        (
            format!("lxc.arch = x86_64\nlxc.include = {}\n", b.display()).into_bytes(),
            Some(format!("lxc.include = {}\n", a.display()).into_bytes()),
            "cycle",
        ),
        (
            b"lxc.arch = x86_64\nlxc.cap.drop = sys\0time\n".to_vec(),
            None,
            "line 2: NUL byte",
        ),
        (
            format!("lxc.arch = x86_64\n{long}").into_bytes(),
            None,
            "line 2: longer than",
        ),
        (
            format!("lxc.include = {}\n", huge.display()).into_bytes(),
            None,
            "larger than 16 MiB",
        ),
        (
            format!("lxc.include = {}\n", env.src.join("absent.conf").display()).into_bytes(),
            None,
            "absent.conf",
        ),
    ];
    let cfg = env.c("c1").join("config");
    let orig = std::fs::read(&cfg).unwrap();
    for (a_body, b_body, what) in &cases {
        std::fs::write(&a, a_body).unwrap();
        if let Some(bb) = b_body {
            std::fs::write(&b, bb).unwrap();
        }
        // As -f.
        let msg = refused(
            &env,
            "lxc-create",
            &["-n", "fresh", "-f", s(&a), "--rootfs-from", s(&src)],
        );
        assert!(msg.contains(what), "{what}: {msg}");
        // In an existing container's config (through an include).
        let mut c = orig.clone();
        c.extend_from_slice(format!("lxc.include = {}\n", a.display()).as_bytes());
        std::fs::write(&cfg, &c).unwrap();
        let msg = refused(&env, "lxc-copy", &["-n", "c1", "-N", "fresh"]);
        assert!(msg.contains(what), "{what}: {msg}");
        // Right in the container's own config.
        if !what.contains("cycle") {
            let mut c = orig.clone();
            c.extend_from_slice(a_body);
            std::fs::write(&cfg, &c).unwrap();
            let msg = refused(&env, "lxc-copy", &["-n", "c1", "-N", "fresh", "-s"]);
            let what = what.split(": ").last().unwrap(); // another line number here
            assert!(msg.contains(what), "{what}: {msg}");
        }
        std::fs::write(&cfg, &orig).unwrap();
    }
    // The container's config itself a directory or a fifo: refused or skipped, never blocking.
    std::fs::create_dir_all(env.c("c5").join("config")).unwrap();
    run_10s(&env, "lxc-ls", &["-1"]);
    mkfifo(&env.src.join("cfg-fifo"));
    let msg = refused(
        &env,
        "lxc-create",
        &["-n", "fresh", "-f", s(&env.src.join("cfg-fifo")), "-t", "none"],
    );
    assert!(msg.contains("a fifo"), "{msg}");
    let msg = refused(&env, "lxc-create", &["-n", "fresh", "-f", s(&env.src), "-t", "none"]);
    assert!(msg.contains("a directory"), "{msg}");
}

#[test]
fn lxc_shipped_configs_are_accepted() {
    let dir = Path::new("/usr/share/lxc/config");
    let Ok(rd) = std::fs::read_dir(dir) else {
        eprintln!("skipped: no {}", dir.display());
        return;
    };
    let env = Env::new();
    let src = env.rootfs("r");
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for (i, f) in files.iter().enumerate() {
        let name = format!("s{i}");
        let o = run_10s(&env, "lxc-create", &["-n", &name, "-f", s(f), "--rootfs-from", s(&src)]);
        assert!(
            o.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let o = run_10s(&env, "lxc-copy", &["-n", &name, "-N", &format!("{name}-copy")]);
        assert!(
            o.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A plausible value for each key LXC knows.
fn sample_value(key: &str) -> &'static str {
    match key {
        "lxc.include" | "lxc.cgroup" | "lxc.cgroup2" | "lxc.hook" | "lxc.net" | "lxc.prlimit" | "lxc.proc"
        | "lxc.sysctl" => "",
        "lxc.idmap" => "",
        k if k.starts_with("lxc.hook.") => "/bin/true",
        "lxc.arch" => "x86_64",
        "lxc.environment" => "FOO=bar",
        "lxc.mount.entry" => "proc proc proc nodev 0 0",
        "lxc.mount.auto" => "proc:mixed",
        "lxc.cap.drop" | "lxc.cap.keep" => "sys_time",
        "lxc.signal.halt" | "lxc.signal.reboot" | "lxc.signal.stop" => "SIGTERM",
        "lxc.log.level" => "ERROR",
        "lxc.namespace.clone" | "lxc.namespace.keep" => "net",
        // An ephemeral container is removed once it is not running.
        "lxc.ephemeral" => "0",
        _ => "1",
    }
}

#[test]
fn a_config_with_every_key_lxc_knows_is_accepted() {
    let env = Env::new();
    let src = env.rootfs("r");
    let mut text = String::new();
    for k in strata_core::config_keys::exact_keys() {
        if *k == "lxc.idmap" {
            continue; // a map makes an unprivileged container: the user tests cover it
        }
        text.push_str(&format!("{k} = {}\n", sample_value(k)));
    }
    for k in [
        "lxc.cgroup.devices.allow = c 1:3 rwm",
        "lxc.cgroup2.memory.max = 1G",
        "lxc.cgroup.dir.container = strata",
        "lxc.sysctl.net.ipv4.ip_forward = 1",
        "lxc.proc.oom_score_adj = 10",
        "lxc.prlimit.nofile = 1024",
        "lxc.namespace.share.uts = /proc/1/ns/uts",
    ] {
        text.push_str(k);
        text.push('\n');
    }
    for sub in strata_core::config_keys::NET_SUBKEYS {
        let v = match *sub {
            "type" => "veth",
            "flags" => "up",
            "link" => "lxcbr0",
            "hwaddr" => "00:16:3e:00:00:01",
            "ipv4.address" => "10.0.3.9/24",
            "ipv6.address" => "fd00::9/64",
            "ipv4.gateway" | "ipv6.gateway" => "auto",
            "veth.ipv4.route" => "10.1.0.0/24",
            "veth.ipv6.route" => "fd01::/64",
            "name" => "eth0",
            _ => "1",
        };
        text.push_str(&format!("lxc.net.0.{sub} = {v}\n"));
    }
    let f = env.src.join("all.conf");
    std::fs::write(&f, &text).unwrap();
    let o = run_10s(
        &env,
        "lxc-create",
        &["-n", "all", "-f", s(&f), "--rootfs-from", s(&src)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every key is kept, and the container copies.
    let cfg = env.config("all");
    for k in strata_core::config_keys::exact_keys()
        .iter()
        .filter(|k| **k != "lxc.idmap")
    {
        assert!(
            cfg.lines().any(|l| l.split('=').next().unwrap().trim() == *k),
            "{k} lost"
        );
    }
    env.ok("lxc-copy", &["-n", "all", "-N", "all2"]);
}
