//! Bad input: each refused with exit status 1, exactly one line on stderr,
//! and the lxcpath and its parent left byte-for-byte as they were.

mod common;
use common::*;
use strata_testkit::LoopFs;

fn fixture() -> Env {
    let env = Env::new();
    env.make_container("c1");
    env.ok("lxc-snapshot", &["-n", "c1"]);
    env.ok("lxc-copy", &["-n", "c1", "-N", "c2", "-s"]);
    // Containers with a malformed rootfs spec and a malformed config line, by hand.
    for (name, body) in [
        (
            "badspec",
            "lxc.uts.name = badspec\nlxc.rootfs.path = bogus:/nowhere\n".to_string(),
        ),
        (
            "badline",
            format!(
                "lxc.uts.name = badline\nthis is not a config line\nlxc.rootfs.path = dir:{}\n",
                env.c("badline").join("rootfs").display()
            ),
        ),
    ] {
        std::fs::create_dir_all(env.c(name).join("rootfs/etc")).unwrap();
        std::fs::write(env.c(name).join("config"), body).unwrap();
    }
    env
}

#[test]
fn bad_input_changes_nothing() {
    let env = fixture();
    let src = env.src.join("rootfs-c1");
    let src = src.to_str().unwrap();
    let badconf = env.src.join("bad.conf");
    std::fs::write(&badconf, "lxc.uts.name = x\n=== garbage ===\n").unwrap();
    let badconf = badconf.to_str().unwrap();
    let long = "a".repeat(300);
    let bad_names: Vec<&str> = vec![
        "",
        "/",
        ".",
        "..",
        "../x",
        "-x",
        "a\nb",
        "a\x01b",
        "a\tb",
        long.as_str(),
    ];

    let mut cases: Vec<(&str, Vec<String>)> = vec![];
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for n in &bad_names {
        let name_eq = format!("--name={n}");
        let new_eq = format!("--newname={n}");
        cases.push(("lxc-create", s(&[name_eq.as_str(), "--rootfs-from", src])));
        cases.push(("lxc-copy", s(&["-n", "c1", new_eq.as_str()])));
        cases.push(("lxc-copy", s(&[name_eq.as_str(), "-N", "fresh"])));
        cases.push(("lxc-destroy", s(&[name_eq.as_str()])));
        cases.push(("lxc-snapshot", s(&[name_eq.as_str()])));
        cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "snap0", new_eq.as_str()])));
        cases.push(("lxc-clone", s(&["-o", "c1", format!("--new={n}").as_str()])));
    }
    // unknown container
    cases.push(("lxc-copy", s(&["-n", "nope", "-N", "fresh"])));
    cases.push(("lxc-clone", s(&["-o", "nope", "-n", "fresh"])));
    cases.push(("lxc-destroy", s(&["-n", "nope"])));
    cases.push(("lxc-snapshot", s(&["-n", "nope"])));
    cases.push(("lxc-snapshot", s(&["-n", "nope", "-L"])));
    cases.push(("strata", s(&["info", "-n", "nope"])));
    // unknown or malformed snapshot
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "snap9"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "snap9", "-N", "fresh"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-d", "snap9"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "bogus"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-d", "../snap0"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-c", "/nonexistent/comment"])));
    // existing target
    cases.push(("lxc-create", s(&["-n", "c1", "--rootfs-from", src])));
    cases.push(("lxc-copy", s(&["-n", "c1", "-N", "c2"])));
    cases.push(("lxc-copy", s(&["-n", "c1", "-N", "c1"])));
    cases.push(("lxc-clone", s(&["-o", "c1", "-n", "c2"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "snap0", "-N", "c2"])));
    // unknown backend, bad sizes and options
    cases.push(("lxc-create", s(&["-n", "fresh", "-B", "foo", "--rootfs-from", src])));
    cases.push(("lxc-copy", s(&["-n", "c1", "-N", "fresh", "-B", "foo"])));
    cases.push((
        "lxc-create",
        s(&["-n", "fresh", "-B", "dir", "--fssize", "12Q", "--rootfs-from", src]),
    ));
    cases.push(("lxc-copy", s(&["-n", "c1", "-N", "fresh", "-L", "lots"])));
    cases.push(("lxc-create", s(&["-n", "fresh", "-t", "nosuchtemplate"])));
    cases.push((
        "lxc-create",
        s(&["-n", "fresh", "--rootfs-from", "/nonexistent/rootfs"]),
    ));
    cases.push(("lxc-create", s(&["-n", "fresh"])));
    cases.push(("lxc-copy", s(&["-n", "c1"])));
    cases.push(("lxc-copy", s(&["-n", "c1", "-N", "fresh", "--bogus-flag"])));
    cases.push(("lxc-ls", s(&["-F", "NAME,BOGUS"])));
    cases.push(("lxc-ls", s(&["--filter", "(unclosed"])));
    // malformed spec / config line in a container's config, or in -f
    cases.push(("lxc-copy", s(&["-n", "badspec", "-N", "fresh"])));
    cases.push(("lxc-copy", s(&["-n", "badline", "-N", "fresh"])));
    cases.push(("lxc-snapshot", s(&["-n", "badspec"])));
    cases.push(("lxc-snapshot", s(&["-n", "badline"])));
    cases.push(("lxc-create", s(&["-n", "fresh", "-f", badconf, "--rootfs-from", src])));
    // things others depend on
    cases.push(("lxc-destroy", s(&["-n", "c1"])));
    cases.push(("lxc-destroy", s(&["-n", "c1", "-s"])));
    cases.push(("lxc-snapshot", s(&["-n", "c1", "-r", "snap0"])));

    for (tool, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = tree(&env.area);
        let msg = env.fails(tool, &args);
        let after = tree(&env.area);
        assert_same_tree(&format!("{tool} {args:?} ({msg})"), &before, &after);
    }
}

#[test]
fn malformed_lxc_conf() {
    let env = fixture();
    std::fs::write(&env.conf, "lxc.lxcpath = /somewhere\nnot a config line\n").unwrap();
    let before = tree(&env.area);
    for (tool, args) in [
        ("lxc-ls", vec!["-1"]),
        ("lxc-copy", vec!["-n", "c1", "-N", "fresh"]),
        ("lxc-destroy", vec!["-n", "c2"]),
    ] {
        // Without -P the lxcpath comes from lxc.conf, which does not parse.
        let o = env.cmd(tool).args(&args).output().unwrap();
        let msg = check_failure(tool, &args, &o);
        assert!(msg.contains("not a config line"), "{msg}");
    }
    // With -P, lxc.conf is still read for the backend defaults of a new rootfs.
    env.fails("lxc-copy", &["-n", "c1", "-N", "fresh"]);
    assert_same_tree("malformed lxc.conf", &before, &tree(&env.area));
    assert!(!std::path::Path::new("/somewhere").exists());
}

#[test]
fn dependents_are_named() {
    let env = fixture();
    let before = tree(&env.area);
    let msg = env.fails("lxc-destroy", &["-n", "c1", "-s"]);
    assert!(msg.starts_with("lxc-destroy: c1: "), "{msg}");
    assert!(msg.contains("c2"), "{msg}");
    assert_same_tree("destroy with dependents", &before, &tree(&env.area));
}

#[test]
fn missing_lxcpath_is_not_created() {
    let env = Env::new();
    let missing = env.area.join("missing");
    let before = tree(&env.area);
    for (tool, args) in [
        ("lxc-ls", vec!["--fancy"]),
        ("lxc-destroy", vec!["-n", "c1"]),
        ("lxc-snapshot", vec!["-n", "c1", "-L"]),
        ("lxc-copy", vec!["-n", "c1", "-N", "c2"]),
    ] {
        let o = env.cmd(tool).arg("-P").arg(&missing).args(&args).output().unwrap();
        if tool != "lxc-ls" {
            check_failure(tool, &args, &o);
        } else {
            assert!(o.status.success());
        }
    }
    assert_same_tree("commands on a missing lxcpath", &before, &tree(&env.area));
    assert!(!missing.exists());
}

/// A 1 GiB ext4 mounted at the lxcpath: loop containers' images live on it.
fn ext4_lxcpath(env: &Env) -> LoopFs {
    LoopFs::new("ext4", 1 << 30, Some(&env.lxcpath), "")
}

/// A rootfs with `mib` MiB in one file besides the usual small tree (about 2 MiB).
fn rootfs_with(env: &Env, name: &str, mib: usize) -> String {
    let r = env.src.join(name);
    make_rootfs(&r);
    std::fs::write(r.join("root/blob"), vec![0x5au8; mib << 20]).unwrap();
    r.to_str().unwrap().to_string()
}

#[test]
fn loop_refusals_say_why_and_change_nothing() {
    let env = Env::new();
    let host = ext4_lxcpath(&env);
    let small = rootfs_with(&env, "small", 1);
    let big = rootfs_with(&env, "big", 20);
    env.ok(
        "lxc-create",
        &["-n", "l1", "-B", "loop", "--fssize", "16M", "--rootfs-from", &small],
    );
    env.ok(
        "lxc-create",
        &["-n", "l2", "-B", "loop", "--fssize", "64M", "--rootfs-from", &big],
    );
    env.ok("lxc-create", &["-n", "d1", "--rootfs-from", &big]);
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        // ext4 cannot reflink the image: the reason, not a generic refusal.
        ("lxc-copy", vec!["-n", "l1", "-N", "s1", "-s"], &["reflink", "ext4"]),
        (
            "lxc-copy",
            vec!["-n", "l1", "-N", "s1", "-s", "-B", "loop"],
            &["reflink", "ext4"],
        ),
        // 20 MiB of files into images whose ext4 holds less: refused before anything is made.
        (
            "lxc-create",
            vec!["-n", "c1", "-B", "loop", "--fssize", "16M", "--rootfs-from", &big],
            &["files need at least 2", "16 MiB ext4 image", "--fssize"],
        ),
        (
            "lxc-copy",
            vec!["-n", "d1", "-N", "c2", "-B", "loop", "--fssize", "16M"],
            &["files need at least 2", "--fssize"],
        ),
        (
            "lxc-copy",
            vec!["-n", "l2", "-N", "c3", "-B", "loop", "--fssize", "16M"],
            &["files need at least 2", "--fssize"],
        ),
        (
            "lxc-copy",
            vec!["-n", "l2", "-N", "c3", "--fssize", "16M"],
            &["files need at least 2", "--fssize"],
        ),
    ];
    for (tool, args, words) in &cases {
        let before = tree(&env.area);
        let msg = env.fails(tool, args);
        for w in *words {
            assert!(msg.contains(w), "{tool} {args:?}: {msg:?} does not say {w:?}");
        }
        assert_same_tree(&format!("{tool} {args:?} ({msg})"), &before, &tree(&env.area));
        assert!(host.attached().is_empty(), "{tool} {args:?}: {:?}", host.attached());
    }
}

#[test]
fn a_rootfs_that_only_just_does_not_fit_is_refused_cleanly() {
    // About 11 MiB of files, 16 MiB image (10 MiB free): within the estimate,
    // refused when the copy runs out of space.
    let env = Env::new();
    let host = ext4_lxcpath(&env);
    let tight = rootfs_with(&env, "tight", 9);
    env.ok("lxc-create", &["-n", "d1", "--rootfs-from", &tight]);
    let names = || {
        let mut v: Vec<_> = std::fs::read_dir(&env.lxcpath)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = names();
    for (tool, args) in [
        (
            "lxc-create",
            vec!["-n", "c1", "-B", "loop", "--fssize", "16M", "--rootfs-from", &tight],
        ),
        (
            "lxc-copy",
            vec!["-n", "d1", "-N", "c2", "-B", "loop", "--fssize", "16M"],
        ),
    ] {
        let msg = env.fails(tool, &args);
        assert!(msg.contains("do not fit") && msg.contains("--fssize"), "{tool}: {msg}");
        assert_eq!(names(), before, "{tool} left something behind");
        assert!(host.attached().is_empty(), "{tool}: {:?}", host.attached());
    }
}
