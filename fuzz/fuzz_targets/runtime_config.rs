#![no_main]
//! A container config as the runtime reads it at start: mount entries,
//! lxc.mount.auto, capabilities, prlimits, signals, ttys, network, the
//! cgroup keys, device rules and their BPF program.

use libfuzzer_sys::fuzz_target;
use strata_core::config::Config;
use strata_runtime::cgroup::{device_program, DeviceList, Spec};
use strata_runtime::conf::{check_implemented, AutoMounts, RunConfig};
use strata_runtime::confine::Confine;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text) else {
        return;
    };
    let _ = check_implemented(&cfg);
    let _ = AutoMounts::parse(&cfg);
    let _ = Confine::from_config(&cfg);
    if let Ok(rc) = RunConfig::from_config("c", &cfg, Some("/var/lib/lxc/c/rootfs")) {
        for m in &rc.mounts {
            assert!(!m.target.starts_with('/') && !m.target.split('/').any(|c| c == ".."));
        }
        assert!((1..=libc::SIGRTMAX()).contains(&rc.halt_signal));
    }
    if let Ok(s) = Spec::from_config(&cfg) {
        for list in [&s.v1, &s.v2] {
            if let Ok(l) = DeviceList::from_settings(list.iter()) {
                let _ = device_program(&l);
            }
        }
    }
});
