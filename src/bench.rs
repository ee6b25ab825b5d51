//! `netconform bench`: lab setup+teardown time and cases/s per property, measured on this machine.
//!
//! Targets (issue #2, 2-core machine): lab setup+teardown ≤ 5 ms median; ≥ 100 cases/s for
//! `tcp.rst.closed_port`. Speed lives here, never in timed tests.

use std::time::{Duration, Instant};

use harness::lab::{Lab, LabConfig};
use harness::runner::{self, PcapPolicy, RunOptions};
use harness::sock::Family;
use harness::HarnessError;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Labs built and torn down for the setup measurement.
    #[arg(long, default_value_t = 300)]
    labs: usize,
    /// Cases per property for the throughput measurement.
    #[arg(long, default_value_t = 400)]
    cases: u64,
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Only this property (repeatable); default: all.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Also measure the relay link: TCP goodput without impairment and at 20 ms one-way delay with a
    /// 100 Mbit/s rate limit (targets: >= 1 Gbit/s; >= 80 % of the rate, no unintended drop).
    #[arg(long)]
    relay: bool,
}

/// One TCP bulk transfer a -> b for `secs` seconds over a lab with `link`; returns (bits/s, unintended drops).
fn tcp_goodput(link: harness::link::LinkSpec, secs: f64) -> Result<(f64, u32), HarnessError> {
    use harness::frame::Host;
    use harness::sock::Socket;
    use std::net::SocketAddr;
    let lab = Lab::build(&LabConfig {
        link,
        ..Default::default()
    })?;
    let capture = lab.start_capture()?;
    let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv4), 5001);
    let listener = lab
        .host(Host::B)
        .run(move || -> Result<Socket, HarnessError> {
            let l = Socket::tcp(Family::Ipv4)?;
            l.bind(b)
                .map_err(|e| harness::sock::socket_step("bind", e))?;
            l.listen(1)
                .map_err(|e| harness::sock::socket_step("listen", e))?;
            Ok(l)
        })??;
    // The reader times the transfer itself: from its first byte to its last.
    let reader = lab.host(Host::B).submit(move || -> (u64, f64) {
        let Some(Ok((s, _))) = (listener.poll(libc::POLLIN, Duration::from_secs(5)) != 0)
            .then(|| listener.accept_now())
        else {
            return (0, 0.0);
        };
        let (mut total, mut first, mut last) = (0u64, None, Instant::now());
        while let Some(Ok(r)) = s.recv_timeout(1 << 20, 0, Duration::from_millis(500)) {
            if r.returned == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            total += r.returned as u64;
        }
        (total, first.map_or(0.0, |f| (last - f).as_secs_f64()))
    });
    lab.host(Host::A)
        .run(move || -> Result<(), HarnessError> {
            let c = Socket::tcp(Family::Ipv4)?;
            c.connect_timeout(b, Duration::from_secs(2))?;
            let buf = vec![0u8; 1 << 16];
            let end = Instant::now() + Duration::from_secs_f64(secs);
            while Instant::now() < end {
                if c.send(&buf, 0)?.is_err() {
                    break;
                }
            }
            Ok(())
        })??;
    let (bytes, elapsed) = reader.wait()?;
    let captured = capture.stop()?;
    Ok((bytes as f64 * 8.0 / elapsed.max(0.001), captured.drops))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn bench(args: BenchArgs) -> Result<i32, HarnessError> {
    let mut times = Vec::with_capacity(args.labs);
    for _ in 0..args.labs.max(1) {
        let t = Instant::now();
        let lab = Lab::build(&LabConfig::default())?;
        drop(lab);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "lab setup+teardown ({} labs, sequential): median {:.2} ms, p90 {:.2} ms, max {:.2} ms  (target ≤ 5 ms median)",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
    let props: Vec<_> = suites::all()
        .into_iter()
        .filter(|p| {
            args.properties.is_empty() || args.properties.iter().any(|id| id == p.info().id)
        })
        .collect();
    // tcp.random_ops is measured on programs of up to 20 ops without sleeps (issue #3's target).
    let _ = suites::random_ops::LIMITS.set((
        harness::model::GenLimits {
            max_ops: 20,
            allow_sleep: false,
            allow_udp: true,
        },
        None,
    ));
    let mut code = 0;
    if args.relay {
        use harness::link::{Impairment, LinkSpec, RelaySpec};
        let (plain, drops) = tcp_goodput(LinkSpec::Relay(RelaySpec::default()), 3.0)?;
        println!(
            "relay, no impairment: TCP goodput {:.2} Gbit/s, {drops} unintended drops  (target >= 1 Gbit/s)",
            plain / 1e9
        );
        let imp = Impairment {
            delay_us: 20_000,
            rate_bps: Some(100_000_000),
            ..Default::default()
        };
        let spec = RelaySpec {
            a_to_b: imp.clone(),
            b_to_a: Impairment {
                delay_us: 20_000,
                ..Default::default()
            },
            seed: 1,
        };
        let (slow, drops) = tcp_goodput(LinkSpec::Relay(spec), 5.0)?;
        println!(
            "relay, 20 ms one-way delay, 100 Mbit/s: TCP goodput {:.1} Mbit/s = {:.0} % of the rate, {drops} unintended drops  (target >= 80 %, 0 drops)",
            slow / 1e6,
            slow / 1e6
        );
    }
    for prop in props {
        let opts = RunOptions {
            cases: args.cases,
            seed: 1,
            jobs: args.jobs,
            families: vec![Family::Ipv4, Family::Ipv6],
            lab: LabConfig::default(),
            out_dir: std::env::temp_dir().join("netconform-bench"),
            pcap: PcapPolicy::Failures,
            shrink_budget: Duration::ZERO,
            shrink_max_cases: 0,
            confirm_runs: 0,
            html: false,
        };
        let t = Instant::now();
        let report = runner::run(&[prop], &opts, &|_| {});
        let secs = t.elapsed().as_secs_f64();
        let r = &report.properties[0];
        println!(
            "{:<24} {:>5} cases in {:>6.2} s = {:>7.1} cases/s with {} jobs  (pass {}, not passing {})",
            r.id,
            args.cases,
            secs,
            args.cases as f64 / secs,
            args.jobs,
            r.pass,
            r.fail + r.invalid + r.error
        );
        if report.exit_code() != 0 {
            code = 1;
        }
    }
    Ok(code)
}
