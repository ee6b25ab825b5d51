#!/usr/bin/python3
"""A minimal user-space TCP for netconform's tests of the passive stdio mode (`--sut-mode stdio`): one
connection whose bytes are this program's stdio — stdin is what it sends (EOF: its FIN), stdout what it
received — over the TUN device named by NETCONFORM_TUN (or fd 3, NETCONFORM_FD). Role and port come from
NETCONFORM_ROLE / NETCONFORM_PORT, addresses from NETCONFORM_ADDR(6) / NETCONFORM_PEER(6) and
NETCONFORM_FAMILY. It writes "hello" on stderr once its device is open.

By default it is a deliberately broken student stack, with three faults netconform must report:
  - it crashes (an uncaught exception, exit status 1) when the peer closes first;
  - its initial sequence number is always 0;
  - it never sends a RST (segments for other ports or connections are ignored).
`--fixed` switches the three faults off: a random ISN, RSTs as RFC 9293 §3.10.7.1 says, and a peer that
closes first is simply CLOSE-WAIT. Otherwise it is the same small stack: MSS option, in-order receive with an
immediate ACK for every segment (an out-of-order or old duplicate one included), a window of 65535, sender
SWS avoidance with Nagle (a short segment only with nothing in flight or at the end of the data),
go-back-N retransmission (RTO 1 s, RFC 6298 (2.1), doubling), zero-window probes that back off, and it
exits once both FINs are acknowledged.

Two more faults, each switched on by its flag (with or without `--fixed`), for the stdio suite's tests:
  - `--no-dup-ack`: an out-of-order or old duplicate segment is dropped silently, with no ACK;
  - `--tiny-segments`: data leaves in segments of at most 64 bytes, as fast as the window allows.
"""
import fcntl, ipaddress, os, random, select, struct, sys, threading, time

FIXED = "--fixed" in sys.argv
NO_DUP_ACK = "--no-dup-ack" in sys.argv
TINY = "--tiny-segments" in sys.argv
TINY_SEGMENT = 64
FAM6 = os.environ.get("NETCONFORM_FAMILY") == "ipv6"
ROLE = os.environ.get("NETCONFORM_ROLE", "server")
PORT = int(os.environ.get("NETCONFORM_PORT", "5001"))
MTU = int(os.environ.get("NETCONFORM_MTU", "1500"))
if FAM6:
    ME = ipaddress.ip_address(os.environ.get("NETCONFORM_ADDR6", "2001:db8::2/64").split("/")[0]).packed
    PEER = ipaddress.ip_address(os.environ.get("NETCONFORM_PEER6", "2001:db8::1")).packed
    MSS = MTU - 60
else:
    ME = ipaddress.ip_address(os.environ.get("NETCONFORM_ADDR", "198.18.0.2/24").split("/")[0]).packed
    PEER = ipaddress.ip_address(os.environ.get("NETCONFORM_PEER", "198.18.0.1")).packed
    MSS = MTU - 40
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
WINDOW = 65535
M32 = 0xFFFFFFFF


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def lt(a, b):
    return ((a - b) & M32) > 0x80000000


def le(a, b):
    return a == b or lt(a, b)


def packet(src, dst, sport, dport, seq, ack, flags, payload=b"", mss=None):
    opts = struct.pack("!BBH", 2, 4, mss) if mss else b""
    off = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & M32, ack & M32, off << 4, flags, WINDOW, 0, 0) + opts
    seg = hdr + payload
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
    seg = seg[:16] + struct.pack("!H", checksum(pseudo + seg)) + seg[18:]
    if len(src) == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, 64, src, dst)
    return ip + seg


def parse(pkt):
    """(src, dst, sport, dport, seq, ack, flags, window, mss, payload) of a TCP packet, or None."""
    v = pkt[0] >> 4
    if v == 4 and len(pkt) >= 40 and pkt[9] == 6:
        ihl = (pkt[0] & 15) * 4
        src, dst, tcp = pkt[12:16], pkt[16:20], pkt[ihl:struct.unpack("!H", pkt[2:4])[0]]
    elif v == 6 and len(pkt) >= 60 and pkt[6] == 6:
        src, dst, tcp = pkt[8:24], pkt[24:40], pkt[40:40 + struct.unpack("!H", pkt[4:6])[0]]
    else:
        return None
    sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", tcp[:16])
    hl = (off >> 4) * 4
    mss, opts = None, tcp[20:hl]
    while opts:
        if opts[0] == 0:
            break
        if opts[0] == 1:
            opts = opts[1:]
            continue
        if len(opts) < 2 or opts[1] < 2:
            break
        if opts[0] == 2 and opts[1] == 4:
            mss = struct.unpack("!H", opts[2:4])[0]
        opts = opts[opts[1]:]
    return src, dst, sport, dport, seq, ack, flags, win, mss, tcp[hl:]


def open_link():
    if os.environ.get("NETCONFORM_TUN"):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("16sH22x", os.environ["NETCONFORM_TUN"].encode(), 0x0001 | 0x1000)
        fcntl.ioctl(fd, 0x400454CA, ifr)  # TUNSETIFF: IFF_TUN | IFF_NO_PI
        return fd
    return int(os.environ.get("NETCONFORM_FD", "3"))


class Conn:
    def __init__(self, fd):
        self.fd = fd
        self.state = "LISTEN" if ROLE == "server" else "SYN-SENT"
        self.lport = PORT if ROLE == "server" else random.randint(40000, 60000)
        self.rport = None if ROLE == "server" else PORT
        self.iss = random.getrandbits(32) if FIXED else 0
        self.snd_una = self.snd_nxt = self.iss
        self.snd_max = self.iss  # the highest sequence number sent (go-back-N resends from snd_una)
        self.snd_wnd = 1
        self.peer_mss = 536
        self.rcv_nxt = 0
        self.out = bytearray()  # bytes from snd_una + 1 (after the SYN) on: unacked, then unsent
        self.out_base = (self.iss + 1) & M32  # sequence number of out[0]
        self.lock = threading.Lock()
        self.stdin_eof = False
        self.fin_sent = False
        self.fin_acked = False
        self.peer_fin = False
        self.rto = 1.0
        self.timer = None  # retransmission deadline
        self.persist = None
        self.persist_gap = 0.5
        self.syn_acked = False

    def send(self, seq, flags, payload=b"", mss=None):
        end = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & M32
        if lt(self.snd_max, end):
            self.snd_max = end
        os.write(self.fd, packet(ME, PEER, self.lport, self.rport, seq, self.rcv_nxt, flags, payload, mss))

    def rst_for(self, p):
        """RFC 9293 §3.10.7.1: the RST a closed port (or a segment of no connection) gets."""
        src, dst, sport, dport, seq, ack, flags, win, mss, payload = p
        if flags & RST or not FIXED:
            return
        seglen = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if flags & ACK:
            r = packet(dst, src, dport, sport, ack, 0, RST)
        else:
            r = packet(dst, src, dport, sport, 0, seq + seglen, RST | ACK)
        os.write(self.fd, r)

    def on_packet(self, pkt):
        p = parse(pkt)
        if p is None:
            return
        src, dst, sport, dport, seq, ack, flags, win, mss, payload = p
        if dst != ME:
            return
        ours = dport == self.lport and (self.rport is None or sport == self.rport)
        if not ours:
            self.rst_for(p)
            return
        if flags & RST:
            log("reset by the peer")
            os._exit(0)
        if self.state == "LISTEN":
            if flags & SYN and not flags & ACK:
                self.rport = sport
                self.rcv_nxt = (seq + 1) & M32
                self.peer_mss = mss or 536
                self.snd_wnd = win
                self.state = "SYN-RECEIVED"
                self.snd_nxt = (self.iss + 1) & M32
                self.send(self.iss, SYN | ACK, mss=MSS)
                self.timer = time.time() + self.rto
            elif flags & ACK:
                self.rst_for(p)
            return
        if self.state == "SYN-SENT":
            if flags & SYN and flags & ACK and ack == (self.iss + 1) & M32:
                self.rcv_nxt = (seq + 1) & M32
                self.peer_mss = mss or 536
                self.snd_una = ack
                self.snd_wnd = win
                self.syn_acked = True
                self.state = "ESTABLISHED"
                self.timer = None
                self.send(self.snd_nxt, ACK)
            return
        if flags & SYN:  # a retransmitted SYN or SYN-ACK: our answer was lost
            if self.state == "SYN-RECEIVED":
                self.send(self.iss, SYN | ACK, mss=MSS)
            else:
                self.send(self.snd_nxt, ACK)
            return
        if flags & ACK:
            self.on_ack(ack, win)
        # Data and FIN, in order only.
        if payload or flags & FIN:
            if lt(seq, self.rcv_nxt):  # retransmitted: keep what is new
                cut = (self.rcv_nxt - seq) & M32
                if cut >= len(payload) + (1 if flags & FIN else 0) or cut > len(payload):
                    if not NO_DUP_ACK:
                        self.send(self.snd_nxt, ACK)
                    return
                payload = payload[cut:]
                seq = self.rcv_nxt
            if seq != self.rcv_nxt or self.peer_fin:
                if not NO_DUP_ACK:
                    self.send(self.snd_nxt, ACK)
                return
            if payload:
                sys.stdout.buffer.write(payload)
                sys.stdout.buffer.flush()
                self.rcv_nxt = (self.rcv_nxt + len(payload)) & M32
            if flags & FIN:
                self.rcv_nxt = (self.rcv_nxt + 1) & M32
                self.peer_fin = True
                sys.stdout.close()
                if not self.fin_sent and not FIXED:
                    self.send(self.snd_nxt, ACK)
                    raise RuntimeError("the peer closed first: connection state lost")
            self.send(self.snd_nxt, ACK)

    def on_ack(self, ack, win):
        if self.state == "SYN-RECEIVED" and ack == (self.iss + 1) & M32:
            self.state = "ESTABLISHED"
            self.syn_acked = True
            self.snd_una = ack
            self.timer = None
        if lt(self.snd_una, ack) and le(ack, self.snd_max):
            if lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            with self.lock:
                done = (ack - self.out_base) & M32
                n = min(done, len(self.out))
                del self.out[:n]
                self.out_base = (self.out_base + n) & M32
            if self.fin_sent and ack == self.snd_max:
                self.fin_acked = True
            self.snd_una = ack
            self.timer = time.time() + self.rto if self.snd_una != self.snd_nxt else None
            self.rto = 1.0
        if le(self.snd_una, ack):
            if win and self.persist:
                self.persist, self.persist_gap = None, 0.5
            self.snd_wnd = win

    def pump(self):
        """Sends what the window allows; the FIN after stdin's EOF."""
        if self.state not in ("ESTABLISHED",) or not self.syn_acked:
            return
        with self.lock:
            unsent_at = (self.snd_nxt - self.out_base) & M32
            unsent = len(self.out) - min(unsent_at, len(self.out))
            while unsent > 0:
                in_flight = (self.snd_nxt - self.snd_una) & M32
                room = self.snd_wnd - in_flight
                if room <= 0:
                    break
                full = min(self.peer_mss, MSS)
                n = min(unsent, room, full)
                if TINY:
                    n = min(n, TINY_SEGMENT)
                elif n < full and in_flight > 0 and not (self.stdin_eof and n == unsent):
                    break  # Nagle / sender SWS avoidance: wait for the ACK
                at = (self.snd_nxt - self.out_base) & M32
                self.send(self.snd_nxt, ACK | PSH, bytes(self.out[at:at + n]))
                self.snd_nxt = (self.snd_nxt + n) & M32
                unsent -= n
                if self.timer is None:
                    self.timer = time.time() + self.rto
            if unsent > 0 and self.snd_wnd == 0 and self.snd_nxt == self.snd_una and self.persist is None:
                self.persist = time.time() + self.persist_gap
            if unsent == 0 and self.stdin_eof and not self.fin_sent:
                self.send(self.snd_nxt, FIN | ACK)
                self.snd_nxt = (self.snd_nxt + 1) & M32
                self.fin_sent = True
                if self.timer is None:
                    self.timer = time.time() + self.rto

    def timers(self):
        now = time.time()
        if self.timer and now >= self.timer:  # go back to snd_una
            self.rto = min(self.rto * 2, 8.0)
            self.timer = now + self.rto
            if self.state == "SYN-SENT":
                self.send(self.iss, SYN, mss=MSS)
            elif self.state == "SYN-RECEIVED":
                self.send(self.iss, SYN | ACK, mss=MSS)
            else:
                with self.lock:
                    if self.fin_sent and len(self.out) == 0:
                        self.send(self.snd_una, FIN | ACK)
                        return
                    if self.snd_wnd == 0:  # the persist timer probes a closed window
                        self.timer = None
                        return
                    self.snd_nxt = self.snd_una
                    if self.fin_sent:
                        self.fin_sent = False
        if self.persist and now >= self.persist and self.snd_wnd == 0:  # a zero-window probe: one byte
            with self.lock:
                at = (self.snd_nxt - self.out_base) & M32
                if at < len(self.out):
                    self.send(self.snd_nxt, ACK, bytes(self.out[at:at + 1]))
            self.persist_gap = min(self.persist_gap * 2, 8.0)
            self.persist = now + self.persist_gap


def read_stdin(conn):
    while True:
        chunk = os.read(0, 65536)
        with conn.lock:
            if not chunk:
                conn.stdin_eof = True
                return
            conn.out.extend(chunk)


def main():
    fd = open_link()
    log("hello: stdio-tcp.py", "fixed" if FIXED else "broken", ROLE, PORT)
    conn = Conn(fd)
    threading.Thread(target=read_stdin, args=(conn,), daemon=True).start()
    if ROLE == "client":
        conn.send(conn.iss, SYN, mss=MSS)
        conn.snd_nxt = (conn.iss + 1) & M32
        conn.timer = time.time() + conn.rto
    while not (conn.fin_acked and conn.peer_fin):
        ready, _, _ = select.select([fd], [], [], 0.01)
        if ready:
            conn.on_packet(os.read(fd, 65536))
        conn.pump()
        conn.timers()
    log("both FINs acknowledged: done")


main()
