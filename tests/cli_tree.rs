//! `strata tree`: containers, snapshots and the clones that hang on them,
//! and lxc-destroy's refusals pointing to it.

mod common;
use common::*;

fn names(v: &serde_json::Value) -> Vec<(String, String)> {
    v["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn clones_and_snapshots_hang_on_their_origin() {
    let env = Env::new();
    env.make_container("base");
    env.make_container("alone");
    env.ok("lxc-copy", &["-n", "base", "-N", "o1", "-s"]);
    env.ok("lxc-snapshot", &["-n", "base"]);
    env.ok("lxc-copy", &["-n", "base", "-N", "o2", "-s"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&env.ok("strata", &["tree", "--json"])).unwrap();
    let roots: Vec<&str> = v.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(roots, ["alone", "base"], "{v:?}");
    let base = &v[1];
    assert_eq!(base["backend"], "dir");
    assert!(base["size"].as_u64().unwrap() > 0);
    assert!(base["age_seconds"].as_u64().unwrap() < 600);
    assert_eq!(
        names(base),
        [
            ("snap0".to_string(), "snapshot".to_string()),
            ("o1".into(), "clone".into()),
            ("o2".into(), "clone".into())
        ]
    );
    assert_eq!(base["children"][1]["backend"], "overlay");

    // The drawing: one line per node, branches as `tree` draws them.
    let text = env.ok("strata", &["tree"]);
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l.len(), 5, "{text}");
    assert!(l[0].starts_with("alone (dir, "), "{text}");
    assert!(l[1].starts_with("base (dir, "), "{text}");
    assert!(l[2].starts_with("├── snap0 [snapshot] ("), "{text}");
    assert!(l[3].starts_with("├── o1 [clone] (overlay, "), "{text}");
    assert!(l[4].starts_with("└── o2 [clone] (overlay, "), "{text}");

    // -n: that container and what hangs on it.
    let one = env.ok("strata", &["tree", "-n", "o1"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.starts_with("o1 (overlay, "), "{one}");

    // lxc-destroy refuses, naming the tree command that shows why.
    let before = tree(&env.area);
    let e = env.fails("lxc-destroy", &["-n", "base", "-s"]);
    assert!(
        e.contains("o1") && e.contains("strata tree -P ") && e.contains("-n base"),
        "{e}"
    );
    assert_same_tree("refused destroy", &before, &tree(&env.area));
    env.ok("lxc-destroy", &["-n", "o1"]);
    env.ok("lxc-destroy", &["-n", "o2"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&env.ok("strata", &["tree", "--json", "-n", "base"])).unwrap();
    assert_eq!(names(&v[0]), [("snap0".to_string(), "snapshot".to_string())]);
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let env = Env::new();
    env.make_container("t1");
    let before = tree(&env.area);
    for args in [
        &["tree", "-n", "nope"][..],
        &["tree", "-n", "../t1"],
        &["tree", "--bogus"],
        &["tree", "extra"],
    ] {
        env.fails("strata", args);
    }
    assert_same_tree("strata tree (bad input)", &before, &tree(&env.area));
}
