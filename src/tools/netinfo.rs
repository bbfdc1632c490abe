//! A running container's network as `lxc-info` and `lxc-ls` show it: the
//! addresses of its interfaces, read inside its network namespace (a
//! thread that joins it through /proc/PID/ns/net), and the host side of
//! its veth (the host interface whose ifindex is the container
//! interface's iflink and whose iflink is that interface's ifindex).

use anyhow::{anyhow, Context};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, Clone, Default)]
pub struct Net {
    /// Interface names, in the kernel's order (`lo` too).
    pub interfaces: Vec<String>,
    /// `(interface, address)`: IPv4 first, then global IPv6, as getifaddrs lists them.
    pub ipv4: Vec<(String, String)>,
    pub ipv6: Vec<(String, String)>,
    /// ifindex and iflink of the interface asked for.
    pub link: Option<(u32, u32)>,
}

impl Net {
    /// Addresses as LXC's `get_ips` lists them: no loopback, no link-local IPv6.
    pub fn ips(&self) -> Vec<&str> {
        self.ipv4
            .iter()
            .chain(&self.ipv6)
            .filter(|(i, _)| i != "lo")
            .map(|(_, a)| a.as_str())
            .collect()
    }
}

/// The network of the namespace of `pid`; `link_of` names an interface
/// whose ifindex/iflink to read. Root joins the namespace in a thread; a
/// user (who may not join a network namespace from the host's user
/// namespace) in a child that joins the container's user namespace first.
pub fn inspect(pid: i32, link_of: Option<&str>) -> anyhow::Result<Net> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("open the network namespace of {pid}"))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return inspect_forked(pid, &ns, link_of);
    }
    let link_of = link_of.map(str::to_string);
    std::thread::spawn(move || -> anyhow::Result<Net> {
        // SAFETY: setns on this thread only (a network namespace is per thread); the thread ends here.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(anyhow!(
                "join the network namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut n = addresses()?;
        if let Some(name) = link_of {
            n.link = iflink(&name);
        }
        Ok(n)
    })
    .join()
    .map_err(|_| anyhow!("network inspection failed"))?
}

/// [`inspect`] in a forked child that joins the user namespace of `pid`
/// (where the user who owns it has the capabilities), then its network
/// namespace; the child reports in lines on a pipe.
fn inspect_forked(pid: i32, net: &std::fs::File, link_of: Option<&str>) -> anyhow::Result<Net> {
    use std::io::Read;
    let user = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .with_context(|| format!("open the user namespace of {pid}"))?;
    let (r, w) = nix::unistd::pipe()?;
    // SAFETY: this front end runs no other thread; the child only joins
    // namespaces, reads addresses, writes to the pipe and _exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let code = (|| -> Option<()> {
                let same_user = std::fs::read_link("/proc/self/ns/user").ok()
                    == std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
                // SAFETY: `user` is an open namespace fd borrowed for the call, in this single-threaded forked
                // child; setns reads no memory of ours.
                if !same_user && unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
                    return None;
                }
                // SAFETY: `net` is an open namespace fd borrowed for the call, in this single-threaded forked
                // child; setns reads no memory of ours.
                if unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                let mut n = addresses().ok()?;
                if let Some(name) = link_of {
                    n.link = iflink(name);
                }
                let mut out = String::new();
                for i in &n.interfaces {
                    out.push_str(&format!("I {i}\n"));
                }
                for (i, a) in &n.ipv4 {
                    out.push_str(&format!("4 {i} {a}\n"));
                }
                for (i, a) in &n.ipv6 {
                    out.push_str(&format!("6 {i} {a}\n"));
                }
                if let Some((x, l)) = n.link {
                    out.push_str(&format!("L {x} {l}\n"));
                }
                std::fs::File::from(w).write_all(out.as_bytes()).ok()
            })()
            .map_or(1, |_| 0);
            // SAFETY: leave the child at once, running no destructor of the parent's state.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            std::fs::File::from(r).read_to_string(&mut text)?;
            let st = nix::sys::wait::waitpid(child, None)?;
            if !matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)) {
                return Err(anyhow!("could not join the namespaces of {pid}"));
            }
            let mut n = Net::default();
            for l in text.lines() {
                let f: Vec<&str> = l.splitn(3, ' ').collect();
                match f.as_slice() {
                    ["I", i] => n.interfaces.push(i.to_string()),
                    ["4", i, a] => n.ipv4.push((i.to_string(), a.to_string())),
                    ["6", i, a] => n.ipv6.push((i.to_string(), a.to_string())),
                    ["L", x, l] => n.link = Some((x.parse()?, l.parse()?)),
                    _ => {}
                }
            }
            Ok(n)
        }
    }
}

fn addresses() -> anyhow::Result<Net> {
    let mut n = Net::default();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(anyhow!("getifaddrs: {}", std::io::Error::last_os_error()));
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it says.
        match unsafe { (*ifa.ifa_addr).sa_family } as i32 {
            libc::AF_PACKET if !n.interfaces.contains(&name) => n.interfaces.push(name),
            libc::AF_PACKET => {}
            libc::AF_INET => {
                // SAFETY: the family is AF_INET, so `ifa_addr` points to a sockaddr_in that lives as long as the
                // getifaddrs list, freed only after this loop.
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let a = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
                n.ipv4.push((name, a.to_string()));
            }
            libc::AF_INET6 => {
                // SAFETY: the family is AF_INET6, so `ifa_addr` points to a sockaddr_in6 that lives as long as the
                // getifaddrs list, freed only after this loop.
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                // LXC lists only addresses without a scope id (no link-local).
                if sa.sin6_scope_id == 0 {
                    let a = std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr);
                    n.ipv6.push((name, a.to_string()));
                }
            }
            _ => {}
        }
    }
    // SAFETY: the list from getifaddrs above.
    unsafe { libc::freeifaddrs(head) };
    Ok(n)
}

/// ifindex and IFLA_LINK of `name`, by one RTM_GETLINK request.
fn iflink(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return None;
    }
    // SAFETY: a netlink socket, owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: socket succeeded, so `fd` is a new fd owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (len, type, flags, seq, pid) + ifinfomsg (family, pad, type, index, flags, change).
    let mut req = Vec::with_capacity(32);
    req.extend_from_slice(&32u32.to_ne_bytes());
    req.extend_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&(index as i32).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // SAFETY: sends our buffer on our socket (to the kernel: no address needed for netlink send).
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } != req.len() as isize {
        return None;
    }
    let mut buf = vec![0u8; 32 << 10];
    // SAFETY: receives into our buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 32 {
        return None;
    }
    let buf = &buf[..n as usize];
    let u16_at = |o: usize| u16::from_ne_bytes([buf[o], buf[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
    if u16_at(4) != libc::RTM_NEWLINK {
        return None;
    }
    let len = (u32_at(0) as usize).min(buf.len());
    let mut o = 32;
    while o + 4 <= len {
        let alen = u16_at(o) as usize;
        let atype = u16_at(o + 2) & 0x3fff;
        if alen < 4 || o + alen > len {
            break;
        }
        if atype == libc::IFLA_LINK && alen >= 8 {
            return Some((index, u32_at(o + 4)));
        }
        o += (alen + 3) & !3;
    }
    None
}

/// The host interface paired with a container interface of ifindex
/// `index` and iflink `link`.
pub fn host_peer(index: u32, link: u32) -> Option<String> {
    let rd = std::fs::read_dir("/sys/class/net").ok()?;
    let num = |p: std::path::PathBuf| -> Option<u32> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    rd.flatten()
        .find(|e| num(e.path().join("ifindex")) == Some(link) && num(e.path().join("iflink")) == Some(index))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// `rx_bytes`/`tx_bytes` of a host interface.
pub fn host_bytes(ifname: &str) -> (Option<u64>, Option<u64>) {
    let rd = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    (rd("rx_bytes"), rd("tx_bytes"))
}
