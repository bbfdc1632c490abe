//! `lxc-attach`: a command in the namespaces and root of a running container.

use crate::{cgroup, sys, userns};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use strata_core::state::{self};
use strata_core::{err, ContainerRef, Error, ErrorKind, Result};

/// The namespaces `lxc-attach` joins (proc names), in the order it joins them after the user namespace.
const NAMESPACES: &[&str] = &["cgroup", "ipc", "uts", "net", "pid", "mnt"];

/// What `-e/--elevated-privileges` keeps from the container's confinement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Elevated {
    /// `CGROUP`: the command stays in the caller's cgroups.
    pub cgroup: bool,
    /// `CAP`: the bounding set is not cut to the container's.
    pub caps: bool,
    /// `LSM`: no AppArmor or SELinux label.
    pub lsm: bool,
}

impl Elevated {
    pub const ALL: Elevated = Elevated {
        cgroup: true,
        caps: true,
        lsm: true,
    };

    /// LXC's `-e` value: `CAP|CGROUP|LSM` (any of them); none given is all.
    pub fn parse(v: Option<&str>) -> Result<Elevated> {
        let Some(v) = v else { return Ok(Elevated::ALL) };
        let mut e = Elevated::default();
        for t in v.split('|') {
            match t.trim() {
                "CAP" => e.caps = true,
                "CGROUP" => e.cgroup = true,
                "LSM" => e.lsm = true,
                t => {
                    return Err(err!(
                        InvalidArgument,
                        "attach",
                        "invalid elevated privilege {t:?} (CAP, CGROUP or LSM)"
                    ))
                }
            }
        }
        Ok(e)
    }
}

/// LXC's `-s` value: `MOUNT|PID|UTSNAME|IPC|USER|NETWORK` (or the proc
/// names, `cgroup` too) as proc names.
pub fn parse_namespaces(v: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in v.split('|') {
        let n = match t.trim() {
            "MOUNT" | "mnt" => "mnt",
            "PID" | "pid" => "pid",
            "UTSNAME" | "uts" => "uts",
            "IPC" | "ipc" => "ipc",
            "USER" | "user" => "user",
            "NETWORK" | "net" => "net",
            "cgroup" => "cgroup",
            t => {
                return Err(err!(
                    InvalidArgument,
                    "attach",
                    "unknown namespace {t:?} (MOUNT, PID, UTSNAME, IPC, USER, NETWORK or cgroup)"
                ))
            }
        };
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// How to attach (LXC's `lxc-attach` options).
#[derive(Debug, Clone, Default)]
pub struct AttachOpts {
    /// `-v VAR=VALUE`.
    pub env: Vec<(String, String)>,
    /// `--clear-env`: only `container=lxc`, a default PATH, and `keep_vars`.
    pub clear_env: bool,
    /// `--keep-var`: kept through `--clear-env`.
    pub keep_vars: Vec<String>,
    /// `-u`/`-g`: ids inside the container (its root by default).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `-e`.
    pub elevated: Elevated,
    /// `-s`: only these namespaces (proc names); all of them by default.
    pub namespaces: Option<Vec<String>>,
    /// `-R`: without the mount namespace, a mount namespace of its own with
    /// /proc (and /sys with the network namespace) of the joined ones.
    pub remount_sys_proc: bool,
    /// `-a`: the linux32 personality or not, instead of `lxc.arch`'s.
    pub linux32: Option<bool>,
    /// `-c`: an SELinux context instead of `lxc.selinux.context`.
    pub context: Option<String>,
    /// `-f`: the config read instead of the container's.
    pub rcfile: Option<PathBuf>,
    /// `-L`: the command on a pty of its own whose output is also appended here.
    pub pty_log: Option<PathBuf>,
}

/// `lxc-attach -- cmd`: run `cmd` in the namespaces and root of the running
/// container; returns its exit status.
pub fn attach(r: &ContainerRef, cmd: &[String], env: &[(String, String)], clear_env: bool) -> Result<i32> {
    attach_as(r, cmd, env, clear_env, None, None)
}

/// [`attach`] as `uid`/`gid` inside the container (`lxc-attach --uid/--gid`;
/// the container's root by default).
pub fn attach_as(
    r: &ContainerRef,
    cmd: &[String],
    env: &[(String, String)],
    clear_env: bool,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<i32> {
    let o = AttachOpts {
        env: env.to_vec(),
        clear_env,
        uid,
        gid,
        ..Default::default()
    };
    attach_with(r, cmd, &o)
}

/// [`attach`] with all of LXC's options.
pub fn attach_with(r: &ContainerRef, cmd: &[String], o: &AttachOpts) -> Result<i32> {
    const OP: &str = "attach";
    let _s = tracing::info_span!("attach", name = %r.name).entered();
    if o.elevated.lsm && o.context.is_some() {
        return Err(err!(
            InvalidArgument,
            OP,
            "-c: cannot combine elevated LSM privileges with an LSM context"
        ));
    }
    if !o.keep_vars.is_empty() && !o.clear_env {
        return Err(err!(InvalidArgument, OP, "--keep-var only applies with --clear-env"));
    }
    let joins = |ns: &str| o.namespaces.as_ref().is_none_or(|l| l.iter().any(|n| n == ns));
    if o.remount_sys_proc && joins("mnt") {
        return Err(err!(
            InvalidArgument,
            OP,
            "-R remounts /proc and /sys when the mount namespace is not joined: use -s without MOUNT"
        ));
    }
    if let Some(c) = &o.context {
        if !crate::confine::selinux_enabled() {
            return Err(err!(Unsupported, OP, "-c {c}: SELinux is not enabled on this host"));
        }
    }
    let rec = state::running(r).ok_or_else(|| err!(InvalidArgument, OP, "container {} is not running", r.name))?;
    let pty = match &o.pty_log {
        Some(l) => Some(crate::attach_pty::open(l, joins("mnt").then_some(rec.init_pid))?),
        None => None,
    };
    let pid = rec.init_pid;
    let mut fds = Vec::new();
    // An unprivileged container's namespaces belong to its user namespace: join that first.
    let user_p = format!("/proc/{pid}/ns/user");
    let theirs = std::fs::metadata(&user_p).map_err(|e| Error::io(OP, &user_p, e))?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(|e| Error::io(OP, "/proc/self/ns/user", e))?;
    let join_user = joins("user") && {
        use std::os::unix::fs::MetadataExt;
        (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino())
    };
    if join_user {
        fds.push((
            "user",
            std::fs::File::open(&user_p).map_err(|e| Error::io(OP, &user_p, e))?,
        ));
    }
    for ns in NAMESPACES.iter().copied().filter(|n| joins(n)) {
        let p = format!("/proc/{pid}/ns/{ns}");
        let f = std::fs::File::open(&p).map_err(|e| Error::io(OP, &p, e))?;
        fds.push((ns, f));
    }
    // The container's confinement, as LXC's attach applies it: its cgroups,
    // bounding set, no_new_privs, LSM label and seccomp profile.
    // A volatile container's is the file its start read.
    let own = Some(r.config_path()).filter(|p| p.is_file());
    let cfg_file = o
        .rcfile
        .clone()
        .or(own)
        .or(rec.config_file.clone())
        .unwrap_or_else(|| r.config_path());
    let eff = strata_core::config::check_keys(&cfg_file)?;
    let mut confine = crate::confine::Confine::from_config(&eff)?;
    if o.elevated.lsm {
        confine.labels.clear();
    }
    if let Some(c) = &o.context {
        confine.labels.retain(|l| l.attr != "/proc/self/attr/exec");
        confine.labels.push(crate::confine::Label {
            attr: "/proc/self/attr/exec",
            value: c.clone(),
        });
    }
    if let Some(l) = o.linux32 {
        confine.linux32 = l;
    }
    let (mnt, net) = (joins("mnt"), joins("net"));
    let filter = crate::seccomp::Filter::from_config(&eff)?;
    let root_p = format!("/proc/{pid}/root");
    let root = std::fs::File::open(&root_p).map_err(|e| Error::io(OP, &root_p, e))?;
    if !rec.init_alive() {
        return Err(err!(InvalidArgument, OP, "container {} is not running", r.name));
    }
    let argv: Vec<String> = if cmd.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        cmd.to_vec()
    };
    let mut envs: Vec<(String, String)> = if o.clear_env {
        let mut kept: Vec<(String, String)> = std::env::vars().filter(|(k, _)| o.keep_vars.contains(k)).collect();
        // As LXC: a default PATH unless one was kept.
        if !kept.iter().any(|(k, _)| k == "PATH") {
            kept.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        kept
    } else {
        std::env::vars().collect()
    };
    envs.retain(|(k, _)| k != "container");
    envs.push(("container".into(), "lxc".into()));
    for (k, v) in &o.env {
        envs.retain(|(ek, _)| ek != k);
        envs.push((k.clone(), v.clone()));
    }
    let cenv: Vec<_> = envs.iter().map(|(k, v)| sys::cstr(&format!("{k}={v}"))).collect();
    let cargs: Vec<_> = argv.iter().map(|a| sys::cstr(a)).collect();
    let (err_r, err_w) = sys::pipe()?;
    // SAFETY: fork takes no arguments. The attaching strata process runs no other thread (the runtime starts none),
    // so the child is a copy of a single-threaded process and may allocate and format as the parent does; it ends
    // in exec or _exit, never returning into the caller.
    match unsafe { libc::fork() } {
        -1 => Err(Error::errno("fork", "", sys::errno())),
        0 => {
            drop(err_r);
            // The child joins; the pid namespace takes effect for its own child.
            let res = (|| -> Result<()> {
                // As host root, before any namespace is joined.
                if !o.elevated.cgroup {
                    cgroup::enter(&rec.cgroups, std::process::id() as i32)?;
                }
                for (ns, f) in &fds {
                    // SAFETY: `f` is an open namespace fd owned by `fds` for the whole call; nstype 0 lets the
                    // kernel take the type from the fd.
                    if unsafe { libc::setns(f.as_raw_fd(), 0) } != 0 {
                        return Err(Error::errno("setns", *ns, sys::errno()));
                    }
                }
                if join_user {
                    userns::become_root()?;
                }
                if mnt {
                    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::errno("enter root", "/", e))?;
                    nix::unistd::chroot(".").map_err(|e| Error::errno("chroot", "/", e))?;
                    nix::unistd::chdir("/").map_err(|e| Error::errno("chdir", "/", e))?;
                }
                // Inherited by the command forked below.
                if !o.elevated.caps {
                    confine.drop_caps()?;
                }
                confine.before_exec_attach()?;
                if let Some(f) = &filter {
                    f.install()?;
                }
                Ok(())
            })();
            if let Err(e) = res {
                sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
                // SAFETY: _exit ends this forked child at once without unwinding or running the parent's
                // destructors, which belong to the parent.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: fork again from the child, still single-threaded; the grandchild ends in execve or _exit and
            // the child in _exit, neither returns.
            match unsafe { libc::fork() } {
                0 => {
                    if let Some(p) = &pty {
                        if !p.become_terminal() {
                            let msg = format!("-L: make the pty the terminal: {}", sys::errno().desc());
                            sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                            // SAFETY: _exit ends the forked command process without unwinding into the parent's
                            // state.
                            unsafe { libc::_exit(126) }
                        }
                    }
                    // In the joined pid namespace now: a proc of it can be mounted.
                    if o.remount_sys_proc {
                        if let Err(e) = remount_sys_proc(net) {
                            sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
                            // SAFETY: _exit ends the forked command process without unwinding into the parent's
                            // state.
                            unsafe { libc::_exit(126) }
                        }
                    }
                    if o.uid.is_some() || o.gid.is_some() {
                        let (u, g) = (o.uid.unwrap_or(0), o.gid.unwrap_or(0));
                        // SAFETY: plain system calls in the forked child before exec.
                        let ok = unsafe {
                            libc::setgroups(0, std::ptr::null()) == 0
                                && libc::setresgid(g, g, g) == 0
                                && libc::setresuid(u, u, u) == 0
                        };
                        if !ok {
                            let msg = format!("switch to uid {u} gid {g}: {}", sys::errno().desc());
                            sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                            // SAFETY: _exit ends the forked command process without unwinding into the parent's
                            // state.
                            unsafe { libc::_exit(126) }
                        }
                    }
                    let mut envp: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
                    envp.push(std::ptr::null());
                    let mut argp: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
                    argp.push(std::ptr::null());
                    let path = envs
                        .iter()
                        .find(|(k, _)| k == "PATH")
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("/usr/bin:/bin");
                    let cands: Vec<String> = if argv[0].contains('/') {
                        vec![argv[0].clone()]
                    } else {
                        path.split(':').map(|d| format!("{d}/{}", argv[0])).collect()
                    };
                    for c in cands {
                        let cp = sys::cstr(&c);
                        // SAFETY: `cp`, `argp` and `envp` point into CStrings (`cp`, `cargs`, `cenv`) alive until
                        // after the call, and both pointer arrays end with a null; execve only returns on failure.
                        unsafe { libc::execve(cp.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
                    }
                    let e = sys::errno();
                    let msg = format!(
                        "exec {}: {}",
                        argv[0],
                        if e == nix::errno::Errno::ENOENT {
                            "not found in the container"
                        } else {
                            e.desc()
                        }
                    );
                    sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                    // SAFETY: _exit ends the forked command process without unwinding into the parent's state.
                    unsafe { libc::_exit(127) }
                }
                // SAFETY: _exit ends the forked child (the second fork failed) without unwinding into the parent's
                // state.
                -1 => unsafe { libc::_exit(1) },
                child => {
                    drop(err_w);
                    let code = wait_status(child);
                    // SAFETY: _exit ends the forked child with the command's status, without unwinding into the
                    // parent's state.
                    unsafe { libc::_exit(code) }
                }
            }
        }
        child => {
            drop(err_w);
            let msg = sys::read_all(err_r.as_raw_fd());
            if let Some(p) = pty {
                if msg.is_empty() {
                    p.proxy();
                }
            }
            let code = wait_status(child);
            if !msg.is_empty() {
                return Err(Error::new(
                    ErrorKind::Io,
                    OP,
                    String::from_utf8_lossy(&msg).into_owned(),
                ));
            }
            Ok(code)
        }
    }
}

/// `-R`: a mount namespace of the command's own, where /proc (and /sys,
/// when the network namespace was joined) show the joined namespaces.
fn remount_sys_proc(net: bool) -> Result<()> {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(Error::errno("unshare mount namespace", "-R", sys::errno()));
    }
    // Nothing done here may reach the host.
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_SLAVE, None)?;
    let nosx = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let _ = nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH);
    sys::mount(Some("proc"), "/proc", Some("proc"), nosx, None)?;
    if net {
        let _ = nix::mount::umount2("/sys", nix::mount::MntFlags::MNT_DETACH);
        sys::mount(Some("sysfs"), "/sys", Some("sysfs"), nosx, None)?;
    }
    Ok(())
}

pub(crate) fn wait_status(pid: i32) -> i32 {
    loop {
        let mut st = 0;
        // SAFETY: `st` is a live c_int for waitpid to write the status into.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            if libc::WIFEXITED(st) {
                return libc::WEXITSTATUS(st);
            }
            if libc::WIFSIGNALED(st) {
                return 128 + libc::WTERMSIG(st);
            }
        } else if !(r < 0 && sys::errno() == nix::errno::Errno::EINTR) {
            return 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elevated_and_namespaces_as_lxc_reads_them() {
        assert_eq!(Elevated::parse(None).unwrap(), Elevated::ALL);
        let e = Elevated::parse(Some("CAP|LSM")).unwrap();
        assert!(e.caps && e.lsm && !e.cgroup);
        for bad in ["cap", "CAP|", "ALL", ""] {
            assert!(Elevated::parse(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse_namespaces("MOUNT|PID|NETWORK").unwrap(), ["mnt", "pid", "net"]);
        assert_eq!(
            parse_namespaces("UTSNAME|uts|IPC|USER|cgroup").unwrap(),
            ["uts", "ipc", "user", "cgroup"]
        );
        for bad in ["MNT", "NET|", "time", ""] {
            assert!(parse_namespaces(bad).is_err(), "{bad:?}");
        }
    }
}
