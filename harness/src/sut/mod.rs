//! Systems under test other than the lab's kernel: how one is described ([`SutSpec`]), how it is started
//! and ended safely ([`sandbox`]), and how it is spoken to ([`driver`], `netconform-sut/1`,
//! `docs/driver-protocol.md`).
//!
//! - [`driver`] — the line-JSON conversation: hello, requests with deadlines, faults named by their line.
//! - [`base64`] — the data fields' encoding.
//! - [`process`] — one SUT per case: started in the sandbox, said hello, ended with the case.
//! - [`sandbox`] — untrusted code: unprivileged uid, own PID and mount namespaces, rlimits, nothing left.
//! - [`stdio`] — a passive stdio SUT (`--sut-mode stdio`): its stdin is what it sends, its stdout what it
//!   received; started when a case asks, ended when its conversation is over.
//! - [`stdio_session`] — one connection with a passive stdio SUT, host a's kernel socket on the other end:
//!   the start and end of a case as `docs/driver-protocol.md` ("Other modes") says.

pub mod base64;
pub mod cgroup;
pub mod driver;
pub mod process;
pub mod sandbox;
pub mod stdio;
pub mod stdio_session;

use serde::{Deserialize, Serialize};

use crate::frame::Host;
use crate::lab::hosts::{host_addr, prefix_len};
use crate::sock::Family;

/// How the SUT reaches the wire (`docs/driver-protocol.md`, "Attachment").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Attach {
    /// A SOCK_SEQPACKET socketpair end as fd 3: one read or write is one IP packet.
    Fd,
    /// A TUN device by name in the SUT's namespace, no address (the SUT is the IP layer).
    Tun { name: String },
    /// A TAP device by name in the SUT's namespace (Ethernet frames; the SUT answers ARP and neighbour
    /// solicitations itself), no address; host a gets a TAP too, so a's kernel does ARP/ND.
    Tap { name: String },
    /// The lab addresses and routes on a device in the SUT's namespace: the kernel's own IP layer.
    Kernel,
}

impl Attach {
    /// `fd`, `tun`, `tun:NAME`, `tap`, `tap:NAME`, `kernel`.
    pub fn parse(s: &str) -> Option<Attach> {
        match s {
            "fd" => Some(Attach::Fd),
            "tun" => Some(Attach::Tun {
                name: DEFAULT_DEVICE.into(),
            }),
            "tap" => Some(Attach::Tap {
                name: DEFAULT_DEVICE.into(),
            }),
            "kernel" => Some(Attach::Kernel),
            _ => {
                let (tap, name) = match s.strip_prefix("tun:") {
                    Some(name) => (false, name),
                    None => (true, s.strip_prefix("tap:")?),
                };
                let valid = !name.is_empty() && name.len() < 16 && !name.contains('/');
                valid.then(|| match tap {
                    false => Attach::Tun { name: name.into() },
                    true => Attach::Tap { name: name.into() },
                })
            }
        }
    }

    pub fn device(&self) -> &str {
        match self {
            Attach::Fd => "fd3",
            Attach::Tun { name } | Attach::Tap { name } => name,
            Attach::Kernel => DEFAULT_DEVICE,
        }
    }
}

/// The device name the SUT's namespace gets unless overridden.
pub const DEFAULT_DEVICE: &str = "nc0";

/// A system under test on host b: a command template and its attachment. Part of every case file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SutSpec {
    /// The command, split like a shell would split it (no shell runs it), with `{addr}`, `{addr6}`,
    /// `{peer}`, `{peer6}`, `{dev}`, `{port}`, `{mtu}`, `{family}`, `{seed}`, `{case}` placeholders.
    pub command: Vec<String>,
    pub attach: Attach,
    /// Per-case wall-clock limit, ms: past it the SUT is ended and the case errors.
    pub case_limit_ms: u64,
    /// Driven (`netconform-sut/1` on stdin/stdout, the default) or a passive mode.
    #[serde(default, skip_serializing_if = "SutMode::is_driven")]
    pub mode: SutMode,
}

/// How netconform talks to the SUT (`docs/driver-protocol.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SutMode {
    /// `netconform-sut/1` requests on stdin, replies on stdout.
    #[default]
    Driven,
    /// One connection whose bytes are the SUT's stdio: stdin is what it sends, stdout what it received,
    /// stdin EOF is shutdown(WR), its exit the end of its part ("Other modes").
    Stdio { role: StdioRole, port: u16 },
}

impl SutMode {
    pub fn is_driven(&self) -> bool {
        matches!(self, SutMode::Driven)
    }
}

/// Which end of the connection a stdio SUT is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdioRole {
    /// It listens on its port; host a connects.
    Server,
    /// It connects to host a's port; host a listens.
    Client,
}

impl StdioRole {
    pub fn parse(s: &str) -> Option<StdioRole> {
        match s {
            "server" => Some(StdioRole::Server),
            "client" => Some(StdioRole::Client),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StdioRole::Server => "server",
            StdioRole::Client => "client",
        }
    }
}

/// The per-case wall-clock limit unless `--sut-limit` says otherwise.
pub const DEFAULT_CASE_LIMIT_MS: u64 = 60_000;

impl SutSpec {
    /// Splits `command` into words: whitespace separates, single and double quotes group, `\` escapes.
    pub fn split_command(command: &str) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut quote: Option<char> = None;
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some('"'), '\\') | (None, '\\') => match chars.next() {
                    Some(n) => {
                        cur.push(n);
                        in_word = true;
                    }
                    None => return Err("the command ends with a lone backslash".into()),
                },
                (Some(_), c) => cur.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, c) if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                (None, c) => {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote in the command"));
        }
        if in_word {
            words.push(cur);
        }
        if words.is_empty() {
            return Err("the command is empty".into());
        }
        Ok(words)
    }

    /// The environment of the SUT for one case (`docs/driver-protocol.md`, "Environment").
    pub fn environment(&self, ctx: &CaseContext) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "NETCONFORM_ADDR".into(),
                format!(
                    "{}/{}",
                    host_addr(Host::B, Family::Ipv4),
                    prefix_len(Family::Ipv4)
                ),
            ),
            (
                "NETCONFORM_ADDR6".into(),
                format!(
                    "{}/{}",
                    host_addr(Host::B, Family::Ipv6),
                    prefix_len(Family::Ipv6)
                ),
            ),
            (
                "NETCONFORM_PEER".into(),
                host_addr(Host::A, Family::Ipv4).to_string(),
            ),
            (
                "NETCONFORM_PEER6".into(),
                host_addr(Host::A, Family::Ipv6).to_string(),
            ),
            ("NETCONFORM_MTU".into(), ctx.mtu.to_string()),
            ("NETCONFORM_FAMILY".into(), ctx.family.name().to_string()),
            ("NETCONFORM_SEED".into(), ctx.seed.to_string()),
            ("NETCONFORM_CASE".into(), ctx.case.clone()),
        ];
        match &self.attach {
            Attach::Fd => env.push(("NETCONFORM_FD".into(), "3".into())),
            Attach::Tun { name } => env.push(("NETCONFORM_TUN".into(), name.clone())),
            Attach::Tap { name } => env.push(("NETCONFORM_TAP".into(), name.clone())),
            Attach::Kernel => env.push(("NETCONFORM_DEV".into(), DEFAULT_DEVICE.into())),
        }
        if let SutMode::Stdio { role, port } = self.mode {
            env.push(("NETCONFORM_ROLE".into(), role.name().into()));
            env.push(("NETCONFORM_PORT".into(), port.to_string()));
        }
        env
    }

    /// The command with its placeholders filled for one case.
    pub fn argv(&self, ctx: &CaseContext) -> Vec<String> {
        let env = self.environment(ctx);
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let subs = [
            ("{addr}", get("NETCONFORM_ADDR")),
            ("{addr6}", get("NETCONFORM_ADDR6")),
            ("{peer}", get("NETCONFORM_PEER")),
            ("{peer6}", get("NETCONFORM_PEER6")),
            ("{dev}", self.attach.device().to_string()),
            (
                "{port}",
                ctx.port
                    .or(match self.mode {
                        SutMode::Stdio { port, .. } => Some(port),
                        SutMode::Driven => None,
                    })
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
            ("{mtu}", get("NETCONFORM_MTU")),
            ("{family}", get("NETCONFORM_FAMILY")),
            ("{seed}", get("NETCONFORM_SEED")),
            ("{case}", get("NETCONFORM_CASE")),
        ];
        self.command
            .iter()
            .map(|w| {
                let mut w = w.clone();
                for (k, v) in &subs {
                    w = w.replace(k, v);
                }
                w
            })
            .collect()
    }
}

/// A `socketpair(AF_UNIX, SOCK_SEQPACKET)`: one read or write is one packet (the `fd` attachment).
pub fn seqpacket_pair() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds is a live array of two ints, as socketpair(2) requires.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both descriptors are new and owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// What a SUT is told about the case it serves.
#[derive(Debug, Clone)]
pub struct CaseContext {
    pub family: Family,
    pub seed: u64,
    /// `tcp.rst.closed_port#12`.
    pub case: String,
    pub mtu: u32,
    /// The port of a passive-mode SUT (unused by driven SUTs).
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_and_placeholders_fill() {
        assert_eq!(
            SutSpec::split_command(r#"my-sut --addr {addr} "two words" 'it''s' a\ b"#).unwrap(),
            vec!["my-sut", "--addr", "{addr}", "two words", "its", "a b"]
        );
        assert!(SutSpec::split_command("my-sut 'open").is_err());
        assert!(SutSpec::split_command("   ").is_err());
        let spec = SutSpec {
            command: vec![
                "sut".into(),
                "{addr}".into(),
                "--peer={peer}".into(),
                "{dev}".into(),
            ],
            attach: Attach::Tun {
                name: "tun144".into(),
            },
            case_limit_ms: DEFAULT_CASE_LIMIT_MS,
            mode: SutMode::Driven,
        };
        let ctx = CaseContext {
            family: Family::Ipv4,
            seed: 7,
            case: "p#1".into(),
            mtu: 1500,
            port: None,
        };
        assert_eq!(
            spec.argv(&ctx),
            vec!["sut", "198.18.0.2/24", "--peer=198.18.0.1", "tun144"]
        );
        let env = spec.environment(&ctx);
        assert!(env.contains(&("NETCONFORM_TUN".into(), "tun144".into())));
        assert!(env.contains(&("NETCONFORM_ADDR6".into(), "2001:db8::2/64".into())));
        assert_eq!(Attach::parse("tun:tun144"), Some(spec.attach.clone()));
        assert_eq!(Attach::parse("tun:"), None);
        assert_eq!(
            Attach::parse("tap:tap0"),
            Some(Attach::Tap {
                name: "tap0".into()
            })
        );
        assert_eq!(Attach::parse("tap:"), None);
        assert_eq!(Attach::parse("kernel"), Some(Attach::Kernel));
        // A stdio SUT is told its role and port, also as {port}.
        let stdio = SutSpec {
            command: vec!["sut".into(), "{port}".into()],
            mode: SutMode::Stdio {
                role: StdioRole::Client,
                port: 6001,
            },
            ..spec
        };
        assert_eq!(stdio.argv(&ctx), vec!["sut", "6001"]);
        let env = stdio.environment(&ctx);
        assert!(env.contains(&("NETCONFORM_ROLE".into(), "client".into())));
        assert!(env.contains(&("NETCONFORM_PORT".into(), "6001".into())));
    }
}
