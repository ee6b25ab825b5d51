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
