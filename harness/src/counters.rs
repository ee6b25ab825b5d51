//! Per-namespace protocol counters, read on a lab host thread: `/proc/thread-self/net/snmp` (IPv4 `Udp:`) and
//! `/proc/thread-self/net/snmp6` (`Udp6…`).
//!
//! `/proc/thread-self/net` shows the network namespace of the calling *thread*, so these functions refuse to
//! run anywhere but on a lab host thread: read elsewhere they would report the host's own counters.

use crate::error::{HarnessError, Result};
use crate::sock::{thread_lab_netns, Family};

/// The UDP MIB of one namespace and IP version (RFC 4113 names; Linux adds the error breakdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub no_ports: u64,
    pub in_errors: u64,
    pub out_datagrams: u64,
    /// Datagrams dropped because the socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
    pub in_csum_errors: u64,
    pub mem_errors: u64,
}

/// Reads the UDP counters of the calling lab host thread's namespace for `family`.
pub fn udp_counters(family: Family) -> Result<UdpCounters> {
    if thread_lab_netns().is_none() {
        return Err(HarnessError::Containment(
            "UDP counters were requested on a thread that is not a lab host thread".into(),
        ));
    }
    let path = match family {
        Family::Ipv4 => "/proc/thread-self/net/snmp",
        Family::Ipv6 => "/proc/thread-self/net/snmp6",
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| HarnessError::lab(format!("read {path}"), e))?;
    let pairs = match family {
        Family::Ipv4 => snmp_pairs(&text, "Udp:"),
        Family::Ipv6 => snmp6_pairs(&text, "Udp6"),
    };
    let get = |name: &str| -> Result<u64> {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                HarnessError::lab(
                    format!("{path} has no {name} counter"),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })
    };
    Ok(UdpCounters {
        in_datagrams: get("InDatagrams")?,
        no_ports: get("NoPorts")?,
        in_errors: get("InErrors")?,
        out_datagrams: get("OutDatagrams")?,
        rcvbuf_errors: get("RcvbufErrors")?,
        sndbuf_errors: get("SndbufErrors")?,
        in_csum_errors: get("InCsumErrors")?,
        mem_errors: get("MemErrors")?,
    })
}

/// `/proc/net/snmp` holds pairs of lines, names then values, both starting with `Proto:`.
fn snmp_pairs(text: &str, prefix: &str) -> Vec<(String, u64)> {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    let [names, values] = lines[..] else {
        return Vec::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// `/proc/net/snmp6` holds one `Udp6Name value` per line.
fn snmp6_pairs(text: &str, prefix: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?.strip_prefix(prefix)?;
            Some((name.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_parse() {
        let v4 = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 31 8 2 40 5\n\
                  UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdpLite: 0 0 0 0 0\n";
        let p = snmp_pairs(v4, "Udp:");
        assert_eq!(p[4], ("RcvbufErrors".to_string(), 5));
        let v6 =
            "Udp6InDatagrams                 \t7\nUdp6RcvbufErrors \t3\nUdpLite6RcvbufErrors 9\n";
        let p = snmp6_pairs(v6, "Udp6");
        assert_eq!(
            p,
            vec![("InDatagrams".into(), 7), ("RcvbufErrors".into(), 3)]
        );
    }

    #[test]
    fn refuses_to_read_outside_a_lab_thread() {
        assert!(matches!(
            udp_counters(Family::Ipv4),
            Err(HarnessError::Containment(_))
        ));
    }
}
