//! rbd's own stream (`rbd export-diff`, `rbd import-diff`) for `strata
//! send --native` and `export --optimized`.
//!
//! A diff is taken between two snapshots of one image. strata's snapshots
//! of an rbd container are clones of snapshots of its image (see
//! `Snapshotter` in the crate root), so a snapshot tree is sent as the
//! point of the image it was cloned from (the same files: only the clone's
//! filesystem UUID differs, given where xfs and btrfs need one), and the
//! container's own rootfs as its image now. The diff from one tree to the
//! next is then one `export-diff --from-snap` on that image. Where two
//! trees share no image (a snapshot flattened by a restore, trees that
//! came by a receive), the tree goes whole: a diff without a start.
//!
//! A tree's identity, what a receiver's copy is known by, is a name
//! `strata.rx.HASH` of that point. The stream names it as its end
//! snapshot, and the receiver keeps its copy's exact content under that
//! name: an rbd snapshot of the received image (protected: the next tree
//! is cloned from it), the image's head getting its own filesystem UUID.
//! An incremental diff names its start the same way; the receiver clones
//! its copy of the base at that snapshot and applies the diff to the
//! clone, after checking the base is there.
//!
//! The receiver parses the stream's header (rbd diff v1: the start, the
//! end, the size) and gives `import-diff` the rest. Each image is built
//! under its build's own name and renamed into place at the end, as a
//! create is (see the crate root): a receive that fails or is killed
//! leaves only what `undo_build` of its build removes.

use super::runner::Out;
use super::{build_name, parse_spec, spec_for, validate_name, PoolState, RbdBackend, SNAP_PREFIX};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use strata_core::toollock::ToolLock;
use strata_core::{err, Backend, IoContext, NativeStream, Result, RootfsSpec, Target};

/// The format's name in a stream's index.
pub const FORMAT: &str = "rbd-diff";
/// Prefix of the snapshots that hold a tree's exact content as sent.
pub const RX_PREFIX: &str = "strata.rx.";
const BANNER: &[u8] = b"rbd diff v1\n";
const OP_SEND: &str = "rbd export-diff";
const OP_RECV: &str = "rbd import-diff";
/// Longest snapshot name a header may carry.
const MAX_NAME: u32 = 4096;

/// The metadata records of an rbd diff, and the tag of its first data
/// record (read already).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub from: Option<String>,
    pub to: Option<String>,
    pub size: Option<u64>,
    pub first: u8,
}

fn bad(m: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.into())
}

/// Read an rbd diff v1 header from `r`, up to and including the tag of
/// its first data record.
pub fn read_header(r: &mut dyn Read) -> std::io::Result<Header> {
    let mut banner = [0u8; 12];
    r.read_exact(&mut banner)?;
    if banner != BANNER {
        return Err(bad("not an rbd diff v1 stream"));
    }
    let mut h = Header::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        match tag[0] {
            b'f' | b't' => {
                let mut len = [0u8; 4];
                r.read_exact(&mut len)?;
                let len = u32::from_le_bytes(len);
                if len > MAX_NAME {
                    return Err(bad(format!("rbd diff: a snapshot name of {len} bytes")));
                }
                let mut name = vec![0u8; len as usize];
                r.read_exact(&mut name)?;
                let name = String::from_utf8(name).map_err(|_| bad("rbd diff: a snapshot name not UTF-8"))?;
                if tag[0] == b'f' {
                    h.from = Some(name);
                } else {
                    h.to = Some(name);
                }
            }
            b's' => {
                let mut v = [0u8; 8];
                r.read_exact(&mut v)?;
                h.size = Some(u64::from_le_bytes(v));
            }
            b'w' | b'z' | b'e' => {
                h.first = tag[0];
                return Ok(h);
            }
            t => return Err(bad(format!("rbd diff: unknown record {t:#04x}"))),
        }
    }
}

/// `h` as an rbd diff v1 header, with its first data tag.
pub fn header_bytes(h: &Header) -> Vec<u8> {
    let mut v = BANNER.to_vec();
    for (tag, name) in [(b'f', &h.from), (b't', &h.to)] {
        if let Some(n) = name {
            v.push(tag);
            v.extend_from_slice(&(n.len() as u32).to_le_bytes());
            v.extend_from_slice(n.as_bytes());
        }
    }
    if let Some(s) = h.size {
        v.push(b's');
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.push(h.first);
    v
}

/// 16 hex digits of FNV-1a of `s`: stable across versions and hosts.
fn hash16(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The point of an image a tree is sent as, and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub pool: String,
    pub image: String,
    pub snap: String,
    pub id: String,
}

/// The point a snapshot tree (image `image` of the pool `st` lists) is
/// sent as: the snapshot that holds what it received, or the snapshot of
/// its container's image it was cloned from; `None` for neither.
pub fn point_of(st: &PoolState, image: &str) -> Option<Point> {
    let img = st.image(image)?;
    if let Some(sn) = img.snaps.iter().rfind(|s| s.name.starts_with(RX_PREFIX)) {
        return Some(Point {
            pool: st.pool.clone(),
            image: image.to_string(),
            snap: sn.name.clone(),
            id: sn.name.clone(),
        });
    }
    let (pp, pi, ps) = img.parent.as_ref()?;
    if !ps.starts_with(SNAP_PREFIX) {
        return None;
    }
    Some(Point {
        pool: pp.clone(),
        image: pi.clone(),
        snap: ps.clone(),
        id: format!("{RX_PREFIX}{}", hash16(&format!("{pp}/{pi}@{ps}"))),
    })
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

/// Reads a child's stderr to the end in a thread (never blocking it on a full pipe).
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

impl RbdBackend {
    fn point(&self, spec: &RootfsSpec) -> Result<Option<Point>> {
        let (pool, image) = parse_spec(spec)?;
        let st = self.pool_state_listed("rbd stream", &pool)?;
        if st.image(&image).is_none() {
            return Err(err!(NotFound, "rbd stream", "rbd image {pool}/{image} does not exist"));
        }
        Ok(point_of(&st, &image))
    }

    /// `rbd export-diff` of `at` (`POOL/IMAGE[@SNAP]`, from snapshot
    /// `from` of that image) to `out`, its start and end renamed to the
    /// identities `from_id` and `to_id`.
    fn export_diff(
        &self,
        at: &str,
        from: Option<&str>,
        from_id: Option<String>,
        to_id: Option<String>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut args = vec!["export-diff", "--no-progress"];
        if let Some(f) = from {
            args.extend(["--from-snap", f]);
        }
        args.extend([at, "-"]);
        self.not_silent(&args)?;
        let argv = self.argv(&args)?;
        let t0 = std::time::Instant::now();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let lock = ToolLock::new()?;
        lock.pass_to(&mut c);
        let mut ch = c.spawn().ctx(OP_SEND, std::path::Path::new(at))?;
        let err = drain(ch.stderr.take());
        let mut so = ch.stdout.take().expect("piped");
        let copied = (|| -> std::io::Result<()> {
            let mut h = read_header(&mut so)?;
            h.from = from_id;
            h.to = to_id;
            out.write_all(&header_bytes(&h))?;
            std::io::copy(&mut so, out).map(drop)
        })();
        drop(so);
        if copied.is_err() {
            let _ = ch.kill();
        }
        let st = ch.wait().ctx(OP_SEND, std::path::Path::new(at))?;
        let msg = err.join().unwrap_or_default();
        drop(lock);
        if !st.success() {
            let o = Out {
                ok: false,
                stdout: String::new(),
                stderr: String::from_utf8_lossy(&msg).into_owned(),
            };
            self.heard(&args, &o, t0)?;
            return Err(err!(Command, OP_SEND, "{at}: {}", first_line(&msg)));
        }
        copied.map_err(|e| err!(Io, OP_SEND, "{at}: {e}"))
    }

    /// `rbd import-diff` into `POOL/IMAGE` of header `h` (its start and end
    /// left out: the caller made the start, and makes the end) and the
    /// rest of `input`.
    fn import_diff(&self, full: &str, h: &Header, input: &mut dyn Read) -> Result<()> {
        let args = ["import-diff", "--no-progress", "-", full];
        self.not_silent(&args)?;
        let argv = self.argv(&args)?;
        let t0 = std::time::Instant::now();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        let lock = ToolLock::new()?;
        lock.pass_to(&mut c);
        let path = std::path::Path::new(full);
        let head = header_bytes(&Header {
            from: None,
            to: None,
            ..h.clone()
        });
        let mut all = head.as_slice().chain(input);
        let fed = strata_core::runner::feed(&mut c, &mut all, &mut |_| {}).ctx(OP_RECV, path)?;
        drop(lock);
        if let Some(b) = fed.broke {
            return Err(b.receive_error(OP_RECV, path));
        }
        if !fed.out.ok {
            self.heard(&args, &fed.out, t0)?;
            return Err(err!(
                InvalidArgument,
                OP_RECV,
                "{full}: {}",
                first_line(fed.out.stderr.as_bytes())
            ));
        }
        Ok(())
    }

    /// The image `pool/tmp` made from the stream: cloned from the base's
    /// snapshot or created, the diff applied, its end snapshot made.
    fn receive_into(&self, pool: &str, tmp: &str, h: &Header, input: &mut dyn Read) -> Result<()> {
        let full = format!("{pool}/{tmp}");
        self.import_diff(&full, h, input)?;
        if let Some(to) = &h.to {
            let at = format!("{full}@{to}");
            self.tool(OP_RECV, &["snap", "create", "--no-progress", &at])?;
            self.tool(OP_RECV, &["snap", "protect", &at])?;
        }
        // Its head gets a filesystem UUID of its own (xfs, btrfs), as a clone does.
        let dev = self.map(pool, tmp)?;
        let uuid = strata_core::block::new_fs_uuid(self.run.as_ref(), &dev);
        self.unmap_settled(pool, tmp, 50)?;
        uuid
    }
}

impl NativeStream for RbdBackend {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn check_send(&self, spec: &RootfsSpec, _as_is: bool) -> Result<()> {
        self.point(spec).map(drop)
    }

    fn identity(&self, spec: &RootfsSpec) -> Result<String> {
        self.point(spec)?.map(|p| p.id).ok_or_else(|| {
            err!(
                Unsupported,
                OP_SEND,
                "{spec} is neither a snapshot strata made of an rbd container nor one it received: \
                 an incremental rbd stream cannot start from it; send it without --native"
            )
        })
    }

    fn is_copy_of(&self, spec: &RootfsSpec, id: &str) -> Result<bool> {
        let (pool, image) = parse_spec(spec)?;
        let st = self.pool_state("rbd stream", &pool)?;
        let Some(img) = st.image(&image) else {
            return Ok(false);
        };
        Ok(img.snaps.iter().any(|s| s.name == id) || point_of(&st, &image).is_some_and(|p| p.id == id))
    }

    fn send(&self, spec: &RootfsSpec, parent: Option<&RootfsSpec>, out: &mut dyn Write) -> Result<()> {
        self.send_tree(spec, parent, true, out)
    }

    fn send_tree(&self, spec: &RootfsSpec, parent: Option<&RootfsSpec>, main: bool, out: &mut dyn Write) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        let _span =
            tracing::info_span!("rbd send", spec = %spec, main, parent = ?parent.map(|p| p.to_string())).entered();
        // The rootfs as it is now; a snapshot as the point it was cloned from.
        let to = if main { None } else { self.point(spec)? };
        let (img_pool, img) = match &to {
            Some(p) => (p.pool.clone(), p.image.clone()),
            None => (pool.clone(), image.clone()),
        };
        let from = match parent {
            Some(p) => self
                .point(p)?
                .filter(|f| f.pool == img_pool && f.image == img && to.as_ref().is_none_or(|t| t.snap != f.snap)),
            None => None,
        };
        if parent.is_some() && from.is_none() {
            tracing::info!("{spec} shares no image with the tree before it: sent whole");
        }
        let at = match &to {
            Some(p) => format!("{}/{}@{}", p.pool, p.image, p.snap),
            None => format!("{pool}/{image}"),
        };
        let (fsnap, fid) = match from {
            Some(f) => (Some(f.snap), Some(f.id)),
            None => (None, None),
        };
        self.export_diff(&at, fsnap.as_deref(), fid, to.map(|t| t.id), out)
    }

    fn receive(
        &self,
        spec: &RootfsSpec,
        t: &Target,
        parent: Option<&RootfsSpec>,
        input: &mut dyn Read,
        writable: bool,
    ) -> Result<()> {
        let (pool, image) = parse_spec(spec)?;
        let _span = tracing::info_span!("rbd receive", spec = %spec, writable).entered();
        let tmp = build_name(&image, t.build_dir);
        validate_name("image", &tmp)?;
        let h = read_header(input).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => err!(InvalidArgument, OP_RECV, "the rbd stream ends in its header"),
            _ => err!(InvalidArgument, OP_RECV, "{e}"),
        })?;
        if let Some(to) = &h.to {
            if !to.starts_with(RX_PREFIX) {
                return Err(err!(
                    InvalidArgument,
                    OP_RECV,
                    "the rbd stream ends at {to:?}, not a strata snapshot"
                ));
            }
            validate_name("snapshot", to)?;
        }
        // What an earlier try of this build left.
        let st = self.pool_state(OP_RECV, &pool)?;
        if st.image(&tmp).is_some() {
            self.destroy(&spec_for(&pool, &tmp))?;
        }
        let full = format!("{pool}/{tmp}");
        match &h.from {
            Some(f) => {
                let p = parent.ok_or_else(|| {
                    err!(
                        InvalidArgument,
                        OP_RECV,
                        "the rbd stream is a diff from {f}, and no tree came before it"
                    )
                })?;
                let (ppool, pimg) = parse_spec(p)?;
                let pst = if ppool == pool {
                    st.clone()
                } else {
                    self.pool_state(OP_RECV, &ppool)?
                };
                let snap = pst
                    .image(&pimg)
                    .and_then(|i| i.snaps.iter().find(|s| &s.name == f))
                    .ok_or_else(|| {
                        err!(
                            InvalidArgument,
                            OP_RECV,
                            "the rbd stream is a diff from {f}, which {ppool}/{pimg} does not have: \
                             it is not a copy of the sender's base"
                        )
                    })?;
                let at = format!("{ppool}/{pimg}@{f}");
                if !snap.protected {
                    self.tool(OP_RECV, &["snap", "protect", &at])?;
                }
                self.tool(OP_RECV, &["clone", &at, &full])?;
            }
            None => {
                let size = h
                    .size
                    .ok_or_else(|| err!(InvalidArgument, OP_RECV, "the rbd stream gives no image size"))?;
                let mb = size.div_ceil(1 << 20).max(1).to_string();
                self.tool(OP_RECV, &["create", "--pool", &pool, &tmp, "--size", &mb])?;
            }
        }
        let made = self
            .receive_into(&pool, &tmp, &h, input)
            .and_then(|()| self.finish_build(&pool, &tmp, &image, &t.mark()));
        if let Err(e) = made {
            if let Err(e2) = self.destroy(&spec_for(&pool, &tmp)) {
                tracing::warn!("{e2}");
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use std::sync::Arc;
    use strata_core::block::testing;

    const RBD: &str = "rbd --client_mount_timeout 30 --rados_mon_op_timeout 30 --rados_osd_op_timeout 60";
    /// c1 with snapshot strata-c2 that c2 is cloned from; r1 received
    /// (its exact snapshot), r2 cloned from it.
    const LS: &str = r#"[{"image":"c1","id":"1","size":67108864,"format":2},{"image":"c1","id":"1","snapshot":"strata-c2","snapshot_id":4,"size":67108864,"protected":"true","format":2},{"image":"c2","id":"2","size":67108864,"parent":{"pool":"lxc","pool_namespace":"","image":"c1","snapshot":"strata-c2"},"format":2},{"image":"r1","id":"5","size":67108864,"format":2},{"image":"r1","id":"5","snapshot":"strata.rx.00000000000000aa","snapshot_id":7,"size":67108864,"protected":"true","format":2}]"#;

    fn setup() -> (RbdBackend, Arc<FakeRunner>) {
        let (f, run) = testing::fake();
        f.on(&format!("{RBD} ls -l --format json --pool lxc"), true, LS);
        f.on(&format!("{RBD} device list"), true, "[]");
        (
            RbdBackend::with_runner(run)
                .with_user(None)
                .with_timeouts(crate::Timeouts::default()),
            f,
        )
    }

    fn target<'a>(lp: &'a std::path::Path, dir: &'a std::path::Path, opts: &'a strata_core::BackendOpts) -> Target<'a> {
        Target {
            name: "c9",
            lxcpath: lp,
            dir,
            build_dir: dir,
            opts,
        }
    }

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        let h = Header {
            from: Some("strata.rx.01".into()),
            to: Some("strata.rx.02".into()),
            size: Some(1 << 30),
            first: b'w',
        };
        let raw = header_bytes(&h);
        assert_eq!(read_header(&mut &raw[..]).unwrap(), h);
        let whole = Header {
            size: Some(4096),
            first: b'e',
            ..Header::default()
        };
        assert_eq!(read_header(&mut &header_bytes(&whole)[..]).unwrap(), whole);
        assert!(read_header(&mut &b"rbd diff v2\nx"[..]).is_err());
        assert!(read_header(&mut &b"tar"[..]).is_err());
        let mut long = BANNER.to_vec();
        long.push(b'f');
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_header(&mut &long[..]).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        let mut odd = BANNER.to_vec();
        odd.push(b'q');
        assert!(read_header(&mut &odd[..]).is_err());
        // Cut inside the header.
        assert!(read_header(&mut &raw[..20]).is_err());
    }

    #[test]
    fn points_are_the_clone_origin_or_the_received_snapshot() {
        let st = crate::parse_ls("lxc", LS).unwrap();
        let p = point_of(&st, "c2").unwrap();
        assert_eq!((p.image.as_str(), p.snap.as_str()), ("c1", "strata-c2"));
        assert!(
            p.id.starts_with(RX_PREFIX) && p.id.len() == RX_PREFIX.len() + 16,
            "{}",
            p.id
        );
        assert!(validate_name("snapshot", &p.id).is_ok());
        // Stable: a later listing names the same point alike.
        assert_eq!(point_of(&st, "c2").unwrap().id, p.id);
        let r = point_of(&st, "r1").unwrap();
        assert_eq!(
            (r.image.as_str(), r.snap.as_str()),
            ("r1", "strata.rx.00000000000000aa")
        );
        assert_eq!(r.id, r.snap);
        assert_eq!(point_of(&st, "c1"), None);
        let (b, _f) = setup();
        assert_eq!(b.identity(&spec_for("lxc", "c2")).unwrap(), p.id);
        let e = b.identity(&spec_for("lxc", "c1")).unwrap_err();
        assert_eq!(e.kind, strata_core::ErrorKind::Unsupported);
        assert!(b
            .is_copy_of(&spec_for("lxc", "r1"), "strata.rx.00000000000000aa")
            .unwrap());
        assert!(b.is_copy_of(&spec_for("lxc", "c2"), &p.id).unwrap());
        assert!(!b.is_copy_of(&spec_for("lxc", "c1"), &p.id).unwrap());
        assert!(!b.is_copy_of(&spec_for("lxc", "gone"), &p.id).unwrap());
    }

    #[test]
    fn a_receive_without_its_base_changes_nothing() {
        let (b, f) = setup();
        let lp = std::path::PathBuf::from("/l");
        let dir = lp.join("c9");
        let opts = strata_core::BackendOpts::default();
        let t = target(&lp, &dir, &opts);
        let changing =
            |f: &FakeRunner| -> Vec<String> { f.calls().into_iter().filter(|c| !c.contains(" ls -l ")).collect() };
        // A diff from a snapshot r1 lacks.
        let h = Header {
            from: Some("strata.rx.00000000000000bb".into()),
            to: Some("strata.rx.00000000000000cc".into()),
            size: Some(64 << 20),
            first: b'e',
        };
        let raw = header_bytes(&h);
        let e = b
            .receive(
                &spec_for("lxc", "c9"),
                &t,
                Some(&spec_for("lxc", "r1")),
                &mut &raw[..],
                true,
            )
            .unwrap_err();
        assert_eq!(e.kind, strata_core::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("does not have"), "{e}");
        // A diff with no tree before it.
        let e = b
            .receive(&spec_for("lxc", "c9"), &t, None, &mut &raw[..], true)
            .unwrap_err();
        assert!(e.to_string().contains("no tree came before"), "{e}");
        // Not an rbd stream, or an end that is not strata's.
        assert!(b
            .receive(&spec_for("lxc", "c9"), &t, None, &mut &b"garbage"[..], true)
            .is_err());
        let odd = header_bytes(&Header {
            to: Some("mine".into()),
            size: Some(1 << 20),
            first: b'e',
            ..Header::default()
        });
        assert!(b
            .receive(&spec_for("lxc", "c9"), &t, None, &mut &odd[..], true)
            .is_err());
        assert!(changing(&f).is_empty(), "{:?}", f.calls());
    }
}
