#![no_main]
//! `lxc.idmap` values, one a line: a valid map's mapping functions invert
//! on every range's ends, and it prints to lines that parse to the same map.

use libfuzzer_sys::fuzz_target;
use strata_core::idmap::{parse_subid, IdMap};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_subid(text, "root", 0);
    let Ok(m) = IdMap::parse(text.split('\n')) else {
        return;
    };
    m.validate().expect("a parsed map is valid");
    for (ranges, gids) in [(&m.uids, false), (&m.gids, true)] {
        let map = |id| if gids { m.map_gid(id) } else { m.map_uid(id) };
        let unmap = |id| if gids { m.unmap_gid(id) } else { m.unmap_uid(id) };
        for r in ranges {
            for id in [r.inside, r.inside + (r.count - 1) / 2, r.inside + (r.count - 1)] {
                let host = map(id);
                assert_eq!(host, Some(r.outside + (id - r.inside)));
                assert_eq!(unmap(host.unwrap()), Some(id));
            }
        }
    }
    let again = IdMap::parse(m.config_values().iter().map(String::as_str)).expect("printed map parses");
    assert_eq!(again.config_values(), m.config_values());
});
