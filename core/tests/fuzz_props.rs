//! Property tests of the parsers that read user input: the config format
//! (with `lxc.include`), rootfs specs, id maps, subordinate id files and the
//! dependency files (`lxc_snapshots`, `lxc_rdepends`). Each property is
//! bounded (a few hundred cases) so that the whole file runs in seconds;
//! `PROPTEST_CASES` raises the count for a longer run.
//!
//! The properties: nothing panics, whatever the input; what a parser
//! accepts prints back to text that parses to the same thing.

use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use std::path::{Path, PathBuf};
use strata_core::config::{check_keys, Config, Line};
use strata_core::depfile::{add_dependency, dependents, depends_on, remove_dependency};
use strata_core::idmap::{parse_subid, IdMap, SubIds};
use strata_core::{ContainerRef, RootfsSpec};

fn cases(n: u32) -> PtConfig {
    PtConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        failure_persistence: None,
        ..PtConfig::default()
    }
}

// ---------------------------------------------------------------- strategies

/// Pieces config lines are made of: keys (current, legacy, positional
/// network ones), separators, quotes, comments, odd whitespace and bytes.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "lxc.", "lxc.uts.name", "lxc.utsname", "lxc.rootfs", "lxc.rootfs.path", "lxc.include",
            "lxc.network.type", "lxc.network.link", "lxc.network.0.link", "lxc.network.", "lxc.network.12",
            "lxc.net.0.type", "lxc.net.1.link", "lxc.network.ipv4", "lxc.idmap", "lxc.id_map", "lxc.limit.nofile",
            "lxc.prlimit.nofile", "lxc.mount.entry", "lxc.network", "lxc.cgroup.devices.allow", "lxc.limit.",
        ])
        .prop_map(str::to_string),
        3 => prop::sample::select(vec![
            "=", " = ", "==", "\"", "'", "#", " ", "\t", "\r", "\u{a0}", "\u{2028}", "\u{0}", "\u{7f}", ".", ":",
            "\\", "/", "0", "u 0 100000 65536", "veth", "é", "\u{feff}", "\u{1F600}",
        ])
        .prop_map(str::to_string),
        2 => "[a-z0-9._ =\"'#:/-]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn config_line() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..6).prop_map(|v| v.concat())
}

/// Config text: lines of fragments, with or without a final newline.
fn config_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(config_line(), 0..12), any::<bool>()).prop_map(|(lines, nl)| {
        let mut s = lines.join("\n");
        if nl {
            s.push('\n');
        }
        s
    })
}

/// Config text that parses: entries with plausible keys, comments and blanks.
fn valid_config_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        3 => (key(), "[ \t]{0,2}", "[ \t]{0,2}", value()).prop_map(|(k, a, b, v)| format!("{k}{a}={b}{v}")),
        1 => "[ \t]{0,3}(#[^\n\u{0}]{0,20})?",
    ];
    (prop::collection::vec(line, 0..16), any::<bool>()).prop_map(|(lines, nl)| {
        let mut s = lines.join("\n");
        if nl || s.is_empty() {
            s.push('\n');
        }
        s
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "lxc.uts.name",
            "lxc.utsname",
            "lxc.rootfs",
            "lxc.rootfs.path",
            "lxc.network.type",
            "lxc.network.link",
            "lxc.network.flags",
            "lxc.network.ipv4",
            "lxc.network.0.link",
            "lxc.network.1.type",
            "lxc.net.0.type",
            "lxc.net.0.link",
            "lxc.net.1.link",
            "lxc.idmap",
            "lxc.id_map",
            "lxc.limit.nofile",
            "lxc.prlimit.nofile",
            "lxc.mount.entry",
            "lxc.network",
            "lxc.network.3",
            "lxc.tty",
            "lxc.pts",
        ])
        .prop_map(str::to_string),
        "lxc\\.[a-z0-9_]{1,6}(\\.[a-z0-9_]{1,6}){0,2}",
    ]
}

/// A value as an edit writes it: anything but a newline or a NUL, with
/// surrounding blanks and quotes among them (written quoted).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[^\n\u{0}]{0,24}",
        1 => ("[ \t\"'\u{a0}]{0,2}", "[^\n\u{0}]{0,12}", "[ \t\"'\r]{0,2}").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Set(String, String),
    Append(String, String),
    Remove(String),
    Rewrite(String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| Edit::Set(k, v)),
        (key(), value()).prop_map(|(k, v)| Edit::Append(k, v)),
        key().prop_map(Edit::Remove),
        (key(), value()).prop_map(|(k, v)| Edit::Rewrite(k, v)),
    ]
}

fn entries(c: &Config) -> Vec<(String, String)> {
    c.entries().map(|(k, v)| (k.into_owned(), v.to_string())).collect()
}

/// Whether a key is an unindexed legacy network key (numbered by position).
fn positional(k: &str) -> bool {
    k.strip_prefix("lxc.network.")
        .is_some_and(|r| !r.is_empty() && !r.split('.').next().unwrap().bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------- config

proptest! {
    #![proptest_config(cases(512))]

    /// Arbitrary text never panics; accepted text prints back byte for byte
    /// and parses back to the same config.
    #[test]
    fn config_parse_fragments(text in config_text()) {
        if let Ok(c) = Config::parse(&text) {
            prop_assert_eq!(c.to_string(), text.clone());
            prop_assert_eq!(Config::parse(&c.to_string()).unwrap(), c.clone());
            let _ = c.unknown_keys();
            let _ = entries(&c);
        }
    }

    #[test]
    fn config_parse_arbitrary(text in any::<String>()) {
        if let Ok(c) = Config::parse(&text) {
            prop_assert_eq!(c.to_string(), text);
        }
    }

    /// Bytes from a file (NULs, bad UTF-8, CRs): `load` errs, never panics,
    /// and what it accepts is what `parse` accepts.
    #[test]
    fn config_load_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(&p, &bytes).unwrap();
        let loaded = Config::load(&p);
        match std::str::from_utf8(&bytes) {
            Ok(s) => prop_assert_eq!(loaded.is_ok(), Config::parse(s).is_ok()),
            Err(_) => prop_assert!(loaded.is_err()),
        }
        let _ = Config::load_effective(&p);
        let _ = check_keys(&p);
    }

    /// parse -> save -> load gives the same config and the same bytes.
    #[test]
    fn config_save_round_trip(text in valid_config_text()) {
        let _no_fsync = strata_core::durable::volatile();
        let c = Config::parse(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        c.save(&p).unwrap();
        prop_assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        prop_assert_eq!(Config::load(&p).unwrap(), c);
    }

    /// Edits (set, append, remove, rewrite; legacy and positional network
    /// keys among them) keep the config printable: the printed text parses
    /// back to the same entries, and each edit does what it says.
    #[test]
    fn config_edits_round_trip(text in valid_config_text(), edits in prop::collection::vec(edit(), 0..8)) {
        let mut c = Config::parse(&text).unwrap();
        for e in &edits {
            match e {
                Edit::Set(k, v) => {
                    c.set(k, v);
                    if !positional(k) {
                        prop_assert_eq!(c.get_all(k), vec![v.as_str()], "after set {} = {}", k, v);
                    }
                }
                Edit::Append(k, v) => {
                    c.append(k, v);
                    if !positional(k) {
                        prop_assert_eq!(c.get(k), Some(v.as_str()), "after append {} = {}", k, v);
                    }
                }
                Edit::Remove(k) => {
                    c.remove(k);
                    prop_assert!(c.get_all(k).is_empty(), "after remove {}", k);
                }
                Edit::Rewrite(k, v) => {
                    let ck = strata_core::config::canonical_key(k).into_owned();
                    let before = entries(&c);
                    c.rewrite(|key, _| (key == ck).then(|| v.clone()));
                    let want: Vec<(String, String)> =
                        before.into_iter().map(|(key, old)| if key == ck { (key, v.clone()) } else { (key, old) }).collect();
                    prop_assert_eq!(entries(&c), want, "after rewrite {}", k);
                }
            }
            let printed = c.to_string();
            let back = Config::parse(&printed);
            prop_assert!(back.is_ok(), "after {:?}: {:?} does not parse: {:?}", e, printed, back);
            prop_assert_eq!(entries(&back.unwrap()), entries(&c), "after {:?}: {:?}", e, printed);
        }
    }
}

/// One file of an include tree: its name and content.
fn include_tree() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    let content = prop_oneof![
        // Lines that include other files of the tree, a directory, or nothing.
        prop::collection::vec(
            prop_oneof![
                (0usize..4).prop_map(|i| format!("lxc.include = f{i}.conf").into_bytes()),
                Just(b"lxc.include = d/".to_vec()),
                Just(b"lxc.include = missing.d/".to_vec()),
                Just(b"lxc.include = ".to_vec()),
                Just(b"lxc.include = nowhere".to_vec()),
                Just(b"lxc.include = /dev/null".to_vec()),
                Just(b"lxc.uts.name = x".to_vec()),
                Just(b"lxc.bogus.key = 1".to_vec()),
                Just(b"# comment".to_vec()),
                prop::collection::vec(any::<u8>(), 0..16),
            ],
            0..6
        )
        .prop_map(|lines| lines.join(&b'\n')),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec((0usize..5, content), 1..6)
}

proptest! {
    #![proptest_config(cases(256))]

    /// `lxc.include` over random files (cycles, self-includes, directories,
    /// missing files, NULs, bad UTF-8): errors, never a panic or a hang.
    #[test]
    fn config_include_tree(files in include_tree()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for (i, content) in &files {
            // f0..f3 at the top, f4 in the included directory.
            let p = if *i == 4 { dir.path().join("d/f4.conf") } else { dir.path().join(format!("f{i}.conf")) };
            std::fs::write(p, content).unwrap();
        }
        let top = dir.path().join(format!("f{}.conf", files[0].0.min(3)));
        if top.exists() {
            let eff = Config::load_effective(&top);
            let checked = check_keys(&top);
            prop_assert!(checked.is_err() || eff.is_ok());
            if let Ok(c) = eff {
                let _ = entries(&c);
            }
        }
    }
}

/// Long lines and big files: refused with an error, not read without bound.
#[test]
fn config_long_lines_and_includes() {
    use strata_core::config::{MAX_CONFIG_BYTES, MAX_LINE_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let long = format!("lxc.uts.name = {}\n", "a".repeat(MAX_LINE_BYTES));
    assert!(Config::parse(&long).is_err());
    let ok = format!("lxc.uts.name = {}\n", "a".repeat(MAX_LINE_BYTES - 20));
    assert!(Config::parse(&ok).is_ok());
    let p = dir.path().join("long.conf");
    std::fs::write(&p, &long).unwrap();
    assert!(Config::load(&p).is_err());
    let main = dir.path().join("main.conf");
    std::fs::write(&main, "lxc.include = long.conf\n").unwrap();
    assert!(Config::load_effective(&main).is_err());
    // A sparse file over the size bound is refused before it is read.
    let big = dir.path().join("big.conf");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    assert!(Config::load(&big).is_err());
    // A NUL in an included file, and a fifo, are errors too.
    std::fs::write(dir.path().join("nul.conf"), b"lxc.uts.name = a\0b\n").unwrap();
    std::fs::write(&main, "lxc.include = nul.conf\n").unwrap();
    assert!(Config::load_effective(&main).is_err());
    let fifo = dir.path().join("fifo.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::write(&main, "lxc.include = fifo.conf\n").unwrap();
    assert!(Config::load_effective(&main).is_err());
    // Including a file twice at every level stays bounded.
    for i in 0..20 {
        std::fs::write(
            dir.path().join(format!("l{i}.conf")),
            format!("lxc.include = l{0}.conf\nlxc.include = l{0}.conf\n", i + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("l20.conf"), "lxc.uts.name = x\n").unwrap();
    assert!(Config::load_effective(&dir.path().join("l0.conf")).is_err());
}

// ---------------------------------------------------------------- rootfs specs

fn spec_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "dir:",
            "overlay:",
            "overlayfs:",
            "btrfs:",
            "lvm:",
            "zfs:",
            "loop:",
            "rbd:",
            "nbd:",
            "/",
            ":",
            ":/",
            "//",
            "@",
            "/dev/",
            "a",
            "lower",
            "\n",
            "\u{0}",
            " ",
            "é",
            "..",
        ])
        .prop_map(str::to_string),
        "[a-z/:@.]{0,6}",
    ];
    prop_oneof![
        3 => prop::collection::vec(piece, 0..8).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    /// parse(s).to_string() is s, and parses back to the same spec.
    #[test]
    fn rootfs_spec_round_trip(s in spec_text()) {
        if let Ok(spec) = RootfsSpec::parse(&s) {
            prop_assert_eq!(spec.to_string(), s.clone());
            prop_assert_eq!(RootfsSpec::parse(&spec.to_string()).unwrap(), spec.clone());
            let _ = (spec.kind(), spec.path(), spec.overlay_parts());
            if let Some((lower, upper)) = spec.overlay_parts() {
                prop_assert!(lower.starts_with('/') && upper.starts_with('/'));
            }
        }
    }

    /// Rebasing a path spec onto another absolute dir keeps it a valid spec.
    #[test]
    fn rootfs_spec_rebase(s in spec_text(), from in "/[a-z]{1,3}(/[a-z]{1,3}){0,2}", to in "/[a-z]{1,3}(/[a-z]{1,3}){0,2}") {
        if let Ok(spec) = RootfsSpec::parse(&s) {
            let r = spec.rebase(Path::new(&from), Path::new(&to));
            if matches!(spec.kind(), "dir" | "btrfs" | "loop" | "overlay") {
                let back = RootfsSpec::parse(&r.to_string());
                prop_assert!(back.is_ok(), "{} rebased from {} to {}: {}", s, from, to, r);
                prop_assert_eq!(back.unwrap(), r);
            }
        }
    }
}

// ---------------------------------------------------------------- id maps

/// `IdMap::map_uid` and its kin.
type MapFn = fn(&IdMap, u32) -> Option<u32>;

fn num_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        (0u32..70000).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "1",
            "65536",
            "4294967295",
            "4294967296",
            "-1",
            "+5",
            "0x10",
            "",
            "1e3",
            "٣"
        ])
        .prop_map(str::to_string),
    ]
}

fn idmap_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(vec!["u", "g", "b", "x", "U", ""]), num_text(), num_text(), num_text(), "[ \t]{1,2}")
            .prop_map(|(k, a, b, c, sp)| format!("{k}{sp}{a} {b}{sp}{c}")),
        1 => "[ugb0-9 \t-]{0,24}",
        1 => any::<String>(),
    ]
}

/// A valid map: disjoint ranges on both sides, built from sorted cut points.
fn valid_ranges() -> impl Strategy<Value = Vec<(u32, u32, u32)>> {
    (1usize..5)
        .prop_flat_map(|n| {
            (
                prop::collection::btree_set(any::<u32>(), 2 * n),
                prop::collection::btree_set(any::<u32>(), 2 * n),
                Just(n),
            )
        })
        .prop_flat_map(|(a, b, n)| {
            let a: Vec<u32> = a.into_iter().collect();
            let b: Vec<u32> = b.into_iter().collect();
            // Range i uses [a[2i], a[2i+1]) inside and a length-matched slice of b outside.
            let ranges: Vec<(u32, u32, u32)> = (0..n)
                .filter_map(|i| {
                    let count = (a[2 * i + 1] - a[2 * i]).min(b[2 * i + 1] - b[2 * i]);
                    (count > 0).then_some((a[2 * i], b[2 * i], count))
                })
                .collect();
            Just(ranges).prop_shuffle()
        })
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any lxc.idmap lines: an error or a valid map, never a panic.
    #[test]
    fn idmap_parse_arbitrary(lines in prop::collection::vec(idmap_line(), 0..6)) {
        if let Ok(m) = IdMap::parse(lines.iter().map(String::as_str)) {
            prop_assert!(m.validate().is_ok());
            let again = IdMap::parse(m.config_values().iter().map(String::as_str)).unwrap();
            prop_assert_eq!(again.config_values(), m.config_values());
            let _ = (m.root_uid(), m.root_gid(), m.to_shift(), m.to_unshift());
        }
        // The same lines through a config.
        let text: String = lines.iter().filter(|l| !l.contains(['\n', '\r', '\0'])).map(|l| format!("lxc.idmap = {l}\n")).collect();
        if let Ok(c) = Config::parse(&text) {
            let _ = IdMap::from_config(&c);
        }
    }

    /// A valid map is accepted and its mapping functions invert on every
    /// range's ends and a point inside; ids outside every range map to none.
    #[test]
    fn idmap_valid_inverts(ranges in valid_ranges(), probe in any::<u32>(), kind in prop::sample::select(vec!["u", "g", "b"])) {
        let lines: Vec<String> = ranges.iter().map(|(i, o, c)| format!("{kind} {i} {o} {c}")).collect();
        let m = IdMap::parse(lines.iter().map(String::as_str)).unwrap();
        let (map, unmap): (MapFn, MapFn) = if kind == "g" {
            (IdMap::map_gid, IdMap::unmap_gid)
        } else {
            (IdMap::map_uid, IdMap::unmap_uid)
        };
        for &(i, o, c) in &ranges {
            for id in [i, i + c - 1, i + (probe % c)] {
                let host = map(&m, id);
                prop_assert_eq!(host, Some(o + (id - i)));
                prop_assert_eq!(unmap(&m, host.unwrap()), Some(id));
            }
        }
        let inside = ranges.iter().any(|&(i, _, c)| probe >= i && ((probe - i) as u64) < c as u64);
        prop_assert_eq!(map(&m, probe).is_some(), inside);
        if let Some(h) = map(&m, probe) {
            prop_assert_eq!(unmap(&m, h), Some(probe));
        }
        // Printing and parsing again gives the same map.
        let again = IdMap::parse(m.config_values().iter().map(String::as_str)).unwrap();
        prop_assert_eq!(again.config_values(), m.config_values());
        let mut c = Config::parse("lxc.uts.name = x\n").unwrap();
        m.write_to_config(&mut c);
        let back = IdMap::from_config(&Config::parse(&c.to_string()).unwrap()).unwrap();
        prop_assert_eq!(back.config_values(), m.config_values());
    }

    /// Two ranges that share an id on either side are refused.
    #[test]
    fn idmap_overlap_refused(i in 0u32..1000, o in 0u32..1000, c in 1u32..1000, d in 0u32..1000, same_inside in any::<bool>()) {
        let d = d % c;
        let (a, b) = if same_inside {
            (format!("u {i} {o} {c}"), format!("u {} {} 1", i + d, o + c + 5000))
        } else {
            (format!("u {i} {o} {c}"), format!("u {} {} 1", i + c + 5000, o + d))
        };
        prop_assert!(IdMap::parse([a.as_str(), b.as_str()]).is_err());
    }

    /// check_allowed walks any subordinate ranges (overlapping, empty,
    /// reaching the top id) to an answer.
    #[test]
    fn idmap_check_allowed(ranges in valid_ranges(), sub in prop::collection::vec((any::<u32>(), any::<u32>()), 0..5), uid in prop_oneof![Just(0u32), any::<u32>()]) {
        let lines: Vec<String> = ranges.iter().map(|(i, o, c)| format!("b {i} {o} {c}")).collect();
        let m = IdMap::parse(lines.iter().map(String::as_str)).unwrap();
        let user = SubIds {
            name: "u".into(),
            uid,
            gid: uid,
            uids: sub.clone(),
            gids: sub,
            subuid_file: PathBuf::from("subuid"),
            subgid_file: PathBuf::from("subgid"),
        };
        let _ = m.check_allowed(&user);
    }

    /// /etc/subuid text: no panic; every range has a count.
    #[test]
    fn subid_parse(text in "([a-z0-9#: \t]{0,20}\n){0,6}", uid in 0u32..3) {
        for (_, count) in parse_subid(&text, "a", uid) {
            prop_assert!(count > 0);
        }
        let _ = parse_subid(&text, "", uid);
    }
}

// ---------------------------------------------------------------- dependency files
//
// Writes are made under `durable::volatile`: no fsync, no writeback.

/// Names as `names::validate` takes them (the clone side) and absolute lxcpaths.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,12}",
        "[^/\u{0}-\u{1f}\u{7f}-\u{9f}-][^/\u{0}-\u{1f}\u{7f}-\u{9f}]{0,8}",
    ]
    .prop_filter("a valid name", |n| strata_core::names::validate(n).is_ok())
}

fn lxcpath_tail() -> impl Strategy<Value = String> {
    "([^/\u{0}\n]{1,6}/){0,2}[^/\u{0}\n]{0,6}"
}

proptest! {
    #![proptest_config(cases(256))]

    /// lxc_snapshots / lxc_rdepends with any content: an error or a list,
    /// never a panic.
    #[test]
    fn deps_file_arbitrary(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        "([0-9 ]{0,4}\n)?([a-z/ ]{0,6}\n){0,6}".prop_map(String::into_bytes),
    ]) {
        let _no_fsync = strata_core::durable::volatile();
        let dir = tempfile::tempdir().unwrap();
        let r = ContainerRef::new(dir.path(), "c");
        std::fs::create_dir(r.dir()).unwrap();
        std::fs::write(r.dir().join("lxc_snapshots"), &bytes).unwrap();
        std::fs::write(r.dir().join("lxc_rdepends"), &bytes).unwrap();
        let a = dependents(&r);
        let b = depends_on(&r);
        prop_assert_eq!(a.is_ok(), b.is_ok());
        if a.is_ok() {
            let other = ContainerRef::new(dir.path(), "d");
            prop_assert!(add_dependency(&r, &other, &dir.path().join("c")).is_ok());
            prop_assert!(dependents(&r).unwrap().contains(&other));
            prop_assert!(remove_dependency(&r, &other).is_ok());
            prop_assert!(!dependents(&r).unwrap().contains(&other));
        }
    }

}

proptest! {
    #![proptest_config(cases(128))]

    /// Recording dependencies and reading them back gives the same refs,
    /// whatever the names and lxcpaths (as long as they can be recorded).
    #[test]
    fn deps_file_round_trip(clones in prop::collection::vec((lxcpath_tail(), name()), 1..5)) {
        let _no_fsync = strata_core::durable::volatile();
        let dir = tempfile::tempdir().unwrap();
        let origin = ContainerRef::new(dir.path(), "origin");
        std::fs::create_dir(origin.dir()).unwrap();
        let mut want = Vec::new();
        for (i, (tail, n)) in clones.iter().enumerate() {
            let clone = ContainerRef::new(dir.path().join(tail), n.as_str());
            let clone_dir = dir.path().join(format!("clone{i}"));
            std::fs::create_dir(&clone_dir).unwrap();
            add_dependency(&origin, &clone, &clone_dir).unwrap();
            if !want.contains(&clone) {
                want.push(clone.clone());
            }
            prop_assert_eq!(depends_on(&ContainerRef::new(dir.path(), format!("clone{i}"))).unwrap(), vec![origin.clone()]);
        }
        prop_assert_eq!(dependents(&origin).unwrap(), want.clone());
        for c in &want {
            remove_dependency(&origin, c).unwrap();
        }
        prop_assert!(dependents(&origin).unwrap().is_empty());
        prop_assert!(!origin.dir().join("lxc_snapshots").exists());
    }
}

/// Line shapes of a config the parser keeps as written.
#[test]
fn config_line_kinds() {
    let c = Config::parse("# c\n\nlxc.a = 1\n").unwrap();
    assert!(matches!(c.lines[0], Line::Other(_)));
    assert!(matches!(c.lines[2], Line::Entry { .. }));
}

/// Regression (found by the config_parse fuzz target): an edited value
/// with surrounding blanks, or wrapped in a pair of quotes of its own, was
/// written bare and read back trimmed or unquoted.
#[test]
fn config_edited_value_quoted() {
    for v in [" a", "a ", "\"x\"", "'x'", "\"", "\"\"", " 1c:3 rwm", "a\r", "\u{a0}x"] {
        let mut c = Config::parse("lxc.uts.name = old\n").unwrap();
        c.set("lxc.uts.name", v);
        let back = Config::parse(&c.to_string()).unwrap();
        assert_eq!(back.get("lxc.uts.name"), Some(v), "{:?}", c.to_string());
    }
}

/// Regression: `lxc_snapshots` was read with `str::lines`, which also ends
/// a line at "\r\n" and so dropped a '\r' ending an lxcpath, and trailing
/// blank lines were trimmed away even when they were a clone's name (a
/// name may be all blanks): the record no longer read back, or the file
/// stopped parsing at all (an odd number of lines), so the origin could
/// not be destroyed.
#[test]
fn deps_file_regressions() {
    let _no_fsync = strata_core::durable::volatile();
    for (tail, name) in [("\r", "a"), ("x", " "), ("x", "\u{a0}"), ("y\r", "  ")] {
        let dir = tempfile::tempdir().unwrap();
        let origin = ContainerRef::new(dir.path(), "origin");
        std::fs::create_dir(origin.dir()).unwrap();
        let clone = ContainerRef::new(dir.path().join(tail), name);
        std::fs::create_dir(dir.path().join("clone")).unwrap();
        add_dependency(&origin, &clone, &dir.path().join("clone")).unwrap();
        assert_eq!(dependents(&origin).unwrap(), vec![clone.clone()], "{tail:?} {name:?}");
        remove_dependency(&origin, &clone).unwrap();
        assert!(dependents(&origin).unwrap().is_empty());
    }
}

/// Regression (found by the deps_file fuzz target): a count line of 0
/// followed by a pair whose lxcpath is all digits. The count is not
/// written back when it is 0, so the lxcpath line was then read as the
/// count and the file no longer parsed.
#[test]
fn deps_file_digit_lxcpath() {
    let _no_fsync = strata_core::durable::volatile();
    let dir = tempfile::tempdir().unwrap();
    let origin = ContainerRef::new(dir.path(), "c");
    std::fs::create_dir(origin.dir()).unwrap();
    std::fs::write(origin.dir().join("lxc_snapshots"), "0\n2\nv").unwrap();
    assert_eq!(dependents(&origin).unwrap(), vec![ContainerRef::new("2", "v")]);
    let other = ContainerRef::new(dir.path(), "d");
    add_dependency(&origin, &other, &origin.dir()).unwrap();
    assert_eq!(
        dependents(&origin).unwrap(),
        vec![ContainerRef::new("2", "v"), other.clone()]
    );
    remove_dependency(&origin, &other).unwrap();
    assert_eq!(dependents(&origin).unwrap(), vec![ContainerRef::new("2", "v")]);
    // The old count-only form still reads as a count.
    std::fs::write(origin.dir().join("lxc_snapshots"), "3\n").unwrap();
    assert_eq!(dependents(&origin).unwrap(), vec![ContainerRef::unknown(dir.path())]);
}

/// Runs `f` on a thread; whether it finished within `secs`.
fn finishes_within(secs: u64, f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs)).is_ok()
}

/// A dependency file that is a fifo (or a device) is an error, not a
/// read that blocks for ever; a huge one is refused, not read into memory.
#[test]
fn deps_file_not_regular() {
    let dir = tempfile::tempdir().unwrap();
    let r = ContainerRef::new(dir.path(), "c");
    std::fs::create_dir(r.dir()).unwrap();
    let fifo = r.dir().join("lxc_snapshots");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let r2 = r.clone();
    let done = finishes_within(5, move || assert!(dependents(&r2).is_err()));
    if !done {
        // Unblock the reader before failing.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    assert!(done, "reading a fifo lxc_snapshots blocks");
    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/dev/zero", r.dir().join("lxc_rdepends")).unwrap();
    let r2 = r.clone();
    assert!(
        finishes_within(5, move || assert!(depends_on(&r2).is_err())),
        "reading /dev/zero as lxc_rdepends does not end"
    );
    std::fs::remove_file(r.dir().join("lxc_rdepends")).unwrap();
    let big = std::fs::File::create(r.dir().join("lxc_rdepends")).unwrap();
    big.set_len(1 << 30).unwrap();
    assert!(depends_on(&r).is_err(), "a sparse 1 GiB lxc_rdepends is read");
}

/// Regression: the overlap check of an id map is quadratic, and a config
/// within the reader's bounds holds hundreds of thousands of `lxc.idmap`
/// lines (40000 took seconds, a 16 MiB config minutes). More ranges than
/// the kernel takes (340 per map) are refused before that check.
#[test]
fn idmap_many_ranges() {
    let lines = |n: u32| (0..n).map(|i| format!("u {i} {} 1", 100000 + i)).collect::<Vec<_>>();
    let ok = lines(340);
    assert!(IdMap::parse(ok.iter().map(String::as_str)).is_ok());
    let many = lines(100_000);
    let t = std::time::Instant::now();
    assert!(IdMap::parse(many.iter().map(String::as_str)).is_err());
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}
