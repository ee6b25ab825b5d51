//! The lab: hosts `a` and `b` in anonymous network namespaces ([`hosts`]), joined by a link that builds
//! itself ([`crate::link`]). This file puts the two together: [`Lab::build`] is the one place that turns a
//! [`LinkSpec`] into a built link.
//!
//! Building a lab (≈2 ms, see `docs/kernel-facts.md`):
//! 1. a host thread per host `unshare(CLONE_NEWNET)`s ([`worker::HostWorker`]); lab defaults are written to that
//!    namespace's own sysctls before any interface exists, so new interfaces inherit them ([`hosts::Hosts`]).
//!    This step is done ahead of time by [`pool`], which keeps fresh pairs ready and hands each out once;
//! 2. the link builds itself in the hosts' namespaces (veth: `harness/src/link/veth.rs`; relay and peer: TUN
//!    devices, `harness/src/link/tun.rs`);
//! 3. user sysctls, then user `--exec` commands, run inside each host's namespace (after the link, so they can
//!    name its interface `nc0`).
//!
//! Nothing here touches the root namespace: no interface, route, sysctl or mount of the host is read or written.
//!
//! - [`hosts`] — the two hosts before any link: threads, default and user sysctls, `--exec`, addresses,
//!   receive-buffer limits, and the per-host bring-up steps link files share. Never imports [`crate::link`].
//! - [`pool`] — pairs of hosts made ahead by a background thread, each used by one lab only.
//! - [`worker`] — host threads, one per lab host, living inside its namespace; work is sent to them as closures.
//! - [`nsfd`] — namespaces held by descriptors, and the namespace a socket lives in (`SIOCGSKNS`).
//! - [`netlink`] — a small hand-written rtnetlink client: links, addresses, routes, neighbours.
//! - [`ethtool`] — offloads off through the ethtool ioctl.
//! - [`privileges`] — what the process needs before any lab is built, checked up front: capabilities or a
//!   user namespace of its own (rootless), and the facilities a lab may lack (writable sysctls, TUN).

pub mod ethtool;
pub mod hosts;
pub mod netlink;
pub mod nsfd;
pub mod pool;
pub mod privileges;
pub mod worker;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::link::peer::PeerLink;
use crate::link::relay::Relay;
use crate::link::veth::Veth;
use crate::link::{BuiltLink, LinkOptions, LinkSpec, Peer};
use crate::sock::Family;
use crate::sut::process::SutProcess;
use crate::sut::sandbox::UidLease;
use crate::sut::stdio::StdioSut;
use crate::sut::{Attach, CaseContext, StdioRole, SutMode, SutSpec};
pub use hosts::{host_addr, prefix_len, ExecCommand, Hosts, SysctlSetting, EXEC_TIMEOUT, IFNAME};
pub use worker::{HostWorker, Pending};

/// Everything that shapes a lab; part of every case file so a replay rebuilds the same lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabConfig {
    /// User sysctls, applied after the lab defaults.
    #[serde(default)]
    pub sysctls: Vec<SysctlSetting>,
    /// User setup commands, run after the sysctls.
    #[serde(default)]
    pub exec: Vec<ExecCommand>,
    /// MTU of both veth ends (default 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Resolve neighbours with ARP/ND instead of static entries.
    #[serde(default)]
    pub dynamic_neighbours: bool,
    /// How the hosts are joined (veth, or the impairing relay).
    #[serde(default)]
    pub link: LinkSpec,
    /// The system under test on b (`--sut`); none: b is the lab's kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sut: Option<SutSpec>,
}

/// A built lab: the hosts and the link between them. Dropping it tears everything down (the host threads end
/// first, then the link stops; the kernel frees the namespaces).
pub struct Lab {
    /// Ended first: the SUT's PID namespace goes before the namespaces and link it used.
    sut: Option<Arc<Mutex<SutProcess>>>,
    /// A passive stdio SUT: what starting a run of it takes (the case starts it, maybe more than once).
    stdio: Option<StdioParts>,
    hosts: Hosts,
    link: Box<dyn BuiltLink>,
    config: LabConfig,
    rcvbuf_limit: [u64; 2],
}

/// What starting a run of a passive stdio SUT takes.
struct StdioParts {
    spec: SutSpec,
    ctx: CaseContext,
    /// Its end of the packet link (`fd`): each run gets a duplicate as fd 3.
    fd3: Option<std::os::fd::OwnedFd>,
    /// The uid owning its TUN device, for the first run (later runs take a new one and re-own the device).
    lease: Mutex<Option<UidLease>>,
}

/// Builds the link `spec` names over `hosts`: the one place that knows the kinds.
fn build_link(spec: &LinkSpec, hosts: &Hosts, options: &LinkOptions) -> Result<Box<dyn BuiltLink>> {
    Ok(match spec {
        LinkSpec::Veth => Box::new(Veth::build(hosts, options)?),
        LinkSpec::Relay(relay) => Box::new(Relay::build(hosts, options, relay)?),
        LinkSpec::Peer => Box::new(PeerLink::build(hosts, options)?),
    })
}

impl Lab {
    /// Builds a lab with the link the config asks for.
    pub fn build(config: &LabConfig) -> Result<Lab> {
        Lab::build_case(
            config,
            &CaseContext {
                family: Family::Ipv4,
                seed: 0,
                case: "lab".into(),
                mtu: config.mtu.unwrap_or(1500),
                port: None,
            },
        )
    }

    /// Builds the lab of one case: with a SUT on b (`config.sut`), the SUT is started for `case` once
    /// the link is up, and has said hello when this returns.
    pub fn build_case(config: &LabConfig, case: &CaseContext) -> Result<Lab> {
        let hosts = pool::take()?;
        let options = LinkOptions {
            mtu: config.mtu,
            static_neighbours: !config.dynamic_neighbours,
        };
        let Some(sut_spec) = &config.sut else {
            let link = build_link(&config.link, &hosts, &options)?;
            let mut rcvbuf_limit = hosts.apply_user_settings(&config.sysctls, &config.exec)?;
            if let Some(played) = link.played_host() {
                rcvbuf_limit[played as usize] = rcvbuf_limit[played.other() as usize];
            }
            return Ok(Lab {
                sut: None,
                stdio: None,
                hosts,
                link,
                config: config.clone(),
                rcvbuf_limit,
            });
        };
        // b is the SUT: the relay (the user's impairments, or none) joins a's TUN device to b's end.
        let relay = match &config.link {
            LinkSpec::Relay(r) => r.clone(),
            _ => Default::default(),
        };
        let end = crate::link::sut::prepare_b(&hosts, &options, &sut_spec.attach)?;
        let link: Box<dyn BuiltLink> =
            Box::new(crate::link::sut::build(&hosts, &options, end.end, &relay)?);
        // Only a's settings: b's sysctls and commands need a kernel on b (refused with --sut).
        let rcvbuf_limit = hosts.apply_user_settings(&config.sysctls, &config.exec)?;
        if let SutMode::Stdio { port, .. } = sut_spec.mode {
            // A stdio SUT starts when the case is ready for it (a's listener first, for a client).
            let mut ctx = case.clone();
            ctx.port = Some(port);
            return Ok(Lab {
                sut: None,
                stdio: Some(StdioParts {
                    spec: sut_spec.clone(),
                    ctx,
                    fd3: end.fd3,
                    lease: Mutex::new(end.uid),
                }),
                hosts,
                link,
                config: config.clone(),
                rcvbuf_limit,
            });
        }
        let (spec, ctx, fd3, uid) = (sut_spec.clone(), case.clone(), end.fd3, end.uid);
        let process = hosts
            .host(Host::B)
            .run(move || SutProcess::start(&spec, &ctx, fd3, uid))??;
        Ok(Lab {
            sut: Some(Arc::new(Mutex::new(process))),
            stdio: None,
            hosts,
            link,
            config: config.clone(),
            rcvbuf_limit,
        })
    }

    /// The passive stdio SUT of this lab, if b is one: its mode's role and port.
    pub fn stdio_mode(&self) -> Option<(StdioRole, u16)> {
        match self.stdio.as_ref()?.spec.mode {
            SutMode::Stdio { role, port } => Some((role, port)),
            SutMode::Driven => None,
        }
    }

    /// Starts one run of the passive stdio SUT on b (a case may start several, one connection each): the
    /// same packet link (`fd`) or TUN device, now owned by the run's uid.
    pub fn start_stdio(&self) -> Result<StdioSut> {
        let Some(parts) = &self.stdio else {
            return Err(HarnessError::Usage(
                "this property needs a passive stdio SUT on b (--sut-mode stdio)".into(),
            ));
        };
        let fd3 = match &parts.fd3 {
            Some(fd) => Some(
                fd.try_clone()
                    .map_err(|e| HarnessError::lab("stdio SUT: dup of its packet link", e))?,
            ),
            None => None,
        };
        let first = parts.lease.lock().unwrap().take();
        let lease = match (first, &parts.spec.attach) {
            (Some(lease), _) => Some(lease),
            (None, Attach::Tun { name } | Attach::Tap { name }) => {
                let tap = matches!(parts.spec.attach, Attach::Tap { .. });
                let lease = UidLease::take()?;
                let (name, uid) = (name.clone(), lease.uid());
                self.hosts
                    .host(Host::B)
                    .run(move || crate::link::sut::reown_tun(&name, uid, tap))??;
                Some(lease)
            }
            (None, _) => None,
        };
        let (spec, ctx) = (parts.spec.clone(), parts.ctx.clone());
        self.hosts
            .host(Host::B)
            .run(move || StdioSut::start(&spec, &ctx, fd3, lease))?
    }

    /// Whether b's TUN device `name` has carrier: a process has it open (the stdio SUT's device is up).
    pub fn b_device_running(&self) -> bool {
        let Some(Attach::Tun { name }) = self.stdio.as_ref().map(|p| &p.spec.attach) else {
            return false;
        };
        let name = name.clone();
        self.hosts
            .host(Host::B)
            .run(move || crate::link::sut::device_running(&name))
            .unwrap_or(false)
    }

    /// The SUT process on b, for what the driver does not cover (its stderr, its transcript).
    pub fn sut_process(&self) -> Option<&Arc<Mutex<SutProcess>>> {
        self.sut.as_ref()
    }

    /// The scripted peer of a peer lab.
    pub fn peer(&self) -> Option<&Peer> {
        self.link.peer()
    }

    /// The longest round trip the link adds to the hosts' own (zero on veth; delay plus jitter of both
    /// directions on a relay).
    pub fn link_round_trip(&self) -> std::time::Duration {
        self.link.round_trip()
    }

    /// The largest receive buffer a socket of `host` can have (for `tcp.window.bounded_by_buffer`).
    pub fn rcvbuf_limit(&self, host: Host) -> u64 {
        self.rcvbuf_limit[host as usize]
    }

    pub fn host(&self, host: Host) -> &HostWorker {
        self.hosts.host(host)
    }

    pub fn addr(&self, host: Host, family: Family) -> IpAddr {
        host_addr(host, family)
    }

    pub fn ifindex(&self, host: Host) -> u32 {
        self.link.ifindex(host)
    }

    pub fn mac(&self, host: Host) -> [u8; 6] {
        self.link.mac(host)
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The SUT driven on b, when b is not the lab's kernel (`--sut`).
    pub fn sut(&self) -> Option<Arc<Mutex<dyn crate::backend::driven::Conversation>>> {
        self.sut
            .clone()
            .map(|p| p as Arc<Mutex<dyn crate::backend::driven::Conversation>>)
    }

    /// True when `inode` is one of this lab's namespaces.
    pub fn owns_netns(&self, inode: u64) -> bool {
        self.hosts.owns_netns(inode)
    }

    /// Starts capturing every frame on the link (both directions), before the first operation.
    pub fn start_capture(&self) -> Result<crate::capture::Capture> {
        self.link.start_capture(&self.hosts)
    }
}
