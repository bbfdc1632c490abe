//! zfs's own stream (`zfs send`, `zfs receive`) for `strata send --native`
//! and `export --optimized`.
//!
//! A strata snapshot of a zfs container is a dataset of its own (a clone of
//! a `@strata-*` snapshot of the container's dataset), so each tree is sent
//! from a zfs snapshot standing for it, its *tree snapshot*: the dataset's
//! newest own snapshot when nothing was written to the dataset since
//! (`written` is 0: a received tree), or for a read-only clone with none
//! (an lxc-snapshot snapshot: the zfs backend makes them read-only) its
//! origin; otherwise a new snapshot `@native-UNIQUE` of it, which stays
//! with the dataset. (A clone's `written` is not 0 even untouched: zfs
//! rewrites its objset's intent log header as it makes it.) The engine
//! sends the rootfs from a read-only snapshot clone it stages, whose tree
//! snapshot is the `@strata-*` snapshot the clone was made from.
//!
//! A tree goes incrementally (`zfs send -i`) from the tree before it where
//! zfs allows it: where that tree's snapshot is an earlier one of the same
//! lineage (the dataset's, then its origin's, up the chain), as for
//! successive snapshots of one container. Otherwise it goes whole. An
//! encrypted dataset goes raw (`-w`): it stays encrypted on the way and
//! on the receiver, whose user loads its key (`zfs load-key`) to use it.
//! A tree is known by its tree snapshot's guid, which zfs keeps across
//! send and receive: the receiver checks the base of an incremental stream
//! by it.
//!
//! A receive reads the stream's first record (its `BEGIN`, naming the
//! snapshot it was sent from by guid), receives into a temporary dataset
//! beside the planned one, `NAME.strata-recv.MARK` (MARK the build's mark,
//! so that undoing the build finds it: [`recv_temp`]), as a clone of the
//! base snapshot for an incremental stream (`-o origin=`), keeping the
//! received snapshot as `@received-GUID` (its guid the sender's) except on
//! the container's own rootfs, then renames it into place. A receive killed
//! half-way leaves nothing: zfs drops a partial receive, and what a kill
//! leaves under the temporary name the build's undo destroys.
//!
//! Every command is an argv run through the runner, with parsable output
//! (`-H -p`), never a shell.

use crate::{parse_spec, pool_of, rows, s, validate_dataset, ZfsBackend, BUILD_PROP};
use std::io::{Read, Write};
use std::path::Path;
use strata_core::{err, NativeStream, Result, RootfsSpec, Target};

const OP_SEND: &str = "zfs send";
const OP_RECV: &str = "zfs receive";
/// The name of the snapshot a received tree keeps, of the sender's snapshot
/// whose guid is `guid` (it keeps that guid): one name per point, so that
/// a promotion, which moves snapshots from a dataset to its clone, never
/// meets two of one name.
pub fn recv_snap(guid: u64) -> String {
    format!("received-{guid:016x}")
}
/// Prefix of a tree snapshot a send makes of a dataset written since its last one.
const TREE_PREFIX: &str = "native-";

/// The temporary dataset a native receive of `ds` by the build marked
/// `mark` works in.
pub fn recv_temp(ds: &str, mark: &str) -> String {
    format!("{ds}.strata-recv.{mark}")
}

/// A dataset or snapshot of a pool listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub origin: Option<String>,
    pub guid: u64,
    pub written: u64,
    pub txg: u64,
    pub encrypted: bool,
    pub readonly: bool,
}

const LIST_PROPS: &str = "name,origin,guid,written,createtxg,encryption,readonly";

/// Parse `zfs list -H -p -o name,origin,guid,written,createtxg,encryption,readonly`.
pub fn parse_rows(out: &str) -> Vec<Row> {
    rows(out)
        .into_iter()
        .filter(|r| r.len() >= 7)
        .map(|r| Row {
            name: r[0].clone(),
            origin: (!r[1].is_empty() && r[1] != "-").then(|| r[1].clone()),
            guid: r[2].parse().unwrap_or(0),
            written: r[3].parse().unwrap_or(0),
            txg: r[4].parse().unwrap_or(0),
            encrypted: !matches!(r[5].as_str(), "off" | "-" | ""),
            readonly: r[6] == "on",
        })
        .collect()
}

fn find<'r>(rows: &'r [Row], name: &str) -> Option<&'r Row> {
    rows.iter().find(|r| r.name == name)
}

fn ds_of(snap: &str) -> &str {
    snap.split_once('@').map_or(snap, |(d, _)| d)
}

/// The snapshot standing for dataset `ds`'s tree (see the module doc), if
/// one does: none when `ds` was written since its last snapshot, or is a
/// writable clone with none (or has neither snapshot nor origin).
pub fn tree_snap<'r>(rows: &'r [Row], ds: &str) -> Option<&'r Row> {
    let fs = find(rows, ds)?;
    let at = format!("{ds}@");
    match rows.iter().filter(|r| r.name.starts_with(&at)).max_by_key(|r| r.txg) {
        Some(own) => (fs.written == 0).then_some(own),
        None if fs.readonly => find(rows, fs.origin.as_deref()?),
        None => None,
    }
}

/// Whether snapshot `from` comes before snapshot `to` in `to`'s lineage
/// (its dataset's earlier snapshots, then its origin and those before it,
/// up the chain of origins): `zfs send -i from to` then works.
pub fn is_before(rows: &[Row], from: &Row, to: &Row) -> bool {
    if from.name == to.name {
        return false;
    }
    let (mut ds, mut limit, mut inclusive) = (ds_of(&to.name).to_string(), to.txg, false);
    for _ in 0..256 {
        if ds_of(&from.name) == ds && (from.txg < limit || (inclusive && from.txg == limit)) {
            return true;
        }
        let Some(o) = find(rows, &ds)
            .and_then(|r| r.origin.as_deref())
            .and_then(|o| find(rows, o))
        else {
            return false;
        };
        ds = ds_of(&o.name).to_string();
        limit = o.txg;
        inclusive = true;
    }
    false
}

/// What a zfs stream's first record says: the guid of the snapshot it
/// carries, and of the one it was sent from (0: a whole stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    pub toguid: u64,
    pub fromguid: u64,
}

/// Bytes of a stream's first record that [`parse_begin`] reads.
pub const BEGIN_LEN: usize = 56;
const BACKUP_MAGIC: u64 = 0x2_f5ba_cbac;

/// Read a stream's `BEGIN` record (`dmu_replay_record_t`: type and payload
/// length, then `drr_begin`: magic, version info, creation time, type and
/// flags, toguid, fromguid), in the sender's byte order, which the magic
/// tells.
pub fn parse_begin(head: &[u8]) -> Option<Begin> {
    if head.len() < BEGIN_LEN {
        return None;
    }
    let u64_at = |i: usize, le: bool| {
        let b: [u8; 8] = head[i..i + 8].try_into().expect("8 bytes");
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let le = match (u64_at(8, true), u64_at(8, false)) {
        (BACKUP_MAGIC, _) => true,
        (_, BACKUP_MAGIC) => false,
        _ => return None,
    };
    let ty = &head[0..4];
    if ty != [0, 0, 0, 0] {
        return None;
    }
    Some(Begin {
        toguid: u64_at(40, le),
        fromguid: u64_at(48, le),
    })
}

impl ZfsBackend {
    /// Every dataset and snapshot of `ds`'s pool, in one `zfs list`.
    fn pool_rows(&self, ds: &str) -> Result<Vec<Row>> {
        let o = self.tool(
            "list datasets",
            s(&[
                "zfs",
                "list",
                "-H",
                "-p",
                "-o",
                LIST_PROPS,
                "-t",
                "filesystem,volume,snapshot",
                "-r",
                pool_of(ds),
            ]),
        )?;
        Ok(parse_rows(&o.stdout))
    }

    /// `ds`'s tree snapshot, made (`@native-UNIQUE`) if it has none; the
    /// returned row of a new one comes after every other of the listing.
    fn tree_snap_made(&self, rows: &[Row], ds: &str) -> Result<Row> {
        if let Some(r) = tree_snap(rows, ds) {
            return Ok(r.clone());
        }
        let fs = find(rows, ds).ok_or_else(|| err!(NotFound, OP_SEND, "dataset {ds} does not exist"))?;
        let name = format!("{ds}@{TREE_PREFIX}{}", strata_core::paths::unique());
        let _span = tracing::info_span!("zfs snapshot for a send", snap = %name).entered();
        self.tool(OP_SEND, s(&["zfs", "snapshot", &name]))?;
        let guid = self
            .prop(&name, "guid")?
            .parse()
            .map_err(|_| err!(Command, OP_SEND, "{name}: no guid"))?;
        Ok(Row {
            name,
            origin: None,
            guid,
            written: 0,
            txg: u64::MAX,
            encrypted: fs.encrypted,
            readonly: true,
        })
    }

    /// The snapshot of `parent`'s lineage whose guid is `guid` (the base an
    /// incremental stream was sent from).
    fn base_with_guid(&self, parent: &str, guid: u64) -> Result<Option<String>> {
        let rows = self.pool_rows(parent)?;
        let mut ds = parent.to_string();
        for _ in 0..256 {
            let at = format!("{ds}@");
            if let Some(r) = rows.iter().find(|r| r.name.starts_with(&at) && r.guid == guid) {
                return Ok(Some(r.name.clone()));
            }
            match find(&rows, &ds).and_then(|r| r.origin.clone()) {
                Some(o) => {
                    if find(&rows, &o).is_some_and(|r| r.guid == guid) {
                        return Ok(Some(o));
                    }
                    ds = ds_of(&o).to_string();
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Destroy what a native receive left under its temporary name.
    pub(crate) fn drop_recv_temp(&self, ds: &str, mark: &str) -> Result<()> {
        let tmp = recv_temp(ds, mark);
        if validate_dataset(&tmp).is_err() || !self.ds_exists(&tmp) {
            return Ok(());
        }
        let _span = tracing::info_span!("zfs destroy leftover receive", ds = %tmp).entered();
        self.tool("destroy leftover receive", s(&["zfs", "destroy", "-r", &tmp]))
            .map(|_| ())
    }
}

/// The argv of a send of `to`, from `from` if given.
pub fn send_argv(to: &str, from: Option<&str>, raw: bool) -> Vec<String> {
    let mut v = s(&["zfs", "send"]);
    // Raw: the blocks as they are on disk, encrypted; otherwise large
    // blocks, embedded and compressed blocks as stored (a smaller stream).
    v.extend(s(if raw { &["-w"] } else { &["-L", "-e", "-c"] }));
    if let Some(f) = from {
        v.extend(s(&["-i", f]));
    }
    v.push(to.to_string());
    v
}

/// The argv of a receive into `tmp` (as a clone of `origin` for an
/// incremental stream), marked by the build `mark`.
pub fn recv_argv(tmp: &str, origin: Option<&str>, mark: &str, guid: u64) -> Vec<String> {
    let mut v = s(&["zfs", "receive", "-u"]);
    if let Some(o) = origin {
        v.push("-o".into());
        v.push(format!("origin={o}"));
    }
    v.extend(s(&["-o", "mountpoint=legacy", "-o"]));
    v.push(format!("{BUILD_PROP}={mark}"));
    v.push(format!("{tmp}@{}", recv_snap(guid)));
    v
}

impl NativeStream for ZfsBackend {
    fn format(&self) -> &'static str {
        "zfs-send"
    }

    /// The rootfs goes from a snapshot clone the engine stages (recorded,
    /// so that a killed send leaves what reconcile removes): a point in
    /// time of a container that may be running.
    fn sends_readonly_only(&self) -> bool {
        true
    }

    fn check_send(&self, spec: &RootfsSpec, _as_is: bool) -> Result<()> {
        let ds = parse_spec(spec)?;
        let o = self.run.run(&s(&[
            "zfs",
            "list",
            "-H",
            "-p",
            "-o",
            "name",
            "-t",
            "filesystem,volume",
            "-d",
            "1",
            &ds,
        ]))?;
        if !o.ok {
            return Err(err!(NotFound, OP_SEND, "dataset {ds}: {}", o.first_err_line()));
        }
        if let Some(child) = o.stdout.lines().find(|l| !l.is_empty() && *l != ds) {
            return Err(err!(
                Unsupported,
                OP_SEND,
                "dataset {ds} holds datasets ({child}) that zfs send leaves out: send it without --native"
            ));
        }
        Ok(())
    }

    fn identity(&self, spec: &RootfsSpec) -> Result<String> {
        let ds = parse_spec(spec)?;
        let rows = self.pool_rows(&ds)?;
        Ok(self.tree_snap_made(&rows, &ds)?.guid.to_string())
    }

    fn is_copy_of(&self, spec: &RootfsSpec, id: &str) -> Result<bool> {
        let ds = parse_spec(spec)?;
        let rows = self.pool_rows(&ds)?;
        Ok(tree_snap(&rows, &ds).is_some_and(|r| r.guid.to_string() == id))
    }

    fn send(&self, spec: &RootfsSpec, parent: Option<&RootfsSpec>, out: &mut dyn Write) -> Result<()> {
        let ds = parse_spec(spec)?;
        let rows = self.pool_rows(&ds)?;
        let to = self.tree_snap_made(&rows, &ds)?;
        let from = match parent {
            Some(p) => {
                let pds = parse_spec(p)?;
                // The parent's tree snapshot as the receiver has it: made
                // now, it is one the receiver lacks (refused there).
                tree_snap(&rows, &pds).filter(|f| is_before(&rows, f, &to)).cloned()
            }
            None => None,
        };
        let raw = find(&rows, &ds).is_some_and(|r| r.encrypted);
        let _span =
            tracing::info_span!("zfs send", to = %to.name, from = ?from.as_ref().map(|f| &f.name), raw).entered();
        let argv = send_argv(&to.name, from.as_ref().map(|f| f.name.as_str()), raw);
        let o = self.run.run_out(&argv, out)?;
        if !o.ok {
            return Err(err!(Command, OP_SEND, "{}: {}", to.name, o.first_err_line()));
        }
        Ok(())
    }

    fn receive(
        &self,
        spec: &RootfsSpec,
        t: &Target,
        parent: Option<&RootfsSpec>,
        input: &mut dyn Read,
        writable: bool,
    ) -> Result<()> {
        let ds = parse_spec(spec)?;
        let mark = t.mark();
        let tmp = recv_temp(&ds, &mark);
        validate_dataset(&tmp)?;
        let _span = tracing::info_span!("zfs receive", ds = %ds, writable).entered();
        let mut head = Vec::with_capacity(BEGIN_LEN);
        (&mut *input)
            .take(BEGIN_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|e| err!(InvalidArgument, OP_RECV, "{e}"))?;
        let begin = parse_begin(&head)
            .ok_or_else(|| err!(InvalidArgument, OP_RECV, "the native section is not a zfs send stream"))?;
        let origin = if begin.fromguid == 0 {
            None
        } else {
            let p = parent.ok_or_else(|| {
                err!(
                    InvalidArgument,
                    OP_RECV,
                    "an incremental zfs stream with no tree before it to apply to"
                )
            })?;
            let pds = parse_spec(p)?;
            Some(self.base_with_guid(&pds, begin.fromguid)?.ok_or_else(|| {
                err!(
                    InvalidArgument,
                    OP_RECV,
                    "the zfs stream is incremental from a snapshot (guid {}) that {pds} is not a copy of",
                    begin.fromguid
                )
            })?)
        };
        let mut whole = std::io::Cursor::new(head).chain(input);
        let res = self
            .run
            .run_in(&recv_argv(&tmp, origin.as_deref(), &mark, begin.toguid), &mut whole)
            .and_then(|o| {
                if o.ok {
                    Ok(())
                } else {
                    Err(err!(InvalidArgument, OP_RECV, "{}", o.first_err_line()))
                }
            })
            .and_then(|()| {
                if writable {
                    // The container's own rootfs changes from here on: the
                    // received snapshot would only hold on to old blocks.
                    let snap = format!("{tmp}@{}", recv_snap(begin.toguid));
                    self.tool(OP_RECV, s(&["zfs", "destroy", &snap]))?;
                }
                self.tool(OP_RECV, s(&["zfs", "rename", &tmp, &ds]))
                    .map_err(|e| self.create_failed(e, &ds))
                    .map(|_| ())
            });
        if res.is_err() {
            if let Err(e) = self.drop_recv_temp(&ds, &mark) {
                tracing::warn!("{e}");
            }
        }
        res
    }

    /// A received dataset is not mounted (`mountpoint=legacy`): `f` runs on
    /// a scratch mount of it, recorded before it is made (an Incus
    /// optimized export's volume, rearranged into a rootfs). A snapshot
    /// tree keeps its received snapshot, the next tree's origin.
    fn while_writable(&self, spec: &RootfsSpec, _readonly: bool, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        let o = strata_core::backend::Opened::open(self, spec, false)?;
        f(o.path())?;
        o.close()
    }
}
