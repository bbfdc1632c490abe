//! Counters of a host link (a veth's host end), as `lxc-info` shows them.

/// (tx bytes, rx bytes) of the host interface `name`, if it exists.
pub fn link_bytes(name: &str) -> Option<(u64, u64)> {
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("tx_bytes")?, read("rx_bytes")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_counters() {
        assert!(super::link_bytes("lo").is_some());
        assert!(super::link_bytes("no-such-link0").is_none());
    }
}
