#!/usr/bin/python3
"""A tiny user-space "stack" for netconform's tests of the fd and TUN attachments: it has no listening port,
so it answers every TCP segment the way RFC 9293 §3.10.7.1 says a closed port must, and never answers a RST.

It says hello with caps ["tcp"] so that `tcp.rst.closed_port` (which sends b no request) can judge it, but it
implements no request: every request gets {"ok":false,"err":"UNSUPPORTED"}. Packets come from fd 3
(NETCONFORM_FD), from the TUN device named by NETCONFORM_TUN, or as Ethernet frames from the TAP device named by
NETCONFORM_TAP — then it also answers ARP requests and IPv6 neighbour solicitations for its addresses
(NETCONFORM_ADDR, NETCONFORM_ADDR6), as any host on an Ethernet must. Stdin EOF ends it.

`--wrong-ack` makes it a buggy stack: its RST+ACK acknowledges one byte too many (the tests check that
netconform notices).
"""
import fcntl, ipaddress, json, os, select, struct, sys, threading

WRONG_ACK = 1 if "--wrong-ack" in sys.argv else 0


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def answer(pkt):
    """The RST a closed port sends for `pkt`, or None."""
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 15) * 4
        if pkt[9] != 6:
            return None
        src, dst, tcp = pkt[12:16], pkt[16:20], pkt[ihl:]
    elif version == 6:
        if pkt[6] != 6:
            return None
        src, dst, tcp = pkt[8:24], pkt[24:40], pkt[40:]
    else:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
    if flags & 0x04:  # RST: never answered
        return None
    seg_len = len(tcp) - (off >> 4) * 4 + (flags & 0x02 != 0) + (flags & 0x01 != 0)
    if flags & 0x10:  # ACK set: <SEQ=SEG.ACK><CTL=RST>
        rseq, rack, rflags = ack, 0, 0x04
    else:  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        rseq, rack, rflags = 0, (seq + seg_len + WRONG_ACK) & 0xFFFFFFFF, 0x14
    hdr = struct.pack("!HHIIBBHHH", dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0)
    if version == 4:
        pseudo = dst + src + struct.pack("!BBH", 0, 6, len(hdr))
    else:
        pseudo = dst + src + struct.pack("!IxxxB", len(hdr), 6)
    hdr = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
    if version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(hdr), 0, 0x4000, 64, 6, 0, dst, src)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(hdr), 6, 64, dst, src)
    return ip + hdr


MAC = bytes.fromhex("020000000002")
TAP = bool(os.environ.get("NETCONFORM_TAP"))


def own_address(var):
    value = os.environ.get(var, "")
    return ipaddress.ip_interface(value).ip.packed if value else b""


def open_link():
    dev = os.environ.get("NETCONFORM_TAP") or os.environ.get("NETCONFORM_TUN")
    if dev:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        kind = 0x0002 if TAP else 0x0001  # IFF_TAP or IFF_TUN
        ifr = struct.pack("16sH22x", dev.encode(), kind | 0x1000)
        fcntl.ioctl(fd, 0x400454CA, ifr)  # TUNSETIFF with IFF_NO_PI
        return fd
    return int(os.environ.get("NETCONFORM_FD", "3"))


def neighbour_answer(frame):
    """An Ethernet frame answering an ARP request or IPv6 neighbour solicitation for our address, or None."""
    dst_mac, src_mac, ethertype = frame[:6], frame[6:12], frame[12:14]
    if ethertype == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == own_address("NETCONFORM_ADDR"):
        sender = frame[22:32]  # sender MAC + IP
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + MAC + frame[38:42] + sender
        return src_mac + MAC + b"\x08\x06" + arp
    if ethertype == b"\x86\xdd" and frame[20] == 58 and frame[54] == 135:
        target = frame[62:78]
        if target != own_address("NETCONFORM_ADDR6"):
            return None
        src_ip = frame[22:38]
        icmp = struct.pack("!BBHI", 136, 0, 0, 0x60000000) + target + b"\x02\x01" + MAC
        pseudo = target + src_ip + struct.pack("!IxxxB", len(icmp), 58)
        icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 255, target, src_ip)
        return src_mac + MAC + b"\x86\xdd" + ip + icmp
    return None


def serve_packets(fd, done):
    while not done.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            pkt = os.read(fd, 65536)
        except OSError:
            return
        if not pkt:
            return
        if TAP:
            reply = neighbour_answer(pkt)
            if reply is None and pkt[12:14] in (b"\x08\x00", b"\x86\xdd"):
                ip_reply = answer(pkt[14:])
                reply = pkt[6:12] + MAC + pkt[12:14] + ip_reply if ip_reply else None
        else:
            reply = answer(pkt)
        if reply:
            os.write(fd, reply)


def main():
    fd = open_link()
    done = threading.Event()
    threading.Thread(target=serve_packets, args=(fd, done), daemon=True).start()
    hello = {"hello": "netconform-sut/1", "stack": "rst-responder.py",
             "families": ["ipv4", "ipv6"], "caps": ["tcp"]}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        print(json.dumps({"id": req.get("id"), "ok": False, "err": "UNSUPPORTED"}), flush=True)
    done.set()


main()
