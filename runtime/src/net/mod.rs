//! The container's network, as LXC's `lxc.net.N.*` configure it.
//!
//! One concern a file: [`config`] reads and checks the keys; `veth`,
//! `macvlan`, `vlan` and `phys` make or move the devices; `addr` sets
//! addresses, gateways and routes; `scripts` runs `script.up`/`script.down`;
//! [`stats`] reads a host link's counters; `ns` runs `ip` in the container's
//! network namespace.
//!
//! The monitor does it all between the clone of init and its "go": devices
//! are made straight in the container's namespace where the kernel allows
//! (macvlan, vlan, a veth's container end), so that nothing of theirs ever
//! stands on the host; a veth's host end is named before it is made and
//! recorded in the run record, so that the next command removes it after a
//! kill -9 of the monitor. At stop the monitor (which holds the namespace)
//! runs the down scripts, gives phys devices back to the host under their
//! own names and MTU, and deletes the host ends.

mod addr;
pub mod config;
mod macvlan;
mod ns;
mod phys;
mod scripts;
pub mod stats;
mod veth;
mod vlan;

pub use config::{key_ok, parse};

use crate::hooks::HookEnv;
use ns::NsFds;
use std::path::{Path, PathBuf};
use strata_core::{err, Result};

/// The network of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// `none`: the host's network namespace.
    Host,
    /// A namespace of its own with `lo` and these devices (none: `empty`).
    Ns(Vec<Netdev>),
}

impl Net {
    /// Devices the monitor has to make before init goes.
    pub fn devices(&self) -> &[Netdev] {
        match self {
            Net::Host => &[],
            Net::Ns(d) => d,
        }
    }

    /// Whether the monitor has work to do before init may go.
    pub fn needs_monitor(&self) -> bool {
        self.devices()
            .iter()
            .any(|d| d.kind != Kind::Empty || d.script_up.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Veth {
        /// `veth.pair`: the host end's name.
        pair: Option<String>,
        /// `veth.ipv4.route` / `veth.ipv6.route`: host routes to the container.
        routes4: Vec<String>,
        routes6: Vec<String>,
    },
    Macvlan {
        mode: MacvlanMode,
    },
    Vlan {
        id: u16,
    },
    Phys,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Empty => "empty",
            Kind::Veth { .. } => "veth",
            Kind::Macvlan { .. } => "macvlan",
            Kind::Vlan { .. } => "vlan",
            Kind::Phys => "phys",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    /// The link's (bridge's) primary address.
    Auto,
    /// A device route.
    Dev,
    Addr(String),
}

/// One `lxc.net.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netdev {
    pub index: u32,
    pub kind: Kind,
    pub link: Option<String>,
    /// The name in the container (always set but for `empty`).
    pub name: Option<String>,
    pub up: bool,
    pub hwaddr: Option<String>,
    pub mtu: Option<u32>,
    /// `a.b.c.d/N` and an optional broadcast address.
    pub ipv4: Vec<(String, Option<String>)>,
    pub ipv4_gw: Option<Gateway>,
    pub ipv6: Vec<String>,
    pub ipv6_gw: Option<Gateway>,
    pub script_up: Option<String>,
    pub script_down: Option<String>,
}

impl Netdev {
    fn key(&self, sub: &str) -> String {
        format!("lxc.net.{}.{sub}", self.index)
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// Whether an interface of that name exists in the monitor's namespace.
pub(crate) fn host_has(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The setuid helper LXC gives users for a veth on a bridge.
fn user_nic() -> Option<PathBuf> {
    [
        "/usr/libexec/lxc/lxc-user-nic",
        "/usr/lib/x86_64-linux-gnu/lxc/lxc-user-nic",
        "/usr/lib/lxc/lxc-user-nic",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// What a start can check on the host before anything is made: the links
/// exist (a veth's is a bridge), a `veth.pair` name is free, and an
/// unprivileged caller asks only for what `lxc-user-nic` makes.
pub(crate) fn check_host(net: &Net, privileged: bool) -> Result<()> {
    const OP: &str = "start";
    for d in net.devices() {
        if !privileged {
            match d.kind {
                Kind::Empty => {}
                Kind::Veth { .. } => {
                    if user_nic().is_none() {
                        return Err(err!(
                            Unsupported,
                            OP,
                            "{} = veth: an unprivileged container's veth needs LXC's lxc-user-nic, which is not installed",
                            d.key("type")
                        ));
                    }
                    if d.link.is_none() {
                        return Err(err!(
                            InvalidConfig,
                            OP,
                            "{} = veth: an unprivileged container's veth needs {} (a bridge allowed in /etc/lxc/lxc-usernet)",
                            d.key("type"),
                            d.key("link")
                        ));
                    }
                    if !d.veth_routes_empty() {
                        return Err(err!(
                            Unsupported,
                            OP,
                            "{}: host routes need root",
                            d.key("veth.ipv4.route")
                        ));
                    }
                }
                _ => {
                    return Err(err!(
                        Unsupported,
                        OP,
                        "{} = {}: only root can give a container this device (unprivileged: veth through lxc-user-nic)",
                        d.key("type"),
                        d.kind.as_str()
                    ))
                }
            }
        }
        if let Some(l) = &d.link {
            match d.kind {
                Kind::Veth { .. } if !Path::new("/sys/class/net").join(l).join("bridge").exists() => {
                    return Err(err!(
                        NotFound,
                        OP,
                        "{} = {l}: bridge {l:?} does not exist",
                        d.key("link")
                    ));
                }
                Kind::Macvlan { .. } | Kind::Vlan { .. } | Kind::Phys if !host_has(l) => {
                    return Err(err!(
                        NotFound,
                        OP,
                        "{} = {l}: interface {l:?} does not exist",
                        d.key("link")
                    ));
                }
                _ => {}
            }
        }
        if let Kind::Veth { pair: Some(p), .. } = &d.kind {
            if privileged && host_has(p) {
                return Err(err!(
                    InvalidConfig,
                    OP,
                    "{} = {p}: an interface of that name exists",
                    d.key("veth.pair")
                ));
            }
        }
    }
    let phys: Vec<&str> = net
        .devices()
        .iter()
        .filter(|d| d.kind == Kind::Phys)
        .filter_map(|d| d.link.as_deref())
        .collect();
    if let Some(l) = phys
        .iter()
        .enumerate()
        .find_map(|(i, l)| phys[..i].contains(l).then_some(l))
    {
        return Err(err!(
            InvalidConfig,
            OP,
            "lxc.net.N.link = {l}: one phys device given twice"
        ));
    }
    Ok(())
}

impl Netdev {
    fn veth_routes_empty(&self) -> bool {
        match &self.kind {
            Kind::Veth { routes4, routes6, .. } => routes4.is_empty() && routes6.is_empty(),
            _ => true,
        }
    }
}

/// Who the scripts are run for.
#[derive(Debug, Clone)]
pub(crate) struct ScriptCtx {
    pub env: HookEnv,
    pub version: u8,
}

/// A phys device lent to the container.
#[derive(Debug)]
struct Lent {
    /// Its name on the host and in the container.
    host: String,
    inside: String,
    mtu: Option<u32>,
}

/// The devices of one run, from before init goes until after it is gone.
pub(crate) struct Setup {
    devs: Vec<Netdev>,
    /// The host end of each veth (by position in `devs`), chosen up front.
    hosts: Vec<Option<String>>,
    privileged: bool,
    scripts: ScriptCtx,
    lxcpath: PathBuf,
    ns: Option<NsFds>,
    /// Host ends made so far.
    made: Vec<String>,
    lent: Vec<Lent>,
    /// Whether the up scripts ran (the down scripts run only then).
    upped: Vec<bool>,
}

impl Setup {
    pub(crate) fn new(net: &Net, privileged: bool, scripts: ScriptCtx, lxcpath: &Path) -> Setup {
        let devs = net.devices().to_vec();
        let hosts = devs
            .iter()
            .map(|d| match &d.kind {
                Kind::Veth { pair, .. } if privileged => Some(
                    pair.clone()
                        .unwrap_or_else(|| format!("veth{}", crate::sys::random_suffix(7))),
                ),
                _ => None,
            })
            .collect();
        let n = devs.len();
        Setup {
            devs,
            hosts,
            privileged,
            scripts,
            lxcpath: lxcpath.to_path_buf(),
            ns: None,
            made: Vec::new(),
            lent: Vec::new(),
            upped: vec![false; n],
        }
    }

    /// Host devices this run will make: recorded before they are made.
    pub(crate) fn host_links(&self) -> Vec<String> {
        self.hosts.iter().flatten().cloned().collect()
    }

    /// Host interfaces this run will lend (`phys`), with their ifindex.
    pub(crate) fn lent_links(&self) -> Vec<(String, u32)> {
        self.devs
            .iter()
            .filter(|d| d.kind == Kind::Phys)
            .filter_map(|d| d.link.clone())
            .filter_map(|l| phys::ifindex(&l).map(|i| (l, i)))
            .collect()
    }

    /// Make every device, configure it inside, run the up scripts. On an
    /// error, what was done is undone (phys devices given back).
    pub(crate) fn start(&mut self, name: &str, pid: i32) -> Result<()> {
        let r = self.start_inner(name, pid);
        if r.is_err() {
            self.stop();
        }
        r
    }

    fn start_inner(&mut self, name: &str, pid: i32) -> Result<()> {
        // Nothing for us to make (Net::needs_monitor): init may have gone,
        // and even exited, already; its namespace is not ours to open.
        if self.devs.iter().all(|d| d.kind == Kind::Empty && d.script_up.is_none()) {
            return Ok(());
        }
        self.ns = Some(NsFds::open(pid, !self.privileged)?);
        for i in 0..self.devs.len() {
            let d = self.devs[i].clone();
            let ns = self.ns.as_ref().expect("opened above");
            let peer = match &d.kind {
                Kind::Empty => None,
                Kind::Veth { .. } if self.privileged => {
                    let host = self.hosts[i].clone().expect("chosen in new");
                    veth::create(&d, &host, pid, &mut self.made)?;
                    Some(host)
                }
                Kind::Veth { .. } => {
                    let host = veth::create_unprivileged(&d, &self.lxcpath, name, pid)?;
                    self.hosts[i] = Some(host.clone());
                    veth::configure_inside(&d, ns)?;
                    Some(host)
                }
                Kind::Macvlan { mode } => {
                    macvlan::create(&d, *mode, pid)?;
                    None
                }
                Kind::Vlan { id } => {
                    vlan::create(&d, *id, pid)?;
                    None
                }
                Kind::Phys => {
                    let l = phys::lend(&d, pid, ns)?;
                    self.lent.push(l);
                    None
                }
            };
            addr::configure(&d, ns)?;
            if let Some(s) = &d.script_up {
                scripts::run(&self.scripts, s, "up", &d, peer.as_deref())?;
            }
            self.upped[i] = true;
        }
        Ok(())
    }

    /// After init is gone (the monitor still holds the namespace): phys
    /// devices back to the host, down scripts, host ends deleted.
    pub(crate) fn stop(&mut self) {
        if let Some(ns) = &self.ns {
            for l in self.lent.drain(..).rev() {
                if let Err(e) = phys::give_back(&l, ns) {
                    tracing::error!("{e}");
                }
            }
        }
        for (i, d) in self.devs.iter().enumerate() {
            if !self.upped[i] {
                continue;
            }
            if let Some(s) = &d.script_down {
                if let Err(e) = scripts::run(&self.scripts, s, "down", d, self.hosts[i].as_deref()) {
                    tracing::error!("{e}");
                }
            }
        }
        self.upped.iter_mut().for_each(|u| *u = false);
        for h in self.made.drain(..) {
            veth::delete(&h);
        }
        self.ns = None;
    }
}

/// Clean up after a run whose monitor was killed (its init is gone too):
/// delete its veth host ends, and give a physical interface the kernel
/// handed back (under the name it had inside) its own name again.
pub(crate) fn remove_leftovers(links: &[String], lent: &[(String, u32)]) {
    for l in links {
        veth::delete(l);
    }
    for (name, ifindex) in lent {
        phys::rename_returned(name, *ifindex);
    }
}
