//! `lxc-attach`: a command in the namespaces and root of a running container.

use crate::{cgroup, sys, userns};
use std::os::fd::AsRawFd;
use strata_core::state::{self};
use strata_core::{err, ContainerRef, Error, ErrorKind, Result};

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
    const OP: &str = "attach";
    let _s = tracing::info_span!("attach", name = %r.name).entered();
    let rec = state::running(r).ok_or_else(|| err!(InvalidArgument, OP, "container {} is not running", r.name))?;
    let pid = rec.init_pid;
    let mut fds = Vec::new();
    // An unprivileged container's namespaces belong to its user namespace: join that first.
    let user_p = format!("/proc/{pid}/ns/user");
    let theirs = std::fs::metadata(&user_p).map_err(|e| Error::io(OP, &user_p, e))?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(|e| Error::io(OP, "/proc/self/ns/user", e))?;
    let join_user = {
        use std::os::unix::fs::MetadataExt;
        (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino())
    };
    if join_user {
        fds.push((
            "user",
            std::fs::File::open(&user_p).map_err(|e| Error::io(OP, &user_p, e))?,
        ));
    }
    for ns in ["cgroup", "ipc", "uts", "net", "pid", "mnt"] {
        let p = format!("/proc/{pid}/ns/{ns}");
        let f = std::fs::File::open(&p).map_err(|e| Error::io(OP, &p, e))?;
        fds.push((ns, f));
    }
    // The container's confinement, as LXC's attach applies it: its cgroups,
    // bounding set, no_new_privs, LSM label and seccomp profile.
    let eff = strata_core::config::check_keys(&r.config_path())?;
    let confine = crate::confine::Confine::from_config(&eff)?;
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
    let mut envs: Vec<(String, String)> = if clear_env {
        vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )]
    } else {
        std::env::vars().collect()
    };
    envs.retain(|(k, _)| k != "container");
    envs.push(("container".into(), "lxc".into()));
    for (k, v) in env {
        envs.retain(|(ek, _)| ek != k);
        envs.push((k.clone(), v.clone()));
    }
    let cenv: Vec<_> = envs.iter().map(|(k, v)| sys::cstr(&format!("{k}={v}"))).collect();
    let cargs: Vec<_> = argv.iter().map(|a| sys::cstr(a)).collect();
    let (err_r, err_w) = sys::pipe()?;
    match unsafe { libc::fork() } {
        -1 => Err(Error::errno("fork", "", sys::errno())),
        0 => {
            drop(err_r);
            // The child joins; the pid namespace takes effect for its own child.
            let res = (|| -> Result<()> {
                // As host root, before any namespace is joined.
                cgroup::enter(&rec.cgroups, std::process::id() as i32)?;
                for (ns, f) in &fds {
                    if unsafe { libc::setns(f.as_raw_fd(), 0) } != 0 {
                        return Err(Error::errno("setns", *ns, sys::errno()));
                    }
                }
                if join_user {
                    userns::become_root()?;
                }
                nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| Error::errno("enter root", "/", e))?;
                nix::unistd::chroot(".").map_err(|e| Error::errno("chroot", "/", e))?;
                nix::unistd::chdir("/").map_err(|e| Error::errno("chdir", "/", e))?;
                // Inherited by the command forked below.
                confine.drop_caps()?;
                confine.before_exec_attach()?;
                if let Some(f) = &filter {
                    f.install()?;
                }
                Ok(())
            })();
            if let Err(e) = res {
                sys::write_all(err_w.as_raw_fd(), e.to_string().as_bytes());
                unsafe { libc::_exit(1) };
            }
            match unsafe { libc::fork() } {
                0 => {
                    if uid.is_some() || gid.is_some() {
                        let (u, g) = (uid.unwrap_or(0), gid.unwrap_or(0));
                        // SAFETY: plain system calls in the forked child before exec.
                        let ok = unsafe {
                            libc::setgroups(0, std::ptr::null()) == 0
                                && libc::setresgid(g, g, g) == 0
                                && libc::setresuid(u, u, u) == 0
                        };
                        if !ok {
                            let msg = format!("switch to uid {u} gid {g}: {}", sys::errno().desc());
                            sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
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
                    unsafe { libc::_exit(127) }
                }
                -1 => unsafe { libc::_exit(1) },
                child => {
                    drop(err_w);
                    let code = wait_status(child);
                    unsafe { libc::_exit(code) }
                }
            }
        }
        child => {
            drop(err_w);
            let msg = sys::read_all(err_r.as_raw_fd());
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

pub(crate) fn wait_status(pid: i32) -> i32 {
    loop {
        let mut st = 0;
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
