//! A running container's cgroup2 device program changed in place (what
//! `lxc-device` needs on cgroup2): the rules are read back from the program
//! the kernel holds (strata's and LXC's programs have one shape, see
//! [`super::device_program`]), the new rule is added as the config's would
//! be, and the new program replaces the old one in a single
//! BPF_PROG_ATTACH with BPF_F_REPLACE, so that there is no moment with
//! neither or both. The kernel keeps the state: successive changes add up.

use super::devices_bpf::*;
use super::{DeviceList, DeviceRule, Insn};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use strata_core::{err, Error, Result};

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_F_REPLACE: u32 = 4;

/// union bpf_attr as BPF_PROG_QUERY reads and fills it.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// union bpf_attr as BPF_PROG_GET_FD_BY_ID reads it.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// union bpf_attr as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of struct bpf_prog_info (the kernel fills what fits).
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
}

/// Ids of the device programs attached to the cgroup2 directory `dir`
/// itself (not those above it).
pub fn device_program_ids(dir: &Path) -> Result<Vec<u32>> {
    const OP: &str = "query cgroup2 device programs";
    let cg = std::fs::File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))?;
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    if bpf(BPF_PROG_QUERY, &mut attr) != 0 {
        return Err(Error::errno(OP, dir, nix::errno::Errno::last()));
    }
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn prog_fd(id: u32) -> Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr);
    if fd < 0 {
        return Err(Error::errno("open device program", "", nix::errno::Errno::last()));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The instructions of a loaded program, as the verifier left them.
fn instructions(fd: &OwnedFd) -> Result<Vec<Insn>> {
    const OP: &str = "read device program";
    let get = |info: &mut ProgInfo| {
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<ProgInfo>() as u32,
            info: info as *mut ProgInfo as u64,
        };
        if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) != 0 {
            return Err(Error::errno(OP, "", nix::errno::Errno::last()));
        }
        Ok(())
    };
    let mut info = ProgInfo::default();
    get(&mut info)?;
    let n = info.xlated_prog_len as usize / std::mem::size_of::<Insn>();
    if n == 0 {
        return Err(err!(PermissionDenied, OP, "the kernel shows no instructions of it"));
    }
    let mut insns = vec![
        Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0
        };
        n
    ];
    let mut info = ProgInfo {
        xlated_prog_len: (n * std::mem::size_of::<Insn>()) as u32,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        ..Default::default()
    };
    get(&mut info)?;
    Ok(insns)
}

/// The device list a program of [`super::device_program`]'s shape checks,
/// or `None` for a program of another shape.
pub fn decode_device_program(p: &[Insn]) -> Option<DeviceList> {
    let head = [
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    if p.len() < head.len() + 2 || p[..head.len()] != head {
        return None;
    }
    let reg = |i: &Insn| (i.regs & 0xf, i.regs >> 4);
    let mut rules = Vec::new();
    let mut i = head.len();
    let end = p.len() - 2;
    while i < end {
        let start = i;
        let mut access = String::from("rwm");
        let mut kind = 'a';
        let (mut major, mut minor) = (None, None);
        if p[i].code == ALU32_MOV_X {
            let (and, jne) = (p.get(i + 1)?, p.get(i + 2)?);
            if reg(&p[i]) != (1, 3) || and.code != ALU32_AND_K || reg(and) != (1, 0) || jne.code != JNE_X {
                return None;
            }
            access = String::new();
            for (bit, c) in [
                (BPF_DEVCG_ACC_READ, 'r'),
                (BPF_DEVCG_ACC_WRITE, 'w'),
                (BPF_DEVCG_ACC_MKNOD, 'm'),
            ] {
                if and.imm & bit != 0 {
                    access.push(c);
                }
            }
            i += 3;
        }
        while p.get(i)?.code == JNE_K {
            let (dst, _) = reg(&p[i]);
            match dst {
                2 => {
                    kind = match p[i].imm {
                        BPF_DEVCG_DEV_BLOCK => 'b',
                        BPF_DEVCG_DEV_CHAR => 'c',
                        _ => return None,
                    }
                }
                4 => major = Some(p[i].imm as u32),
                5 => minor = Some(p[i].imm as u32),
                _ => return None,
            }
            i += 1;
        }
        let (verdict, exit) = (p.get(i)?, p.get(i + 1)?);
        if verdict.code != ALU64_MOV_K || reg(verdict).0 != 0 || exit.code != EXIT {
            return None;
        }
        // Every check of the rule jumps past its verdict.
        for (n, c) in p[start..i].iter().enumerate() {
            if (c.code == JNE_K || c.code == JNE_X) && c.off as usize != i + 1 - (start + n) {
                return None;
            }
        }
        rules.push(DeviceRule {
            allow: verdict.imm != 0,
            kind,
            major,
            minor,
            access,
        });
        i += 2;
    }
    let (default, exit) = (&p[end], &p[end + 1]);
    if default.code != ALU64_MOV_K || exit.code != EXIT {
        return None;
    }
    Some(DeviceList {
        default_allow: default.imm != 0,
        rules,
    })
}

/// Add `rule` to the device program attached to the cgroup2 directory
/// `dir`: `Ok(false)` when none is attached there (nothing restricts the
/// devices at that level), an error when it cannot be read back.
pub fn extend_device_program(dir: &Path, rule: &DeviceRule) -> Result<bool> {
    const OP: &str = "change cgroup2 device program";
    let _span = tracing::info_span!("extend_device_program", dir = %dir.display()).entered();
    let ids = device_program_ids(dir)?;
    let id = match ids.as_slice() {
        [] => return Ok(false),
        [id] => *id,
        _ => {
            return Err(err!(
                Unsupported,
                OP,
                "{}: {} device programs attached; not guessing which to change",
                dir.display(),
                ids.len()
            ))
        }
    };
    let old = prog_fd(id)?;
    let mut list = decode_device_program(&instructions(&old)?).ok_or_else(|| {
        err!(
            Unsupported,
            OP,
            "{}: its device program is not of the shape strata and LXC write",
            dir.display()
        )
    })?;
    list.add(rule.clone());
    let new = load(&device_program(&list))?;
    let cg = std::fs::File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))?;
    let mut attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: new.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
        replace_bpf_fd: old.as_raw_fd() as u32,
    };
    if bpf(BPF_PROG_ATTACH, &mut attr) != 0 {
        return Err(Error::errno(OP, dir, nix::errno::Errno::last()));
    }
    tracing::info!(rule = %rule.v1_line(), "device program replaced");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[(&str, &str)]) -> DeviceList {
        let mut l = DeviceList::default();
        for (k, v) in rules {
            l.add(DeviceRule::parse(&format!("lxc.cgroup2.devices.{k}"), v).unwrap());
        }
        l
    }

    #[test]
    fn cgroup_bpf_program_decodes_to_its_list() {
        for l in [
            list(&[
                ("deny", "a"),
                ("allow", "c 1:3 rwm"),
                ("allow", "c *:* m"),
                ("allow", "b 7:* rw"),
            ]),
            list(&[("allow", "a"), ("deny", "c 1:11 rwm"), ("deny", "a *:* w")]),
            list(&[("deny", "a")]),
        ] {
            let back = decode_device_program(&device_program(&l)).unwrap();
            let eff = |l: &DeviceList| l.effective().cloned().collect::<Vec<_>>();
            assert_eq!(back.default_allow, l.default_allow);
            assert_eq!(eff(&back), eff(&l));
        }
        let mut p = device_program(&list(&[("deny", "a"), ("allow", "c 1:3 rwm")]));
        p[7].off += 1;
        assert!(decode_device_program(&p).is_none());
        assert!(decode_device_program(&p[..4]).is_none());
    }

    #[test]
    fn cgroup_bpf_program_extended_in_place() {
        use super::super::real_tests::{probe_devices, with_child};
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let layout = super::super::Layout::detect().unwrap();
        let Some(u) = layout.unified() else {
            eprintln!("skipped: no unified cgroup tree");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = u.mount.join(format!("strata-bpf-extend-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("kmsg");
        let c = CString::new(node.as_os_str().as_bytes()).unwrap();
        let run = |dir: &Path| {
            let (moved, st) = with_child(
                |pid| std::fs::write(dir.join("cgroup.procs"), pid.to_string()),
                || probe_devices(&c),
            );
            moved.unwrap();
            let _ = std::fs::remove_file(&node);
            st
        };
        let res = (|| -> Result<(i32, i32, usize)> {
            assert!(!extend_device_program(
                &dir,
                &DeviceRule::parse("devices.allow", "c 1:11 rwm")?
            )?);
            super::super::attach_device_program(
                &list(&[("deny", "a"), ("allow", "c 1:3 rwm"), ("allow", "c *:* m")]),
                &dir,
            )?;
            let before = run(&dir);
            assert!(extend_device_program(
                &dir,
                &DeviceRule::parse("devices.allow", "c 1:11 rwm")?
            )?);
            let after = run(&dir);
            Ok((before, after, device_program_ids(&dir)?.len()))
        })();
        std::fs::remove_dir(&dir).unwrap();
        let (before, after, n) = res.unwrap();
        assert_eq!(before, 7, "open /dev/null, mknod 1:11, EPERM on opening it");
        assert_ne!(after, before, "1:11 opens once allowed");
        assert_eq!(n, 1, "replaced, not added");
    }
}
