//! btrfs's own stream (`btrfs send`, `btrfs receive`) for `strata send
//! --native` and `export --optimized`.
//!
//! `btrfs send` reads read-only subvolumes only: lxc-snapshot's are, the
//! engine sends a writable rootfs from a read-only snapshot of it. An
//! incremental stream (`-p PARENT`) applies where the receiver has a
//! subvolume whose received UUID (or UUID) is the parent's received UUID
//! (or UUID): a snapshot that came by a native receive.
//!
//! `btrfs receive` names the subvolume it makes after the sent one, so it
//! receives into an empty dir beside the planned rootfs,
//! `.strata-native.rootfs`, and the one subvolume found there is moved
//! into place (a snapshot: renamed, read-only as received; the rootfs: a
//! writable snapshot of it, the received one deleted). A kill -9 leaves
//! that dir at a place the planned spec determines: [`clear_receive_dir`],
//! which destroy runs, removes it with whatever it holds.
//!
//! The tools are run as argv, never through a shell, each recorded with a
//! tool lock before it starts (see `strata_core::toollock`).

use crate::{destroy_tree, is_subvolume, nested_subvolumes, snapshot_tree, BtrfsBackend};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strata_core::toollock::ToolLock;
use strata_core::{err, Error, IoContext, NativeStream, Result, RootfsSpec, Target};

const OP_SEND: &str = "btrfs send";
const OP_RECV: &str = "btrfs receive";
const RECV_PREFIX: &str = ".strata-native.";

/// The dir a native receive of the rootfs at `path` works in.
pub fn receive_dir(path: &Path) -> Option<PathBuf> {
    Some(
        path.parent()?
            .join(format!("{RECV_PREFIX}{}", path.file_name()?.to_str()?)),
    )
}

/// Remove what a native receive of the rootfs at `path` left (killed
/// half-way, or before its result was moved into place).
pub fn clear_receive_dir(path: &Path) -> Result<()> {
    let Some(dir) = receive_dir(path) else { return Ok(()) };
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(());
    }
    for e in std::fs::read_dir(&dir).ctx(OP_RECV, &dir)? {
        let e = e.ctx(OP_RECV, &dir)?;
        destroy_tree(&e.path())?;
    }
    std::fs::remove_dir(&dir).ctx(OP_RECV, &dir)
}

/// UUID and received UUID of a subvolume (`-` for none), from `btrfs subvolume show`.
fn uuids(path: &Path) -> Result<(String, String)> {
    let out = strata_core::toollock::output(Command::new("btrfs").arg("subvolume").arg("show").arg(path))
        .ctx("btrfs subvolume show", path)?;
    if !out.status.success() {
        return Err(err!(
            Io,
            "btrfs subvolume show",
            "{}",
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed")
        )
        .at(path));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    match (field("UUID"), field("Received UUID")) {
        (Some(u), Some(r)) => Ok((u, r)),
        _ => Err(err!(Io, "btrfs subvolume show", "no UUID in its output").at(path)),
    }
}

fn set(v: &str) -> Option<&str> {
    (!v.is_empty() && v != "-").then_some(v)
}

/// The first line of a tool's stderr, for a one-line error.
fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_string()
}

/// Reads a child's stderr to the end in a thread (so that it never blocks on a full pipe).
fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.by_ref().take(1 << 20).read_to_end(&mut v);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        v
    })
}

impl NativeStream for BtrfsBackend {
    fn format(&self) -> &'static str {
        "btrfs-send"
    }

    fn sends_readonly_only(&self) -> bool {
        true
    }

    fn check_send(&self, spec: &RootfsSpec, as_is: bool) -> Result<()> {
        use std::os::fd::AsFd;
        let path = spec.path();
        if !is_subvolume(&path) {
            return Err(err!(Unsupported, OP_SEND, "not a btrfs subvolume: send it without --native").at(&path));
        }
        let f = crate::open_dir(&path)?;
        let ro = crate::ioctl::get_flags(f.as_fd()).map_err(|e| Error::errno(OP_SEND, &path, e))?
            & crate::ioctl::SUBVOL_RDONLY
            != 0;
        if as_is && !ro {
            return Err(err!(
                Unsupported,
                OP_SEND,
                "a writable snapshot (LXC makes them so), which btrfs send cannot read: send it without --native"
            )
            .at(&path));
        }
        let nested = nested_subvolumes(&path)?;
        if let Some(n) = nested.first() {
            return Err(err!(
                Unsupported,
                OP_SEND,
                "it holds nested subvolumes ({}), which btrfs send leaves out: send it without --native",
                n.display()
            )
            .at(&path));
        }
        Ok(())
    }

    fn identity(&self, spec: &RootfsSpec) -> Result<String> {
        // btrfs send names a parent by its received UUID where it has one.
        let (u, r) = uuids(&spec.path())?;
        Ok(set(&r).unwrap_or(&u).to_string())
    }

    fn is_copy_of(&self, spec: &RootfsSpec, id: &str) -> Result<bool> {
        let (u, r) = uuids(&spec.path())?;
        Ok(set(&r) == Some(id) || u == id)
    }

    fn send(&self, spec: &RootfsSpec, parent: Option<&RootfsSpec>, out: &mut dyn Write) -> Result<()> {
        let path = spec.path();
        let _span = tracing::info_span!("btrfs send", path = %path.display(), parent = ?parent.map(|p| p.to_string()))
            .entered();
        let mut c = Command::new("btrfs");
        c.arg("send").arg("-q");
        if let Some(p) = parent {
            c.arg("-p").arg(p.path());
        }
        c.arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let lock = ToolLock::new()?;
        lock.pass_to(&mut c);
        let mut ch = c.spawn().ctx(OP_SEND, &path)?;
        let err = drain(ch.stderr.take());
        let mut so = ch.stdout.take().expect("piped");
        let copied = std::io::copy(&mut so, out);
        drop(so);
        if copied.is_err() {
            let _ = ch.kill();
        }
        let st = ch.wait().ctx(OP_SEND, &path)?;
        let msg = err.join().unwrap_or_default();
        drop(lock);
        copied.map_err(|e| Error::io(OP_SEND, &path, e))?;
        if !st.success() {
            return Err(err!(Io, OP_SEND, "{}", first_line(&msg)).at(&path));
        }
        Ok(())
    }

    fn receive(
        &self,
        spec: &RootfsSpec,
        _t: &Target,
        parent: Option<&RootfsSpec>,
        input: &mut dyn Read,
        writable: bool,
    ) -> Result<()> {
        let path = spec.path();
        let _span = tracing::info_span!("btrfs receive", path = %path.display(), writable).entered();
        let dir = receive_dir(&path).ok_or_else(|| err!(InvalidSpec, OP_RECV, "no parent directory").at(&path))?;
        // What an earlier try left (its spec is ours: planned for this build).
        clear_receive_dir(&path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx(OP_RECV, parent)?;
        }
        // The root's times where the stream leaves them to the receiver (see `RootTimes`).
        let times = match parent {
            Some(p) => Some(root_times(&p.path())?),
            None => None,
        };
        let res = receive_into(&dir, input)
            .and_then(|(got, root_set)| place(&got, &path, writable, times.filter(|_| !root_set)));
        let cleared = clear_receive_dir(&path);
        if res.is_err() {
            let _ = destroy_tree(&path);
        }
        res.and(cleared)
    }

    /// A received snapshot is read-only: writable for `f` only (its
    /// received UUID stays, as for the rename in [`place`]).
    fn while_writable(&self, spec: &RootfsSpec, readonly: bool, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        let path = spec.path();
        if !readonly {
            return f(&path);
        }
        use std::os::fd::AsFd;
        let set_ro = |ro: bool| -> Result<()> {
            let d = crate::open_dir(&path)?;
            crate::ioctl::set_readonly(d.as_fd(), ro).map_err(|e| Error::errno(OP_RECV, &path, e))
        };
        set_ro(false)?;
        let res = f(&path);
        // Read-only again even where `f` failed (the build is undone whole then).
        let back = set_ro(true);
        res.and(back)
    }
}

/// The access and modification times of the root of the tree at `p`.
fn root_times(p: &Path) -> Result<std::fs::FileTimes> {
    let m = std::fs::symlink_metadata(p).ctx(OP_RECV, p)?;
    Ok(std::fs::FileTimes::new()
        .set_accessed(m.accessed().ctx(OP_RECV, p)?)
        .set_modified(m.modified().ctx(OP_RECV, p)?))
}

/// btrfs send names each new inode by a temporary name in the
/// subvolume's root and renames it into place, so a receive changes the
/// root's mtime; but an incremental stream sets the root's times only if
/// the root itself changed on the sender. Where it does not, the root
/// keeps the parent's times, as on the sender. This watches the stream go
/// by for a `utimes` of the root (command 20, `BTRFS_SEND_C_UTIMES`, whose
/// first attribute is its path, empty for the root).
#[derive(Default)]
struct RootTimes {
    buf: Vec<u8>,
    /// Bytes of a command body to pass over.
    skip: usize,
    /// The body of a `utimes` being collected, its length.
    body: Option<usize>,
    started: bool,
    set: bool,
}

impl RootTimes {
    const MAGIC_LEN: usize = 17;
    const HEAD_LEN: usize = 10;
    const UTIMES: u16 = 20;
    const ATTR_PATH: u16 = 15;

    fn feed(&mut self, mut d: &[u8]) {
        while !d.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(d.len());
                self.skip -= k;
                d = &d[k..];
                continue;
            }
            let want = match (self.started, self.body) {
                (false, _) => Self::MAGIC_LEN,
                (true, Some(n)) => n,
                (true, None) => Self::HEAD_LEN,
            };
            let k = (want - self.buf.len()).min(d.len());
            self.buf.extend_from_slice(&d[..k]);
            d = &d[k..];
            if self.buf.len() < want {
                continue;
            }
            if !self.started {
                self.started = true;
            } else if self.body.take().is_some() {
                let b = &self.buf;
                if b.len() >= 4 {
                    let ty = u16::from_le_bytes([b[0], b[1]]);
                    let len = u16::from_le_bytes([b[2], b[3]]) as usize;
                    let path = b.get(4..4 + len).unwrap_or_default();
                    if ty == Self::ATTR_PATH && (path.is_empty() || path == b".") {
                        self.set = true;
                    }
                }
            } else {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
                let cmd = u16::from_le_bytes([self.buf[4], self.buf[5]]);
                if cmd == Self::UTIMES && len > 0 {
                    self.body = Some(len.min(1 << 16));
                    self.skip = len.saturating_sub(1 << 16);
                } else {
                    self.skip = len;
                }
            }
            self.buf.clear();
        }
    }
}

/// Runs `btrfs receive` into the new dir `dir` with `input` as its
/// stream; returns the one subvolume it made, complete (read-only, with
/// a received UUID), and whether the stream set its root's times.
fn receive_into(dir: &Path, input: &mut dyn Read) -> Result<(PathBuf, bool)> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir).ctx(OP_RECV, dir)?;
    let mut c = Command::new("btrfs");
    // -e: stop at the stream's end command, so a stream cut between two
    // commands is an error, not a short subvolume.
    c.arg("receive").arg("-q").arg("-e").arg(dir);
    let lock = ToolLock::new()?;
    lock.pass_to(&mut c);
    let mut watch = RootTimes::default();
    let fed = strata_core::runner::feed(&mut c, input, &mut |b| watch.feed(b)).ctx(OP_RECV, dir)?;
    drop(lock);
    if let Some(b) = fed.broke {
        return Err(b.receive_error(OP_RECV, dir));
    }
    if !fed.out.ok {
        return Err(err!(InvalidArgument, OP_RECV, "{}", first_line(fed.out.stderr.as_bytes())).at(dir));
    }
    let mut got = Vec::new();
    for e in std::fs::read_dir(dir).ctx(OP_RECV, dir)? {
        got.push(e.ctx(OP_RECV, dir)?.path());
    }
    let one = match got.as_slice() {
        [one] if is_subvolume(one) => one.clone(),
        _ => {
            return Err(err!(
                InvalidArgument,
                OP_RECV,
                "the native stream made {} entries, not one subvolume",
                got.len()
            ))
        }
    };
    let (_, r) = uuids(&one)?;
    if set(&r).is_none() {
        return Err(err!(
            InvalidArgument,
            OP_RECV,
            "the received subvolume is incomplete (no received UUID)"
        )
        .at(&one));
    }
    Ok((one, watch.set))
}

/// The received subvolume `got` at the rootfs path `path`, its root's
/// times set to `times` if given.
fn place(got: &Path, path: &Path, writable: bool, times: Option<std::fs::FileTimes>) -> Result<()> {
    let set_times = |p: &Path| -> Result<()> {
        if let Some(t) = times {
            std::fs::File::open(p).and_then(|f| f.set_times(t)).ctx(OP_RECV, p)?;
        }
        Ok(())
    };
    if writable {
        snapshot_tree(got, path, false)?;
        set_times(path)?;
        destroy_tree(got)
    } else {
        // A read-only subvolume cannot move to another dir (its `..`
        // changes): writable for the rename only. The received UUID stays:
        // the tree is the one received, and later streams apply to it.
        use std::os::fd::AsFd;
        let set_ro = |p: &Path, ro: bool| -> Result<()> {
            let f = crate::open_dir(p)?;
            crate::ioctl::set_readonly(f.as_fd(), ro).map_err(|e| Error::errno(OP_RECV, p, e))
        };
        set_ro(got, false)?;
        strata_core::engine::fsutil::rename_noreplace(got, path)?;
        set_times(path)?;
        set_ro(path, true)
    }
}
