#![no_main]
//! `lxc_snapshots`/`lxc_rdepends` content: read as a container's
//! dependents and dependencies; where it reads, a dependency is added,
//! read back and removed again.

use libfuzzer_sys::fuzz_target;
use strata_core::depfile::{add_dependency, dependents, depends_on, remove_dependency};
use strata_core::ContainerRef;

fuzz_target!(|data: &[u8]| {
    let _no_fsync = strata_core::durable::volatile();
    let dir = tempfile::tempdir().unwrap();
    let r = ContainerRef::new(dir.path(), "c");
    std::fs::create_dir(r.dir()).unwrap();
    std::fs::write(r.dir().join("lxc_snapshots"), data).unwrap();
    std::fs::write(r.dir().join("lxc_rdepends"), data).unwrap();
    let deps = dependents(&r);
    assert_eq!(deps.is_ok(), depends_on(&r).is_ok());
    let Ok(deps) = deps else {
        return;
    };
    let other = ContainerRef::new(dir.path(), "d");
    add_dependency(&r, &other, &dir.path().join("c")).unwrap();
    let after = dependents(&r).unwrap();
    assert!(after.contains(&other));
    for d in &deps {
        assert!(after.contains(d), "{d:?} lost when {other:?} was added");
    }
    remove_dependency(&r, &other).unwrap();
    let _ = dependents(&r).unwrap();
});
