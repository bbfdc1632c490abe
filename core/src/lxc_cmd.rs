//! LXC's command socket: the abstract unix socket a running container's
//! monitor answers on (LXC's own, or strata's), its wire format, and the
//! two questions strata asks of a container LXC runs (state, init pid).
//!
//! Wire format (LXC 5, native byte order): a request is a 16-byte header
//! `{i32 cmd, i32 datalen, u64 unused}` then `datalen` bytes; a response
//! is `{i32 ret, i32 datalen, u64 value}` (fds attached to it with
//! SCM_RIGHTS) then `datalen` bytes. Small answers (pid, state, clone
//! flags) travel in `value`.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Commands by LXC's numbers (`lxc_cmd_t`).
pub mod cmd {
    pub const GET_TTY_FD: i32 = 0;
    pub const TERMINAL_WINCH: i32 = 1;
    pub const STOP: i32 = 2;
    pub const GET_STATE: i32 = 3;
    pub const GET_INIT_PID: i32 = 4;
    pub const GET_CLONE_FLAGS: i32 = 5;
    pub const GET_CGROUP: i32 = 6;
    pub const GET_CONFIG_ITEM: i32 = 7;
    pub const GET_NAME: i32 = 8;
    pub const GET_LXCPATH: i32 = 9;
    pub const ADD_STATE_CLIENT: i32 = 10;
    pub const SERVE_STATE_CLIENTS: i32 = 12;
    pub const GET_CGROUP2_FD: i32 = 17;
    pub const GET_LIMIT_CGROUP: i32 = 19;
    pub const GET_LIMIT_CGROUP2_FD: i32 = 20;
    pub const GET_DEVPTS_FD: i32 = 21;
    pub const GET_INIT_PIDFD: i32 = 18;
    pub const GET_CGROUP_CTX: i32 = 23;
    pub const GET_CGROUP_FD: i32 = 24;
    pub const GET_LIMIT_CGROUP_FD: i32 = 25;
}

/// LXC's `MAX_STATE`: the number of states, and the answer to
/// `ADD_STATE_CLIENT` meaning "the state will come on this socket".
pub const MAX_STATE: i32 = 8;

/// Size of LXC's `struct lxc_msg` (type, name[NAME_MAX + 1], value): a
/// state notification to a state client.
pub const MSG_SIZE: usize = 264;

/// The largest request payload accepted (LXC's is two paths).
pub const DATA_MAX: usize = 8192;

/// FNV-1a, 64 bit, as LXC hashes a too-long socket name.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The abstract socket name (without its leading NUL) of the command socket
/// of `name` in `lxcpath`: `LXCPATH/NAME/command`, or LXC's hashed form when
/// that does not fit in `sun_path` with a NUL on both ends.
pub fn socket_name(lxcpath: &Path, name: &str) -> Vec<u8> {
    const ROOM: usize = 108 - 2;
    let lp = lxcpath.as_os_str().as_encoded_bytes();
    let mut plain = Vec::with_capacity(lp.len() + name.len() + 10);
    plain.extend_from_slice(lp);
    plain.push(b'/');
    plain.extend_from_slice(name.as_bytes());
    let hash_input_len = plain.len();
    plain.extend_from_slice(b"/command");
    if plain.len() < ROOM {
        return plain;
    }
    format!("lxc/{:016x}/command", fnv1a64(&plain[..hash_input_len])).into_bytes()
}

/// The address of that socket.
pub fn socket_addr(lxcpath: &Path, name: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(socket_name(lxcpath, name))
}

/// A response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsp {
    pub ret: i32,
    pub datalen: i32,
    pub value: u64,
}

impl Rsp {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.ret.to_ne_bytes());
        b[4..8].copy_from_slice(&self.datalen.to_ne_bytes());
        b[8..].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Rsp {
        Rsp {
            ret: i32::from_ne_bytes(b[..4].try_into().unwrap_or_default()),
            datalen: i32::from_ne_bytes(b[4..8].try_into().unwrap_or_default()),
            value: u64::from_ne_bytes(b[8..].try_into().unwrap_or_default()),
        }
    }
}

/// Names of the containers of `lxcpath` whose command socket is bound,
/// from /proc/net/unix, as LXC's lxc-ls lists its active containers: a
/// volatile one (running from a config file, never defined in the lxcpath)
/// shows only there. A plain name (`@LXCPATH/NAME/command`) says it; a
/// hashed one (`@lxc/HASH/command`, for a long lxcpath) is asked for its
/// lxcpath and name, as LXC asks it.
/// `bound` is the table [`bound_abstract`] read (`None`: unreadable, no names).
pub fn bound_names(lxcpath: &Path, bound: Option<&std::collections::HashSet<Vec<u8>>>) -> Vec<String> {
    let Some(bound) = bound else {
        return Vec::new();
    };
    let prefix = format!("{}/", lxcpath.display());
    let mut v: Vec<String> = bound
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter_map(|p| p.strip_prefix(prefix.as_str())?.strip_suffix("/command"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string)
        .collect();
    let want = lxcpath.as_os_str().as_encoded_bytes();
    for sock in bound.iter().filter(|n| is_hashed(n)) {
        if ask_data(sock, cmd::GET_LXCPATH).as_deref() != Some(want) {
            continue;
        }
        if let Some(name) = ask_data(sock, cmd::GET_NAME).and_then(|n| String::from_utf8(n).ok()) {
            if !name.is_empty() && !name.contains('/') && socket_name(lxcpath, &name) == *sock {
                v.push(name);
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// `lxc/` + 16 hex digits + `/command`: LXC's name of a command socket
/// whose plain name would not fit.
fn is_hashed(n: &[u8]) -> bool {
    n.len() == 4 + 16 + 8
        && n.starts_with(b"lxc/")
        && n.ends_with(b"/command")
        && n[4..20].iter().all(u8::is_ascii_hexdigit)
}

/// The data of the answer to a payload-less command `cmd` on the abstract
/// socket `sock`, without its trailing NULs; `None` when nothing answers,
/// the answer is an error or longer than [`DATA_MAX`].
fn ask_data(sock: &[u8], cmd: i32) -> Option<Vec<u8>> {
    let addr = SocketAddr::from_abstract_name(sock).ok()?;
    let mut s = UnixStream::connect_addr(&addr).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    s.write_all(&req_bytes(cmd, 0)).ok()?;
    let mut b = [0u8; 16];
    s.read_exact(&mut b).ok()?;
    let rsp = Rsp::from_bytes(&b);
    let len = usize::try_from(rsp.datalen).ok().filter(|l| *l <= DATA_MAX)?;
    if rsp.ret < 0 {
        return None;
    }
    let mut data = vec![0u8; len];
    s.read_exact(&mut data).ok()?;
    while data.last() == Some(&0) {
        data.pop();
    }
    Some(data)
}

pub fn req_bytes(cmd: i32, datalen: i32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&cmd.to_ne_bytes());
    b[4..8].copy_from_slice(&datalen.to_ne_bytes());
    b
}

/// Command and payload length from a request header.
pub fn parse_req(b: &[u8; 16]) -> (i32, i32) {
    (
        i32::from_ne_bytes(b[..4].try_into().unwrap_or_default()),
        i32::from_ne_bytes(b[4..8].try_into().unwrap_or_default()),
    )
}

/// A bounded wait: a monitor that accepts but never answers costs a caller
/// this much, never a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Ask a payload-less command of the monitor of `name`; `None` when nothing
/// listens (the common case, one failed connect) or the answer is short.
fn ask(lxcpath: &Path, name: &str, cmd: i32) -> Option<Rsp> {
    let addr = socket_addr(lxcpath, name).ok()?;
    let mut s = UnixStream::connect_addr(&addr).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    s.write_all(&req_bytes(cmd, 0)).ok()?;
    let mut b = [0u8; 16];
    s.read_exact(&mut b).ok()?;
    Some(Rsp::from_bytes(&b))
}

/// Tell the monitor of `name` that its state became `state` (LXC's number),
/// as LXC's own lxc-freeze does after writing the freezer: LXC's monitor
/// keeps it as the container's state and wakes its state clients. Whether a
/// monitor took it.
pub fn serve_state_clients(lxcpath: &Path, name: &str, state: i32) -> bool {
    let Ok(addr) = socket_addr(lxcpath, name) else {
        return false;
    };
    let Ok(mut s) = UnixStream::connect_addr(&addr) else {
        return false;
    };
    let mut h = req_bytes(cmd::SERVE_STATE_CLIENTS, 0);
    h[8..].copy_from_slice(&(state as u64).to_ne_bytes());
    let mut b = [0u8; 16];
    s.set_read_timeout(Some(TIMEOUT)).is_ok()
        && s.write_all(&h).is_ok()
        && s.read_exact(&mut b).is_ok()
        && Rsp::from_bytes(&b).ret >= 0
}

/// Wait (up to `timeout`) until no monitor answers for `name` any more:
/// LXC's monitor has finished tearing the container down. Whether it did.
pub fn wait_gone(lxcpath: &Path, name: &str, timeout: Duration) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        let Ok(addr) = socket_addr(lxcpath, name) else {
            return true;
        };
        if UnixStream::connect_addr(&addr).is_err() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The abstract unix socket names bound in this network namespace, read
/// from `/proc/net/unix` in one go: a listing of many containers then
/// connects only to the sockets that exist (a connect reaches only this
/// namespace's sockets too, so the two agree). `None` when the table cannot
/// be read; callers then connect as before.
pub fn bound_abstract() -> Option<std::collections::HashSet<Vec<u8>>> {
    let data = std::fs::read("/proc/net/unix").ok()?;
    Some(parse_unix_table(&data))
}

/// The abstract names of a `/proc/net/unix` table: the path column (the
/// eighth) of each row that starts with `@`, without it. The kernel prints
/// each NUL of a name as `@`; a name bound with trailing NULs (a full
/// `sun_path`) thus ends in `@`s, dropped here: the names looked up all end
/// in `/command`.
fn parse_unix_table(data: &[u8]) -> std::collections::HashSet<Vec<u8>> {
    let mut out = std::collections::HashSet::new();
    for line in data.split(|b| *b == b'\n').skip(1) {
        // Seven space-separated columns (the inode one padded), then the path.
        let mut rest = line;
        let mut ok = true;
        for _ in 0..7 {
            let start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
            rest = &rest[start..];
            let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
            if end == 0 {
                ok = false;
                break;
            }
            rest = &rest[end..];
        }
        let Some(path) = rest.strip_prefix(b" @").filter(|_| ok) else {
            continue;
        };
        let mut name = path.to_vec();
        while name.last() == Some(&b'@') {
            name.pop();
        }
        out.insert(name);
    }
    out
}

/// Whether the command socket of `name` may be bound, given the bound
/// names of [`bound_abstract`]. A name the table cannot show faithfully (a
/// newline or NUL in it) may be.
pub fn may_listen(bound: &std::collections::HashSet<Vec<u8>>, lxcpath: &Path, name: &str) -> bool {
    let n = socket_name(lxcpath, name);
    n.contains(&b'\n') || n.contains(&0) || bound.contains(&n)
}

/// What the monitor of a container run by LXC (or any monitor answering
/// LXC's socket) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// LXC's state number (`lxc_state_t`: 0 STOPPED, 1 STARTING, 2 RUNNING, ...).
    pub state: i32,
    /// Init's pid in our pid namespace (0 while there is none).
    pub init_pid: i32,
}

/// Ask the command socket of `name` for its state and init pid, as LXC's
/// own tools do; `None` when nothing answers (not running under LXC).
pub fn probe(lxcpath: &Path, name: &str) -> Option<Answer> {
    let _s = tracing::debug_span!("lxc_cmd_probe", name).entered();
    let st = ask(lxcpath, name, cmd::GET_STATE)?;
    if st.ret < 0 {
        return None;
    }
    let state = st.value as i32;
    if !(0..MAX_STATE).contains(&state) {
        return None;
    }
    let init_pid = match ask(lxcpath, name, cmd::GET_INIT_PID) {
        Some(r) if r.ret >= 0 => i32::try_from(r.value).unwrap_or(0).max(0),
        _ => 0,
    };
    Some(Answer { state, init_pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_plain_and_hashed() {
        assert_eq!(
            socket_name(Path::new("/var/lib/lxc"), "c1"),
            b"/var/lib/lxc/c1/command".to_vec()
        );
        // 106 bytes or more with the suffix: LXC's hashed form of "LXCPATH/NAME".
        let long = format!("/{}", "x".repeat(100));
        let n = socket_name(Path::new(&long), "c1");
        let h = fnv1a64(format!("{long}/c1").as_bytes());
        assert_eq!(n, format!("lxc/{h:016x}/command").into_bytes());
        // The FNV-1a reference value of "a".
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn headers_round_trip() {
        let r = Rsp {
            ret: -38,
            datalen: 5,
            value: 1234,
        };
        assert_eq!(Rsp::from_bytes(&r.to_bytes()), r);
        assert_eq!(parse_req(&req_bytes(cmd::GET_CGROUP_CTX, 96)), (23, 96));
    }

    #[test]
    fn unix_table_abstract_names() {
        let t = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000 00010000 0001 01 12345 @/var/lib/lxc/c1/command\n\
0000000000000000: 00000002 00000000 00010000 0001 01  1234 @/var/lib/lxc/a b/command@@@\n\
0000000000000000: 00000003 00000000 00000000 0001 03  4321 /run/systemd/notify\n\
0000000000000000: 00000003 00000000 00000000 0001 03  4322\n";
        let s = parse_unix_table(t);
        assert!(s.contains(b"/var/lib/lxc/c1/command".as_slice()));
        assert!(s.contains(b"/var/lib/lxc/a b/command".as_slice()));
        assert_eq!(s.len(), 2);
        assert!(may_listen(&s, Path::new("/var/lib/lxc"), "c1"));
        assert!(!may_listen(&s, Path::new("/var/lib/lxc"), "c2"));
        assert!(may_listen(&s, Path::new("/var/lib/lxc"), "c\n2"));
    }

    #[test]
    fn a_bound_socket_is_in_the_table() {
        let name = format!("/strata-test-{}/c1/command", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _l = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let s = bound_abstract().expect("/proc/net/unix readable");
        assert!(s.contains(name.as_bytes()));
        let lp = format!("/strata-test-{}", std::process::id());
        assert!(may_listen(&s, Path::new(&lp), "c1"));
        assert!(!may_listen(&s, Path::new(&lp), "c2"));
    }

    #[test]
    fn nothing_listening_is_none() {
        assert_eq!(probe(Path::new("/nonexistent-strata-test"), "nobody"), None);
    }
}
