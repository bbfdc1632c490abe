#![no_main]
//! `lxc.rootfs.path` values: parse, print (the same text), parse again;
//! rebase a path spec between two dirs and parse the result.

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata_core::RootfsSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = RootfsSpec::parse(s) else {
        return;
    };
    assert_eq!(spec.to_string(), s);
    assert_eq!(RootfsSpec::parse(&spec.to_string()).unwrap(), spec);
    let _ = (spec.kind(), spec.prefix(), spec.path());
    if let Some((lower, upper)) = spec.overlay_parts() {
        assert!(lower.starts_with('/') && upper.starts_with('/'));
    }
    if matches!(spec.kind(), "dir" | "btrfs" | "loop" | "overlay") {
        let from = Path::new(spec.overlay_parts().map_or(spec.source(), |(_, u)| u));
        for (from, to) in [(from, Path::new("/new/place")), (Path::new("/"), Path::new("/x"))] {
            let r = spec.rebase(from, to);
            let back = RootfsSpec::parse(&r.to_string());
            assert_eq!(back.ok(), Some(r.clone()), "{s:?} rebased from {from:?} to {to:?}: {r}");
        }
    }
});
