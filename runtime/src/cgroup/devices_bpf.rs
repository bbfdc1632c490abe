//! The cgroup2 device controller: an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE, built from a [`DeviceList`] as LXC's
//! cgroup2_devices.c builds it, loaded with bpf(BPF_PROG_LOAD) and attached
//! with BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) to the
//! container's cgroup. The attachment lives as long as the cgroup: the
//! descriptors are closed once it is made. ALLOW_MULTI keeps programs
//! attached above in force and lets nothing below replace this one.

use super::DeviceList;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use strata_core::{err, Error, Result};

// From the kernel's uapi (linux/bpf.h, linux/bpf_common.h).
const BPF_PROG_LOAD: libc::c_long = 5;
pub(super) const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub(super) const BPF_CGROUP_DEVICE: u32 = 6;
pub(super) const BPF_F_ALLOW_MULTI: u32 = 2;
pub(super) const BPF_DEVCG_ACC_MKNOD: i32 = 1;
pub(super) const BPF_DEVCG_ACC_READ: i32 = 2;
pub(super) const BPF_DEVCG_ACC_WRITE: i32 = 4;
pub(super) const BPF_DEVCG_DEV_BLOCK: i32 = 1;
pub(super) const BPF_DEVCG_DEV_CHAR: i32 = 2;

pub(super) const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_W (0) | BPF_MEM
pub(super) const ALU32_AND_K: u8 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
pub(super) const ALU32_RSH_K: u8 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
pub(super) const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08; // BPF_ALU | BPF_MOV | BPF_X
pub(super) const ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
pub(super) const JNE_K: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
pub(super) const JNE_X: u8 = 0x05 | 0x50 | 0x08; // BPF_JMP | BPF_JNE | BPF_X
pub(super) const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

pub(super) fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst & 0xf) | (src << 4),
        off,
        imm,
    }
}

/// The program for `list`. The context (struct bpf_cgroup_dev_ctx) holds
/// `access_type` (access << 16 | type), `major` and `minor`: r2 = type,
/// r3 = access, r4 = major, r5 = minor; each rule jumps past itself on a
/// mismatch and returns its verdict on a match; the default comes last.
pub fn device_program(list: &DeviceList) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in list.effective() {
        let mut mask = 0;
        for c in r.access.chars() {
            mask |= match c {
                'r' => BPF_DEVCG_ACC_READ,
                'w' => BPF_DEVCG_ACC_WRITE,
                _ => BPF_DEVCG_ACC_MKNOD,
            };
        }
        let all = mask == BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD;
        let kind = match r.kind {
            'b' => BPF_DEVCG_DEV_BLOCK,
            'c' => BPF_DEVCG_DEV_CHAR,
            _ => 0,
        };
        // Instructions left before the verdict, counted down as in LXC.
        let mut jump: i16 =
            1 + i16::from(!all) + i16::from(kind > 0) + i16::from(r.major.is_some()) + i16::from(r.minor.is_some());
        let mut next = || {
            let j = jump;
            jump -= 1;
            j
        };
        if !all {
            p.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            p.push(insn(ALU32_AND_K, 1, 0, 0, mask));
            p.push(insn(JNE_X, 1, 3, next(), 0));
        }
        if kind > 0 {
            p.push(insn(JNE_K, 2, 0, next(), kind));
        }
        if let Some(m) = r.major {
            p.push(insn(JNE_K, 4, 0, next(), m as i32));
        }
        if let Some(m) = r.minor {
            p.push(insn(JNE_K, 5, 0, next(), m as i32));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(list.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// union bpf_attr as BPF_PROG_LOAD reads it (the fields strata sets, the
/// rest zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// union bpf_attr as BPF_PROG_ATTACH reads it.
#[repr(C)]
#[derive(Default)]
pub(super) struct ProgAttachAttr {
    pub(super) target_fd: u32,
    pub(super) attach_bpf_fd: u32,
    pub(super) attach_type: u32,
    pub(super) attach_flags: u32,
    pub(super) replace_bpf_fd: u32,
}

pub(super) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> libc::c_long {
    // SAFETY: `attr` is a live, fully initialised repr(C) prefix of union
    // bpf_attr whose size is passed along; the kernel copies it in and
    // reads any pointers it holds, which the callers keep alive.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) }
}

/// Load `prog`; the verifier's log is in the error when it refuses.
pub(super) fn load(prog: &[Insn]) -> Result<OwnedFd> {
    const OP: &str = "load cgroup2 device program";
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..10].copy_from_slice(b"strata_dev");
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor to us alone.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let errno = nix::errno::Errno::last();
    if errno != nix::errno::Errno::EINVAL && errno != nix::errno::Errno::EACCES {
        return Err(Error::errno(OP, "", errno));
    }
    let mut log = vec![0u8; 1 << 16];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd >= 0 {
        // SAFETY: as above.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(err!(Io, OP, "the kernel refused it ({errno}): {last}"))
}

/// Load the program for `list` and attach it to the cgroup2 directory `dir`.
pub fn attach_device_program(list: &DeviceList, dir: &Path) -> Result<()> {
    let prog = device_program(list);
    let pfd = match load(&prog) {
        Ok(fd) => fd,
        // Nested in a container's user namespace, the kernel loads no
        // program for us; the outer container's device rules hold (LXC
        // then runs without one too).
        Err(e) if !super::in_initial_userns() && e.kind() == strata_core::ErrorKind::PermissionDenied => {
            tracing::warn!("{e}: no cgroup2 device program in a nested user namespace");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let cg = std::fs::File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))?;
    let mut attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: pfd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    if bpf(BPF_PROG_ATTACH, &mut attr) != 0 {
        return Err(Error::errno(
            "attach cgroup2 device program",
            dir,
            nix::errno::Errno::last(),
        ));
    }
    tracing::debug!(dir = %dir.display(), insns = prog.len(), "attached cgroup2 device program");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::real_tests::{probe_devices, with_child};
    use super::super::{DeviceRule, Layout};
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn list(rules: &[(&str, &str)]) -> DeviceList {
        let mut l = DeviceList::default();
        for (k, v) in rules {
            l.add(DeviceRule::parse(&format!("lxc.cgroup2.devices.{k}"), v).unwrap());
        }
        l
    }

    #[test]
    fn cgroup_bpf_program_shape() {
        let l = list(&[("deny", "a"), ("allow", "c 1:3 rwm"), ("allow", "c *:* m")]);
        let p = device_program(&l);
        // 6 loads, rule 1: type, major, minor, verdict (4), rule 2: mask (3), type, verdict (2 + 1), default (2).
        assert_eq!(p.len(), 6 + 5 + 6 + 2);
        // A mismatch jumps to the next rule: past major, minor, mov, exit from the type check.
        assert_eq!(p[6], insn(JNE_K, 2, 0, 4, BPF_DEVCG_DEV_CHAR));
        assert_eq!(p[7], insn(JNE_K, 4, 0, 3, 1));
        assert_eq!(p[8], insn(JNE_K, 5, 0, 2, 3));
        assert_eq!(p[9], insn(ALU64_MOV_K, 0, 0, 0, 1));
        assert_eq!(p[11], insn(ALU32_MOV_X, 1, 3, 0, 0));
        assert_eq!(p[12], insn(ALU32_AND_K, 1, 0, 0, BPF_DEVCG_ACC_MKNOD));
        assert_eq!(p[13], insn(JNE_X, 1, 3, 3, 0));
        assert_eq!(p[14], insn(JNE_K, 2, 0, 2, BPF_DEVCG_DEV_CHAR));
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(p[p.len() - 1].code, EXIT);
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn in_child(procs: &Path, f: impl FnOnce() -> i32) -> i32 {
        let (moved, st) = with_child(|pid| std::fs::write(procs, pid.to_string()), f);
        moved.unwrap();
        st
    }

    #[test]
    fn cgroup_bpf_real_attach() {
        let layout = Layout::detect().unwrap();
        let Some(u) = layout.unified() else {
            eprintln!("skipped: no unified cgroup tree");
            return;
        };
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("kmsg");
        let c = CString::new(node.as_os_str().as_bytes()).unwrap();
        let dir = u.mount.join(format!("strata-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let l = list(&[("deny", "a"), ("allow", "c 1:3 rwm"), ("allow", "c *:* m")]);
        let res = attach_device_program(&l, &dir);
        let st = res
            .as_ref()
            .map(|_| in_child(&dir.join("cgroup.procs"), || probe_devices(&c)));
        let _ = std::fs::remove_file(&node);
        // Without `c *:* m`, mknod itself is refused.
        let dir2 = u.mount.join(format!("strata-bpf-test2-{}", std::process::id()));
        std::fs::create_dir(&dir2).unwrap();
        let l2 = list(&[("deny", "a"), ("allow", "c 1:3 rwm")]);
        let st2 = attach_device_program(&l2, &dir2).map(|_| in_child(&dir2.join("cgroup.procs"), || probe_devices(&c)));
        let _ = std::fs::remove_file(&node);
        std::fs::remove_dir(&dir).unwrap();
        std::fs::remove_dir(&dir2).unwrap();
        assert_eq!(st.unwrap(), 7, "open /dev/null, mknod 1:11, EPERM on opening it");
        assert_eq!(st2.unwrap(), 1, "no mknod without c *:* m");
    }
}
