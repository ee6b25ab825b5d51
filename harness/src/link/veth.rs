//! The veth link (the default, fastest): one veth pair, an end in each host's namespace.
//!
//! 1. in `a`, one RTM_NEWLINK creates the pair with the peer placed directly in `b`'s namespace (creating it
//!    in the root namespace and moving it would touch the host and cost 12–44 ms);
//! 2. each host sets `lo` and its end up, adds its addresses (IPv6 with IFA_F_NODAD) and turns offloads off
//!    (TSO, GSO, GRO, TX checksum; ethtool ioctl) so the capture shows real on-the-wire segments;
//! 3. one RTM_GETLINK per end after both are up forces the deferred carrier-up work to finish (without it the
//!    first ARP is lost in ~1 % of labs);
//! 4. static neighbour entries (default) avoid the IPv6 solicited-node multicast race (a 1 s stall in ~0.4 %
//!    of labs) and keep ARP/ND out of traces; with them the ends are `IFF_NOARP` (step 2), so the kernel joins
//!    no solicited-node group and sends no MLD report either. Properties that study ARP/ND turn them off.
//!
//! The capture is an AF_PACKET socket on a's end ([`crate::capture`]).

use std::time::Duration;

use crate::capture::Capture;
use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::hosts::{bring_up_link, finish_host, Hosts, IFNAME};
use crate::lab::netlink::Netlink;
use crate::link::endpoint::Peer;
use crate::link::{BuiltLink, LinkOptions};

/// Temporary name of b's end while it is created from a (names are per namespace, but both ends are named in
/// one request).
const PEER_IFNAME: &str = "nc0";

/// A built veth link: each end's ifindex and MAC address.
pub struct Veth {
    ifindex: [u32; 2],
    mac: [[u8; 6]; 2],
}

/// Per-host result of the in-namespace setup step.
struct EndSetup {
    ifindex: u32,
    mac: [u8; 6],
}

impl Veth {
    /// Builds the veth link between the hosts.
    pub fn build(hosts: &Hosts, options: &LinkOptions) -> Result<Veth> {
        let (a, b) = (hosts.host(Host::A), hosts.host(Host::B));
        let b_ns = b
            .netns()
            .try_clone()
            .map_err(|e| HarnessError::lab("dup namespace fd of b", e))?;
        a.run(move || {
            let mut nl =
                Netlink::open().map_err(|e| HarnessError::lab("host a: open netlink", e))?;
            nl.create_veth(IFNAME, PEER_IFNAME, std::os::fd::AsRawFd::as_raw_fd(&b_ns))
                .map_err(|e| HarnessError::lab("host a: create veth pair with peer in b", e))
        })??;
        let (mtu, no_arp) = (options.mtu, options.static_neighbours);
        let setup_b = b.submit(move || configure_end(Host::B, mtu, no_arp));
        let setup_a = a.run(move || configure_end(Host::A, mtu, no_arp))??;
        let setup_b = setup_b.wait()??;
        let static_neigh = options.static_neighbours;
        let (ia, ib) = (setup_a.ifindex, setup_b.ifindex);
        let (ma, mb) = (setup_a.mac, setup_b.mac);
        let fin_b = b.submit(move || finish_host(Host::B, ib, static_neigh.then_some(ma)));
        a.run(move || finish_host(Host::A, ia, static_neigh.then_some(mb)))??;
        fin_b.wait()??;
        Ok(Veth {
            ifindex: [ia, ib],
            mac: [ma, mb],
        })
    }
}

/// Brings up lo and the veth end (without ARP when neighbours are static), adds addresses, turns offloads off.
/// Runs on the host thread.
fn configure_end(host: Host, mtu: Option<u32>, no_arp: bool) -> Result<EndSetup> {
    let step = |what: &str| format!("host {}: {what}", host.name());
    let (mut nl, ifindex) = bring_up_link(host, mtu, "veth end", true, no_arp)?;
    let link = nl
        .get_link(ifindex)
        .map_err(|e| HarnessError::lab(step("read veth end"), e))?;
    Ok(EndSetup {
        ifindex,
        mac: link.mac,
    })
}

impl BuiltLink for Veth {
    /// Opens the packet socket on a's end, on a's thread: it sees both directions.
    fn start_capture(&self, hosts: &Hosts) -> Result<Capture> {
        let ifindex = self.ifindex[Host::A as usize];
        hosts
            .host(Host::A)
            .run(move || Capture::open_on_this_thread(ifindex))?
    }

    fn ifindex(&self, host: Host) -> u32 {
        self.ifindex[host as usize]
    }

    fn mac(&self, host: Host) -> [u8; 6] {
        self.mac[host as usize]
    }

    fn round_trip(&self) -> Duration {
        Duration::ZERO
    }

    fn peer(&self) -> Option<&Peer> {
        None
    }

    fn played_host(&self) -> Option<Host> {
        None
    }
}
