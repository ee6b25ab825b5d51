//! `netconform check FILE`: a full offline judge of any pcap/pcapng capture (Ethernet or raw IP, any addresses
//! and ports). Conversations are found and roles assigned (the first talker is `A`, its peer `B`); every
//! frame is held to the wire-validity rules (`harness/src/validity.rs`), every TCP conversation to the four
//! invariants (`harness/src/invariants.rs`), and the capture to the wire-observable properties
//! (`harness/src/offline.rs`). Each reports pass, fail with its violation, or not applicable with why.
//!
//! The capture point is unknown, so nothing is excused by it but what the capture itself explains:
//! - lossy capture: drops an Interface Statistics Block counts, and sequence holes no retransmission fills or
//!   ACKs of bytes the capture never showed (`tcp.seq.accounting`'s order-free rules) are warnings that the
//!   capture may have lost frames, not findings about the stack;
//! - offload and snaplen artifacts (`harness/src/validity.rs`) are listed as "capture artifact, not judged".
//!
//! Exit codes as `run`: 0 nothing failed, 1 a finding, 2 the file cannot be read.

use std::path::PathBuf;

use harness::frame::{Frame, Host};
use harness::offline::{Judged, Outcome};
use harness::trace::{ConversationKind, HostAddrs, Trace};
use harness::validity::{OfflineCapture, ValidityContext};
use harness::verdict::Violation;
use harness::HarnessError;
use serde_json::json;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A pcap or pcapng file.
    file: PathBuf,
    /// Print the canonical trace too.
    #[arg(long)]
    trace: bool,
    /// Also write a self-contained HTML report (ladder diagram, time-sequence graph, findings).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the results as JSON to FILE (`-`: to stdout, instead of the text report).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Artifacts listed one by one before they are summarised.
const ARTIFACTS_LISTED: usize = 5;

/// `tcp.seq.accounting` findings that a capture which lost frames would show too.
fn capture_loss_symptom(id: &str, v: &Violation) -> bool {
    id == "tcp.seq.accounting"
        && (v.summary.contains("never sent") || v.summary.contains("has not sent"))
}

pub fn check(args: CheckArgs) -> Result<i32, HarnessError> {
    let file = &args.file;
    let capture = harness::pcapng::Capture::read(file)
        .map_err(|e| HarnessError::Usage(format!("{}: {e}", file.display())))?;
    let truncated: Vec<bool> = capture
        .records
        .iter()
        .map(|r| (r.frame.data.len() as u64) < u64::from(r.original_len))
        .collect();
    let mut warnings: Vec<String> = capture
        .warnings
        .iter()
        .filter(|w| w.kind != harness::pcapng::WarningKind::Truncated)
        .map(|w| {
            if w.kind == harness::pcapng::WarningKind::Dropped {
                format!("the capture may be lossy: {w}")
            } else {
                w.to_string()
            }
        })
        .collect();
    // A capture netconform wrote for a case names its property in the section comment: the roles are then the
    // lab hosts, and frames of a host that is not the property's subject are its stimuli (crafted by raw
    // sockets or the scripted peer, sometimes malformed on purpose), judged by neither `run` nor `check`.
    let case_property = capture.section_comments.iter().find_map(|c| {
        let id = c.strip_prefix("netconform ")?.split_whitespace().next()?;
        suites::all().into_iter().find(|p| p.info().id == id)
    });
    let frames: Vec<Frame> = capture.records.into_iter().map(|r| r.frame).collect();
    let (hosts, judged_hosts) = match &case_property {
        Some(p) => (
            harness::pipeline::lab_host_addrs(),
            Some(match p.info().subject {
                harness::property::Subject::B => vec![Host::B],
                harness::property::Subject::A | harness::property::Subject::Both => {
                    vec![Host::A, Host::B]
                }
            }),
        ),
        None => (HostAddrs::by_first_talker(&frames), None),
    };
    if let (Some(p), Some(hosts)) = (&case_property, &judged_hosts) {
        if hosts.len() == 1 {
            warnings.push(format!(
                "a netconform capture of {}: only host b (its subject) is judged; a's frames are the \
                 property's stimuli",
                p.info().id
            ));
        }
    }
    let trace = Trace::build(&frames, &hosts, None);

    // The four TCP invariants, order-free (no capture host).
    let ctx = harness::invariants::InvariantContext {
        capture_host: None,
        rcvbuf_limit: [None, None],
    };
    let mut invariant_findings = Vec::new();
    for (id, v) in harness::invariants::check(&trace, &ctx) {
        if capture_loss_symptom(id, &v) {
            let frames: Vec<String> = v.frames.iter().map(|n| format!("#{n}")).collect();
            warnings.push(format!(
                "the capture may be lossy: {} at frame(s) {} ({}; {}) — not blamed on the stack",
                v.summary,
                frames.join(", "),
                v.expected.as_deref().unwrap_or(""),
                v.actual.as_deref().unwrap_or("")
            ));
        } else {
            invariant_findings.push((id, v));
        }
    }
    let validity = harness::validity::check(
        &frames,
        &trace,
        &ValidityContext {
            capture_host: None,
            judged: judged_hosts,
            offline: Some(OfflineCapture { truncated }),
        },
    );
    let judged = harness::offline::judge(&trace);

    let count = |k: ConversationKind| trace.conversations.iter().filter(|c| c.kind == k).count();
    let (tcp, udp) = (count(ConversationKind::Tcp), count(ConversationKind::Udp));
    let ip_frames = trace
        .frames
        .iter()
        .filter(|f| f.packet.as_ref().map_or(true, |p| p.src_ip().is_some()))
        .count();

    // One result per rule: the invariants and validity rules, then the offline properties.
    let mut results: Vec<Judged> = Vec::new();
    let rule_ids = harness::invariants::INFO
        .iter()
        .chain(harness::validity::infos().iter())
        .map(|i| (i.id, i.clauses.first().copied().unwrap_or("")))
        .collect::<Vec<_>>();
    let all_findings: Vec<(&'static str, Violation)> = invariant_findings
        .into_iter()
        .chain(validity.findings)
        .collect();
    for (id, clause) in rule_ids {
        let mut found = all_findings.iter().filter(|(i, _)| *i == id);
        let applicable = match id {
            "udp.header.valid" => udp > 0,
            "ip.header.valid" => ip_frames > 0,
            _ => tcp > 0,
        };
        let outcome = match found.next() {
            Some((_, v)) => {
                let mut v = v.clone();
                let more = found.count();
                if more > 0 {
                    v.summary = format!("{} (and {more} more)", v.summary);
                }
                v.context = harness::runner::context_lines(&trace, &v.frames);
                Outcome::Fail { violation: v }
            }
            None if !applicable => Outcome::NotApplicable {
                why: match id {
                    "udp.header.valid" => "no UDP datagram in the capture",
                    "ip.header.valid" => "no IP packet in the capture",
                    _ => "no TCP conversation in the capture",
                }
                .into(),
            },
            None => Outcome::Pass { notes: Vec::new() },
        };
        results.push(Judged {
            id,
            clause,
            outcome,
        });
    }
    for mut j in judged {
        if let Outcome::Fail { violation } = &mut j.outcome {
            violation.context = harness::runner::context_lines(&trace, &violation.frames);
        }
        results.push(j);
    }
    let findings = all_findings.len()
        + results
            .iter()
            .filter(|j| {
                matches!(j.outcome, Outcome::Fail { .. })
                    && !all_findings.iter().any(|(id, _)| *id == j.id)
            })
            .count();

    let roles: Vec<String> = trace
        .conversations
        .iter()
        .filter(|c| matches!(c.kind, ConversationKind::Tcp | ConversationKind::Udp))
        .map(|c| {
            let end = |e: &harness::trace::Endpoint| match e.host {
                Some(h) => format!("{} {}:{}", h.role(), e.addr, e.port),
                None => format!("{}:{}", e.addr, e.port),
            };
            format!(
                "c{} {} {} → {} ({} frames)",
                c.id + 1,
                if c.kind == ConversationKind::Tcp {
                    "tcp"
                } else {
                    "udp"
                },
                end(&c.client),
                end(&c.server),
                c.frames.len()
            )
        })
        .collect();

    let to_stdout_json = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !to_stdout_json {
        if args.trace {
            print!("{}", trace.render());
        }
        println!(
            "{}: {} frames, {} TCP conversation(s), {} UDP flow(s), {} finding(s)",
            file.display(),
            frames.len(),
            tcp,
            udp,
            findings
        );
        for r in &roles {
            println!("  {r}");
        }
        for w in &warnings {
            println!("warning: {w}");
        }
        for a in validity.artifacts.iter().take(ARTIFACTS_LISTED) {
            println!(
                "capture artifact, not judged: frame #{}: {}",
                a.frame, a.what
            );
        }
        if validity.artifacts.len() > ARTIFACTS_LISTED {
            println!(
                "capture artifact, not judged: … {} more frame(s)",
                validity.artifacts.len() - ARTIFACTS_LISTED
            );
        }
        println!();
        for j in &results {
            match &j.outcome {
                Outcome::Pass { notes } if notes.is_empty() => println!("pass  {}", j.id),
                Outcome::Pass { notes } => println!("pass  {}: {}", j.id, notes.join("; ")),
                Outcome::NotApplicable { why } => println!("n/a   {}: {why}", j.id),
                Outcome::Fail { .. } => {}
            }
        }
        for j in &results {
            if let Outcome::Fail { violation } = &j.outcome {
                println!("\nFAIL {}: {violation}", j.id);
            }
        }
    }
    if let Some(path) = &args.json {
        let v = json!({
            "file": file.display().to_string(),
            "frames": frames.len(),
            "tcp_conversations": tcp,
            "udp_flows": udp,
            "conversations": roles,
            "warnings": warnings,
            "artifacts": validity.artifacts.iter().map(|a| json!({"frame": a.frame, "what": a.what})).collect::<Vec<_>>(),
            "results": results,
            "findings": findings,
        });
        let text = serde_json::to_string_pretty(&v).expect("serialises") + "\n";
        if to_stdout_json {
            print!("{text}");
        } else {
            std::fs::write(path, text).map_err(|e| HarnessError::output(path.display(), e))?;
        }
    }
    if let Some(path) = &args.html {
        // One drawing of the capture; its first finding is highlighted, every finding is listed.
        let failed: Vec<(&str, &Violation)> = results
            .iter()
            .filter_map(|j| match &j.outcome {
                Outcome::Fail { violation } => Some((j.id, violation)),
                _ => None,
            })
            .collect();
        let first = failed.first().map(|(id, v)| {
            let mut v = (*v).clone();
            v.summary = format!("[{id}] {}", v.summary);
            v
        });
        let detail: Vec<String> = failed.iter().map(|(id, v)| format!("{id}: {v}")).collect();
        let meta = harness::report::view::CaseMeta {
            property: "check".into(),
            suite: "check".into(),
            description: format!(
                "{} — wire validity, the TCP invariants and the wire-observable properties",
                file.display()
            ),
            status: if failed.is_empty() { "pass" } else { "fail" }.into(),
            detail: detail.join("\n\n"),
            pcap: Some(file.display().to_string()),
            ..Default::default()
        };
        let view = harness::report::view::CaseView::build(meta, &trace, first.as_ref(), None);
        harness::report::html::write_cases(
            &format!("netconform check — {}", file.display()),
            vec![("capture".into(), file.display().to_string())],
            vec![view],
            path,
        )?;
    }
    Ok(if findings == 0 { 0 } else { 1 })
}
