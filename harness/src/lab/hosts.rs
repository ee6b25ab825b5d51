//! The hosts of a lab, before any link joins them: two threads in anonymous network namespaces with the lab
//! default sysctls, the user's sysctls and `--exec` commands, each host's receive-buffer limit, the lab
//! addresses, and the per-host steps every link file shares ([`bring_up_link`], [`wait_ipv6_local_route`],
//! [`finish_host`]).
//!
//! This file never imports [`crate::link`]: link files build on it, and [`crate::lab::Lab`] puts hosts and a
//! built link together (`tests/architecture.rs` checks there is no import cycle).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::ethtool;
use crate::lab::netlink;
use crate::lab::worker::HostWorker;
use crate::sock::Family;

/// Interface name of each host's end of the link.
pub const IFNAME: &str = "nc0";
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

/// Sysctls every lab host gets, before its interfaces exist. Kept to the one that has no other door: each
/// /proc/sys access walks a dentry chain that grows with the number of namespaces alive (`proc_sys_compare`
/// was 9 % of a default run's CPU with 64 labs in flight). No duplicate address detection needs no sysctl
/// (addresses are added with IFA_F_NODAD), and no router solicitation is ever sent: Linux solicits only once
/// a link-local address is ready, and lab links have none (`set_no_link_local`).
const LAB_DEFAULT_SYSCTLS: &[(&str, &str)] = &[
    // Path metrics must not leak from one connection into the next (docs/kernel-facts.md: cached per namespace).
    ("net.ipv4.tcp_no_metrics_save", "1"),
];

/// The two hosts of a lab, each a thread inside its own network namespace. Dropping them ends the threads;
/// the kernel frees each namespace once nothing else (a link's descriptor, a socket) holds it.
pub struct Hosts {
    a: HostWorker,
    b: HostWorker,
}

impl Hosts {
    /// Starts both host threads at once; each creates its namespace and writes the lab defaults before it
    /// answers (namespace creation is the most expensive step of a lab: ~0.4–0.8 ms each).
    pub fn spawn() -> Result<Hosts> {
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
        Ok(Hosts {
            a: a.finish()?,
            b: b?,
        })
    }

    /// The thread of `host`.
    pub fn host(&self, host: Host) -> &HostWorker {
        match host {
            Host::A => &self.a,
            Host::B => &self.b,
        }
    }

    /// True when `inode` is one of these hosts' namespaces.
    pub fn owns_netns(&self, inode: u64) -> bool {
        inode == self.a.netns().inode() || inode == self.b.netns().inode()
    }

    /// Applies the user's sysctls and `--exec` commands in both hosts (in parallel; no round trip for a host
    /// that has none) and returns each host's receive-buffer limit. Runs after the link is built, so commands
    /// can name its interface.
    pub fn apply_user_settings(
        &self,
        sysctls: &[SysctlSetting],
        exec: &[ExecCommand],
    ) -> Result<[u64; 2]> {
        let submit = |worker: &HostWorker| {
            let host = worker.host();
            let sysctls: Vec<SysctlSetting> =
                sysctls.iter().filter(|s| s.host == host).cloned().collect();
            let exec: Vec<ExecCommand> = exec.iter().filter(|e| e.host == host).cloned().collect();
            (!sysctls.is_empty() || !exec.is_empty()).then(|| {
                worker.submit(move || {
                    apply_user_settings(host, &sysctls, &exec).map(|_| read_rcvbuf_limit())
                })
            })
        };
        let (pending_a, pending_b) = (submit(&self.a), submit(&self.b));
        let default = *DEFAULT_RCVBUF_LIMIT
            .get()
            .expect("set by every host thread's start (Hosts::spawn)");
        let mut limits = [default; 2];
        for (i, pending) in [pending_a, pending_b].into_iter().enumerate() {
            if let Some(p) = pending {
                limits[i] = p.wait()??;
            }
        }
        Ok(limits)
    }
}

/// The steps every link shares, on the host thread: lo up, the link `nc0` found, its MTU set, offloads off
/// (veth only), up (with `IFF_NOARP` when `no_arp`: static neighbours, see [`finish_host`]), and the host's
/// IPv4 and IPv6 addresses added. Returns the netlink socket for more steps.
pub fn bring_up_link(
    host: Host,
    mtu: Option<u32>,
    what: &str,
    offloads_off: bool,
    no_arp: bool,
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
    // No link-local address (global addresses are enough for a /64 on a link). Without ARP (static
    // neighbours) the kernel joins no solicited-node group for the addresses either, so no MLD report reaches
    // the wire: with ARP on, each host sent 2–4 of them (from ::, to ff02::16) in the first second of a lab,
    // inside the captures of longer cases.
    nl.set_no_link_local(ifindex)
        .map_err(|e| HarnessError::lab(step(&format!("{what}: addrgenmode none")), e))?;
    let extra = if no_arp { netlink::IFF_NOARP } else { 0 };
    nl.set_link_up_with(ifindex, extra)
        .map_err(|e| HarnessError::lab(step(&format!("set {what} up")), e))?;
    for family in [Family::Ipv4, Family::Ipv6] {
        nl.add_address(ifindex, host_addr(host, family), prefix_len(family))
            .map_err(|e| HarnessError::lab(step(&format!("add {} address", family.name())), e))?;
    }
    // The IPv6 address's local route now, not from addrconf's deferred work ([`wait_ipv6_local_route`]).
    if let IpAddr::V6(addr) = host_addr(host, Family::Ipv6) {
        nl.add_ipv6_local_route(ifindex, addr)
            .map_err(|e| HarnessError::lab(step("add the IPv6 address's local route"), e))?;
    }
    Ok((nl, ifindex))
}

/// How long an IPv6 address may take to become local (its /128 local route is installed by addrconf's
/// deferred DAD work, even with IFA_F_NODAD).
const IPV6_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until this host's IPv6 address has its local route. Measured here: without the route, 0.3–0.7 % of
/// labs dropped the first IPv6 packet to the host (Ip6InAddrErrors), losing e.g. an ICMPv6 error or a SYN.
/// [`bring_up_link`] installs the route itself (the kernel's own comes from deferred work that took over 10 s
/// under 2× CPU oversubscription), so this is a check that normally passes at the first look.
pub fn wait_ipv6_local_route(host: Host) -> Result<()> {
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

/// Runs after both ends of an Ethernet link are up, on the host thread: forces carrier-up (one RTM_GETLINK)
/// and installs static neighbours for the other host's addresses when `peer_mac` is given.
pub fn finish_host(host: Host, ifindex: u32, peer_mac: Option<[u8; 6]>) -> Result<()> {
    use netlink::Netlink;
    let step = |what: &str| format!("host {}: {what}", host.name());
    let mut nl = Netlink::open().map_err(|e| HarnessError::lab(step("open netlink socket"), e))?;
    nl.get_link(ifindex)
        .map_err(|e| HarnessError::lab(step("read link after up"), e))?;
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
    // With a read-only /proc/sys (accepted by the run: harness/src/lab/privileges.rs) the namespace keeps
    // its own defaults; every lab is fresh, so only a case's own later connections could see cached metrics.
    if crate::lab::privileges::sysctls_read_only() {
        return Ok(());
    }
    for (k, v) in LAB_DEFAULT_SYSCTLS {
        write_sysctl(host, k, v)?;
    }
    Ok(())
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

/// One host's sysctls, then its commands, on its thread.
fn apply_user_settings(host: Host, sysctls: &[SysctlSetting], exec: &[ExecCommand]) -> Result<()> {
    for s in sysctls {
        s.validate()?;
        write_sysctl(host, &s.key, &s.value)?;
    }
    for e in exec {
        run_exec(host, &e.command)?;
    }
    Ok(())
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
