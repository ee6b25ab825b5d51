//! The lab: hosts `a` and `b` in anonymous network namespaces, joined by a link.
//!
//! Building a lab (≈2 ms, see `docs/kernel-facts.md`):
//! 1. a host thread per host `unshare(CLONE_NEWNET)`s ([`worker::HostWorker`]); lab defaults are written to that
//!    namespace's own sysctls before any interface exists, so new interfaces inherit them;
//! 2. in `a`, one RTM_NEWLINK creates the veth pair with the peer placed directly in `b`'s namespace (creating
//!    it in the root namespace and moving it would touch the host and cost 12–44 ms);
//! 3. each host sets `lo` and its veth end up, adds its addresses (IPv6 with IFA_F_NODAD) and turns offloads off
//!    (TSO, GSO, GRO, TX checksum; ethtool ioctl) so the capture shows real on-the-wire segments;
//! 4. one RTM_GETLINK per end after both are up forces the deferred carrier-up work to finish (without it the
//!    first ARP is lost in ~1 % of labs);
//! 5. static neighbour entries (default) avoid the IPv6 solicited-node multicast race (a 1 s stall in ~0.4 % of
//!    labs) and keep ARP/ND out of traces; properties that study ARP/ND turn them off;
//! 6. user sysctls, then user `--exec` commands, run inside the host's namespace.
//!
//! Nothing here touches the root namespace: no interface, route, sysctl or mount of the host is read or written.
//!
//! - [`worker`] — host threads, one per lab host, living inside its namespace; work is sent to them as closures.
//! - [`nsfd`] — namespaces held by descriptors, and the namespace a socket lives in (`SIOCGSKNS`).
//! - [`netlink`] — a small hand-written rtnetlink client: links, addresses, routes, neighbours.
//! - [`ethtool`] — offloads off through the ethtool ioctl.
//! - [`privileges`] — what the process needs before any lab is built, checked up front.

pub mod ethtool;
pub mod netlink;
pub mod nsfd;
pub mod privileges;
pub mod worker;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::sock::Family;
pub use worker::{HostWorker, Pending};

/// Interface name of each host's end of the link.
pub const IFNAME: &str = "nc0";
/// Temporary name of b's end while it is created from a (names are per namespace, but both ends are named in
/// one request).
const PEER_IFNAME: &str = "nc0";

/// How long a user `--exec` command may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(20);

/// Lab addresses (RFC 2544 benchmarking range and RFC 3849 documentation prefix).
pub fn host_addr(host: Host, family: Family) -> IpAddr {
    match (host, family) {
        (Host::A, Family::Ipv4) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        (Host::B, Family::Ipv4) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        (Host::A, Family::Ipv6) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        (Host::B, Family::Ipv6) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
    }
}

/// Prefix lengths of the lab subnets.
pub fn prefix_len(family: Family) -> u8 {
    match family {
        Family::Ipv4 => 24,
        Family::Ipv6 => 64,
    }
}

/// A sysctl for one host's namespace (`--sysctl b:net.ipv4.tcp_sack=0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlSetting {
    pub host: Host,
    pub key: String,
    pub value: String,
}

impl SysctlSetting {
    /// Parses `H:KEY=VALUE`. Only `net.*` keys are accepted: those are per network namespace, so they can
    /// never change the host.
    pub fn parse(s: &str) -> Result<SysctlSetting> {
        let (host, rest) = parse_host_prefix(s, "--sysctl", "b:net.ipv4.tcp_sack=0")?;
        let (key, value) = rest.split_once('=').ok_or_else(|| {
            HarnessError::Usage(format!(
                "--sysctl {s:?}: expected H:KEY=VALUE, e.g. b:net.ipv4.tcp_sack=0"
            ))
        })?;
        let setting = SysctlSetting {
            host,
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        };
        setting.validate()?;
        Ok(setting)
    }

    pub fn validate(&self) -> Result<()> {
        let ok = self.key.starts_with("net.")
            && !self.key.contains("..")
            && self
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(HarnessError::Usage(format!(
                "sysctl {:?}: only net.* keys (per network namespace) can be set in a lab host",
                self.key
            )));
        }
        Ok(())
    }

    fn path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

/// A command run with `sh -c` inside a host's namespace before each case (`--exec 'b:nft …'`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCommand {
    pub host: Host,
    pub command: String,
}

impl ExecCommand {
    pub fn parse(s: &str) -> Result<ExecCommand> {
        let (host, rest) = parse_host_prefix(s, "--exec", "b:nft list ruleset")?;
        if rest.trim().is_empty() {
            return Err(HarnessError::Usage(format!(
                "--exec {s:?}: the command is empty"
            )));
        }
        Ok(ExecCommand {
            host,
            command: rest.to_string(),
        })
    }
}

fn parse_host_prefix<'s>(s: &'s str, flag: &str, example: &str) -> Result<(Host, &'s str)> {
    match s.split_once(':') {
        Some(("a", rest)) => Ok((Host::A, rest)),
        Some(("b", rest)) => Ok((Host::B, rest)),
        _ => Err(HarnessError::Usage(format!(
            "{flag} {s:?}: must start with the host, `a:` or `b:` (e.g. {flag} '{example}')"
        ))),
    }
}

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
    pub link: crate::link::LinkSpec,
}

/// Sysctls every lab host gets, before its interfaces exist. Kept to the one that has no other door: each
/// /proc/sys access walks a dentry chain that grows with the number of namespaces alive (`proc_sys_compare`
/// was 9 % of a default run's CPU with 64 labs in flight). No duplicate address detection needs no sysctl
/// (addresses are added with IFA_F_NODAD), and no router solicitation is ever sent: Linux solicits only once
/// a link-local address is ready, and lab links have none (`set_no_link_local`).
const LAB_DEFAULT_SYSCTLS: &[(&str, &str)] = &[
    // Path metrics must not leak from one connection into the next (docs/kernel-facts.md: cached per namespace).
    ("net.ipv4.tcp_no_metrics_save", "1"),
];

/// A built lab. Dropping it tears everything down (the kernel frees the namespaces).
pub struct Lab {
    a: HostWorker,
    b: HostWorker,
    ifindex: [u32; 2],
    mac: [[u8; 6]; 2],
    config: LabConfig,
    rcvbuf_limit: [u64; 2],
    relay: Option<RelayRuntime>,
    peer: Option<crate::link::peer::Peer>,
}

/// The relay's forwarder threads; they stop when the lab is dropped.
struct RelayRuntime {
    recorder: std::sync::Arc<crate::link::relay::Recorder>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for RelayRuntime {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Relay host setup: lo up, a TUN device `nc0` with the host's addresses (the connected /24 and /64 routes
/// send the other host's traffic into the TUN). Returns the TUN descriptor and its ifindex.
fn configure_relay_host(host: Host, mtu: Option<u32>) -> Result<(std::os::fd::OwnedFd, u32)> {
    let tun = crate::link::relay::open_tun(IFNAME)
        .map_err(|e| HarnessError::lab(format!("host {}: open TUN device", host.name()), e))?;
    let (_, ifindex) = bring_up_link(host, mtu, "TUN device", false)?;
    wait_ipv6_local_route(host)?;
    Ok((tun, ifindex))
}

/// The steps every link shares, on the host thread: lo up, the link `nc0` found, its MTU set, offloads off
/// (veth only), up, and the host's IPv4 and IPv6 addresses added. Returns the netlink socket for more steps.
fn bring_up_link(
    host: Host,
    mtu: Option<u32>,
    what: &str,
    offloads_off: bool,
) -> Result<(netlink::Netlink, u32)> {
    let step = |s: &str| format!("host {}: {s}", host.name());
    let mut nl =
        netlink::Netlink::open().map_err(|e| HarnessError::lab(step("open netlink socket"), e))?;
    nl.set_link_up(1)
        .map_err(|e| HarnessError::lab(step("set lo up"), e))?;
    let ifindex = nl
        .link_index(IFNAME)
        .map_err(|e| HarnessError::lab(step(&format!("find {what}")), e))?;
    if let Some(mtu) = mtu {
        nl.set_mtu(ifindex, mtu)
            .map_err(|e| HarnessError::lab(step(&format!("set MTU {mtu}")), e))?;
    }
    if offloads_off {
        ethtool::disable_offloads(IFNAME)
            .map_err(|e| HarnessError::lab(step("turn offloads off"), e))?;
    }
    // No link-local address: no MLD reports on the wire. Global addresses are enough for a /64 on a link.
    nl.set_no_link_local(ifindex)
        .map_err(|e| HarnessError::lab(step(&format!("{what}: addrgenmode none")), e))?;
    nl.set_link_up(ifindex)
        .map_err(|e| HarnessError::lab(step(&format!("set {what} up")), e))?;
    for family in [Family::Ipv4, Family::Ipv6] {
        nl.add_address(ifindex, host_addr(host, family), prefix_len(family))
            .map_err(|e| HarnessError::lab(step(&format!("add {} address", family.name())), e))?;
    }
    Ok((nl, ifindex))
}

/// Per-host result of the in-namespace setup step.
struct HostSetup {
    ifindex: u32,
    mac: [u8; 6],
}

fn write_sysctl(host: Host, key: &str, value: &str) -> Result<()> {
    let setting = SysctlSetting {
        host,
        key: key.into(),
        value: value.into(),
    };
    std::fs::write(setting.path(), format!("{value}\n")).map_err(|source| HarnessError::Sysctl {
        host: host.name(),
        key: key.into(),
        value: value.into(),
        source,
    })
}

fn apply_defaults(host: Host) -> Result<()> {
    for (k, v) in LAB_DEFAULT_SYSCTLS {
        write_sysctl(host, k, v)?;
    }
    Ok(())
}

/// Brings up lo and the veth end, adds addresses, turns offloads off. Runs on the host thread.
fn configure_host(host: Host, mtu: Option<u32>) -> Result<HostSetup> {
    let step = |what: &str| format!("host {}: {what}", host.name());
    let (mut nl, ifindex) = bring_up_link(host, mtu, "veth end", true)?;
    let link = nl
        .get_link(ifindex)
        .map_err(|e| HarnessError::lab(step("read veth end"), e))?;
    Ok(HostSetup {
        ifindex,
        mac: link.mac,
    })
}

/// How long an IPv6 address may take to become local (its /128 local route is installed by addrconf's
/// deferred DAD work, even with IFA_F_NODAD).
const IPV6_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until this host's IPv6 address has its local route. Measured here: without the wait, 0.3–0.7 % of
/// labs dropped the first IPv6 packet to the host (Ip6InAddrErrors), losing e.g. an ICMPv6 error or a SYN.
fn wait_ipv6_local_route(host: Host) -> Result<()> {
    let addr = match host_addr(host, Family::Ipv6) {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => return Ok(()),
    };
    let hex: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    let deadline = Instant::now() + IPV6_READY_TIMEOUT;
    loop {
        let routes = std::fs::read_to_string("/proc/thread-self/net/ipv6_route")
            .map_err(|e| HarnessError::lab(format!("host {}: read ipv6_route", host.name()), e))?;
        // Columns: destination, prefix length (hex), …; the local route is `<addr> 80`.
        if routes
            .lines()
            .any(|l| l.starts_with(&hex) && l[32..].trim_start().starts_with("80 "))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::lab(
                format!(
                    "host {}: IPv6 address {addr} never became local",
                    host.name()
                ),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Runs after both ends are up: forces carrier-up and installs static neighbours.
fn finish_host(host: Host, ifindex: u32, peer_mac: Option<[u8; 6]>) -> Result<()> {
    use netlink::Netlink;
    let step = |what: &str| format!("host {}: {what}", host.name());
    let mut nl = Netlink::open().map_err(|e| HarnessError::lab(step("open netlink socket"), e))?;
    nl.get_link(ifindex)
        .map_err(|e| HarnessError::lab(step("read veth end after up"), e))?;
    if let Some(mac) = peer_mac {
        for family in [Family::Ipv4, Family::Ipv6] {
            nl.add_neighbour(ifindex, host_addr(host.other(), family), mac)
                .map_err(|e| {
                    HarnessError::lab(step(&format!("add static {} neighbour", family.name())), e)
                })?;
        }
    }
    wait_ipv6_local_route(host)
}

/// The largest receive buffer a TCP socket of this host can get: autotuning up to `tcp_rmem`'s maximum, or
/// SO_RCVBUF up to twice `net.core.rmem_max` (the kernel doubles the value asked for; socket(7)).
fn read_rcvbuf_limit() -> u64 {
    let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").ok();
    let tcp_max = rmem
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(6_291_456);
    let core = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok();
    let core_max: u64 = core.and_then(|s| s.trim().parse().ok()).unwrap_or(212_992);
    tcp_max.max(2 * core_max)
}

fn apply_user_settings(host: Host, config: &LabConfig) -> Result<()> {
    for s in config.sysctls.iter().filter(|s| s.host == host) {
        s.validate()?;
        write_sysctl(host, &s.key, &s.value)?;
    }
    for e in config.exec.iter().filter(|e| e.host == host) {
        run_exec(host, &e.command)?;
    }
    Ok(())
}

/// Starts both host threads at once; each creates its namespace and writes the lab defaults before it
/// answers (namespace creation is the most expensive step of a lab: ~0.4–0.8 ms each).
fn spawn_hosts() -> Result<(HostWorker, HostWorker)> {
    let init = |host: Host| {
        move || {
            apply_defaults(host)?;
            // Read once, on a lab thread (never the host's own sysctls).
            DEFAULT_RCVBUF_LIMIT.get_or_init(read_rcvbuf_limit);
            Ok(())
        }
    };
    let b = HostWorker::start(Host::B, init(Host::B))?;
    let a = HostWorker::start(Host::A, init(Host::A))?;
    let b = b.finish();
    Ok((a.finish()?, b?))
}

/// Applies the user's sysctls and `--exec` commands in both hosts (in parallel; no round trip for a host
/// that has none) and returns each host's receive-buffer limit.
fn apply_user_settings_both(
    a: &HostWorker,
    b: &HostWorker,
    config: &LabConfig,
) -> Result<[u64; 2]> {
    let has_settings = |host: Host| {
        config.sysctls.iter().any(|s| s.host == host) || config.exec.iter().any(|e| e.host == host)
    };
    let submit = |worker: &HostWorker| {
        let host = worker.host();
        let cfg = config.clone();
        has_settings(host).then(|| {
            worker.submit(move || apply_user_settings(host, &cfg).map(|_| read_rcvbuf_limit()))
        })
    };
    let (pending_a, pending_b) = (submit(a), submit(b));
    let default = *DEFAULT_RCVBUF_LIMIT
        .get()
        .expect("set by every host thread's start (spawn_hosts)");
    let mut limits = [default; 2];
    for (i, pending) in [pending_a, pending_b].into_iter().enumerate() {
        if let Some(p) = pending {
            limits[i] = p.wait()??;
        }
    }
    Ok(limits)
}

/// [`read_rcvbuf_limit`] of a lab host with no user sysctls: a new namespace copies `tcp_rmem` from the
/// initial one and `rmem_max` is global, so one reading (on the first lab thread) serves every such host.
static DEFAULT_RCVBUF_LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Runs `sh -c command` from the host thread: the child inherits the thread's network namespace.
fn run_exec(host: Host, command: &str) -> Result<()> {
    let err = |status: String, stderr: String| HarnessError::Exec {
        host: host.name(),
        command: command.to_string(),
        status,
        stderr,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("could not start: {e}"), String::new()))?;
    let deadline = Instant::now() + EXEC_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut stderr = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut stderr);
                }
                let stderr = stderr.trim();
                return Err(err(
                    format!("failed ({status})"),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(": {stderr}")
                    },
                ));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                // Only the process we started, by its id.
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(
                    format!("timed out after {EXEC_TIMEOUT:?}"),
                    String::new(),
                ));
            }
            Err(e) => return Err(err(format!("wait failed: {e}"), String::new())),
        }
    }
}

impl Lab {
    /// Builds a lab with the link the config asks for.
    pub fn build(config: &LabConfig) -> Result<Lab> {
        match &config.link {
            crate::link::LinkSpec::Veth => Lab::build_veth(config),
            crate::link::LinkSpec::Relay(spec) => Lab::build_relay(config, spec.clone()),
            crate::link::LinkSpec::Peer => Lab::build_peer(config),
        }
    }

    /// Builds a scripted-peer lab: b gets a TUN device whose other end is [`crate::link::peer::Peer`]; a's
    /// namespace exists but nothing runs in it.
    fn build_peer(config: &LabConfig) -> Result<Lab> {
        use std::sync::Arc;
        let (a, b) = spawn_hosts()?;
        let mtu = config.mtu;
        let (tun, ib) = b.run(move || configure_relay_host(Host::B, mtu))??;
        let [_, limit_b] = apply_user_settings_both(&a, &b, config)?;
        let recorder = Arc::new(crate::link::relay::Recorder::default());
        Ok(Lab {
            a,
            b,
            ifindex: [0, ib],
            mac: [[0; 6]; 2],
            config: config.clone(),
            rcvbuf_limit: [limit_b, limit_b],
            relay: None,
            peer: Some(crate::link::peer::Peer {
                tun: Arc::new(tun),
                recorder,
            }),
        })
    }

    /// The scripted peer of a peer lab.
    pub fn peer(&self) -> Option<&crate::link::peer::Peer> {
        self.peer.as_ref()
    }

    /// Builds a relay lab: TUN devices and a forwarder thread per direction.
    fn build_relay(config: &LabConfig, spec: crate::link::RelaySpec) -> Result<Lab> {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let (a, b) = spawn_hosts()?;
        let mtu = config.mtu;
        let setup_b = b.submit(move || configure_relay_host(Host::B, mtu));
        let (tun_a, ia) = a.run(move || configure_relay_host(Host::A, mtu))??;
        let (tun_b, ib) = setup_b.wait()??;
        let (tun_a, tun_b) = (Arc::new(tun_a), Arc::new(tun_b));
        let recorder = Arc::new(crate::link::relay::Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        for (origin, input, output, imp) in [
            (Host::A, tun_a.clone(), tun_b.clone(), spec.a_to_b.clone()),
            (Host::B, tun_b.clone(), tun_a.clone(), spec.b_to_a.clone()),
        ] {
            let (recorder, stop, seed) = (recorder.clone(), stop.clone(), spec.seed);
            std::thread::Builder::new()
                .name(format!("relay-{}", origin.name()))
                .spawn(move || {
                    crate::link::relay::forward(origin, input, output, imp, seed, recorder, stop)
                })
                .map_err(|e| HarnessError::lab("spawn relay thread", e))?;
        }
        let [limit_a, limit_b] = apply_user_settings_both(&a, &b, config)?;
        Ok(Lab {
            a,
            b,
            ifindex: [ia, ib],
            mac: [[0; 6]; 2],
            config: config.clone(),
            rcvbuf_limit: [limit_a, limit_b],
            relay: Some(RelayRuntime { recorder, stop }),
            peer: None,
        })
    }

    /// Builds a veth lab.
    fn build_veth(config: &LabConfig) -> Result<Lab> {
        let (a, b) = spawn_hosts()?;
        let b_ns = b
            .netns()
            .try_clone()
            .map_err(|e| HarnessError::lab("dup namespace fd of b", e))?;
        a.run(move || {
            let mut nl = netlink::Netlink::open()
                .map_err(|e| HarnessError::lab("host a: open netlink", e))?;
            nl.create_veth(IFNAME, PEER_IFNAME, std::os::fd::AsRawFd::as_raw_fd(&b_ns))
                .map_err(|e| HarnessError::lab("host a: create veth pair with peer in b", e))
        })??;
        let mtu = config.mtu;
        let setup_b = b.submit(move || configure_host(Host::B, mtu));
        let setup_a = a.run(move || configure_host(Host::A, mtu))??;
        let setup_b = setup_b.wait()??;
        let static_neigh = !config.dynamic_neighbours;
        let (ia, ib) = (setup_a.ifindex, setup_b.ifindex);
        let (ma, mb) = (setup_a.mac, setup_b.mac);
        let fin_b = b.submit(move || finish_host(Host::B, ib, static_neigh.then_some(ma)));
        a.run(move || finish_host(Host::A, ia, static_neigh.then_some(mb)))??;
        fin_b.wait()??;
        let [limit_a, limit_b] = apply_user_settings_both(&a, &b, config)?;
        Ok(Lab {
            a,
            b,
            ifindex: [setup_a.ifindex, setup_b.ifindex],
            mac: [setup_a.mac, setup_b.mac],
            config: config.clone(),
            rcvbuf_limit: [limit_a, limit_b],
            relay: None,
            peer: None,
        })
    }

    /// The largest receive buffer a socket of `host` can have (for `tcp.window.bounded_by_buffer`).
    pub fn rcvbuf_limit(&self, host: Host) -> u64 {
        self.rcvbuf_limit[host as usize]
    }

    pub fn host(&self, host: Host) -> &HostWorker {
        match host {
            Host::A => &self.a,
            Host::B => &self.b,
        }
    }

    pub fn addr(&self, host: Host, family: Family) -> IpAddr {
        host_addr(host, family)
    }

    pub fn ifindex(&self, host: Host) -> u32 {
        self.ifindex[host as usize]
    }

    pub fn mac(&self, host: Host) -> [u8; 6] {
        self.mac[host as usize]
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The SUT driven on b, when b is not the lab's kernel (`--sut`).
    pub fn sut(
        &self,
    ) -> Option<std::sync::Arc<std::sync::Mutex<dyn crate::backend::driven::Conversation>>> {
        None
    }

    /// True when `inode` is one of this lab's namespaces.
    pub fn owns_netns(&self, inode: u64) -> bool {
        inode == self.a.netns().inode() || inode == self.b.netns().inode()
    }

    /// Starts capturing every frame on the link (in host a, both directions), before the first operation.
    pub fn start_capture(&self) -> Result<crate::capture::Capture> {
        if let Some(relay) = &self.relay {
            return Ok(crate::capture::Capture::from_relay(relay.recorder.clone()));
        }
        if let Some(peer) = &self.peer {
            return Ok(crate::capture::Capture::from_relay(peer.recorder.clone()));
        }
        let ifindex = self.ifindex(Host::A);
        self.a
            .run(move || crate::capture::Capture::open_on_this_thread(ifindex))?
    }
}
