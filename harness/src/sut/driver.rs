//! The harness side of `netconform-sut/1` (`docs/driver-protocol.md`): one JSON object per line on the
//! SUT's stdin and stdout, the SUT's hello first, one request outstanding at a time.
//!
//! The driver knows the framing, the hello, ids and deadlines; it does not know what a request means (that
//! is [`crate::backend::driven`]). Everything the SUT does wrong becomes a [`SutFault`] naming the line or
//! the request: a case can then say "SUT hung on {"id":7,"op":"read",…}" instead of timing out silently.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::backend::Cap;

/// The protocol version this driver speaks.
pub const PROTOCOL: &str = "netconform-sut/1";
/// How long a SUT may take to say hello after it started.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The deadline of a request without `timeout_ms`.
pub const DEFAULT_REPLY: Duration = Duration::from_secs(1);
/// Added to a request's `timeout_ms` before the SUT counts as hung.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);
/// The longest line accepted from a SUT (a 64 KiB read, base64-encoded, fits with room to spare).
pub const MAX_LINE: usize = 1 << 20;

/// Unsolicited events kept per SUT (later ones are counted, not kept: a flooding SUT costs no memory).
pub const EVENTS_KEPT: usize = 1000;
/// Transcript lines kept per SUT (the latest ones).
pub const TRANSCRIPT_KEPT: usize = 2000;

/// What the SUT said in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub stack: String,
    pub families: Vec<String>,
    pub caps: Vec<Cap>,
    /// Capabilities the SUT declared that this version does not know (kept, never used).
    pub unknown_caps: Vec<String>,
}

impl Hello {
    pub fn has(&self, cap: Cap) -> bool {
        self.caps.contains(&cap)
    }
    pub fn ipv6(&self) -> bool {
        self.families.iter().any(|f| f == "ipv6")
    }
}

/// How a SUT broke the contract (or the harness's patience).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SutFault {
    /// No hello within [`HELLO_TIMEOUT`] of the start.
    NoHello { waited: Duration },
    /// A line that is not what the contract allows there.
    Protocol { line: String, why: String },
    /// No reply to `request` by its deadline plus [`REPLY_GRACE`].
    Hung { request: String, waited: Duration },
    /// The SUT closed its stdout (it exited, or is about to).
    Exited { during: String },
}

impl std::fmt::Display for SutFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SutFault::NoHello { waited } => write!(
                f,
                "SUT never said hello ({{\"hello\":\"{PROTOCOL}\",…}} on stdout) within {} s",
                waited.as_secs_f64()
            ),
            SutFault::Protocol { line, why } => {
                write!(f, "SUT protocol error: {why}: line {}", shorten(line, 200))
            }
            SutFault::Hung { request, waited } => write!(
                f,
                "SUT hung: no reply to {} within {} ms",
                shorten(request, 200),
                waited.as_millis()
            ),
            SutFault::Exited { during } => write!(f, "SUT closed its stdout during {during}"),
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A reply: `ok` with its fields, or the errno name the SUT gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub ok: bool,
    pub err: Option<String>,
    pub fields: Map<String, Value>,
}

impl Reply {
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(Value::as_u64)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.fields.get(key).and_then(Value::as_bool)
    }
}

enum Line {
    Text(String),
    TooLong(usize),
    Eof,
}

/// One line (without its `\n` or `\r\n`), never buffering more than [`MAX_LINE`] bytes of it.
fn read_line(reader: &mut impl BufRead) -> Line {
    let mut buf = Vec::new();
    loop {
        let avail = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => &[][..],
        };
        if avail.is_empty() {
            // A last line without its newline still counts; then the end.
            return if buf.is_empty() {
                Line::Eof
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            };
        }
        match avail.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&avail[..i]);
                reader.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if buf.len() > MAX_LINE {
                    return Line::TooLong(buf.len());
                }
                return Line::Text(String::from_utf8_lossy(&buf).into_owned());
            }
            None => {
                let n = avail.len();
                buf.extend_from_slice(avail);
                reader.consume(n);
                if buf.len() > MAX_LINE {
                    return Line::TooLong(buf.len());
                }
            }
        }
    }
}

/// One side of a conversation: which way a line went, and when (ms since the SUT started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    pub ms: u64,
    pub to_sut: bool,
    pub text: String,
}

/// A live conversation with a SUT.
pub struct Driver {
    stdin: Option<Box<dyn Write + Send>>,
    lines: Receiver<Line>,
    next_id: u64,
    pub hello: Hello,
    /// Unsolicited events (`{"event":…}`), in arrival order: recorded (the first [`EVENTS_KEPT`]), never
    /// required.
    pub events: Vec<Value>,
    /// Events beyond [`EVENTS_KEPT`], counted.
    pub events_dropped: u64,
    started: Instant,
    transcript: Vec<TranscriptLine>,
}

impl Driver {
    /// Starts reading `stdout` on a thread of its own and waits for the hello.
    pub fn start(
        stdin: Box<dyn Write + Send>,
        stdout: Box<dyn Read + Send>,
        hello_timeout: Duration,
    ) -> Result<Driver, SutFault> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sut-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let line = read_line(&mut reader);
                    let last = !matches!(line, Line::Text(_));
                    if tx.send(line).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(|e| SutFault::Protocol {
                line: String::new(),
                why: format!("could not start the reader thread: {e}"),
            })?;
        let mut driver = Driver {
            stdin: Some(stdin),
            lines: rx,
            next_id: 1,
            hello: Hello {
                stack: String::new(),
                families: Vec::new(),
                caps: Vec::new(),
                unknown_caps: Vec::new(),
            },
            events: Vec::new(),
            events_dropped: 0,
            started: Instant::now(),
            transcript: Vec::new(),
        };
        let deadline = Instant::now() + hello_timeout;
        let obj = match driver.next_object(deadline, "its start, before its hello")? {
            Some(o) => o,
            None => {
                return Err(SutFault::NoHello {
                    waited: hello_timeout,
                })
            }
        };
        driver.hello = parse_hello(&obj)?;
        Ok(driver)
    }

    /// Everything said so far, both ways.
    pub fn transcript(&self) -> &[TranscriptLine] {
        &self.transcript
    }

    /// Sends `op` with `fields` (an id is added; `timeout_ms` when given) and waits for its reply.
    pub fn request(
        &mut self,
        op: &str,
        mut fields: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, SutFault> {
        let id = self.next_id;
        self.next_id += 1;
        let mut obj = Map::new();
        obj.insert("id".into(), id.into());
        obj.insert("op".into(), op.into());
        obj.append(&mut fields);
        if let Some(t) = timeout {
            obj.insert("timeout_ms".into(), (t.as_millis() as u64).into());
        }
        let line = Value::Object(obj).to_string();
        self.send_line(&line)?;
        let waited = timeout.unwrap_or(DEFAULT_REPLY) + REPLY_GRACE;
        let deadline = Instant::now() + waited;
        let Some(reply) = self.next_object(deadline, &format!("request {line}"))? else {
            return Err(SutFault::Hung {
                request: line,
                waited,
            });
        };
        match reply.get("id") {
            Some(v) if v.as_u64() == Some(id) => parse_reply(reply),
            Some(v) => Err(SutFault::Protocol {
                line: Value::Object(reply.clone()).to_string(),
                why: format!("a reply to id {v} while request {id} was outstanding"),
            }),
            None => Err(SutFault::Protocol {
                line: Value::Object(reply).to_string(),
                why: "a reply without \"id\"".into(),
            }),
        }
    }

    /// Closes the SUT's stdin: the end of the case (the SUT aborts what is open and exits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn record(&mut self, to_sut: bool, text: String) {
        if self.transcript.len() >= TRANSCRIPT_KEPT {
            self.transcript.drain(..TRANSCRIPT_KEPT / 2);
        }
        self.transcript.push(TranscriptLine {
            ms: self.started.elapsed().as_millis() as u64,
            to_sut,
            text,
        });
    }

    fn send_line(&mut self, line: &str) -> Result<(), SutFault> {
        self.record(true, shorten(line, 4096));
        let during = format!("request {}", shorten(line, 120));
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(SutFault::Exited { during });
        };
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin
            .write_all(&bytes)
            .and_then(|_| stdin.flush())
            .map_err(|_| SutFault::Exited { during })
    }

    /// The next JSON object that is not an event, or `None` at the deadline.
    fn next_object(
        &mut self,
        deadline: Instant,
        waiting_for: &str,
    ) -> Result<Option<Map<String, Value>>, SutFault> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => Line::Eof,
            };
            let text = match line {
                Line::Text(t) => t,
                Line::TooLong(n) => {
                    return Err(SutFault::Protocol {
                        line: format!("({n} bytes without a newline)"),
                        why: format!("a line longer than {MAX_LINE} bytes"),
                    })
                }
                Line::Eof => {
                    return Err(SutFault::Exited {
                        during: shorten(waiting_for, 120),
                    })
                }
            };
            self.record(false, shorten(&text, 4096));
            if text.trim().is_empty() {
                continue;
            }
            let obj = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    return Err(SutFault::Protocol {
                        line: text,
                        why: "not a JSON object".into(),
                    })
                }
                Err(e) => {
                    return Err(SutFault::Protocol {
                        line: text,
                        why: format!("not JSON ({e})"),
                    })
                }
            };
            if obj.contains_key("event") && !obj.contains_key("id") {
                if self.events.len() < EVENTS_KEPT {
                    self.events.push(Value::Object(obj));
                } else {
                    self.events_dropped += 1;
                }
                continue;
            }
            return Ok(Some(obj));
        }
    }
}

fn parse_hello(obj: &Map<String, Value>) -> Result<Hello, SutFault> {
    let line = Value::Object(obj.clone()).to_string();
    let bad = |why: &str| SutFault::Protocol {
        line: line.clone(),
        why: why.to_string(),
    };
    match obj.get("hello").and_then(Value::as_str) {
        Some(PROTOCOL) => {}
        Some(other) => {
            return Err(bad(&format!(
                "hello speaks {other:?}; this netconform speaks {PROTOCOL:?}"
            )))
        }
        None => {
            return Err(bad(
                "the first line must be the hello ({\"hello\":\"netconform-sut/1\",…})",
            ))
        }
    }
    let strings = |key: &str| -> Result<Vec<String>, SutFault> {
        match obj.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("\"{key}\" must list strings")))
                })
                .collect(),
            Some(_) => Err(bad(&format!("\"{key}\" must be an array of strings"))),
        }
    };
    let mut families = strings("families")?;
    if families.is_empty() {
        families.push("ipv4".into());
    }
    let (mut caps, mut unknown_caps) = (Vec::new(), Vec::new());
    for c in strings("caps")? {
        match Cap::parse(&c) {
            Some(cap) => caps.push(cap),
            None => unknown_caps.push(c),
        }
    }
    if families.iter().any(|f| f == "ipv6") && !caps.contains(&Cap::Ipv6) {
        caps.push(Cap::Ipv6);
    }
    Ok(Hello {
        stack: obj
            .get("stack")
            .and_then(Value::as_str)
            .unwrap_or("unnamed SUT")
            .to_string(),
        families,
        caps,
        unknown_caps,
    })
}

fn parse_reply(obj: Map<String, Value>) -> Result<Reply, SutFault> {
    let ok = match obj.get("ok") {
        Some(Value::Bool(b)) => *b,
        _ => {
            return Err(SutFault::Protocol {
                line: Value::Object(obj).to_string(),
                why: "a reply needs \"ok\": true or false".into(),
            })
        }
    };
    let err = obj.get("err").and_then(Value::as_str).map(str::to_string);
    if !ok && err.is_none() {
        return Err(SutFault::Protocol {
            line: Value::Object(obj).to_string(),
            why: "a failed reply needs \"err\" (an errno name such as \"EAGAIN\")".into(),
        });
    }
    Ok(Reply {
        ok,
        err,
        fields: obj,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver over in-memory pipes: what the "SUT" says is `script`.
    fn driver_with(script: &str) -> (Result<Driver, SutFault>, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (sink, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut w = theirs.try_clone().unwrap();
        w.write_all(script.as_bytes()).unwrap();
        drop(w);
        drop(theirs);
        (
            Driver::start(Box::new(sink), Box::new(ours), Duration::from_millis(200)),
            std::os::unix::net::UnixStream::pair().unwrap().0,
        )
    }

    #[test]
    fn hello_is_parsed_with_caps_and_unknown_caps_kept() {
        let (d, _) = driver_with(
            "{\"event\":\"log\"}\n{\"hello\":\"netconform-sut/1\",\"stack\":\"toy\",\"families\":[\"ipv4\"],\"caps\":[\"tcp\",\"abort\",\"teleport\"],\"extra\":1}\n",
        );
        let d = d.unwrap();
        assert_eq!(d.hello.stack, "toy");
        assert_eq!(d.hello.caps, vec![Cap::Tcp, Cap::Abort]);
        assert_eq!(d.hello.unknown_caps, vec!["teleport".to_string()]);
        assert!(!d.hello.ipv6());
        assert_eq!(d.events.len(), 1);
    }

    #[test]
    fn garbage_silence_and_wrong_versions_are_named() {
        let (d, _) = driver_with("hello world\n");
        match d.err().unwrap() {
            SutFault::Protocol { line, why } => {
                assert_eq!(line, "hello world");
                assert!(why.starts_with("not JSON"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let (d, _) = driver_with("{\"hello\":\"netconform-sut/9\"}\n");
        assert!(d.err().unwrap().to_string().contains("netconform-sut/9"));
        let (d, _) = driver_with("");
        assert!(matches!(d.err().unwrap(), SutFault::Exited { .. }));
    }
}
