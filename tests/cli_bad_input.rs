//! Bad input: each refused with exit status 1, exactly one line on stderr,
//! and the lxcpath and its parent left byte-for-byte as they were.

mod common;
use common::*;

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
