//! Seccomp for the container's init, in LXC's policy language
//! (`lxc.seccomp.profile`, lxc.container.conf(5)).
//!
//! The profile is parsed and compiled in the monitor with libseccomp, the
//! library LXC itself uses, so syscall names resolve the same way and the
//! compat architectures get the same treatment: on x86_64 a version 2
//! profile also filters i386 (`int 0x80`) and x32 syscalls. The compiled
//! BPF program is kept in memory; [`Filter::install`] in init is one
//! `prctl(PR_SET_SECCOMP)` that neither allocates nor locks.
//!
//! The language, as LXC 5 reads it:
//!
//! - line 1 is the version, `1` or `2`;
//! - version 1: line 2 says `allowlist` (or the older `whitelist`), then one
//!   syscall number per line is allowed and everything else kills; the filter
//!   covers the native architecture only, so compat syscalls kill too;
//! - version 2: line 2 is `allowlist`/`whitelist` or `denylist`/`blacklist`,
//!   optionally followed by the default action. A denylist allows what no
//!   rule names and a rule without an action kills; an allowlist kills what
//!   no rule names and a rule without an action allows. Then come `#`
//!   comments, `[arch]` section headers, `reject_force_umount` (umount2 with
//!   MNT_FORCE fails with EACCES) and rules `SYSCALL [ACTION] [ARG]...`.
//!   Actions are `errno N`, `kill`, `trap`, `allow`, `log` and `notify`; an
//!   ARG is `[INDEX,VALUE,OP]` or `[INDEX,VALUE,OP,MASK]` with OP one of
//!   `SCMP_CMP_NE/LT/LE/EQ/GE/GT/MASKED_EQ` or `!= < <= == >= > &=`.
//!
//! A section names the host architectures its rules are read on (`[x86]`,
//! also spelled `[i386]` here, is read on i386 and x86_64 hosts; `[x86_64]`
//! and `[x32]` on x86_64 hosts; `[all]` everywhere); rules in a section for
//! another host are skipped. As in LXC, a rule that is read applies to the
//! native architecture and to every compat architecture that knows the
//! syscall. A syscall libseccomp does not know on this architecture is
//! skipped with a warning.
//!
//! `notify` needs a seccomp notify proxy (`lxc.seccomp.notify.proxy`),
//! which strata does not have: a profile using it is refused.
//!
//! Nesting follows LXC: unless `lxc.seccomp.allow_nesting = 1`, nothing is
//! loaded when the monitor already runs under a seccomp filter (or the
//! kernel has no seccomp); the profile is still parsed and compiled, so a
//! broken one is reported either way.

use libseccomp::error::SeccompError;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_core::config::Config;
use strata_core::err;
use strata_core::error::{Error, IoContext, Result};

const KEY_PROFILE: &str = "lxc.seccomp.profile";
const KEY_NESTING: &str = "lxc.seccomp.allow_nesting";
const KEY_PROXY: &str = "lxc.seccomp.notify.proxy";
const KEY_COOKIE: &str = "lxc.seccomp.notify.cookie";

/// The kernel's limit on the length of one filter program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// The largest errno a filter can return (the kernel's MAX_ERRNO).
const MAX_ERRNO: u16 = 4095;

/// A compiled seccomp filter, ready to load in the container's init.
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    profile: PathBuf,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("profile", &self.profile)
            .field("instructions", &self.prog.len())
            .finish()
    }
}

impl Filter {
    /// Reads `lxc.seccomp.profile`, `lxc.seccomp.allow_nesting` and
    /// `lxc.seccomp.notify.*` from an expanded config and compiles the
    /// profile. `Ok(None)` when no profile is set, or when LXC would not
    /// load one either (already under a seccomp filter without
    /// `allow_nesting`, or no seccomp in the kernel). Errors are one line
    /// naming the key or the profile and its line number.
    pub fn from_config(cfg: &Config) -> Result<Option<Filter>> {
        let profile = match cfg.get(KEY_PROFILE).map(str::trim) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Ok(None),
        };
        let nesting = match cfg.get(KEY_NESTING).map(str::trim) {
            None | Some("") | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(err!(InvalidConfig, KEY_NESTING, "{v:?}: expected 0 or 1")),
        };
        for key in [KEY_PROXY, KEY_COOKIE] {
            if cfg.get(key).is_some_and(|v| !v.trim().is_empty()) {
                tracing::warn!("{key} is ignored: strata has no seccomp notify proxy support");
            }
        }
        let filter = Filter::from_file(&profile)?;
        if !nesting {
            match seccomp_state() {
                Some(0) => {}
                Some(_) => {
                    tracing::info!(
                        "already under a seccomp filter and {KEY_NESTING} is 0: {} not loaded",
                        profile.display()
                    );
                    return Ok(None);
                }
                None => {
                    tracing::info!("the kernel has no seccomp: {} not loaded", profile.display());
                    return Ok(None);
                }
            }
        }
        Ok(Some(filter))
    }

    /// Parses and compiles one profile file for this host.
    fn from_file(profile: &Path) -> Result<Filter> {
        // A regular file of bounded size: a fifo or a device would block or never end.
        let bytes = strata_core::store::read_regular(profile, 4 << 20, &format!("read {KEY_PROFILE}"))?;
        let text =
            String::from_utf8(bytes).map_err(|_| err!(InvalidConfig, KEY_PROFILE, "not valid UTF-8").at(profile))?;
        Filter::from_text(&text, profile)
    }

    /// Parses and compiles profile text; `origin` names it in messages.
    fn from_text(text: &str, origin: &Path) -> Result<Filter> {
        let policy = parse(text, ScmpArch::native())
            .map_err(|e| err!(InvalidConfig, KEY_PROFILE, "line {}: {}", e.line, e.msg).at(origin))?;
        let prog = compile(&policy, origin)?;
        Ok(Filter {
            prog,
            profile: origin.to_path_buf(),
        })
    }

    /// The profile this filter was compiled from.
    pub fn profile(&self) -> &Path {
        &self.profile
    }

    /// Length of the BPF program, in instructions.
    pub fn instructions(&self) -> usize {
        self.prog.len()
    }

    /// Loads the filter into the calling thread. Meant for the container's
    /// init after fork, just before dropping capabilities and exec: it is
    /// one prctl, with no allocation or lock unless it fails. Without
    /// no_new_privs the kernel wants CAP_SYS_ADMIN in the caller's user
    /// namespace (init is root there at that point).
    pub fn install(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            // from_text checked the length against MAX_INSNS.
            len: self.prog.len() as libc::c_ushort,
            filter: self.prog.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.prog`, which outlives the call; the
        // kernel only reads (and copies) the program.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        let denied = e.raw_os_error() == Some(libc::EACCES);
        let mut err = Error::io("load seccomp filter", &self.profile, e);
        if denied {
            err.msg
                .push_str(" (needs CAP_SYS_ADMIN in the user namespace, or no_new_privs)");
        }
        Err(err)
    }
}

/// The `Seccomp:` field of /proc/self/status: 0 when no filter is active,
/// `None` when the kernel has no seccomp. Asked with one prctl, which
/// answers the same number, instead of the kernel formatting the whole
/// status file (a tenth of a start's reads); only where the prctl fails
/// (no seccomp in the kernel, or a filter around us refusing it) does the
/// file answer. Unreadable counts as 0, as in LXC.
fn seccomp_state() -> Option<u32> {
    // SAFETY: PR_GET_SECCOMP takes no pointer and touches no memory.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if let Ok(m) = u32::try_from(mode) {
        return Some(m);
    }
    let Ok(status) = strata_core::procfs::read_to_string("/proc/self/status") else {
        return Some(0);
    };
    let line = status.lines().find_map(|l| l.strip_prefix("Seccomp:"))?;
    Some(line.trim().parse().unwrap_or(0))
}

// ---------------------------------------------------------------------------
// The policy language.

/// What a rule (or the default) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Errno(u16),
    Trap,
    Allow,
    Notify,
    Log,
}

impl Action {
    fn scmp(self) -> ScmpAction {
        match self {
            // LXC's "kill" is libseccomp's SCMP_ACT_KILL, which kills the thread.
            Action::Kill => ScmpAction::KillThread,
            Action::Errno(e) => ScmpAction::Errno(i32::from(e)),
            Action::Trap => ScmpAction::Trap,
            Action::Allow => ScmpAction::Allow,
            Action::Notify => ScmpAction::Notify,
            Action::Log => ScmpAction::Log,
        }
    }
}

/// One argument comparison, `[INDEX,VALUE,OP(,MASK)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArgCmp {
    index: u32,
    value: u64,
    op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

impl ArgCmp {
    fn scmp(self) -> ScmpArgCompare {
        let op = match self.op {
            Op::Ne => ScmpCompareOp::NotEqual,
            Op::Lt => ScmpCompareOp::Less,
            Op::Le => ScmpCompareOp::LessOrEqual,
            Op::Eq => ScmpCompareOp::Equal,
            Op::Ge => ScmpCompareOp::GreaterEqual,
            Op::Gt => ScmpCompareOp::Greater,
            Op::MaskedEq(mask) => ScmpCompareOp::MaskedEqual(mask),
        };
        ScmpArgCompare::new(self.index, op, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A syscall by name (version 2).
    Name(String),
    /// A native syscall number (version 1).
    Number(i32),
    /// `reject_force_umount`.
    RejectForceUmount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// 1-based line in the profile.
    line: usize,
    target: Target,
    action: Action,
    args: Vec<ArgCmp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    version: u8,
    /// For every syscall no rule matches.
    default: Action,
    rules: Vec<Rule>,
}

#[derive(Debug, PartialEq, Eq)]
struct ParseError {
    line: usize,
    msg: String,
}

fn perr(line: usize, msg: impl Into<String>) -> ParseError {
    ParseError { line, msg: msg.into() }
}

/// The text before a `#` comment.
fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(body, _)| body)
}

/// An unsigned number as C's strtoull with base 0 reads it: `0x` hex,
/// a leading `0` octal, else decimal.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Reads an action word (and the number after `errno`) from `tokens`.
fn parse_action<'a>(tokens: &mut impl Iterator<Item = &'a str>) -> Result<Action, String> {
    let tok = tokens.next().unwrap_or_default();
    Ok(match tok {
        "kill" => Action::Kill,
        "trap" => Action::Trap,
        "allow" => Action::Allow,
        "log" => Action::Log,
        "notify" => Action::Notify,
        _ if tok.starts_with("errno") => {
            // "errno 1", or "errno1" as C's sscanf also reads it.
            let num = match &tok[5..] {
                "" => tokens.next().ok_or("errno needs a number")?,
                rest => rest,
            };
            match num.parse::<u16>() {
                Ok(n) if n <= MAX_ERRNO => Action::Errno(n),
                _ => return Err(format!("errno {num:?}: expected a number from 0 to {MAX_ERRNO}")),
            }
        }
        _ => {
            return Err(format!(
                "unknown action {tok:?}: expected errno N, kill, trap, allow, log or notify"
            ))
        }
    })
}

/// Parses `[i,v,op]` and `[i,v,op,mask]` comparisons, spaces already removed.
fn parse_args(mut s: &str) -> Result<Vec<ArgCmp>, String> {
    let mut args = Vec::new();
    while !s.is_empty() {
        let rest = s
            .strip_prefix('[')
            .ok_or_else(|| format!("{s:?}: expected [INDEX,VALUE,OP] or [INDEX,VALUE,OP,MASK]"))?;
        let (inner, after) = rest.split_once(']').ok_or_else(|| format!("{s:?}: missing ]"))?;
        s = after;
        let f: Vec<&str> = inner.split(',').map(str::trim).collect();
        if f.len() != 3 && f.len() != 4 {
            return Err(format!("[{inner}]: expected [INDEX,VALUE,OP] or [INDEX,VALUE,OP,MASK]"));
        }
        let index = match parse_u64(f[0]) {
            Some(i) if i < 6 => i as u32,
            _ => return Err(format!("[{inner}]: argument index {:?}: expected 0 to 5", f[0])),
        };
        let value = parse_u64(f[1]).ok_or_else(|| format!("[{inner}]: value {:?} is not a number", f[1]))?;
        let mask = match f.get(3) {
            Some(m) => parse_u64(m).ok_or_else(|| format!("[{inner}]: mask {m:?} is not a number"))?,
            None => 0,
        };
        let op = match f[2] {
            "SCMP_CMP_NE" | "!=" => Op::Ne,
            "SCMP_CMP_LT" | "<" => Op::Lt,
            "SCMP_CMP_LE" | "<=" => Op::Le,
            "SCMP_CMP_EQ" | "==" => Op::Eq,
            "SCMP_CMP_GE" | ">=" => Op::Ge,
            "SCMP_CMP_GT" | ">" => Op::Gt,
            "SCMP_CMP_MASKED_EQ" | "&=" => Op::MaskedEq(mask),
            op => return Err(format!("[{inner}]: unknown operator {op:?}")),
        };
        if args.len() == 6 {
            return Err("more than 6 argument comparisons".into());
        }
        args.push(ArgCmp { index, value, op });
    }
    Ok(args)
}

/// Whether the rules of section `[name]` are read on a `native` host;
/// `None` for a section name LXC does not know.
fn section_applies(name: &str, native: ScmpArch) -> Option<bool> {
    use ScmpArch::*;
    let hosts: &[ScmpArch] = match name {
        "all" | "ALL" => return Some(true),
        "x86" | "X86" | "i386" => &[X86, X8664],
        "x32" | "X32" | "x86_64" | "X86_64" => &[X8664],
        "arm" | "ARM" => &[Arm, Aarch64],
        "arm64" | "ARM64" => &[Aarch64],
        "ppc64le" | "PPC64LE" => &[Ppc64Le],
        "ppc64" | "PPC64" => &[Ppc64],
        "ppc" | "PPC" => &[Ppc, Ppc64],
        "mips64" | "MIPS64" | "mips64n32" | "MIPS64N32" => &[Mips64],
        "mips" | "MIPS" => &[Mips, Mips64],
        "mipsel64" | "MIPSEL64" | "mipsel64n32" | "MIPSEL64N32" => &[Mipsel64],
        "mipsel" | "MIPSEL" => &[Mipsel, Mipsel64],
        "s390x" | "S390X" => &[S390X],
        "s390" | "S390" => &[S390],
        _ => return None,
    };
    Some(hosts.contains(&native))
}

/// The compat architectures LXC adds to a version 2 filter on `native`.
fn compat_arches(native: ScmpArch) -> &'static [ScmpArch] {
    use ScmpArch::*;
    match native {
        X8664 => &[X86, X32],
        Aarch64 => &[Arm],
        Ppc64 => &[Ppc],
        Mips64 => &[Mips, Mips64N32],
        Mipsel64 => &[Mipsel, Mipsel64N32],
        _ => &[],
    }
}

/// Parses a profile for a `native` host. Sections for other hosts are
/// dropped here; syscall names are resolved later, by [`compile`].
fn parse(text: &str, native: ScmpArch) -> Result<Policy, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let version = match lines.next().map(|(_, l)| l.trim()) {
        Some("1") => 1,
        Some("2") => 2,
        Some(v) => return Err(perr(1, format!("version {v:?}: expected 1 or 2"))),
        None => return Err(perr(1, "empty profile: expected the version, 1 or 2")),
    };
    let Some((_, head)) = lines.next() else {
        return Err(perr(2, "missing policy type: expected allowlist or denylist"));
    };
    let mut tokens = strip_comment(head).split_whitespace().peekable();
    if strip_comment(head).split_whitespace().any(|t| t == "debug") {
        return Err(perr(2, "debug is not implemented (LXC refuses it too)"));
    }
    let kind = tokens.next().unwrap_or_default();
    if version == 1 {
        if kind != "allowlist" && kind != "whitelist" {
            return Err(perr(2, format!("{kind:?}: version 1 supports only allowlist")));
        }
        if let Some(t) = tokens.next() {
            return Err(perr(2, format!("{t:?}: version 1 takes no default action")));
        }
        let mut rules = Vec::new();
        for (n, line) in lines {
            let body = strip_comment(line).trim();
            if body.is_empty() {
                continue;
            }
            match body.parse::<i32>() {
                Ok(nr) if nr >= 0 => rules.push(Rule {
                    line: n,
                    target: Target::Number(nr),
                    action: Action::Allow,
                    args: Vec::new(),
                }),
                _ => {
                    return Err(perr(
                        n,
                        format!("{body:?}: version 1 expects one syscall number per line"),
                    ))
                }
            }
        }
        return Ok(Policy {
            version,
            default: Action::Kill,
            rules,
        });
    }

    let denylist = match kind {
        "denylist" | "blacklist" => true,
        "allowlist" | "whitelist" => false,
        k => return Err(perr(2, format!("{k:?}: expected allowlist or denylist"))),
    };
    let (mut default, rule_default) = if denylist {
        (Action::Allow, Action::Kill)
    } else {
        (Action::Kill, Action::Allow)
    };
    if tokens.peek().is_some() {
        default = parse_action(&mut tokens).map_err(|m| perr(2, m))?;
        if let Some(t) = tokens.next() {
            return Err(perr(2, format!("{t:?}: unexpected after the default action")));
        }
    }
    if default == Action::Notify {
        return Err(perr(2, notify_refusal()));
    }

    let mut rules = Vec::new();
    let mut reading = true;
    for (n, line) in lines {
        let body = strip_comment(line).trim();
        if body.is_empty() {
            continue;
        }
        if let Some(section) = body.strip_prefix('[') {
            let Some(name) = section.strip_suffix(']') else {
                return Err(perr(n, format!("{body:?}: a section header is [ARCH]")));
            };
            reading = section_applies(name, native)
                .ok_or_else(|| perr(n, format!("unsupported architecture section [{name}]")))?;
            continue;
        }
        if !reading {
            continue;
        }
        let mut tokens = body.split_whitespace().peekable();
        let name = tokens.next().unwrap_or_default();
        if name == "reject_force_umount" {
            // LXC reads nothing else on this line.
            rules.push(Rule {
                line: n,
                target: Target::RejectForceUmount,
                action: Action::Errno(libc::EACCES as u16),
                args: Vec::new(),
            });
            continue;
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(perr(n, format!("{name:?} is not a syscall name")));
        }
        let action = match tokens.peek() {
            Some(t) if !t.starts_with('[') => parse_action(&mut tokens).map_err(|m| perr(n, m))?,
            _ => rule_default,
        };
        if action == Action::Notify {
            return Err(perr(n, notify_refusal()));
        }
        let args = parse_args(&tokens.collect::<String>()).map_err(|m| perr(n, m))?;
        rules.push(Rule {
            line: n,
            target: Target::Name(name.to_string()),
            action,
            args,
        });
    }
    Ok(Policy {
        version,
        default,
        rules,
    })
}

fn notify_refusal() -> String {
    format!("notify needs a seccomp notify proxy ({KEY_PROXY}), which strata does not support")
}

// ---------------------------------------------------------------------------
// Compiling with libseccomp.

/// A filter context as LXC sets one up: no no_new_privs (the runtime
/// decides that with lxc.no_new_privs), and rules for syscalls that do not
/// exist on an architecture skipped rather than refused.
fn new_ctx(default: Action, origin: &Path) -> Result<ScmpFilterContext> {
    let lib = |e| lib_err("set up a filter", e, origin);
    let mut ctx = ScmpFilterContext::new(default.scmp()).map_err(lib)?;
    ctx.set_ctl_nnp(false).map_err(lib)?;
    if let Err(e) = ctx.set_api_tskip(true) {
        tracing::debug!("libseccomp: no nop-skip ({e}), continuing");
    }
    Ok(ctx)
}

fn lib_err(what: &str, e: SeccompError, origin: &Path) -> Error {
    err!(InvalidConfig, KEY_PROFILE, "{what}: libseccomp: {e}").at(origin)
}

/// Adds one rule to `ctx`, which holds `arch` only (or the native arch).
fn add_rule(ctx: &mut ScmpFilterContext, rule: &Rule, sys: ScmpSyscall, origin: &Path) -> Result<()> {
    let cmps: Vec<ScmpArgCompare> = rule.args.iter().map(|a| a.scmp()).collect();
    let r = match rule.target {
        // Version 1 rules are added as LXC adds them: not necessarily exact.
        Target::Number(_) => ctx.add_rule(rule.action.scmp(), sys).map(drop),
        _ => ctx.add_rule_conditional_exact(rule.action.scmp(), sys, &cmps).map(drop),
    };
    r.map_err(|e| lib_err(&format!("line {}: cannot add the rule", rule.line), e, origin))
}

fn compile(policy: &Policy, origin: &Path) -> Result<Vec<libc::sock_filter>> {
    let native = ScmpArch::native();
    let mut main = new_ctx(policy.default, origin)?;
    let mut compat = Vec::new();
    if policy.version == 2 {
        for &arch in compat_arches(native) {
            let lib = |e| lib_err(&format!("add the compat architecture {arch:?}"), e, origin);
            let mut ctx = new_ctx(policy.default, origin)?;
            ctx.add_arch(arch).map_err(lib)?;
            ctx.remove_arch(ScmpArch::Native).map_err(lib)?;
            compat.push((arch, ctx));
        }
    }
    for rule in &policy.rules {
        if rule.action == policy.default {
            tracing::warn!(
                "{}: line {}: the rule's action is the profile's default; skipped",
                origin.display(),
                rule.line
            );
            continue;
        }
        let name = match &rule.target {
            Target::Number(nr) => {
                add_rule(&mut main, rule, ScmpSyscall::from(*nr), origin)?;
                continue;
            }
            Target::RejectForceUmount => "umount2",
            Target::Name(name) => name.as_str(),
        };
        let mut rule = rule.clone();
        if rule.target == Target::RejectForceUmount {
            let force = libc::MNT_FORCE as u64;
            rule.args = vec![ArgCmp {
                index: 1,
                value: force,
                op: Op::MaskedEq(force),
            }];
        }
        // Rules take native numbers; libseccomp translates them per arch.
        let Ok(sys) = ScmpSyscall::from_name(name) else {
            tracing::warn!(
                "{}: line {}: syscall {name} is unknown on this architecture; rule skipped",
                origin.display(),
                rule.line
            );
            continue;
        };
        // A negative number is a pseudo syscall: absent natively, maybe
        // present on a compat architecture.
        if sys.as_raw_syscall() >= 0 {
            add_rule(&mut main, &rule, sys, origin)?;
        }
        for (arch, ctx) in &mut compat {
            match ScmpSyscall::from_name_by_arch(name, *arch) {
                Ok(s) if s.as_raw_syscall() >= 0 => add_rule(ctx, &rule, sys, origin)?,
                _ => tracing::debug!("seccomp: {name} does not exist on {arch:?}"),
            }
        }
    }
    for (arch, ctx) in compat {
        main.merge(ctx)
            .map_err(|e| lib_err(&format!("merge the {arch:?} filter"), e, origin))?;
    }
    export(&main, origin)
}

/// The filter as the kernel takes it, through a memfd.
fn export(ctx: &ScmpFilterContext, origin: &Path) -> Result<Vec<libc::sock_filter>> {
    // SAFETY: the name is a NUL-terminated literal; the result is checked.
    let fd = unsafe { libc::memfd_create(c"strata-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(
            "export seccomp filter",
            origin,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|e| lib_err("export the filter", e, origin))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .ctx("export seccomp filter", origin)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(err!(Io, "export seccomp filter", "libseccomp wrote {} bytes", bytes.len()).at(origin));
    }
    let prog: Vec<libc::sock_filter> = bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if prog.len() > MAX_INSNS {
        return Err(err!(
            InvalidConfig,
            KEY_PROFILE,
            "the filter is {} instructions; the kernel takes at most {MAX_INSNS}",
            prog.len()
        )
        .at(origin));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The profile LXC installs as common.seccomp; the tests use the
    /// installed file when there is one, else this text with the same rules.
    const COMMON_PATH: &str = "/usr/share/lxc/config/common.seccomp";
    const COMMON_TEXT: &str = "2\ndenylist\nreject_force_umount  # umount -f is refused\n[all]\n\
        kexec_load errno 1\nopen_by_handle_at errno 1\ninit_module errno 1\nfinit_module errno 1\n\
        delete_module errno 1\n";

    fn common() -> Filter {
        match std::fs::read_to_string(COMMON_PATH) {
            Ok(text) => Filter::from_text(&text, Path::new(COMMON_PATH)).unwrap(),
            Err(_) => Filter::from_text(COMMON_TEXT, Path::new("common.seccomp")).unwrap(),
        }
    }

    fn p(text: &str) -> Policy {
        parse(text, ScmpArch::X8664).unwrap()
    }

    fn perr_at(text: &str) -> ParseError {
        parse(text, ScmpArch::X8664).unwrap_err()
    }

    fn names(policy: &Policy) -> Vec<&str> {
        policy
            .rules
            .iter()
            .map(|r| match &r.target {
                Target::Name(n) => n.as_str(),
                Target::RejectForceUmount => "reject_force_umount",
                Target::Number(_) => "#",
            })
            .collect()
    }

    fn compiled(text: &str) -> Vec<(u16, u8, u8, u32)> {
        let f = Filter::from_text(text, Path::new("test.seccomp")).unwrap();
        f.prog.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    // -- parser ---------------------------------------------------------

    #[test]
    fn seccomp_v1_allowlist_of_numbers() {
        let pol = p("1\nallowlist\n0\n1\n\n60\n");
        assert_eq!(pol.version, 1);
        assert_eq!(pol.default, Action::Kill);
        let nrs: Vec<_> = pol.rules.iter().map(|r| (r.target.clone(), r.action)).collect();
        assert_eq!(
            nrs,
            [
                (Target::Number(0), Action::Allow),
                (Target::Number(1), Action::Allow),
                (Target::Number(60), Action::Allow)
            ]
        );
        assert_eq!(p("1\nwhitelist\n3\n").rules.len(), 1);
        let e = perr_at("1\ndenylist\n3\n");
        assert_eq!(e.line, 2, "{e:?}");
        let e = perr_at("1\nallowlist\n3\nopen\n");
        assert_eq!(e.line, 4, "{e:?}");
    }

    #[test]
    fn seccomp_v2_deny_and_allow_defaults() {
        let deny = p("2\ndenylist\nfoo\nbar errno 5\n");
        assert_eq!(deny.default, Action::Allow);
        assert_eq!(deny.rules[0].action, Action::Kill);
        assert_eq!(deny.rules[1].action, Action::Errno(5));
        assert_eq!(p("2\nblacklist\nfoo\n").rules[0].action, Action::Kill);

        let allow = p("2\nallowlist\nfoo\nbar kill\n");
        assert_eq!(allow.default, Action::Kill);
        assert_eq!(allow.rules[0].action, Action::Allow);
        assert_eq!(allow.rules[1].action, Action::Kill);
        assert_eq!(p("2\nwhitelist\nfoo\n").rules[0].action, Action::Allow);

        let e = perr_at("2\ngraylist\n");
        assert_eq!(e.line, 2);
        assert_eq!(perr_at("3\ndenylist\n").line, 1);
        assert_eq!(perr_at("").line, 1);
        assert_eq!(perr_at("2\n").line, 2);
        let e = perr_at("2\ndenylist debug\n");
        assert!(e.msg.contains("debug"), "{e:?}");
    }

    #[test]
    fn seccomp_default_and_rule_actions() {
        assert_eq!(p("2\ndenylist errno 38\n").default, Action::Errno(38));
        assert_eq!(p("2\nallowlist trap\n").default, Action::Trap);
        assert_eq!(p("2\nallowlist log\n").default, Action::Log);
        assert_eq!(p("2\nallowlist errno 1 # comment\n").default, Action::Errno(1));
        assert_eq!(p("2\ndenylist kill\nfoo allow\n").default, Action::Kill);
        assert_eq!(perr_at("2\ndenylist bogus\n").line, 2);
        assert_eq!(perr_at("2\ndenylist errno\n").line, 2);
        assert_eq!(perr_at("2\ndenylist errno 1 extra\n").line, 2);

        let pol = p("2\ndenylist\na kill\nb trap\nc allow\nd log\ne errno 0\nf errno1\n");
        let acts: Vec<_> = pol.rules.iter().map(|r| r.action).collect();
        assert_eq!(
            acts,
            [
                Action::Kill,
                Action::Trap,
                Action::Allow,
                Action::Log,
                Action::Errno(0),
                Action::Errno(1)
            ]
        );
        let e = perr_at("2\ndenylist\na errno 99999\n");
        assert_eq!(e.line, 3);
        let e = perr_at("2\ndenylist\na frobnicate\n");
        assert!(e.msg.contains("frobnicate") && e.line == 3, "{e:?}");
    }

    #[test]
    fn seccomp_arch_sections() {
        let text = "2\ndenylist\nfirst\n[x86_64]\na\n[arm64]\nb\n[all]\nc\n[x86]\nd\n[i386]\ne\n\
            [x32]\nf\n[X86_64]\ng\n[arm]\nh\n[ppc64le]\ni\n[ALL]\nj\n";
        assert_eq!(names(&p(text)), ["first", "a", "c", "d", "e", "f", "g", "j"]);
        let arm = parse(text, ScmpArch::Aarch64).unwrap();
        assert_eq!(names(&arm), ["first", "b", "c", "h", "j"]);
        let e = perr_at("2\ndenylist\n[sparc]\nfoo\n");
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("[sparc]"), "{e:?}");
        assert_eq!(perr_at("2\ndenylist\n[x86_64\n").line, 3);
    }

    #[test]
    fn seccomp_argument_comparisons() {
        let pol = p("2\ndenylist\n\
            a errno 1 [0,1,==]\n\
            b errno 1 [1,0x10,SCMP_CMP_MASKED_EQ,0x30] [2, 010, <=]\n\
            c kill [0,1,!=][1,2,<][2,3,<=][3,4,>=][4,5,>][5,6,&=,7]\n\
            d errno 2 [0,5,SCMP_CMP_NE] [1,5,SCMP_CMP_LT] [2,5,SCMP_CMP_LE] [3,5,SCMP_CMP_EQ]\n\
            e [0,1,SCMP_CMP_GE] [1,1,SCMP_CMP_GT]\n");
        let a = &pol.rules;
        assert_eq!(
            a[0].args,
            [ArgCmp {
                index: 0,
                value: 1,
                op: Op::Eq
            }]
        );
        assert_eq!(
            a[1].args,
            [
                ArgCmp {
                    index: 1,
                    value: 0x10,
                    op: Op::MaskedEq(0x30)
                },
                ArgCmp {
                    index: 2,
                    value: 8,
                    op: Op::Le
                }
            ]
        );
        let ops: Vec<_> = a[2].args.iter().map(|c| c.op).collect();
        assert_eq!(ops, [Op::Ne, Op::Lt, Op::Le, Op::Ge, Op::Gt, Op::MaskedEq(7)]);
        let ops: Vec<_> = a[3].args.iter().map(|c| c.op).collect();
        assert_eq!(ops, [Op::Ne, Op::Lt, Op::Le, Op::Eq]);
        // Arguments without an action take the list's rule default.
        assert_eq!(a[4].action, Action::Kill);
        assert_eq!(a[4].args.len(), 2);

        for bad in [
            "a errno 1 [6,1,==]",
            "a errno 1 [0,x,==]",
            "a errno 1 [0,1,=~]",
            "a errno 1 [0,1]",
            "a errno 1 [0,1,==",
            "a errno 1 junk",
            "a errno 1 [0,1,==][1,1,==][2,1,==][3,1,==][4,1,==][5,1,==][0,2,==]",
        ] {
            let e = perr_at(&format!("2\ndenylist\n# c\n{bad}\n"));
            assert_eq!(e.line, 4, "{bad}: {e:?}");
        }
    }

    #[test]
    fn seccomp_comments_and_reject_force_umount() {
        let pol = p(
            "2\ndenylist\n# a comment\n   # indented\n\nreject_force_umount  # comment this to allow umount -f\n\
            kexec_load errno 1 # trailing\n",
        );
        assert_eq!(names(&pol), ["reject_force_umount", "kexec_load"]);
        assert_eq!(pol.rules[0].action, Action::Errno(libc::EACCES as u16));
        assert_eq!(pol.rules[1].action, Action::Errno(1));
        assert_eq!(pol.rules[1].line, 7);
    }

    #[test]
    fn seccomp_notify_refused() {
        for text in ["2\ndenylist\nioctl notify\n", "2\nallowlist notify\n"] {
            let e = Filter::from_text(text, Path::new("n.seccomp")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("lxc.seccomp.notify.proxy"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn seccomp_errors_name_file_and_line() {
        let e = Filter::from_text("2\ndenylist\nfoo errno 1\nbar launch\n", Path::new("/x/p.seccomp")).unwrap_err();
        assert_eq!(e.kind(), strata_core::ErrorKind::InvalidConfig);
        let msg = e.to_string();
        assert!(
            msg.contains("/x/p.seccomp") && msg.contains("line 4") && msg.contains("launch"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    // -- compiling ------------------------------------------------------

    #[test]
    fn seccomp_unknown_syscall_skipped() {
        let with = compiled("2\ndenylist\nnot_a_syscall errno 1\nkexec_load errno 1\n");
        let without = compiled("2\ndenylist\nkexec_load errno 1\n");
        assert_eq!(with, without);
        // A rule that only repeats the default changes nothing either.
        assert_eq!(compiled("2\ndenylist\ngetpid allow\nkexec_load errno 1\n"), without);
        // socketcall does not exist on x86_64 but does on i386: the rule is
        // kept for the compat architecture.
        #[cfg(target_arch = "x86_64")]
        assert_ne!(compiled("2\ndenylist\nsocketcall errno 1\n"), compiled("2\ndenylist\n"));
    }

    #[test]
    fn seccomp_common_profile_compiles() {
        let f = common();
        assert!(f.instructions() > 10 && f.instructions() <= MAX_INSNS, "{f:?}");
        if let Ok(text) = std::fs::read_to_string(COMMON_PATH) {
            let pol = parse(&text, ScmpArch::native()).unwrap();
            assert_eq!(
                names(&pol),
                [
                    "reject_force_umount",
                    "kexec_load",
                    "open_by_handle_at",
                    "init_module",
                    "finit_module",
                    "delete_module"
                ]
            );
        }
        // Every other profile LXC ships must compile too.
        if let Ok(dir) = std::fs::read_dir("/usr/share/lxc/config") {
            for e in dir.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "seccomp") {
                    Filter::from_file(&path).unwrap();
                }
            }
        }
    }

    #[test]
    fn seccomp_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let prof = dir.path().join("p.seccomp");
        std::fs::write(&prof, COMMON_TEXT).unwrap();
        let cfg = |extra: &str| Config::parse(&format!("lxc.uts.name = c\n{extra}")).unwrap();
        assert!(Filter::from_config(&cfg("")).unwrap().is_none());
        assert!(Filter::from_config(&cfg("lxc.seccomp.profile =\n")).unwrap().is_none());

        let with = format!(
            "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = 1\n",
            prof.display()
        );
        let f = Filter::from_config(&cfg(&with)).unwrap().unwrap();
        assert_eq!(f.profile(), prof);
        // The legacy key name works too.
        let legacy = format!("lxc.seccomp = {}\nlxc.seccomp.allow_nesting = 1\n", prof.display());
        assert!(Filter::from_config(&cfg(&legacy)).unwrap().is_some());

        let e = Filter::from_config(&cfg(&format!(
            "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = yes\n",
            prof.display()
        )))
        .unwrap_err();
        assert!(e.to_string().contains("lxc.seccomp.allow_nesting"), "{e}");

        let missing = dir.path().join("missing.seccomp");
        let e = Filter::from_config(&cfg(&format!("lxc.seccomp.profile = {}\n", missing.display()))).unwrap_err();
        assert!(e.to_string().contains("missing.seccomp"), "{e}");

        let bad = dir.path().join("bad.seccomp");
        std::fs::File::create(&bad)
            .unwrap()
            .write_all(b"2\ndenylist\n[all]\nkexec_load errno\n")
            .unwrap();
        let e = Filter::from_config(&cfg(&format!("lxc.seccomp.profile = {}\n", bad.display()))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bad.seccomp") && msg.contains("line 4"), "{msg}");
    }

    // -- loading it for real, in forked children -------------------------

    /// Runs `f` in a forked child and returns its wait status; `f`'s
    /// result is the exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs `f` (raw syscalls) and leaves with _exit,
        // never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(120);
            // SAFETY: ends the child without running the parent's atexit state.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        status
    }

    /// Installs `f` in the child; root loads it as init does, others need
    /// no_new_privs first.
    fn load(f: &Filter) -> bool {
        // SAFETY: plain getters and a prctl on the calling (child) process.
        unsafe {
            if libc::geteuid() != 0 && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return false;
            }
        }
        f.install().is_ok()
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// `r == -1` with errno `e`.
    fn fails_with(r: libc::c_long, e: i32) -> bool {
        r == -1 && errno() == e
    }

    fn exited(status: i32) -> Option<i32> {
        libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
    }

    const COMMON_CHECKS: &[&str] = &[
        "",
        "install",
        "kexec_load",
        "open_by_handle_at",
        "init_module",
        "finit_module",
        "delete_module",
        "umount2 MNT_FORCE",
        "umount2 without MNT_FORCE",
        "getpid",
        "open",
        "x32 init_module",
    ];

    /// The `Seccomp:` field of /proc/self/status, read without allocating
    /// (it runs in forked children of a threaded test process).
    fn status_field() -> Option<u32> {
        let mut buf = [0u8; 8192];
        // SAFETY: a plain open/read/close into a live stack buffer of the given length.
        let n = unsafe {
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return None;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let text = std::str::from_utf8(&buf[..usize::try_from(n).ok()?]).ok()?;
        let at = text.find("\nSeccomp:")?;
        let digits = text[at + 9..].trim_start();
        let end = digits.find(|c: char| !c.is_ascii_digit())?;
        digits[..end].parse().ok()
    }

    /// The state LXC reads from /proc/self/status, asked with a prctl:
    /// the same number before a filter is loaded and after (2, filter
    /// mode), so that a start under a filter without allow_nesting loads
    /// none, as LXC.
    #[test]
    fn seccomp_state_is_the_status_files() {
        assert_eq!(seccomp_state(), status_field());
        let f = common();
        let status = in_child(|| {
            if seccomp_state() != status_field() {
                return 1;
            }
            if !load(&f) {
                return 2;
            }
            if seccomp_state() != Some(2) || status_field() != Some(2) {
                return 3;
            }
            0
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }

    #[test]
    fn seccomp_common_profile_enforced() {
        let f = common();
        let status = in_child(|| {
            if !load(&f) {
                return 1;
            }
            // SAFETY: raw syscalls with arguments the kernel rejects (or
            // the filter answers first); pointers are valid C strings or NULL.
            unsafe {
                // Unfiltered, an unknown flag and too many segments give EINVAL.
                if !fails_with(libc::syscall(libc::SYS_kexec_load, 0, 1000, 0, 0x100), libc::EPERM) {
                    return 2;
                }
                if !fails_with(libc::syscall(libc::SYS_open_by_handle_at, -1, 0, 0), libc::EPERM) {
                    return 3;
                }
                if !fails_with(libc::syscall(libc::SYS_init_module, 0, 0, c"".as_ptr()), libc::EPERM) {
                    return 4;
                }
                if !fails_with(libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0), libc::EPERM) {
                    return 5;
                }
                if !fails_with(libc::syscall(libc::SYS_delete_module, c"x".as_ptr(), 0), libc::EPERM) {
                    return 6;
                }
                let nowhere = c"/nonexistent";
                if !fails_with(libc::umount2(nowhere.as_ptr(), libc::MNT_FORCE) as _, libc::EACCES) {
                    return 7;
                }
                if !fails_with(libc::umount2(nowhere.as_ptr(), libc::MNT_DETACH) as _, libc::ENOENT) {
                    return 8;
                }
                if libc::syscall(libc::SYS_getpid) <= 0 {
                    return 9;
                }
                let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
                if fd < 0 || libc::close(fd) != 0 {
                    return 10;
                }
                // The x32 ABI is the x86_64 entry with bit 30 set; the filter
                // answers before the kernel could say ENOSYS.
                #[cfg(target_arch = "x86_64")]
                if !fails_with(libc::syscall(0x4000_0000 | libc::SYS_init_module, 0, 0, 0), libc::EPERM) {
                    return 11;
                }
            }
            0
        });
        let code = exited(status).unwrap_or_else(|| panic!("child died: status {status:#x}"));
        assert_eq!(
            code,
            0,
            "check failed: {}",
            COMMON_CHECKS.get(code as usize).unwrap_or(&"?")
        );
    }

    #[test]
    fn seccomp_argument_rule_enforced() {
        let f = Filter::from_text("2\ndenylist\ndup errno 33 [0,100,==]\n", Path::new("t")).unwrap();
        let status = in_child(|| {
            if !load(&f) {
                return 1;
            }
            // SAFETY: dup on fd numbers; a returned fd is closed again.
            unsafe {
                if !fails_with(libc::syscall(libc::SYS_dup, 100), libc::EDOM) {
                    return 2;
                }
                let fd = libc::syscall(libc::SYS_dup, 0);
                if fd < 0 {
                    return 3;
                }
                libc::close(fd as i32);
            }
            0
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }

    /// Allows getpid and exit only, then calls getppid.
    fn allowlist_child(f: &Filter) -> i32 {
        in_child(|| {
            if !load(f) {
                return 1;
            }
            // SAFETY: argument-less syscalls.
            unsafe {
                if libc::syscall(libc::SYS_getpid) <= 0 {
                    return 2;
                }
                libc::syscall(libc::SYS_getppid);
            }
            3
        })
    }

    #[test]
    fn seccomp_allowlist_kills() {
        let f = Filter::from_text("2\nallowlist\ngetpid\nexit\nexit_group\n", Path::new("t")).unwrap();
        let status = allowlist_child(&f);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x} (exit {:?})",
            exited(status)
        );

        // With a default action the rest fails instead of killing.
        let f = Filter::from_text("2\nallowlist errno 38\ngetpid\nexit\nexit_group\n", Path::new("t")).unwrap();
        let status = in_child(|| {
            if !load(&f) {
                return 1;
            }
            // SAFETY: an argument-less syscall.
            if !fails_with(unsafe { libc::syscall(libc::SYS_getppid) }, libc::ENOSYS) {
                return 2;
            }
            0
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn seccomp_v1_allowlist_kills() {
        let text = format!(
            "1\nallowlist\n{}\n{}\n{}\n",
            libc::SYS_getpid,
            libc::SYS_exit,
            libc::SYS_exit_group
        );
        let f = Filter::from_text(&text, Path::new("t")).unwrap();
        let status = allowlist_child(&f);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x}"
        );
    }

    #[test]
    fn seccomp_nesting_follows_allow_nesting() {
        let dir = tempfile::tempdir().unwrap();
        let prof = dir.path().join("p.seccomp");
        std::fs::write(&prof, COMMON_TEXT).unwrap();
        let first = common();
        let status = in_child(|| {
            if !load(&first) {
                return 1;
            }
            let cfg = |nesting: &str| {
                Config::parse(&format!(
                    "lxc.seccomp.profile = {}\nlxc.seccomp.allow_nesting = {nesting}\n",
                    prof.display()
                ))
                .unwrap()
            };
            match Filter::from_config(&cfg("0")) {
                Ok(None) => {}
                _ => return 2,
            }
            match Filter::from_config(&cfg("1")) {
                Ok(Some(f)) if f.install().is_ok() => {}
                _ => return 3,
            }
            0
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }

    #[test]
    fn seccomp_install_needs_privilege() {
        // SAFETY: a getter.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("seccomp_install_needs_privilege: needs root to drop it; skipped");
            return;
        }
        let f = common();
        let status = in_child(|| {
            // SAFETY: the child becomes nobody, keeping no capabilities.
            if unsafe { libc::setresgid(65534, 65534, 65534) != 0 || libc::setresuid(65534, 65534, 65534) != 0 } {
                return 1;
            }
            match f.install() {
                Err(e) if e.kind() == strata_core::ErrorKind::PermissionDenied && e.msg.contains("no_new_privs") => 0,
                _ => 2,
            }
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }

    /// i386 syscalls (`int 0x80`) go through the compat filter.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn seccomp_i386_compat_filtered() {
        /// An i386 syscall with three arguments.
        unsafe fn int80(nr: u32, a: u32, b: u32, c: u32) -> i32 {
            let ret: i32;
            // SAFETY: (caller) the syscall's arguments are valid for it; ebx
            // is reserved by the compiler, so it is swapped in and out.
            unsafe {
                std::arch::asm!(
                    "xchg {a:e}, ebx",
                    "int 0x80",
                    "xchg {a:e}, ebx",
                    a = inout(reg) a => _,
                    inlateout("eax") nr => ret,
                    in("ecx") b,
                    in("edx") c,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                );
            }
            ret
        }
        const I386_GETPPID: u32 = 64;
        const I386_INIT_MODULE: u32 = 128;
        let probe = in_child(|| {
            // SAFETY: i386 getppid takes no arguments, so the zeros passed
            // for them are never read; libc's getppid takes none either.
            i32::from(unsafe { int80(I386_GETPPID, 0, 0, 0) } as libc::pid_t != unsafe { libc::getppid() })
        });
        if exited(probe) != Some(0) {
            eprintln!("seccomp_i386_compat_filtered: no i386 emulation in this kernel; skipped");
            return;
        }
        let f = common();
        let status = in_child(|| {
            if !load(&f) {
                return 1;
            }
            // SAFETY: init_module(NULL, 0, NULL): unfiltered the kernel says EFAULT.
            match unsafe { int80(I386_INIT_MODULE, 0, 0, 0) } {
                r if r == -libc::EPERM => 0,
                _ => 2,
            }
        });
        assert_eq!(exited(status), Some(0), "status {status:#x}");
    }
}
