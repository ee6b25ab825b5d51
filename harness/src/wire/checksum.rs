//! The Internet checksum (RFC 1071) and the pseudo-headers of RFC 768 / RFC 9293 §3.1 (IPv4) and RFC 8200 §8.1
//! (IPv6).

use std::net::IpAddr;

/// One's-complement sum of 16-bit words, not yet complemented.
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

/// Folds and complements a sum.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone (IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// The sum of the pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum(&s.octets(), acc);
            acc = sum(&d.octets(), acc);
            acc += protocol as u32;
            acc += len as u32;
        }
        _ => {
            let s = match src {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            let d = match dst {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            acc = sum(&s.octets(), acc);
            acc = sum(&d.octets(), acc);
            acc += (len as u32) >> 16;
            acc += (len as u32) & 0xffff;
            acc += protocol as u32;
        }
    }
    acc
}

/// Checksum of an upper-layer packet (`data` with its checksum field zeroed, or as received to verify: a
/// received packet verifies when this returns 0).
pub fn upper_layer(src: IpAddr, dst: IpAddr, protocol: u8, data: &[u8]) -> u16 {
    finish(sum(data, pseudo_header_sum(src, dst, protocol, data.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), !0xff00u16);
    }
}
