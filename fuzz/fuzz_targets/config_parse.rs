#![no_main]
//! The config format. Even first byte: the rest is config text, parsed,
//! printed (byte for byte), parsed again and edited. Odd first byte: the
//! rest is up to five files split at 0xff bytes (`f0.conf`..`f3.conf` and
//! `d/f4.conf`, NULs and bad UTF-8 included) read through `lxc.include`
//! from `f0.conf`.

use libfuzzer_sys::fuzz_target;
use strata_core::config::{canonical_key, check_keys, Config};

fn entries(c: &Config) -> Vec<(String, String)> {
    c.entries().map(|(k, v)| (k.into_owned(), v.to_string())).collect()
}

fn text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Config::parse(text) else {
        return;
    };
    assert_eq!(c.to_string(), text, "printing changes the text");
    assert_eq!(Config::parse(text).unwrap(), c);
    let _ = c.unknown_keys();
    let _ = strata_core::idmap::IdMap::from_config(&c);
    let keys: Vec<String> = entries(&c).into_iter().map(|(k, _)| k).collect();
    for k in &keys {
        assert_eq!(canonical_key(k), k.as_str(), "canonical key {k:?} is not canonical");
    }
    // Edits through each kind of key found, then print and parse again.
    let mut e = c.clone();
    if let Some(k) = keys.first() {
        e.set(k, "v");
        assert_eq!(e.get_all(k), vec!["v"], "set {k}");
    }
    if let Some(k) = keys.last() {
        e.append(k, "w");
        assert_eq!(e.get(k), Some("w"), "append {k}");
    }
    if let Some(k) = keys.get(keys.len() / 2) {
        e.rewrite(|key, v| (key == k).then(|| format!("{v}x")));
    }
    if let Some(k) = keys.get(1) {
        e.remove(k);
        assert!(e.get_all(k).is_empty(), "remove {k}");
    }
    let printed = e.to_string();
    let back = Config::parse(&printed).expect("an edited config prints to text that parses");
    assert_eq!(
        entries(&back),
        entries(&e),
        "edited config reads back differently: {printed:?}"
    );
}

fn files(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    for (i, content) in data.split(|&b| b == 0xff).take(5).enumerate() {
        let p = if i == 4 {
            dir.path().join("d/f4.conf")
        } else {
            dir.path().join(format!("f{i}.conf"))
        };
        std::fs::write(p, content).unwrap();
    }
    let top = dir.path().join("f0.conf");
    let eff = Config::load_effective(&top);
    let checked = check_keys(&top);
    assert!(checked.is_err() || eff.is_ok());
    if let Ok(c) = Config::load(&top) {
        assert_eq!(
            Some(c),
            std::str::from_utf8(data.split(|&b| b == 0xff).next().unwrap())
                .ok()
                .and_then(|t| Config::parse(t).ok())
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m & 1 == 0 => text(rest),
        Some((_, rest)) => files(rest),
        None => {}
    }
});
