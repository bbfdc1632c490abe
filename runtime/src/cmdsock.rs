//! The monitor's side of LXC's command socket, so that LXC's own tools
//! (`lxc-info`, `lxc-ls`, `lxc-wait`, `lxc-stop`, `lxc-attach`,
//! `lxc-destroy`) see a container strata runs and act on it.
//!
//! Bound before init is cloned: the name is exclusive, so that LXC and
//! strata never both run a container. Served from the monitor's wait loop;
//! every client gets one answer (or is kept: a state client until its state
//! comes, a stop client until the container is torn down, as LXC does).
//! What LXC's clients of those tools do not ask gets LXC's answer for an
//! unsupported command: `-ENOSYS`.

use crate::console_hub::Hub;
use crate::state_view::{self, State};
use crate::sys;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;
use strata_core::lxc_cmd::{self, cmd, Rsp, DATA_MAX, MAX_STATE, MSG_SIZE};
use strata_core::{err, ContainerRef, Error, Result};

/// A client that waits for one of `states` (LXC's flags: 1 means "now
/// or later", 2 "the next time", as lxc-stop -r waits for RUNNING).
struct StateClient {
    sock: UnixStream,
    states: [i32; MAX_STATE as usize],
}

/// What a running container answers with.
#[derive(Default)]
pub(crate) struct Running {
    pub(crate) init_pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) clone_flags: u64,
    pub(crate) cgroups: Vec<PathBuf>,
}

pub(crate) struct Server {
    listener: Option<UnixListener>,
    name: String,
    lxcpath: String,
    /// The config as the start read it, for `GET_CONFIG_ITEM`.
    config: strata_core::config::Config,
    run: Running,
    /// Init is gone: the container is being torn down.
    stopping: bool,
    /// The state last told to state clients: they hear of changes only.
    told: State,
    state_clients: Vec<StateClient>,
    stop_clients: Vec<UnixStream>,
}

impl Server {
    /// Bind the command socket of `r`; taken already means another monitor
    /// (LXC's, or ours) runs it.
    pub(crate) fn bind(r: &ContainerRef) -> Result<Server> {
        const OP: &str = "start";
        let addr = lxc_cmd::socket_addr(&r.lxcpath, &r.name).map_err(|e| Error::io(OP, "command socket", e))?;
        let listener = match UnixListener::bind_addr(&addr) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(err!(Busy, OP, "container {} is already running", r.name));
            }
            Err(e) => return Err(Error::io(OP, "command socket", e)),
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(OP, "command socket", e))?;
        Ok(Server {
            listener: Some(listener),
            name: r.name.clone(),
            lxcpath: r.lxcpath.display().to_string(),
            // The start sets what it read (set_config) before anyone is
            // answered: reading the file here too was a third read of it.
            config: Default::default(),
            run: Running::default(),
            stopping: false,
            told: State::Starting,
            state_clients: Vec::new(),
            stop_clients: Vec::new(),
        })
    }

    /// The config as the start read it (`-f` FILE, `-s`), in place of the
    /// container's own file.
    pub(crate) fn set_config(&mut self, config: strata_core::config::Config) {
        self.config = config;
    }

    /// Init runs: answer with it from now on.
    pub(crate) fn started(&mut self, run: Running) {
        self.run = run;
        // Init has just exec'd: RUNNING, as LXC's monitor sets it then (a
        // freeze can only come later, and serve() reads the freezer for
        // clients waiting on one).
        self.changed(State::Running);
    }

    /// The listening fd, for the monitor's poll (-1 once closed).
    pub(crate) fn fd(&self) -> i32 {
        self.listener.as_ref().map_or(-1, |l| l.as_raw_fd())
    }

    /// A poll timeout while a client waits for a freezer state (those
    /// changes come from other processes, not through us), else none.
    pub(crate) fn poll_timeout(&self) -> i32 {
        let watch = [State::Running, State::Freezing, State::Frozen, State::Thawed];
        if self
            .state_clients
            .iter()
            .any(|c| watch.iter().any(|s| c.states[*s as usize] != 0))
        {
            200
        } else {
            -1
        }
    }

    /// The state under LXC's number.
    fn state(&self) -> State {
        if self.stopping {
            State::Stopping
        } else if self.run.init_pid == 0 {
            State::Starting
        } else {
            state_view::freezer_state(&self.run.cgroups).unwrap_or(State::Running)
        }
    }

    /// The state is now `st`: tell the clients if that is news.
    fn changed(&mut self, st: State) {
        if st != self.told {
            self.told = st;
            self.notify(st);
        }
    }

    /// Tell the state clients waiting for `st`, and let them go.
    fn notify(&mut self, st: State) {
        let i = st as usize;
        let mut msg = [0u8; MSG_SIZE];
        // struct lxc_msg: type lxc_msg_state (0), the name, the state.
        let n = self.name.len().min(255);
        msg[4..4 + n].copy_from_slice(&self.name.as_bytes()[..n]);
        msg[MSG_SIZE - 4..].copy_from_slice(&(i as i32).to_ne_bytes());
        self.state_clients.retain_mut(|c| {
            if c.states[i] != 0 {
                let _ = c.sock.write_all(&msg);
                false
            } else {
                true
            }
        });
    }

    /// The container reboots: a new init comes, on the same socket.
    pub(crate) fn rebooting(&mut self) {
        self.run = Running::default();
        self.stopping = false;
        self.changed(State::Stopping);
        self.changed(State::Starting);
    }

    /// Init has exited.
    pub(crate) fn init_gone(&mut self) {
        self.stopping = true;
        self.changed(State::Stopping);
    }

    /// Serve what is waiting on the listener, without blocking on it.
    pub(crate) fn serve(&mut self, hub: &mut Hub) {
        if self.poll_timeout() >= 0 && !self.stopping {
            self.changed(self.state());
        }
        loop {
            let Some(l) = self.listener.as_ref() else { return };
            match l.accept() {
                Ok((s, _)) => {
                    if let Err(e) = self.client(s, hub) {
                        tracing::debug!("command socket client: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// The container is torn down: close the socket, then tell the state
    /// clients STOPPED and let the stop clients see EOF, as LXC's monitor
    /// does on its way out.
    pub(crate) fn finish(mut self) {
        self.listener = None;
        self.changed(State::Stopped);
    }

    fn client(&mut self, mut s: UnixStream, hub: &mut Hub) -> std::io::Result<()> {
        s.set_nonblocking(false)?;
        // A client that stalls costs the monitor this much, never a hang.
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.set_write_timeout(Some(Duration::from_secs(1)))?;
        // Before reading anything: another user cannot even make us wait.
        if !peer_allowed(&s) {
            return reply(&s, -libc::EACCES, 0, &[], &[]);
        }
        let mut h = [0u8; 16];
        s.read_exact(&mut h)?;
        let (c, len) = lxc_cmd::parse_req(&h);
        let value = u64::from_ne_bytes(h[8..].try_into().unwrap_or_default());
        if len < 0 || len as usize > DATA_MAX {
            return Ok(()); // closed unanswered, as LXC drops a malformed request
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        self.dispatch(s, c, &data, value, hub)
    }

    /// Answer command `c` with payload `data` (or `value` in the header's
    /// pointer field, where LXC's client encodes small arguments).
    fn dispatch(&mut self, mut s: UnixStream, c: i32, data: &[u8], value: u64, hub: &mut Hub) -> std::io::Result<()> {
        let _span = tracing::debug_span!("lxc_cmd", cmd = c).entered();
        let pid = self.run.init_pid;
        let live = pid > 0 && !self.stopping;
        match c {
            cmd::GET_STATE => reply(&s, 0, self.state() as u64, &[], &[]),
            // LXC's lxc-console: a tty's master (the number in the header),
            // the client's until it hangs up; for the console (0), the master
            // of a proxy pty between it and the console, as LXC lends it.
            cmd::GET_TTY_FD if live => {
                let want = value as i32 as i64;
                match hub.lend_tty(want, s, |s, n, fd| reply(s, 0, n as u64, &[], &[fd])) {
                    Ok(_) => Ok(()),
                    // LXC's answer when it has no such tty free.
                    Err(s) => reply(&s, -libc::EBADF, 0, &[], &[]),
                }
            }
            // The client sized the tty itself; nothing to pass on.
            cmd::TERMINAL_WINCH => reply(&s, 0, 0, &[], &[]),
            cmd::GET_INIT_PID if live => reply(&s, 0, pid as u64, &[], &[]),
            cmd::GET_INIT_PIDFD if live => match &self.run.pidfd {
                Some(fd) => reply(&s, 0, 0, &[], &[fd.as_raw_fd()]),
                None => reply(&s, -libc::EBADF, 0, &[], &[]),
            },
            cmd::GET_CLONE_FLAGS if live => reply(&s, 0, self.clone_flags(), &[], &[]),
            // LXC's answer when it holds no devpts fd of the container.
            cmd::GET_DEVPTS_FD => reply(&s, -libc::EBADF, 0, &[], &[]),
            cmd::GET_NAME => reply(&s, 0, 0, &cstr(&self.name), &[]),
            cmd::GET_LXCPATH => reply(&s, 0, 0, &cstr(&self.lxcpath), &[]),
            cmd::GET_CONFIG_ITEM => {
                let key = String::from_utf8_lossy(data.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
                match self.config_item(&key) {
                    Some(v) => reply(&s, 0, 0, &cstr(&v), &[]),
                    None => reply(&s, -1, 0, &[], &[]),
                }
            }
            cmd::ADD_STATE_CLIENT => {
                let mut states = [0; MAX_STATE as usize];
                for (i, w) in data.chunks_exact(4).take(MAX_STATE as usize).enumerate() {
                    states[i] = i32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
                }
                let now = self.state();
                if states[now as usize] == 1 {
                    reply(&s, now as i32, now as u64, &[], &[])
                } else {
                    reply(&s, MAX_STATE, MAX_STATE as u64, &[], &[])?;
                    self.state_clients.push(StateClient { sock: s, states });
                    Ok(())
                }
            }
            cmd::STOP => {
                if live {
                    self.hard_stop();
                }
                // No answer: the client sees EOF once the container is down.
                self.stop_clients.push(s);
                Ok(())
            }
            cmd::GET_CGROUP_CTX if live => self.cgroup_ctx(&mut s),
            // Strata's container cgroups are its limit cgroups too.
            cmd::GET_CGROUP_FD | cmd::GET_LIMIT_CGROUP_FD if live => self.cgroup_fd(&mut s, data),
            cmd::GET_CGROUP | cmd::GET_LIMIT_CGROUP if live => self.cgroup_path(&mut s, data),
            cmd::GET_CGROUP2_FD | cmd::GET_LIMIT_CGROUP2_FD if live => self.cgroup2_fd(&mut s),
            // A client that changed the state itself (lxc-freeze writing the
            // v1 freezer) tells the state clients through us.
            cmd::SERVE_STATE_CLIENTS => {
                let st = State::ALL.get(value as usize).copied();
                if let Some(st) = st {
                    self.changed(st);
                }
                reply(&s, if st.is_some() { 0 } else { -libc::EINVAL }, 0, &[], &[])
            }
            // What LXC answers for a command it does not support.
            _ => reply(&s, -libc::ENOSYS, 0, &[], &[]),
        }
    }

    /// The namespaces init was cloned into, and its cgroup namespace (which
    /// init unshares itself once in its cgroups): what LXC reports, so that
    /// lxc-attach enters them all.
    fn clone_flags(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let ns = |p: String| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let own = ns(format!("/proc/{}/ns/cgroup", self.run.init_pid));
        let mut f = self.run.clone_flags;
        if own.is_some() && own != ns("/proc/self/ns/cgroup".into()) {
            f |= libc::CLONE_NEWCGROUP as u64;
        }
        f
    }

    /// `lxc.signal.stop` (SIGKILL unless set) to init, and a frozen
    /// container thawed so that it acts on it, as LXC's stop command does.
    fn hard_stop(&self) {
        let sig = self
            .config
            .get("lxc.signal.stop")
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| crate::conf::parse_signal(v).ok())
            .unwrap_or(libc::SIGKILL);
        if let Some(fd) = &self.run.pidfd {
            sys::signal(fd, sig);
        }
        if matches!(
            state_view::freezer_state(&self.run.cgroups),
            Some(State::Frozen | State::Freezing)
        ) {
            if let Err(e) = crate::cgroup::thaw(&self.run.cgroups, Duration::from_secs(5)) {
                tracing::warn!("stop: {e}");
            }
        }
    }

    /// A config value as the running container has it; `None` for an unset key.
    fn config_item(&self, key: &str) -> Option<String> {
        let all = self.config.get_all(key);
        if !all.is_empty() {
            return Some(all.join("\n"));
        }
        // Keys LXC always has a value for, that lxc-attach asks.
        match key {
            "lxc.no_new_privs" => Some("0".into()),
            _ => None,
        }
    }

    /// `struct cgroup_fd` for one controller (lxc-info's resource use): the
    /// container's cgroup of the v1 hierarchy that has it, else the unified one.
    fn cgroup_fd(&self, s: &mut UnixStream, data: &[u8]) -> std::io::Result<()> {
        const CGROUP_SUPER_MAGIC: i32 = 0x0027_e0eb;
        const CGROUP2_SUPER_MAGIC: i32 = 0x6367_7270;
        if data.len() != 80 {
            return reply(s, -libc::EINVAL, 0, &[], &[]);
        }
        let controller = c_string(&data[16..]);
        let Some((dir, v2, _)) = self.find_cgroup(&controller) else {
            return reply(s, -libc::ENOENT, 0, &[], &[]);
        };
        let magic = if v2 { CGROUP2_SUPER_MAGIC } else { CGROUP_SUPER_MAGIC };
        let dirs = state_view::leaves(&self.run.cgroups);
        let f = match std::fs::File::open(&dir) {
            Ok(f) => f,
            Err(e) => return reply(s, -e.raw_os_error().unwrap_or(libc::EIO), 0, &[], &[]),
        };
        let mut out = [0u8; 80];
        out[..4].copy_from_slice(&layout(&dirs).to_ne_bytes());
        out[8..12].copy_from_slice(&magic.to_ne_bytes());
        out[12..16].copy_from_slice(&f.as_raw_fd().to_ne_bytes());
        out[16..].copy_from_slice(&data[16..]);
        reply(s, 0, 0, &out, &[f.as_raw_fd()])
    }

    /// The container's cgroup for `controller`: of the v1 hierarchy that has
    /// it, else the unified one; whether that is v2, and its mount point.
    fn find_cgroup(&self, controller: &str) -> Option<(PathBuf, bool, PathBuf)> {
        let dirs = state_view::leaves(&self.run.cgroups);
        let mounts = strata_core::state::cgroup_mounts();
        let mount_of = |d: &PathBuf| {
            mounts
                .iter()
                .filter(|m| d.starts_with(&m.path))
                .max_by_key(|m| m.path.components().count())
                .cloned()
        };
        if !controller.is_empty() {
            for d in &dirs {
                if let Some(m) = mount_of(d).filter(|m| !m.v2 && m.options.iter().any(|o| o == controller)) {
                    return Some(((*d).clone(), false, m.path));
                }
            }
        }
        let d = dirs.iter().find(|d| state_view::is_unified(d))?;
        let m = mount_of(d).filter(|m| m.v2)?;
        Some(((*d).clone(), true, m.path))
    }

    /// `GET_CGROUP`/`GET_LIMIT_CGROUP`: the path of the container's cgroup
    /// for a controller, below its hierarchy's mount (lxc-freeze and
    /// lxc-cgroup on a v1 controller write the files themselves).
    fn cgroup_path(&self, s: &mut UnixStream, data: &[u8]) -> std::io::Result<()> {
        let controller = c_string(data);
        match self.find_cgroup(&controller) {
            Some((dir, _, mount)) => {
                let rel = dir.strip_prefix(&mount).unwrap_or(&dir);
                reply(s, 0, 0, &cstr(&format!("/{}", rel.display())), &[])
            }
            None => reply(s, -libc::ENOENT, 0, &[], &[]),
        }
    }

    /// `GET_CGROUP2_FD`/`GET_LIMIT_CGROUP2_FD`: the unified cgroup, only when
    /// the layout is unified (LXC's `EINVAL` otherwise sends its client to
    /// the v1 hierarchies).
    fn cgroup2_fd(&self, s: &mut UnixStream) -> std::io::Result<()> {
        let dirs = state_view::leaves(&self.run.cgroups);
        if dirs.is_empty() || layout(&dirs) != 2 {
            return reply(s, -libc::EINVAL, 0, &[], &[]);
        }
        match std::fs::File::open(dirs[0]) {
            Ok(f) => reply(s, 0, 0, &[], &[f.as_raw_fd()]),
            Err(e) => reply(s, -e.raw_os_error().unwrap_or(libc::EIO), 0, &[], &[]),
        }
    }

    /// `struct cgroup_ctx`: the layout and an fd per cgroup of the container.
    fn cgroup_ctx(&self, s: &mut UnixStream) -> std::io::Result<()> {
        const MAX_FD: usize = 20;
        let dirs: Vec<&PathBuf> = state_view::leaves(&self.run.cgroups).into_iter().take(MAX_FD).collect();
        let mut fds = Vec::new();
        for d in &dirs {
            match std::fs::File::open(d) {
                Ok(f) => fds.push(OwnedFd::from(f)),
                Err(e) => {
                    tracing::warn!("cgroup {}: {e}", d.display());
                    return reply(s, -libc::ENOENT, 0, &[], &[]);
                }
            }
        }
        if fds.is_empty() {
            return reply(s, -libc::ENOENT, 0, &[], &[]);
        }
        let layout = layout(&dirs);
        let mut ctx = [0u8; 96];
        ctx[..4].copy_from_slice(&layout.to_ne_bytes());
        ctx[8..12].copy_from_slice(&(fds.len() as u32).to_ne_bytes());
        for (i, f) in fds.iter().enumerate() {
            ctx[12 + 4 * i..16 + 4 * i].copy_from_slice(&f.as_raw_fd().to_ne_bytes());
        }
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        reply(s, 0, 0, &ctx, &raw)
    }
}

/// LXC's `cgroup_layout_t` of the container's cgroups: LEGACY 0, HYBRID 1, UNIFIED 2.
fn layout(dirs: &[&PathBuf]) -> i32 {
    let unified = dirs.iter().filter(|d| state_view::is_unified(d)).count();
    if unified == dirs.len() {
        2
    } else if unified > 0 {
        1
    } else {
        0
    }
}

/// The string up to the first NUL.
fn c_string(data: &[u8]) -> String {
    String::from_utf8_lossy(data.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

/// `s` NUL-terminated, as LXC sends strings.
fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Root, or the user the monitor runs as: LXC's rule for its socket.
fn peer_allowed(s: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let Ok(c) = getsockopt(s, PeerCredentials) else {
        return false;
    };
    let me = nix::unistd::geteuid().as_raw();
    c.uid() == 0 || c.uid() == me
}

/// A response: the header (with `fds` attached), then `data`.
fn reply(s: &UnixStream, ret: i32, value: u64, data: &[u8], fds: &[i32]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let h = Rsp {
        ret,
        datalen: data.len() as i32,
        value,
    }
    .to_bytes();
    let iov = [std::io::IoSlice::new(&h)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(s.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(std::io::Error::from)?;
    if !data.is_empty() {
        let mut w = s;
        w.write_all(data)?;
    }
    Ok(())
}
