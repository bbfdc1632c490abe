#![no_main]
//! Seccomp policy text (`lxc.seccomp.profile`), through the public path: a
//! profile file named by a config, parsed and compiled with libseccomp.

use libfuzzer_sys::fuzz_target;
use strata_core::config::Config;
use strata_runtime::seccomp::Filter;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("profile.seccomp");
    std::fs::write(&p, data).unwrap();
    let cfg = Config::parse(&format!(
        "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = 1\n",
        p.display()
    ))
    .unwrap();
    if let Ok(Some(f)) = Filter::from_config(&cfg) {
        assert!(f.instructions() > 0);
    }
});
