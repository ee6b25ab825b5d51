//! The lab against the kernel: addresses, offloads, containment, MSS-sized segments on the wire.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::lab::{ethtool, Lab, LabConfig};
use harness::pipeline::lab_host_addrs;
use harness::sock::{ConnectOutcome, Family, Socket};
use harness::trace::Trace;
use harness::HarnessError;

/// A lab with a TCP connection from a to b already established, like smoltcp's `socket_established()`.
fn established(lab: &Lab, family: Family, port: u16) -> (Socket, Socket) {
    let b_addr = SocketAddr::new(lab.addr(Host::B, family), port);
    let listener = lab
        .host(Host::B)
        .run(move || {
            let l = Socket::tcp(family).unwrap();
            l.set_int_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                .unwrap();
            l.bind(b_addr).unwrap();
            l.listen(4).unwrap();
            l
        })
        .unwrap();
    let client = lab
        .host(Host::A)
        .run(move || {
            let c = Socket::tcp(family).unwrap();
            assert_eq!(
                c.connect_timeout(b_addr, Duration::from_secs(2)).unwrap(),
                ConnectOutcome::Done(Ok(()))
            );
            c
        })
        .unwrap();
    let server = lab
        .host(Host::B)
        .run(move || {
            // SAFETY: accept on a listening socket we own.
            let fd = unsafe {
                libc::accept(
                    std::os::fd::AsRawFd::as_raw_fd(&listener),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            assert!(fd >= 0, "accept failed");
            Socket::from_owned(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }, family)
        })
        .unwrap();
    (client, server)
}

#[test]
fn offloads_are_off_on_both_ends() {
    let lab = Lab::build(&LabConfig::default()).unwrap();
    for host in [Host::A, Host::B] {
        let o = lab
            .host(host)
            .run(|| ethtool::get_offloads(harness::lab::IFNAME).unwrap())
            .unwrap();
        assert!(
            !o.tso && !o.gso && !o.gro && !o.tx_checksum,
            "host {host:?}: {o:?}"
        );
    }
}

#[test]
fn no_captured_tcp_segment_is_larger_than_the_mss() {
    for family in [Family::Ipv4, Family::Ipv6] {
        let lab = Lab::build(&LabConfig::default()).unwrap();
        let capture = lab.start_capture().unwrap();
        let (client, server) = established(&lab, family, 5001);
        const TOTAL: usize = 300_000;
        let reader = lab.host(Host::B).submit(move || {
            let mut got = 0;
            while got < TOTAL {
                match server.recv_timeout(65536, 0, Duration::from_secs(5)) {
                    Some(Ok(r)) if r.returned > 0 => got += r.returned,
                    other => panic!("read stopped at {got}: {other:?}"),
                }
            }
            got
        });
        lab.host(Host::A)
            .run(move || {
                let data = vec![0x5a; TOTAL];
                let mut sent = 0;
                while sent < TOTAL {
                    sent += client.send(&data[sent..], 0).unwrap().unwrap();
                }
            })
            .unwrap();
        assert_eq!(reader.wait().unwrap(), TOTAL);
        std::thread::sleep(Duration::from_millis(20));
        let captured = capture.stop().unwrap();
        assert_eq!(captured.drops, 0);
        let trace = Trace::build(&captured.frames, &lab_host_addrs(), None);
        let mss = match family {
            Family::Ipv4 => 1500 - 40,
            Family::Ipv6 => 1500 - 60,
        };
        let mut data_segments = 0;
        let mut largest = 0;
        for f in &trace.frames {
            if let Some(tcp) = f.tcp() {
                largest = largest.max(tcp.payload_len);
                if tcp.payload_len > 0 {
                    data_segments += 1;
                }
                assert!(
                    tcp.payload_len <= mss,
                    "{family:?}: frame {} carries {} bytes > MSS {mss}",
                    f.number,
                    tcp.payload_len
                );
            }
        }
        // Positive control: the transfer really crossed the wire in MSS-sized pieces.
        assert!(
            data_segments >= TOTAL / mss,
            "{family:?}: only {data_segments} data segments captured"
        );
        // TCP options (timestamps: 12 bytes) come out of the MSS; a full segment is within 40 bytes of it.
        assert!(
            largest + 40 >= mss,
            "{family:?}: the largest segment ({largest}) should be about one MSS ({mss})"
        );
    }
}

#[test]
fn sockets_are_created_only_on_lab_threads() {
    let err = Socket::tcp(Family::Ipv4).unwrap_err();
    assert!(matches!(err, HarnessError::Containment(_)), "{err}");
}

#[test]
fn a_socket_from_outside_the_lab_is_refused_before_it_connects_or_sends() {
    let lab = Lab::build(&LabConfig::default()).unwrap();
    // A socket made in the test's own (root) namespace, smuggled onto a lab thread.
    // SAFETY: plain socket(2); the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    let outsider = Socket::from_owned(
        unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        Family::Ipv4,
    );
    let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv4), 9);
    let (connect, send) = lab
        .host(Host::A)
        .run(move || {
            let c = outsider.connect(b).map(|_| ());
            let s = outsider.send_to(b"x", b, 0).map(|_| ());
            (c, s)
        })
        .unwrap();
    for r in [connect, send] {
        match r {
            Err(HarnessError::Containment(msg)) => {
                assert!(msg.contains("not in the lab host's namespace"), "{msg}")
            }
            other => panic!("an outside socket was not refused: {other:?}"),
        }
    }
    // Positive control: a socket made on the lab thread passes the same check.
    let ok = lab
        .host(Host::A)
        .run(move || {
            Socket::udp(Family::Ipv4)
                .unwrap()
                .send_to(b"x", b, 0)
                .map(|_| ())
        })
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn user_sysctls_and_exec_commands_apply_inside_the_host_only() {
    let host_sack = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_sack").unwrap();
    let cfg = LabConfig {
        sysctls: vec![harness::SysctlSetting::parse("b:net.ipv4.tcp_sack=0").unwrap()],
        exec: vec![harness::ExecCommand::parse(
            "b:test \"$(cat /proc/sys/net/ipv4/tcp_sack)\" = 0",
        )
        .unwrap()],
        ..Default::default()
    };
    let lab = Lab::build(&cfg).unwrap();
    let read = |h: Host| {
        lab.host(h)
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/tcp_sack").unwrap())
            .unwrap()
    };
    assert_eq!(read(Host::B).trim(), "0");
    assert_eq!(read(Host::A).trim(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_sack").unwrap(),
        host_sack
    );
    // A failing exec command is a harness error naming the host and the command.
    let bad = LabConfig {
        exec: vec![harness::ExecCommand::parse("a:echo oops >&2; exit 3").unwrap()],
        ..Default::default()
    };
    let err = Lab::build(&bad)
        .err()
        .expect("a failing --exec must fail the lab");
    let msg = err.to_string();
    assert!(
        msg.contains("host a") && msg.contains("exit 3") || msg.contains("exit status: 3"),
        "{msg}"
    );
    assert!(msg.contains("oops"), "{msg}");
}

/// Labs take their hosts from a pool made ahead (`harness::lab::pool`): each lab still gets two namespaces no
/// earlier lab had, with nothing in them but its own link, no socket, and the lab defaults written.
#[test]
fn prepared_hosts_are_fresh_and_never_reused() {
    let served = harness::lab::pool::served();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        // Time for the filler to make the next pair, as a case's own waiting gives it in a run.
        std::thread::sleep(Duration::from_millis(30));
        let lab = Lab::build(&LabConfig::default()).unwrap();
        for host in [Host::A, Host::B] {
            // The namespace's cookie: unlike its inode number, never given to another namespace until reboot.
            let cookie = lab
                .host(host)
                .run(|| {
                    let s = Socket::udp(Family::Ipv4).unwrap();
                    let mut cookie = 0u64;
                    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
                    // SAFETY: SO_NETNS_COOKIE writes a u64 into the buffer we own.
                    let rc = unsafe {
                        libc::getsockopt(
                            std::os::fd::AsRawFd::as_raw_fd(&s),
                            libc::SOL_SOCKET,
                            libc::SO_NETNS_COOKIE,
                            (&mut cookie as *mut u64).cast(),
                            &mut len,
                        )
                    };
                    assert_eq!(rc, 0, "SO_NETNS_COOKIE");
                    cookie
                })
                .unwrap();
            assert!(
                seen.insert(cookie),
                "host {} got a namespace an earlier lab had",
                host.name()
            );
            let (devices, sockets, no_metrics) = lab
                .host(host)
                .run(|| {
                    let read = |p: &str| std::fs::read_to_string(p).unwrap();
                    let devices: Vec<String> = read("/proc/thread-self/net/dev")
                        .lines()
                        .skip(2)
                        .map(|l| l.split(':').next().unwrap().trim().to_string())
                        .collect();
                    // Our cookie probe's socket is closed by now.
                    let sockets = ["tcp", "tcp6", "udp", "udp6"]
                        .iter()
                        .map(|t| read(&format!("/proc/thread-self/net/{t}")).lines().count() - 1)
                        .sum::<usize>();
                    let no_metrics = read("/proc/sys/net/ipv4/tcp_no_metrics_save");
                    (devices, sockets, no_metrics)
                })
                .unwrap();
            let mut devices = devices;
            devices.sort();
            assert_eq!(devices, ["lo", "nc0"], "host {}", host.name());
            assert_eq!(sockets, 0, "host {}: sockets in a new lab", host.name());
            assert_eq!(no_metrics.trim(), "1", "host {}: lab defaults", host.name());
        }
    }
    assert!(
        harness::lab::pool::served() > served,
        "no lab took a prepared pair of hosts"
    );
}

#[test]
fn sysctls_outside_net_are_refused() {
    assert!(harness::SysctlSetting::parse("a:kernel.panic=1").is_err());
    assert!(harness::SysctlSetting::parse("a:net.ipv4/../../kernel/panic=1").is_err());
    assert!(harness::SysctlSetting::parse("c:net.ipv4.tcp_sack=0").is_err());
}
