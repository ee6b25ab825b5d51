//! Capture files: writing a case's frames as pcapng evidence, and reading pcapng or classic pcap
//! captures back for offline checks (`netconform check FILE`).
//!
//! Everything is hand-written against the format documents; there is no libpcap dependency.
//!
//! # pcapng (draft-ietf-opsawg-pcapng, "PCAP Now Generic (pcapng) Capture File Format")
//!
//! - §3.1 General Block Structure: `Block Type (u32) | Block Total Length (u32) | Block Body |
//!   Block Total Length (u32)`. The total length counts all of it, is a multiple of 4, and is
//!   repeated at the end so a reader can walk backwards.
//! - §3.5 Options: `Option Code (u16) | Option Length (u16) | Value`, the value padded to 32
//!   bits; a list ends with `opt_endofopt` (code 0, length 0). `opt_comment` (code 1) is UTF-8
//!   text without a terminating NUL and may appear in every block that has options.
//! - §4.1 Section Header Block, type `0x0A0D0D0A`: `Byte-Order Magic 0x1A2B3C4D (u32) | Major
//!   Version 1 (u16) | Minor Version 0 (u16) | Section Length (i64, -1 = not given) | Options`.
//!   Every field of a section is in the byte order that the magic reveals; a file may hold several
//!   sections, each with its own byte order and its own interfaces. Option `shb_userappl` (4).
//! - §4.2 Interface Description Block, type 1: `LinkType (u16) | Reserved (u16) | SnapLen (u32) |
//!   Options`. Interface IDs are the IDBs' order within the section. Options `if_name` (2),
//!   `if_description` (3), `if_tsresol` (9: one byte, most significant bit clear = 10^-n seconds,
//!   set = 2^-n seconds; default 10^-6) and `if_tsoffset` (14: i64 seconds added to every
//!   timestamp).
//! - §4.3 Enhanced Packet Block, type 6: `Interface ID (u32) | Timestamp (Upper) (u32) | Timestamp
//!   (Lower) (u32) | Captured Packet Length (u32) | Original Packet Length (u32) | Packet Data
//!   (padded to 32 bits) | Options`. The timestamp is one 64-bit count of `if_tsresol` units since
//!   the epoch. Option `epb_flags` (2, u32): bits 0-1 are the direction, `00` unknown, `01`
//!   inbound, `10` outbound.
//! - §4.4 Simple Packet Block, type 3: `Original Packet Length (u32) | Packet Data`; always
//!   interface 0 of the section, no timestamp, captured length = min(original length, SnapLen).
//! - Appendix (obsolete) Packet Block, type 2: as the EPB with a 16-bit interface ID and a 16-bit
//!   drop count; its `pack_flags` option has the EPB's code and layout.
//! - Every other block type (Name Resolution, Interface Statistics, Decryption Secrets, Custom,
//!   local-use) is skipped by its total length.
//!
//! # Classic pcap (draft-ietf-opsawg-pcap)
//!
//! - §4 File Header (24 bytes): `Magic | Major 2 (u16) | Minor 4 (u16) | Reserved1 | Reserved2 |
//!   SnapLen (u32) | LinkType and additional information (u32, LinkType in the low 16 bits)`.
//!   Magic `0xA1B2C3D4` means microsecond timestamps, `0xA1B23C4D` nanosecond ones; either may be
//!   stored in either byte order, which then holds for the whole file.
//! - §5 Packet Record: `Timestamp (seconds, u32) | Timestamp (µs or ns, u32) | Captured Packet
//!   Length (u32) | Original Packet Length (u32) | Packet Data` (no padding).
//!
//! # Link types (tcpdump.org LINKTYPE registry, draft-ietf-opsawg-pcaplinktype)
//!
//! 1 Ethernet → [`LinkType::Ethernet`]; 101 raw IP, 228 raw IPv4 and 229 raw IPv6 →
//! [`LinkType::RawIp`]; 113 Linux cooked capture (SLL, 16-byte header) and 276 Linux cooked
//! capture v2 (SLL2, 20-byte header) → the header is stripped, leaving [`LinkType::RawIp`], and its
//! packet type gives the direction (4 = outgoing → [`Direction::Outbound`], 0-3 = received →
//! [`Direction::Inbound`]). Frames of any other link type, and cooked frames that carry no IPv4 or
//! IPv6 packet, are skipped and counted in [`Capture::warnings`]; they are not errors.
//!
//! The writer always emits one little-endian section, nanosecond timestamps (`if_tsresol` = 9)
//! and SnapLen 262144, so its output is byte-identical on every host.
//!
//! [`Frame::origin`] is not stored: the reader sets it to `None`, and the caller, which knows
//! where each interface was captured, maps [`CapturedRecord::direction`] to a host.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::frame::{Frame, LinkType};

/// LINKTYPE_ETHERNET: Ethernet II frames.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// LINKTYPE_RAW: a bare IPv4 or IPv6 packet, version from the first nibble.
pub const LINKTYPE_RAW: u16 = 101;
/// LINKTYPE_LINUX_SLL: Linux "cooked" capture, 16-byte pseudo-header.
pub const LINKTYPE_LINUX_SLL: u16 = 113;
/// LINKTYPE_IPV4: a bare IPv4 packet.
pub const LINKTYPE_IPV4: u16 = 228;
/// LINKTYPE_IPV6: a bare IPv6 packet.
pub const LINKTYPE_IPV6: u16 = 229;
/// LINKTYPE_LINUX_SLL2: Linux "cooked" capture v2, 20-byte pseudo-header.
pub const LINKTYPE_LINUX_SLL2: u16 = 276;

/// The SnapLen the writer declares for every interface; longer frames are refused.
pub const SNAPLEN: u32 = 262_144;

// Block types (§3.1, §4, Appendix).
const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 0x0000_0001;
const BT_PB: u32 = 0x0000_0002;
const BT_SPB: u32 = 0x0000_0003;
const BT_NRB: u32 = 0x0000_0004;
const BT_ISB: u32 = 0x0000_0005;
const BT_EPB: u32 = 0x0000_0006;
const BT_DSB: u32 = 0x0000_000A;
const BT_CB_COPY: u32 = 0x0000_0BAD;
const BT_CB_NOCOPY: u32 = 0x4000_0BAD;

const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

// Option codes (§3.5, §4.1.1, §4.2.1, §4.3.1).
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;
const EPB_FLAGS: u16 = 2;

// Classic pcap magic numbers (draft-ietf-opsawg-pcap §4).
const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;

const PCAP_FILE_HEADER: &str = "pcap file header";
const PCAP_RECORD: &str = "pcap packet record";

/// Which way a frame crossed the capturing interface (`epb_flags` bits 0-1, §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Received on the interface (`epb_flags` direction `01`).
    Inbound,
    /// Sent from the interface (`epb_flags` direction `10`).
    Outbound,
}

impl Direction {
    /// The `epb_flags` value carrying this direction and nothing else.
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }

    /// The direction in bits 0-1 of `epb_flags`; `None` for "not available" (`00`) and for the
    /// undefined `11`.
    pub fn from_epb_flags(flags: u32) -> Option<Direction> {
        match flags & 0b11 {
            1 => Some(Direction::Inbound),
            2 => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// The pcap/pcapng LinkType code the writer uses for a [`LinkType`].
pub fn linktype_code(link: LinkType) -> u16 {
    match link {
        LinkType::Ethernet => LINKTYPE_ETHERNET,
        LinkType::RawIp => LINKTYPE_RAW,
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Bytes of zero padding that bring `len` to a multiple of 4.
fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// One block under construction, little-endian (§3.1). Its total length is filled in by
/// [`BlockBuf::finish`], which also closes a non-empty option list with `opt_endofopt`.
struct BlockBuf {
    buf: Vec<u8>,
    has_options: bool,
}

impl BlockBuf {
    fn new(block_type: u32) -> BlockBuf {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&block_type.to_le_bytes());
        buf.extend_from_slice(&[0; 4]); // Block Total Length, patched in finish().
        BlockBuf {
            buf,
            has_options: false,
        }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn padded(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len() + pad_len(data.len()), 0);
    }

    /// Appends one option (§3.5); values longer than the 16-bit option length are refused.
    fn option(&mut self, code: u16, name: &str, value: &[u8]) -> io::Result<()> {
        let len = u16::try_from(value.len()).map_err(|_| {
            invalid_input(format!(
                "pcapng option {name} is {} bytes long, the format allows at most 65535",
                value.len()
            ))
        })?;
        self.u16(code);
        self.u16(len);
        self.padded(value);
        self.has_options = true;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        if self.has_options {
            self.u16(OPT_ENDOFOPT);
            self.u16(0);
        }
        let total = self.buf.len() + 4;
        let total = u32::try_from(total)
            .map_err(|_| invalid_input(format!("pcapng block of {total} bytes is too large")))?;
        self.buf[4..8].copy_from_slice(&total.to_le_bytes());
        self.u32(total);
        Ok(self.buf)
    }
}

/// Writes one pcapng section: a Section Header Block, then Interface Description Blocks and
/// Enhanced Packet Blocks in the order they are added.
///
/// Output is little-endian with nanosecond timestamps. The writer does not buffer: wrap a file
/// in a [`BufWriter`]. Call [`PcapngWriter::finish`] to flush and get the sink back.
pub struct PcapngWriter<W: Write> {
    out: W,
    /// Link type of each interface, indexed by Interface ID.
    interfaces: Vec<LinkType>,
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a section: writes its Section Header Block with `shb_userappl`
    /// `"netconform <version>"` and, if given, `shb_comment` as `opt_comment`.
    pub fn new(mut out: W, shb_comment: Option<&str>) -> io::Result<Self> {
        let mut block = BlockBuf::new(BT_SHB);
        block.u32(BYTE_ORDER_MAGIC);
        block.u16(1); // Major Version
        block.u16(0); // Minor Version
        block.u64(u64::MAX); // Section Length -1: not specified
        if let Some(comment) = shb_comment {
            block.option(OPT_COMMENT, "opt_comment", comment.as_bytes())?;
        }
        let userappl = concat!("netconform ", env!("CARGO_PKG_VERSION"));
        block.option(SHB_USERAPPL, "shb_userappl", userappl.as_bytes())?;
        out.write_all(&block.finish()?)?;
        Ok(PcapngWriter {
            out,
            interfaces: Vec::new(),
        })
    }

    /// Declares an interface (Interface Description Block with `if_name`, `if_description` if
    /// given, and `if_tsresol` = 9) and returns its Interface ID, counting from 0.
    pub fn add_interface(
        &mut self,
        name: &str,
        link: LinkType,
        description: Option<&str>,
    ) -> io::Result<u32> {
        let id = u32::try_from(self.interfaces.len())
            .map_err(|_| invalid_input("too many pcapng interfaces".to_string()))?;
        let mut block = BlockBuf::new(BT_IDB);
        block.u16(linktype_code(link));
        block.u16(0); // Reserved
        block.u32(SNAPLEN);
        block.option(IF_NAME, "if_name", name.as_bytes())?;
        if let Some(description) = description {
            block.option(IF_DESCRIPTION, "if_description", description.as_bytes())?;
        }
        block.option(IF_TSRESOL, "if_tsresol", &[9])?;
        self.out.write_all(&block.finish()?)?;
        self.interfaces.push(link);
        Ok(id)
    }

    /// Writes `frame` as an Enhanced Packet Block on `interface` (an ID from
    /// [`PcapngWriter::add_interface`]), with `epb_flags` if a direction is given and
    /// `opt_comment` if a comment is given.
    ///
    /// Refuses (`InvalidInput`, nothing written) an unknown interface, a frame whose link type
    /// differs from the interface's, a frame longer than [`SNAPLEN`] and a comment over 65535
    /// bytes. `frame.origin` is not stored.
    pub fn write_frame(
        &mut self,
        interface: u32,
        frame: &Frame,
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let link = *self.interfaces.get(interface as usize).ok_or_else(|| {
            invalid_input(format!(
                "pcapng interface {interface} was never added ({} interfaces)",
                self.interfaces.len()
            ))
        })?;
        if frame.link != link {
            return Err(invalid_input(format!(
                "frame of link type {:?} written to pcapng interface {interface} of link type {link:?}",
                frame.link
            )));
        }
        let len = u32::try_from(frame.data.len())
            .ok()
            .filter(|&len| len <= SNAPLEN)
            .ok_or_else(|| {
                invalid_input(format!(
                    "frame of {} bytes exceeds the pcapng SnapLen {SNAPLEN}",
                    frame.data.len()
                ))
            })?;
        let mut block = BlockBuf::new(BT_EPB);
        block.u32(interface);
        block.u32((frame.ts_ns >> 32) as u32); // Timestamp (Upper)
        block.u32(frame.ts_ns as u32); // Timestamp (Lower)
        block.u32(len); // Captured Packet Length
        block.u32(len); // Original Packet Length: frames are never truncated
        block.padded(&frame.data);
        if let Some(direction) = direction {
            block.option(EPB_FLAGS, "epb_flags", &direction.epb_flags().to_le_bytes())?;
        }
        if let Some(comment) = comment {
            block.option(OPT_COMMENT, "opt_comment", comment.as_bytes())?;
        }
        self.out.write_all(&block.finish()?)
    }

    /// Flushes and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a whole case capture to `path` atomically: one section whose comment is
/// `case_comment`, the `interfaces` (name, link type) in order, so that interface `i` of `frames`
/// is `interfaces[i]`, then the frames with their directions.
///
/// The file is written to a temporary file in the same directory, synced and renamed over
/// `path`, so readers see either the old file or the complete new one. On error the temporary
/// file is removed and `path` is untouched.
pub fn write_case_pcapng(
    path: &Path,
    case_comment: &str,
    interfaces: &[(&str, LinkType)],
    frames: &[(u32, Frame, Option<Direction>)],
) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid_input(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written =
        write_case_to(file, case_comment, interfaces, frames).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn write_case_to(
    file: fs::File,
    case_comment: &str,
    interfaces: &[(&str, LinkType)],
    frames: &[(u32, Frame, Option<Direction>)],
) -> io::Result<()> {
    let mut writer = PcapngWriter::new(BufWriter::new(file), Some(case_comment))?;
    for (name, link) in interfaces {
        writer.add_interface(name, *link, None)?;
    }
    for (interface, frame, direction) in frames {
        writer.write_frame(*interface, frame, *direction, None)?;
    }
    let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Reader: public types
// ---------------------------------------------------------------------------------------------

/// One frame read from a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    /// Index of the interface in [`Capture::interfaces`]: counted over the whole file, so for a
    /// single-section pcapng file it is the Interface ID, and for classic pcap it is 0.
    pub interface: u32,
    /// The frame, `origin` always `None`.
    pub frame: Frame,
    /// From `epb_flags`, else from a Linux cooked header's packet type, else `None`.
    pub direction: Option<Direction>,
    /// The block's `opt_comment`s, joined by newlines.
    pub comment: Option<String>,
    /// The frame's length on the wire; more than `frame.data.len()` when the snaplen cut it.
    pub original_len: u32,
}

/// The kind of file that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcapng,
    /// Classic pcap; `nanosecond` for magic `0xA1B23C4D`, else microseconds.
    Pcap {
        nanosecond: bool,
    },
}

/// An interface of the capture (an IDB, or the file header of classic pcap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Index of the pcapng section it belongs to (0 for classic pcap).
    pub section: u32,
    /// `if_name`, if present.
    pub name: Option<String>,
    /// `if_description`, if present.
    pub description: Option<String>,
    /// The LinkType code as stored.
    pub linktype: u16,
    /// SnapLen as stored (0 = no limit in pcapng).
    pub snaplen: u32,
}

/// Why frames were skipped or are doubtful; see [`CaptureWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// Skipped: the interface's link type is not one this reader understands.
    UnsupportedLinkType { linktype: u16 },
    /// Skipped: a Linux cooked frame whose protocol is not IPv4 (0x0800) or IPv6 (0x86DD).
    NonIpCookedFrame { protocol: u16 },
    /// Skipped: a Linux cooked frame shorter than its pseudo-header.
    ShortCookedHeader,
    /// Kept: fewer bytes were captured than the frame had (snaplen cut it).
    Truncated,
    /// Kept: from a Simple Packet Block, which has no timestamp; `ts_ns` is 0.
    NoTimestamp,
    /// Not in the file: the capture lost frames, as an Interface Statistics Block says (`isb_ifdrop` +
    /// `isb_osdrop`, the largest count of the interface's blocks; `frames` is the count).
    Dropped,
}

/// A counted warning about frames of one interface. Not an error: the rest of the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureWarning {
    /// Index into [`Capture::interfaces`].
    pub interface: u32,
    pub kind: WarningKind,
    /// How many frames it concerns.
    pub frames: u64,
}

impl fmt::Display for CaptureWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (interface, n) = (self.interface, self.frames);
        match self.kind {
            WarningKind::UnsupportedLinkType { linktype } => write!(
                f,
                "interface {interface}: {n} frame(s) skipped: unsupported link type {linktype}"
            ),
            WarningKind::NonIpCookedFrame { protocol } => write!(
                f,
                "interface {interface}: {n} frame(s) skipped: Linux cooked capture of protocol \
                 0x{protocol:04x}, not IPv4 or IPv6"
            ),
            WarningKind::ShortCookedHeader => write!(
                f,
                "interface {interface}: {n} frame(s) skipped: shorter than the Linux cooked \
                 capture header"
            ),
            WarningKind::Truncated => write!(
                f,
                "interface {interface}: {n} frame(s) truncated by the capture snaplen"
            ),
            WarningKind::NoTimestamp => write!(
                f,
                "interface {interface}: {n} frame(s) from Simple Packet Blocks have no timestamp \
                 (set to 0)"
            ),
            WarningKind::Dropped => write!(
                f,
                "interface {interface}: the capture dropped {n} frame(s) (Interface Statistics \
                 Block)"
            ),
        }
    }
}

/// Everything read from a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub format: CaptureFormat,
    /// The `opt_comment`s of every Section Header Block, in file order.
    pub section_comments: Vec<String>,
    pub interfaces: Vec<InterfaceInfo>,
    /// The frames, in file order.
    pub records: Vec<CapturedRecord>,
    /// Counted warnings, ordered by interface; empty for a clean file.
    pub warnings: Vec<CaptureWarning>,
}

/// A capture file that cannot be read.
#[derive(Debug)]
pub enum PcapError {
    /// The file could not be read at all.
    Io { path: PathBuf, source: io::Error },
    /// The bytes are not a well-formed pcapng or pcap file.
    Malformed {
        /// Byte offset in the file where the problem was found.
        offset: usize,
        /// What was being read: a block type name, "pcap packet record", …
        block: String,
        message: String,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Io { path, source } => {
                write!(f, "cannot read capture file {}: {source}", path.display())
            }
            PcapError::Malformed {
                offset,
                block,
                message,
            } => write!(
                f,
                "malformed capture: {block} at byte offset {offset}: {message}"
            ),
        }
    }
}

impl Error for PcapError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PcapError::Io { source, .. } => Some(source),
            PcapError::Malformed { .. } => None,
        }
    }
}

fn malformed(offset: usize, block: &str, message: String) -> PcapError {
    PcapError::Malformed {
        offset,
        block: block.to_string(),
        message,
    }
}

/// Reads the frames of a pcapng or classic pcap file. Warnings are dropped: use
/// [`Capture::read`] to get them too.
pub fn read_capture(path: &Path) -> Result<Vec<CapturedRecord>, PcapError> {
    Capture::read(path).map(|capture| capture.records)
}

/// [`read_capture`] on bytes already in memory.
pub fn read_capture_bytes(bytes: &[u8]) -> Result<Vec<CapturedRecord>, PcapError> {
    Capture::from_bytes(bytes).map(|capture| capture.records)
}

impl Capture {
    /// Reads a whole pcapng or classic pcap file (into memory; captures are small).
    pub fn read(path: &Path) -> Result<Capture, PcapError> {
        let bytes = fs::read(path).map_err(|source| PcapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Capture::from_bytes(&bytes)
    }

    /// Parses a pcapng or classic pcap file, told apart by its first four bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Capture, PcapError> {
        let Some(magic) = bytes.first_chunk::<4>() else {
            return Err(malformed(
                0,
                "file header",
                format!("{} bytes are too few for a capture file", bytes.len()),
            ));
        };
        let le = u32::from_le_bytes(*magic);
        let be = u32::from_be_bytes(*magic);
        if le == BT_SHB {
            parse_pcapng(bytes)
        } else if le == PCAP_MAGIC_US || le == PCAP_MAGIC_NS {
            parse_pcap(bytes, Endian::Little)
        } else if be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS {
            parse_pcap(bytes, Endian::Big)
        } else {
            Err(malformed(
                0,
                "file header",
                format!("magic 0x{be:08x} is neither pcapng nor pcap"),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reader: bounds-checked field access
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }
}

/// Sequential, bounds-checked reads from one region of the file. Errors name the absolute byte
/// offset and `block`; nothing here can panic or allocate by a length read from the input.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Absolute file offset of `bytes[0]`.
    base: usize,
    endian: Endian,
    block: &'static str,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], base: usize, endian: Endian, block: &'static str) -> Fields<'a> {
        Fields {
            bytes,
            pos: 0,
            base,
            endian,
            block,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn error(&self, offset: usize, message: String) -> PcapError {
        malformed(offset, self.block, message)
    }

    /// The next `n` bytes; `what` names them in the error.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PcapError> {
        if n > self.remaining() {
            return Err(self.error(
                self.offset(),
                format!(
                    "truncated {what}: needs {n} bytes, only {} left",
                    self.remaining()
                ),
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// The next `n` bytes and their padding to 32 bits.
    fn take_padded(&mut self, n: usize, what: &str) -> Result<&'a [u8], PcapError> {
        let padded = n.saturating_add(pad_len(n));
        let data = self.take(padded, what)?;
        Ok(&data[..n])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PcapError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u16(&mut self, what: &str) -> Result<u16, PcapError> {
        Ok(self.endian.u16(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, PcapError> {
        Ok(self.endian.u32(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, PcapError> {
        Ok(self.endian.u64(self.array(what)?))
    }

    /// The option list that fills the rest of the body (§3.5). Stops at `opt_endofopt`; a list
    /// that just ends with the body (no `opt_endofopt`) is accepted.
    fn options(&mut self) -> Result<Vec<RawOption<'a>>, PcapError> {
        let mut options = Vec::new();
        while self.remaining() > 0 {
            let offset = self.offset();
            let code = self.u16("option code")?;
            let len = self.u16("option length")?;
            if code == OPT_ENDOFOPT {
                break;
            }
            let len = usize::from(len);
            if len + pad_len(len) > self.remaining() {
                return Err(self.error(
                    offset,
                    format!(
                        "option {code} of length {len} overruns the block ({} bytes left)",
                        self.remaining()
                    ),
                ));
            }
            let value = self.take_padded(len, "option value")?;
            options.push(RawOption {
                code,
                value,
                offset,
            });
        }
        Ok(options)
    }
}

struct RawOption<'a> {
    code: u16,
    value: &'a [u8],
    offset: usize,
}

impl RawOption<'_> {
    fn text(&self) -> String {
        String::from_utf8_lossy(self.value).into_owned()
    }

    /// The value as a fixed-size field, or an error naming the option.
    fn fixed<const N: usize>(&self, block: &str, name: &str) -> Result<[u8; N], PcapError> {
        self.value.try_into().map_err(|_| {
            malformed(
                self.offset,
                block,
                format!(
                    "option {name} has length {}, expected {N}",
                    self.value.len()
                ),
            )
        })
    }
}

/// All `opt_comment`s of an option list, joined by newlines.
fn comments(options: &[RawOption<'_>]) -> Option<String> {
    let texts: Vec<String> = options
        .iter()
        .filter(|o| o.code == OPT_COMMENT)
        .map(RawOption::text)
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// Reader: frames and link types
// ---------------------------------------------------------------------------------------------

/// Timestamp unit of an interface (`if_tsresol`, §4.2.1).
#[derive(Debug, Clone, Copy)]
enum TsResol {
    /// 10^-n seconds.
    Pow10(u8),
    /// 2^-n seconds.
    Pow2(u8),
}

impl TsResol {
    fn from_option(v: u8) -> TsResol {
        if v & 0x80 == 0 {
            TsResol::Pow10(v)
        } else {
            TsResol::Pow2(v & 0x7f)
        }
    }

    /// `ticks` units in nanoseconds, rounded down. Cannot overflow: ticks < 2^64 and the
    /// largest factor is 10^9 < 2^30.
    fn to_ns(self, ticks: u64) -> u128 {
        let ticks = u128::from(ticks);
        match self {
            TsResol::Pow10(n) if n <= 9 => ticks * 10u128.pow(u32::from(9 - n)),
            TsResol::Pow10(n) => match 10u128.checked_pow(u32::from(n - 9)) {
                Some(divisor) => ticks / divisor,
                None => 0,
            },
            TsResol::Pow2(n) => (ticks * 1_000_000_000) >> n,
        }
    }
}

/// The frame bytes, link type and direction a captured link-layer payload stands for, or why it
/// is skipped.
fn decode_link(linktype: u16, data: &[u8]) -> Result<Decoded<'_>, WarningKind> {
    // Linux cooked headers are in network byte order whatever the file's.
    let cooked = |header_len: usize, protocol_at: usize, packet_type: Option<u8>| {
        let header = data
            .get(..header_len)
            .ok_or(WarningKind::ShortCookedHeader)?;
        let protocol = u16::from_be_bytes([header[protocol_at], header[protocol_at + 1]]);
        if protocol != 0x0800 && protocol != 0x86DD {
            return Err(WarningKind::NonIpCookedFrame { protocol });
        }
        let direction = match packet_type {
            Some(0..=3) => Some(Direction::Inbound), // host, broadcast, multicast, otherhost
            Some(4) => Some(Direction::Outbound),    // outgoing
            _ => None,
        };
        Ok(Decoded {
            link: LinkType::RawIp,
            data: &data[header_len..],
            direction,
        })
    };
    match linktype {
        LINKTYPE_ETHERNET => Ok(Decoded {
            link: LinkType::Ethernet,
            data,
            direction: None,
        }),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Ok(Decoded {
            link: LinkType::RawIp,
            data,
            direction: None,
        }),
        // SLL: packet type (u16) | ARPHRD (u16) | addr len (u16) | addr (8) | protocol (u16)
        LINKTYPE_LINUX_SLL => {
            let packet_type = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            cooked(16, 14, packet_type.and_then(|t| u8::try_from(t).ok()))
        }
        // SLL2: protocol (u16) | reserved (u16) | ifindex (u32) | ARPHRD (u16) | packet type (u8)
        //       | addr len (u8) | addr (8)
        LINKTYPE_LINUX_SLL2 => cooked(20, 0, data.get(10).copied()),
        linktype => Err(WarningKind::UnsupportedLinkType { linktype }),
    }
}

struct Decoded<'a> {
    link: LinkType,
    data: &'a [u8],
    direction: Option<Direction>,
}

/// One captured packet as found in a block or record, before link-type decoding.
struct RawPacket<'a> {
    interface: u32,
    linktype: u16,
    ts_ns: u64,
    data: &'a [u8],
    original_len: u32,
    direction: Option<Direction>,
    comment: Option<String>,
    /// From a Simple Packet Block: `ts_ns` is a stand-in 0.
    no_timestamp: bool,
}

/// Accumulates what a parser finds.
struct Collector {
    section_comments: Vec<String>,
    interfaces: Vec<InterfaceInfo>,
    records: Vec<CapturedRecord>,
    warnings: BTreeMap<(u32, WarningKind), u64>,
}

/// `isb_ifdrop` and `isb_osdrop` (pcapng §4.6): frames dropped by the interface and by the capture.
const ISB_IFDROP: u16 = 5;
const ISB_OSDROP: u16 = 7;

impl Collector {
    fn new() -> Collector {
        Collector {
            section_comments: Vec::new(),
            interfaces: Vec::new(),
            records: Vec::new(),
            warnings: BTreeMap::new(),
        }
    }

    fn warn(&mut self, interface: u32, kind: WarningKind) {
        *self.warnings.entry((interface, kind)).or_insert(0) += 1;
    }

    fn packet(&mut self, packet: RawPacket<'_>) {
        match decode_link(packet.linktype, packet.data) {
            Ok(decoded) => {
                if (packet.data.len() as u64) < u64::from(packet.original_len) {
                    self.warn(packet.interface, WarningKind::Truncated);
                }
                if packet.no_timestamp {
                    self.warn(packet.interface, WarningKind::NoTimestamp);
                }
                self.records.push(CapturedRecord {
                    interface: packet.interface,
                    frame: Frame {
                        ts_ns: packet.ts_ns,
                        origin: None,
                        link: decoded.link,
                        data: decoded.data.to_vec(),
                    },
                    direction: packet.direction.or(decoded.direction),
                    comment: packet.comment,
                    original_len: packet.original_len,
                });
            }
            Err(kind) => self.warn(packet.interface, kind),
        }
    }

    fn finish(self, format: CaptureFormat) -> Capture {
        Capture {
            format,
            section_comments: self.section_comments,
            interfaces: self.interfaces,
            records: self.records,
            warnings: self
                .warnings
                .into_iter()
                .map(|((interface, kind), frames)| CaptureWarning {
                    interface,
                    kind,
                    frames,
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reader: pcapng
// ---------------------------------------------------------------------------------------------

fn block_name(block_type: u32) -> Option<&'static str> {
    Some(match block_type {
        BT_SHB => "Section Header Block",
        BT_IDB => "Interface Description Block",
        BT_PB => "Packet Block",
        BT_SPB => "Simple Packet Block",
        BT_NRB => "Name Resolution Block",
        BT_ISB => "Interface Statistics Block",
        BT_EPB => "Enhanced Packet Block",
        BT_DSB => "Decryption Secrets Block",
        BT_CB_COPY | BT_CB_NOCOPY => "Custom Block",
        _ => return None,
    })
}

fn block_label(block_type: u32) -> String {
    match block_name(block_type) {
        Some(name) => name.to_string(),
        None => format!("block of type 0x{block_type:08x}"),
    }
}

/// An interface of the current section.
struct Interface {
    /// Index in [`Capture::interfaces`].
    index: u32,
    linktype: u16,
    snaplen: u32,
    resol: TsResol,
    /// `if_tsoffset`, seconds.
    offset_s: i64,
}

impl Interface {
    fn ts_ns(&self, ticks: u64, f: &Fields<'_>, offset: usize) -> Result<u64, PcapError> {
        let ns = self.resol.to_ns(ticks) as i128 + i128::from(self.offset_s) * 1_000_000_000;
        u64::try_from(ns).map_err(|_| {
            f.error(
                offset,
                format!(
                    "timestamp {ticks} (if_tsresol {:?}, if_tsoffset {} s) is out of range",
                    self.resol, self.offset_s
                ),
            )
        })
    }
}

struct Section {
    /// Position of the section in the file, from 0.
    index: u32,
    endian: Endian,
    interfaces: Vec<Interface>,
}

impl Section {
    fn interface(&self, id: u32, f: &Fields<'_>, offset: usize) -> Result<&Interface, PcapError> {
        self.interfaces.get(id as usize).ok_or_else(|| {
            f.error(
                offset,
                format!(
                    "interface ID {id} has no Interface Description Block in this section \
                     ({} interfaces)",
                    self.interfaces.len()
                ),
            )
        })
    }
}

fn parse_pcapng(bytes: &[u8]) -> Result<Capture, PcapError> {
    let mut out = Collector::new();
    let mut section: Option<Section> = None;
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(head) = bytes[pos..].first_chunk::<12>() else {
            return Err(malformed(
                pos,
                "block header",
                format!(
                    "truncated: {} bytes left, a block needs at least 12",
                    bytes.len() - pos
                ),
            ));
        };
        let raw_type = [head[0], head[1], head[2], head[3]];
        let raw_total = [head[4], head[5], head[6], head[7]];
        let endian = if u32::from_le_bytes(raw_type) == BT_SHB {
            // The SHB type is a palindrome; the byte-order magic sets the order of the section.
            let magic = [head[8], head[9], head[10], head[11]];
            if u32::from_le_bytes(magic) == BYTE_ORDER_MAGIC {
                Endian::Little
            } else if u32::from_be_bytes(magic) == BYTE_ORDER_MAGIC {
                Endian::Big
            } else {
                return Err(malformed(
                    pos + 8,
                    "Section Header Block",
                    format!(
                        "byte-order magic 0x{:08x} is not 0x1a2b3c4d in either byte order",
                        u32::from_be_bytes(magic)
                    ),
                ));
            }
        } else {
            // from_bytes only calls this on input starting with an SHB.
            section.as_ref().map_or(Endian::Little, |s| s.endian)
        };
        let block_type = endian.u32(raw_type);
        let total = endian.u32(raw_total) as usize;
        if total < 12 || !total.is_multiple_of(4) {
            return Err(malformed(
                pos,
                &block_label(block_type),
                format!(
                    "block total length {total} is invalid (must be a multiple of 4, at least 12)"
                ),
            ));
        }
        if total > bytes.len() - pos {
            return Err(malformed(
                pos,
                &block_label(block_type),
                format!(
                    "truncated: block total length {total}, only {} bytes left",
                    bytes.len() - pos
                ),
            ));
        }
        let end = pos + total;
        let trailer = endian.u32([
            bytes[end - 4],
            bytes[end - 3],
            bytes[end - 2],
            bytes[end - 1],
        ]);
        if trailer as usize != total {
            return Err(malformed(
                end - 4,
                &block_label(block_type),
                format!("trailing block total length {trailer} differs from the leading {total}"),
            ));
        }
        let body = &bytes[pos + 8..end - 4];
        let name = block_name(block_type).unwrap_or("unknown block");
        let mut f = Fields::new(body, pos + 8, endian, name);
        match block_type {
            BT_SHB => {
                let index = section.as_ref().map_or(0, |s| s.index.saturating_add(1));
                section = Some(read_shb(&mut f, index, &mut out)?);
            }
            _ => {
                // Unreachable in practice: from_bytes only calls this on input that starts with
                // an SHB, which either parses or is an error.
                let Some(section) = section.as_mut() else {
                    return Err(f.error(pos, "no Section Header Block before it".to_string()));
                };
                match block_type {
                    BT_IDB => read_idb(&mut f, section, &mut out)?,
                    BT_EPB => read_epb(&mut f, section, &mut out, false)?,
                    BT_PB => read_epb(&mut f, section, &mut out, true)?,
                    BT_SPB => read_spb(&mut f, section, &mut out)?,
                    BT_ISB => read_isb(&mut f, section, &mut out)?,
                    _ => {} // §3.1: blocks a reader does not know are skipped.
                }
            }
        }
        pos = end;
    }
    Ok(out.finish(CaptureFormat::Pcapng))
}

fn read_shb(f: &mut Fields<'_>, index: u32, out: &mut Collector) -> Result<Section, PcapError> {
    f.u32("byte-order magic")?;
    let version_at = f.offset();
    let major = f.u16("major version")?;
    let minor = f.u16("minor version")?;
    if major != 1 {
        return Err(f.error(
            version_at,
            format!("unsupported pcapng version {major}.{minor} (only 1.x is defined)"),
        ));
    }
    f.u64("section length")?;
    let options = f.options()?;
    out.section_comments.extend(
        options
            .iter()
            .filter(|o| o.code == OPT_COMMENT)
            .map(RawOption::text),
    );
    Ok(Section {
        index,
        endian: f.endian,
        interfaces: Vec::new(),
    })
}

fn read_idb(
    f: &mut Fields<'_>,
    section: &mut Section,
    out: &mut Collector,
) -> Result<(), PcapError> {
    let start = f.offset();
    let linktype = f.u16("link type")?;
    f.u16("reserved")?;
    let snaplen = f.u32("snaplen")?;
    let mut info = InterfaceInfo {
        section: section.index,
        name: None,
        description: None,
        linktype,
        snaplen,
    };
    let mut resol = TsResol::Pow10(6);
    let mut offset_s = 0;
    for option in f.options()? {
        match option.code {
            IF_NAME => info.name = Some(option.text()),
            IF_DESCRIPTION => info.description = Some(option.text()),
            IF_TSRESOL => {
                let [v] = option.fixed::<1>(f.block, "if_tsresol")?;
                resol = TsResol::from_option(v);
            }
            IF_TSOFFSET => {
                offset_s = f.endian.u64(option.fixed::<8>(f.block, "if_tsoffset")?) as i64;
            }
            _ => {}
        }
    }
    let index = u32::try_from(out.interfaces.len())
        .map_err(|_| f.error(start, "too many interfaces".to_string()))?;
    out.interfaces.push(info);
    section.interfaces.push(Interface {
        index,
        linktype,
        snaplen,
        resol,
        offset_s,
    });
    Ok(())
}

/// An Enhanced Packet Block, or with `obsolete` the Packet Block of the appendix.
/// An Interface Statistics Block: its drop counters (cumulative, so the largest one counts).
fn read_isb(f: &mut Fields<'_>, section: &Section, out: &mut Collector) -> Result<(), PcapError> {
    let start = f.offset();
    let id = f.u32("interface ID")?;
    f.u32("timestamp (upper)")?;
    f.u32("timestamp (lower)")?;
    let mut dropped = 0u64;
    for option in f.options()? {
        if option.code == ISB_IFDROP || option.code == ISB_OSDROP {
            let v = f.endian.u64(option.fixed::<8>(f.block, "isb drop count")?);
            dropped = dropped.saturating_add(v);
        }
    }
    let interface = section.interface(id, f, start)?.index;
    if dropped > 0 {
        let e = out
            .warnings
            .entry((interface, WarningKind::Dropped))
            .or_insert(0);
        *e = (*e).max(dropped);
    }
    Ok(())
}

fn read_epb(
    f: &mut Fields<'_>,
    section: &Section,
    out: &mut Collector,
    obsolete: bool,
) -> Result<(), PcapError> {
    let start = f.offset();
    let id = if obsolete {
        let id = f.u16("interface ID")?;
        f.u16("drops count")?;
        u32::from(id)
    } else {
        f.u32("interface ID")?
    };
    let ts_at = f.offset();
    let ticks =
        (u64::from(f.u32("timestamp (upper)")?) << 32) | u64::from(f.u32("timestamp (lower)")?);
    let captured_len = f.u32("captured packet length")?;
    let original_len = f.u32("original packet length")?;
    let data = f.take_padded(captured_len as usize, "packet data")?;
    let options = f.options()?;
    let mut direction = None;
    for option in &options {
        if option.code == EPB_FLAGS {
            let flags = f.endian.u32(option.fixed::<4>(f.block, "epb_flags")?);
            direction = Direction::from_epb_flags(flags);
        }
    }
    let interface = section.interface(id, f, start)?;
    let ts_ns = interface.ts_ns(ticks, f, ts_at)?;
    out.packet(RawPacket {
        interface: interface.index,
        linktype: interface.linktype,
        ts_ns,
        data,
        original_len,
        direction,
        comment: comments(&options),
        no_timestamp: false,
    });
    Ok(())
}

fn read_spb(f: &mut Fields<'_>, section: &Section, out: &mut Collector) -> Result<(), PcapError> {
    let start = f.offset();
    let original_len = f.u32("original packet length")?;
    let interface = section.interface(0, f, start)?;
    let mut captured_len = (original_len as usize).min(f.remaining());
    if interface.snaplen != 0 {
        captured_len = captured_len.min(interface.snaplen as usize);
    }
    let data = f.take(captured_len, "packet data")?;
    out.packet(RawPacket {
        interface: interface.index,
        linktype: interface.linktype,
        ts_ns: 0,
        data,
        original_len,
        direction: None,
        comment: None,
        no_timestamp: true,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reader: classic pcap
// ---------------------------------------------------------------------------------------------

fn parse_pcap(bytes: &[u8], endian: Endian) -> Result<Capture, PcapError> {
    let mut out = Collector::new();
    let mut f = Fields::new(bytes, 0, endian, PCAP_FILE_HEADER);
    let magic = f.u32("magic")?;
    let nanosecond = magic == PCAP_MAGIC_NS;
    let version_at = f.offset();
    let major = f.u16("major version")?;
    let minor = f.u16("minor version")?;
    if major != 2 {
        return Err(f.error(
            version_at,
            format!("unsupported pcap version {major}.{minor} (only 2.x is defined)"),
        ));
    }
    f.u32("reserved1 (thiszone)")?;
    f.u32("reserved2 (sigfigs)")?;
    let snaplen = f.u32("snaplen")?;
    let linktype = (f.u32("link type")? & 0xFFFF) as u16;
    out.interfaces.push(InterfaceInfo {
        section: 0,
        name: None,
        description: None,
        linktype,
        snaplen,
    });
    f.block = PCAP_RECORD;
    let frac_ns: u64 = if nanosecond { 1 } else { 1_000 };
    while f.remaining() > 0 {
        let seconds = f.u32("timestamp (seconds)")?;
        let fraction = f.u32("timestamp (fraction)")?;
        let captured_len = f.u32("captured packet length")?;
        let original_len = f.u32("original packet length")?;
        let data = f.take(captured_len as usize, "packet data")?;
        out.packet(RawPacket {
            interface: 0,
            linktype,
            // Cannot overflow: < 2^32 * 10^9 + 2^32 * 10^3 < 2^63.
            ts_ns: u64::from(seconds) * 1_000_000_000 + u64::from(fraction) * frac_ns,
            data,
            original_len,
            direction: None,
            comment: None,
            no_timestamp: false,
        });
    }
    Ok(out.finish(CaptureFormat::Pcap { nanosecond }))
}

/// Writes the frames of one case: one interface per link type seen (`nc0@a` for the veth capture point in
/// host `a`), each frame's direction from its origin as seen from that point (left `a`: outbound; left `b`:
/// inbound), and `comment` as the section comment naming the case.
pub fn write_case_frames(path: &Path, comment: &str, frames: &[Frame]) -> io::Result<()> {
    let mut interfaces: Vec<(&str, LinkType)> = Vec::new();
    let mut records = Vec::with_capacity(frames.len());
    for frame in frames {
        let name = match frame.link {
            LinkType::Ethernet => "nc0@a",
            LinkType::RawIp => "relay",
        };
        let idx = match interfaces.iter().position(|(_, l)| *l == frame.link) {
            Some(i) => i,
            None => {
                interfaces.push((name, frame.link));
                interfaces.len() - 1
            }
        };
        let direction = frame.origin.map(|h| match h {
            crate::frame::Host::A => Direction::Outbound,
            crate::frame::Host::B => Direction::Inbound,
        });
        records.push((idx as u32, frame.clone(), direction));
    }
    if interfaces.is_empty() {
        interfaces.push(("nc0@a", LinkType::Ethernet));
    }
    write_case_pcapng(path, comment, &interfaces, &records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    // -----------------------------------------------------------------------------------------
    // Test data
    // -----------------------------------------------------------------------------------------

    fn frame(ts_ns: u64, link: LinkType, data: Vec<u8>) -> Frame {
        Frame {
            ts_ns,
            origin: None,
            link,
            data,
        }
    }

    /// RFC 1071 Internet checksum over `data`, starting from the partial sum `sum`.
    fn internet_checksum(data: &[u8], mut sum: u32) -> u16 {
        for chunk in data.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        !(sum as u16)
    }

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const IP_A: [u8; 4] = [192, 0, 2, 1];
    const IP_B: [u8; 4] = [192, 0, 2, 2];

    /// An IPv4+TCP packet from `a` to `b` (or back) with valid IP and TCP checksums.
    fn ipv4_tcp(from_a: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = if from_a { (IP_A, IP_B) } else { (IP_B, IP_A) };
        let (sport, dport): (u16, u16) = if from_a { (40000, 80) } else { (80, 40000) };
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4); // data offset: 5 words
        tcp.push(flags);
        tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let sum = internet_checksum(&pseudo, 0);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());

        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 6, 0, 0]); // id, DF, ttl, TCP, csum
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let sum = internet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&tcp);
        ip
    }

    fn ethernet(from_a: bool, ip: &[u8]) -> Vec<u8> {
        let (src, dst) = if from_a {
            (MAC_A, MAC_B)
        } else {
            (MAC_B, MAC_A)
        };
        let mut eth = Vec::new();
        eth.extend_from_slice(&dst);
        eth.extend_from_slice(&src);
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(ip);
        eth
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;

    /// A handshake, a data segment and a FIN as Ethernet frames, with their directions as seen
    /// on host a's interface.
    fn tcp_conversation(t0: u64) -> Vec<(Frame, Direction)> {
        let segments: [(bool, u32, u32, u8, &[u8]); 5] = [
            (true, 1000, 0, SYN, b""),
            (false, 5000, 1001, SYN | ACK, b""),
            (true, 1001, 5001, ACK, b""),
            (true, 1001, 5001, PSH | ACK, b"hello, rfc 9293"),
            (true, 1016, 5001, FIN | ACK, b""),
        ];
        segments
            .iter()
            .enumerate()
            .map(|(i, &(from_a, seq, ack, flags, payload))| {
                let data = ethernet(from_a, &ipv4_tcp(from_a, seq, ack, flags, payload));
                let ts = t0 + i as u64 * 1_000_123 + 7; // odd nanoseconds on purpose
                let direction = if from_a {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                (frame(ts, LinkType::Ethernet, data), direction)
            })
            .collect()
    }

    /// A fresh directory for one test (removed by the test when it passes) and a path in it.
    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "nc-pcapng-test-{}-{}",
            std::process::id(),
            name.replace('.', "-")
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A hand-assembled pcapng/pcap file in either byte order, for reader tests.
    struct Builder {
        big: bool,
        buf: Vec<u8>,
    }

    impl Builder {
        fn new(big: bool) -> Builder {
            Builder {
                big,
                buf: Vec::new(),
            }
        }
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn option(&self, body: &mut Vec<u8>, code: u16, value: &[u8]) {
            body.extend_from_slice(&self.u16(code));
            body.extend_from_slice(&self.u16(value.len() as u16));
            body.extend_from_slice(value);
            body.resize(body.len() + pad_len(value.len()), 0);
        }
        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
            let total = (body.len() + 12) as u32;
            let (t, l) = (self.u32(block_type), self.u32(total));
            self.buf.extend_from_slice(&t);
            self.buf.extend_from_slice(&l);
            self.buf.extend_from_slice(body);
            self.buf.extend_from_slice(&l);
            self
        }
        fn shb(&mut self, comment: Option<&str>) -> &mut Self {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(BYTE_ORDER_MAGIC));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            if let Some(c) = comment {
                self.option(&mut body, OPT_COMMENT, c.as_bytes());
                self.option(&mut body, OPT_ENDOFOPT, &[]);
            }
            self.block(BT_SHB, &body)
        }
        fn idb(&mut self, linktype: u16, snaplen: u32, tsresol: Option<u8>) -> &mut Self {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u16(linktype));
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&self.u32(snaplen));
            if let Some(r) = tsresol {
                self.option(&mut body, IF_TSRESOL, &[r]);
                self.option(&mut body, OPT_ENDOFOPT, &[]);
            }
            self.block(BT_IDB, &body)
        }
        fn epb(&mut self, iface: u32, ticks: u64, data: &[u8], flags: Option<u32>) -> &mut Self {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(iface));
            body.extend_from_slice(&self.u32((ticks >> 32) as u32));
            body.extend_from_slice(&self.u32(ticks as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(data);
            body.resize(body.len() + pad_len(data.len()), 0);
            if let Some(flags) = flags {
                let v = self.u32(flags);
                self.option(&mut body, EPB_FLAGS, &v);
                // No opt_endofopt: readers must accept a list that ends with the body.
            }
            self.block(BT_EPB, &body)
        }
        fn spb(&mut self, original_len: u32, data: &[u8]) -> &mut Self {
            let mut body = self.u32(original_len).to_vec();
            body.extend_from_slice(data);
            body.resize(body.len() + pad_len(data.len()), 0);
            self.block(BT_SPB, &body)
        }
        fn pcap_header(&mut self, magic: u32, linktype: u32) -> &mut Self {
            for field in [self.u32(magic), {
                let mut v = self.u16(2).to_vec();
                v.extend_from_slice(&self.u16(4));
                v.try_into().unwrap()
            }] {
                self.buf.extend_from_slice(&field);
            }
            for v in [0, 0, 65535, linktype] {
                let b = self.u32(v);
                self.buf.extend_from_slice(&b);
            }
            self
        }
        fn pcap_record(&mut self, sec: u32, frac: u32, data: &[u8], original: u32) -> &mut Self {
            for v in [sec, frac, data.len() as u32, original] {
                let b = self.u32(v);
                self.buf.extend_from_slice(&b);
            }
            self.buf.extend_from_slice(data);
            self
        }
    }

    fn raw_ip_packet() -> Vec<u8> {
        ipv4_tcp(true, 1, 2, ACK, b"x")
    }

    // -----------------------------------------------------------------------------------------
    // Writer and round trip
    // -----------------------------------------------------------------------------------------

    #[test]
    fn round_trip_preserves_frames_directions_comments_and_nanoseconds() {
        let eth = tcp_conversation(1_700_000_000_123_456_789);
        let mut w = PcapngWriter::new(Vec::new(), Some("case tcp.handshake seed 7")).unwrap();
        let if_eth = w
            .add_interface("veth-a", LinkType::Ethernet, Some("host a"))
            .unwrap();
        let if_raw = w.add_interface("tun0", LinkType::RawIp, None).unwrap();
        assert_eq!((if_eth, if_raw), (0, 1));
        let mut expected = Vec::new();
        for (i, (f, d)) in eth.into_iter().enumerate() {
            let comment = (i == 3).then_some("data segment ✓");
            w.write_frame(if_eth, &f, Some(d), comment).unwrap();
            expected.push((if_eth, f, Some(d), comment.map(String::from)));
        }
        // Raw IP with odd lengths (padding), extreme timestamps and no direction.
        for (ts, len) in [(0, 1), (u64::MAX, 21), ((1 << 32) - 1, 22), (1 << 32, 23)] {
            let mut data = raw_ip_packet();
            data.truncate(len);
            let f = frame(ts, LinkType::RawIp, data);
            w.write_frame(if_raw, &f, None, None).unwrap();
            expected.push((if_raw, f, None, None));
        }
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);

        let capture = Capture::from_bytes(&bytes).unwrap();
        assert_eq!(capture.format, CaptureFormat::Pcapng);
        assert_eq!(capture.section_comments, ["case tcp.handshake seed 7"]);
        assert!(capture.warnings.is_empty(), "{:?}", capture.warnings);
        assert_eq!(capture.interfaces.len(), 2);
        assert_eq!(capture.interfaces[0].name.as_deref(), Some("veth-a"));
        assert_eq!(capture.interfaces[0].description.as_deref(), Some("host a"));
        assert_eq!(capture.interfaces[0].linktype, LINKTYPE_ETHERNET);
        assert_eq!(capture.interfaces[0].snaplen, SNAPLEN);
        assert_eq!(capture.interfaces[1].name.as_deref(), Some("tun0"));
        assert_eq!(capture.interfaces[1].description, None);
        assert_eq!(capture.interfaces[1].linktype, LINKTYPE_RAW);
        assert_eq!(capture.records.len(), expected.len());
        for (record, (interface, frame, direction, comment)) in
            capture.records.iter().zip(&expected)
        {
            assert_eq!(record.interface, *interface);
            assert_eq!(&record.frame, frame);
            assert_eq!(record.direction, *direction);
            assert_eq!(&record.comment, comment);
        }
        assert_eq!(read_capture_bytes(&bytes).unwrap(), capture.records);
    }

    #[test]
    fn writer_output_layout_follows_the_spec() {
        let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
        w.add_interface("a", LinkType::Ethernet, None).unwrap();
        let f = frame(0x0000_0001_0000_0002, LinkType::Ethernet, vec![0xAA; 5]);
        w.write_frame(0, &f, Some(Direction::Outbound), None)
            .unwrap();
        let bytes = w.finish().unwrap();

        let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let le16 = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        // SHB
        assert_eq!(le32(0), BT_SHB);
        let shb_len = le32(4) as usize;
        assert_eq!(le32(8), BYTE_ORDER_MAGIC);
        assert_eq!((le16(12), le16(14)), (1, 0));
        assert_eq!(&bytes[16..24], &[0xff; 8]);
        assert_eq!(le16(24), SHB_USERAPPL);
        let appl_len = le16(26) as usize;
        assert_eq!(
            &bytes[28..28 + appl_len],
            concat!("netconform ", env!("CARGO_PKG_VERSION")).as_bytes()
        );
        assert_eq!(le32(shb_len - 8), 0, "opt_endofopt closes the options");
        assert_eq!(le32(shb_len - 4) as usize, shb_len);
        // IDB
        let idb = shb_len;
        assert_eq!(le32(idb), BT_IDB);
        let idb_len = le32(idb + 4) as usize;
        assert_eq!(le16(idb + 8), 1);
        assert_eq!(le32(idb + 12), SNAPLEN);
        assert_eq!((le16(idb + 16), le16(idb + 18)), (IF_NAME, 1));
        assert_eq!(&bytes[idb + 20..idb + 24], b"a\0\0\0");
        assert_eq!((le16(idb + 24), le16(idb + 26)), (IF_TSRESOL, 1));
        assert_eq!(bytes[idb + 28], 9);
        assert_eq!(le32(idb + 32), 0);
        assert_eq!(idb_len, 40);
        // EPB
        let epb = idb + idb_len;
        assert_eq!(le32(epb), BT_EPB);
        let epb_len = le32(epb + 4) as usize;
        assert_eq!(le32(epb + 8), 0, "interface ID");
        assert_eq!(
            (le32(epb + 12), le32(epb + 16)),
            (1, 2),
            "timestamp high, low"
        );
        assert_eq!((le32(epb + 20), le32(epb + 24)), (5, 5));
        assert_eq!(
            &bytes[epb + 28..epb + 36],
            &[0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0, 0, 0]
        );
        assert_eq!((le16(epb + 36), le16(epb + 38)), (EPB_FLAGS, 4));
        assert_eq!(le32(epb + 40), 2, "outbound");
        assert_eq!(le32(epb + 44), 0, "opt_endofopt");
        assert_eq!(le32(epb + 48) as usize, epb_len);
        assert_eq!(epb + epb_len, bytes.len());
    }

    #[test]
    fn writer_refuses_bad_input_without_writing() {
        let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
        w.add_interface("eth", LinkType::Ethernet, None).unwrap();
        let before = w.out.len();
        let eth = frame(1, LinkType::Ethernet, vec![0; 60]);
        let raw = frame(1, LinkType::RawIp, raw_ip_packet());
        let huge = frame(1, LinkType::Ethernet, vec![0; SNAPLEN as usize + 1]);
        let long_comment = "x".repeat(65_536);
        for result in [
            w.write_frame(1, &eth, None, None),
            w.write_frame(0, &raw, None, None),
            w.write_frame(0, &huge, None, None),
            w.write_frame(0, &eth, None, Some(&long_comment)),
        ] {
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(w.out.len(), before);
        let max = frame(1, LinkType::Ethernet, vec![0; SNAPLEN as usize]);
        w.write_frame(0, &max, None, Some(&long_comment[1..]))
            .unwrap();
        let records = read_capture_bytes(&w.finish().unwrap()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].frame, max);
    }

    #[test]
    fn write_case_pcapng_is_atomic_and_readable() {
        let path = temp_path("case.pcapng");
        fs::write(&path, b"old contents").unwrap();
        let frames: Vec<(u32, Frame, Option<Direction>)> = tcp_conversation(42)
            .into_iter()
            .map(|(f, d)| (0, f, Some(d)))
            .chain([(1, frame(7, LinkType::RawIp, raw_ip_packet()), None)])
            .collect();
        let interfaces = [("veth-a", LinkType::Ethernet), ("tun-b", LinkType::RawIp)];
        write_case_pcapng(&path, "case X", &interfaces, &frames).unwrap();
        let capture = Capture::read(&path).unwrap();
        assert_eq!(capture.section_comments, ["case X"]);
        let got: Vec<_> = capture
            .records
            .into_iter()
            .map(|r| (r.interface, r.frame, r.direction))
            .collect();
        assert_eq!(got, frames);

        // A failing write leaves the old file and no temporary file behind.
        let bad = [(5, frame(1, LinkType::RawIp, vec![0x45]), None)];
        let err = write_case_pcapng(&path, "case Y", &interfaces, &bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(read_capture(&path).unwrap().len(), frames.len());
        let dir = path.parent().unwrap();
        let leftovers: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    // -----------------------------------------------------------------------------------------
    // tshark interoperability
    // -----------------------------------------------------------------------------------------

    /// Runs a Wireshark tool; a missing tool fails the test with an install hint.
    fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
        match Command::new(tool).args(args).output() {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "`{tool}` is not installed: it is a test dependency of harness::pcapng \
                 (install it with `apt-get install tshark`)"
            ),
            Err(e) => panic!("cannot run {tool}: {e}"),
        }
    }

    /// tshark run as root says so on stderr; that line is about the environment, not the file.
    fn stderr_warnings(stderr: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !(l.starts_with("Running as user \"root\"") && l.ends_with("dangerous.")))
            .map(String::from)
            .collect()
    }

    #[test]
    fn tshark_reads_written_file_without_warnings() {
        let t0 = 1_700_000_000_123_456_789;
        let conversation = tcp_conversation(t0);
        let path = temp_path("tshark.pcapng");
        let file = fs::File::create(&path).unwrap();
        let mut w =
            PcapngWriter::new(BufWriter::new(file), Some("netconform case comment")).unwrap();
        w.add_interface("veth-a", LinkType::Ethernet, Some("host a side"))
            .unwrap();
        for (i, (f, d)) in conversation.iter().enumerate() {
            let comment = (i == 3).then_some("data segment");
            w.write_frame(0, f, Some(*d), comment).unwrap();
        }
        w.finish()
            .unwrap()
            .into_inner()
            .unwrap()
            .sync_all()
            .unwrap();
        let file = path.to_str().unwrap();

        let output = run_tool(
            "tshark",
            &[
                "-r",
                file,
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.number",
                "-e",
                "frame.comment",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.packet_flags_direction",
                "-e",
                "frame.p2p_dir",
                "-e",
                "ip.checksum.status",
                "-e",
                "tcp.checksum.status",
            ],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "tshark failed: {output:?}");
        let warnings = stderr_warnings(&output.stderr);
        assert!(warnings.is_empty(), "tshark warned: {warnings:?}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), conversation.len(), "{stdout}");
        for (i, (line, (f, d))) in lines.iter().zip(&conversation).enumerate() {
            let fields: Vec<&str> = line.split('|').collect();
            assert_eq!(fields.len(), 7, "{line}");
            assert_eq!(fields[0], (i + 1).to_string());
            let comment = if i == 3 { "data segment" } else { "" };
            assert_eq!(fields[1], comment, "{line}");
            let epoch = format!("{}.{:09}", f.ts_ns / 1_000_000_000, f.ts_ns % 1_000_000_000);
            assert_eq!(fields[2], epoch, "nanoseconds preserved: {line}");
            // epb_flags direction bits; p2p_dir: 0 sent, 1 received.
            let (flags, p2p) = match d {
                Direction::Inbound => ("0x00000001", "1"),
                Direction::Outbound => ("0x00000002", "0"),
            };
            assert_eq!(fields[3], flags, "{line}");
            assert_eq!(fields[4], p2p, "{line}");
            // Wireshark's checksum status: 0 bad, 1 good, 2 unverified, 3 not present.
            assert_eq!(fields[5], "1", "IPv4 checksum good: {line}");
            assert_eq!(fields[6], "1", "TCP checksum good: {line}");
        }

        // The section comment, as capinfos (shipped with tshark) sees it.
        let output = run_tool("capinfos", &["-k", "-c", file]);
        assert!(output.status.success(), "capinfos failed: {output:?}");
        let warnings = stderr_warnings(&output.stderr);
        assert!(warnings.is_empty(), "capinfos warned: {warnings:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("netconform case comment"), "{stdout}");
        assert!(stdout.contains("Number of packets:   5"), "{stdout}");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    // -----------------------------------------------------------------------------------------
    // Reader: pcapng variants
    // -----------------------------------------------------------------------------------------

    #[test]
    fn reads_big_endian_sections_with_power_of_two_resolution() {
        let ip = raw_ip_packet();
        let mut b = Builder::new(true);
        b.shb(Some("big"))
            .idb(LINKTYPE_RAW, 0, Some(0x80 | 10)) // 2^-10 s
            .idb(LINKTYPE_ETHERNET, 65535, Some(3)) // ms
            .epb(0, 3 * 1024 + 512, &ip, Some(1))
            .epb(1, 1_500, &ethernet(true, &ip), Some(0x0000_0102));
        let capture = Capture::from_bytes(&b.buf).unwrap();
        assert_eq!(capture.section_comments, ["big"]);
        let r = &capture.records;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].frame.ts_ns, 3_500_000_000);
        assert_eq!(r[0].frame.link, LinkType::RawIp);
        assert_eq!(r[0].frame.data, ip);
        assert_eq!(r[0].direction, Some(Direction::Inbound));
        assert_eq!(r[1].frame.ts_ns, 1_500_000_000);
        assert_eq!(r[1].frame.link, LinkType::Ethernet);
        assert_eq!(r[1].direction, Some(Direction::Outbound));
        assert_eq!(r[1].frame.origin, None);
    }

    #[test]
    fn default_resolution_is_microseconds_and_tsoffset_applies() {
        let mut b = Builder::new(false);
        b.shb(None).idb(LINKTYPE_RAW, 0, None);
        // A second IDB with if_tsoffset = 100 s, built by hand.
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        b.option(&mut body, IF_TSOFFSET, &100i64.to_le_bytes());
        b.block(BT_IDB, &body);
        b.epb(0, 1_000_001, &[0x45], None)
            .epb(1, 2, &[0x45], Some(3)); // direction 11: undefined
        let r = read_capture_bytes(&b.buf).unwrap();
        assert_eq!(r[0].frame.ts_ns, 1_000_001_000);
        assert_eq!(r[1].frame.ts_ns, 100_000_002_000);
        assert_eq!(r[1].direction, None);
    }

    #[test]
    fn interface_statistics_drops_become_a_warning_with_the_largest_count() {
        let ip = raw_ip_packet();
        let mut b = Builder::new(false);
        b.shb(None).idb(LINKTYPE_RAW, 0, None).epb(0, 1, &ip, None);
        for (ifdrop, osdrop) in [(2u64, 1u64), (5, 2)] {
            let mut body = vec![0u8; 12];
            b.option(&mut body, ISB_IFDROP, &ifdrop.to_le_bytes());
            b.option(&mut body, ISB_OSDROP, &osdrop.to_le_bytes());
            b.block(BT_ISB, &body);
        }
        let capture = Capture::from_bytes(&b.buf).unwrap();
        assert_eq!(capture.records[0].original_len, ip.len() as u32);
        assert_eq!(
            capture.warnings,
            [CaptureWarning {
                interface: 0,
                kind: WarningKind::Dropped,
                frames: 7
            }]
        );
        assert!(capture.warnings[0]
            .to_string()
            .contains("dropped 7 frame(s)"));
    }

    #[test]
    fn reads_simple_packet_blocks_and_skips_unknown_blocks() {
        let ip = raw_ip_packet();
        let mut b = Builder::new(false);
        b.shb(None)
            .block(BT_NRB, &[0, 0, 0, 0])
            .idb(LINKTYPE_RAW, 10, None)
            .block(0x8000_1234, &[1, 2, 3, 4, 5, 6, 7, 8])
            .block(BT_CB_COPY, &[0xde, 0xad, 0xbe, 0xef])
            .spb(ip.len() as u32, &ip) // cut to SnapLen 10
            .block(BT_ISB, &[0; 12])
            .spb(3, &ip[..3]);
        let capture = Capture::from_bytes(&b.buf).unwrap();
        let r = &capture.records;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].frame.data, &ip[..10]);
        assert_eq!(r[0].frame.ts_ns, 0);
        assert_eq!(r[1].frame.data, &ip[..3]);
        assert_eq!(
            capture.warnings,
            [
                CaptureWarning {
                    interface: 0,
                    kind: WarningKind::Truncated,
                    frames: 1
                },
                CaptureWarning {
                    interface: 0,
                    kind: WarningKind::NoTimestamp,
                    frames: 2
                },
            ]
        );
    }

    #[test]
    fn multiple_sections_number_interfaces_across_the_file() {
        let mut first = PcapngWriter::new(Vec::new(), Some("one")).unwrap();
        first.add_interface("x", LinkType::RawIp, None).unwrap();
        first
            .write_frame(0, &frame(5, LinkType::RawIp, vec![0x45]), None, None)
            .unwrap();
        let mut bytes = first.finish().unwrap();
        let mut b = Builder::new(true);
        b.shb(Some("two"))
            .idb(LINKTYPE_ETHERNET, 0, Some(9))
            .idb(LINKTYPE_RAW, 0, Some(9))
            .epb(1, 6, &[0x60], None)
            .epb(0, 7, &[0xff; 14], Some(2));
        bytes.extend_from_slice(&b.buf);
        let capture = Capture::from_bytes(&bytes).unwrap();
        assert_eq!(capture.section_comments, ["one", "two"]);
        let sections: Vec<u32> = capture.interfaces.iter().map(|i| i.section).collect();
        assert_eq!(sections, [0, 1, 1]);
        let got: Vec<(u32, u64)> = capture
            .records
            .iter()
            .map(|r| (r.interface, r.frame.ts_ns))
            .collect();
        assert_eq!(got, [(0, 5), (2, 6), (1, 7)]);

        // Interface 1 exists in the first section only after the second SHB: a reference to it
        // from the first section is an error.
        let mut bad = PcapngWriter::new(Vec::new(), None)
            .unwrap()
            .finish()
            .unwrap();
        bad.extend_from_slice(&Builder::new(false).shb(None).epb(0, 1, &[1], None).buf);
        let err = Capture::from_bytes(&bad).unwrap_err().to_string();
        assert!(err.contains("Enhanced Packet Block"), "{err}");
        assert!(err.contains("interface ID 0"), "{err}");
    }

    #[test]
    fn linux_cooked_headers_are_stripped_and_give_the_direction() {
        let ip = raw_ip_packet();
        let sll = |packet_type: u16, protocol: u16| {
            let mut h = packet_type.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 1, 0, 6, 2, 0, 0, 0, 0, 0x0a, 0, 0]);
            h.extend_from_slice(&protocol.to_be_bytes());
            h.extend_from_slice(&ip);
            h
        };
        let sll2 = |packet_type: u8, protocol: u16| {
            let mut h = protocol.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0, 0, 0, 0, 7, 0, 1, packet_type, 6]);
            h.extend_from_slice(&[2, 0, 0, 0, 0, 0x0b, 0, 0]);
            h.extend_from_slice(&ip);
            h
        };
        let mut b = Builder::new(false);
        b.shb(None)
            .idb(LINKTYPE_LINUX_SLL, 0, None)
            .idb(LINKTYPE_LINUX_SLL2, 0, None)
            .epb(0, 1, &sll(4, 0x0800), None)
            .epb(0, 2, &sll(0, 0x86DD), None)
            .epb(0, 3, &sll(4, 0x0806), None) // ARP: skipped
            .epb(0, 4, &[0, 4], None) // short: skipped
            .epb(1, 5, &sll2(4, 0x0800), None)
            .epb(1, 6, &sll2(1, 0x0800), Some(2)) // epb_flags win over the packet type
            .epb(1, 7, &sll2(6, 0x0800), None);
        let capture = Capture::from_bytes(&b.buf).unwrap();
        let got: Vec<(u64, Option<Direction>)> = capture
            .records
            .iter()
            .map(|r| (r.frame.ts_ns / 1000, r.direction))
            .collect();
        use Direction::*;
        assert_eq!(
            got,
            [
                (1, Some(Outbound)),
                (2, Some(Inbound)),
                (5, Some(Outbound)),
                (6, Some(Outbound)),
                (7, None)
            ]
        );
        for r in &capture.records {
            assert_eq!(r.frame.link, LinkType::RawIp);
            assert_eq!(r.frame.data, ip);
        }
        let warnings: Vec<String> = capture.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "interface 0: 1 frame(s) skipped: Linux cooked capture of protocol 0x0806, not \
                 IPv4 or IPv6",
                "interface 0: 1 frame(s) skipped: shorter than the Linux cooked capture header",
            ]
        );
    }

    #[test]
    fn unknown_link_type_is_a_counted_warning() {
        let mut b = Builder::new(false);
        b.shb(None)
            .idb(105, 0, None) // IEEE 802.11
            .idb(LINKTYPE_IPV6, 0, None)
            .idb(LINKTYPE_IPV4, 0, None)
            .epb(0, 1, &[1, 2, 3], None)
            .epb(1, 2, &[0x60], None)
            .epb(0, 3, &[1, 2, 3], None)
            .epb(2, 4, &[0x45], None);
        let capture = Capture::from_bytes(&b.buf).unwrap();
        assert_eq!(capture.records.len(), 2);
        assert!(capture
            .records
            .iter()
            .all(|r| r.frame.link == LinkType::RawIp));
        assert_eq!(
            capture.warnings,
            [CaptureWarning {
                interface: 0,
                kind: WarningKind::UnsupportedLinkType { linktype: 105 },
                frames: 2
            }]
        );
        assert_eq!(
            capture.warnings[0].to_string(),
            "interface 0: 2 frame(s) skipped: unsupported link type 105"
        );
    }

    #[test]
    fn obsolete_packet_block_is_read() {
        let mut b = Builder::new(true);
        b.shb(None).idb(LINKTYPE_RAW, 0, Some(9));
        let mut body = Vec::new();
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&[0x45, 0, 0, 0]);
        b.option(&mut body, EPB_FLAGS, &1u32.to_be_bytes());
        b.option(&mut body, OPT_COMMENT, b"old");
        b.block(BT_PB, &body);
        let r = read_capture_bytes(&b.buf).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].frame.ts_ns, (1 << 32) + 2);
        assert_eq!(r[0].frame.data, [0x45]);
        assert_eq!(r[0].direction, Some(Direction::Inbound));
        assert_eq!(r[0].comment.as_deref(), Some("old"));
    }

    // -----------------------------------------------------------------------------------------
    // Reader: classic pcap
    // -----------------------------------------------------------------------------------------

    #[test]
    fn reads_classic_pcap_in_both_byte_orders_and_resolutions() {
        let ip = raw_ip_packet();
        let eth = ethernet(false, &ip);
        for big in [false, true] {
            for (magic, nanosecond, frac_ns) in
                [(PCAP_MAGIC_US, false, 1000), (PCAP_MAGIC_NS, true, 1)]
            {
                let mut b = Builder::new(big);
                b.pcap_header(magic, u32::from(LINKTYPE_ETHERNET))
                    .pcap_record(1_700_000_000, 999_999, &eth, eth.len() as u32)
                    .pcap_record(1_700_000_001, 5, &eth[..20], eth.len() as u32);
                let capture = Capture::from_bytes(&b.buf).unwrap();
                assert_eq!(capture.format, CaptureFormat::Pcap { nanosecond });
                assert_eq!(capture.interfaces[0].linktype, LINKTYPE_ETHERNET);
                assert_eq!(capture.interfaces[0].snaplen, 65535);
                let r = &capture.records;
                assert_eq!(r.len(), 2);
                assert_eq!(
                    r[0].frame.ts_ns,
                    1_700_000_000_000_000_000 + 999_999 * frac_ns
                );
                assert_eq!(r[0].frame.data, eth);
                assert_eq!(r[0].frame.link, LinkType::Ethernet);
                assert_eq!(r[1].frame.ts_ns, 1_700_000_001_000_000_000 + 5 * frac_ns);
                assert_eq!(r[1].frame.data, &eth[..20]);
                assert!(r
                    .iter()
                    .all(|r| r.direction.is_none() && r.comment.is_none()));
                assert_eq!(
                    capture.warnings,
                    [CaptureWarning {
                        interface: 0,
                        kind: WarningKind::Truncated,
                        frames: 1
                    }]
                );
            }
        }
    }

    #[test]
    fn classic_pcap_cooked_capture_gives_directions() {
        let ip = raw_ip_packet();
        let mut out = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0x0a, 0, 0, 0x08, 0x00];
        out.extend_from_slice(&ip);
        let mut b = Builder::new(false);
        b.pcap_header(PCAP_MAGIC_US, u32::from(LINKTYPE_LINUX_SLL))
            .pcap_record(1, 2, &out, out.len() as u32);
        let r = read_capture_bytes(&b.buf).unwrap();
        assert_eq!(r[0].direction, Some(Direction::Outbound));
        assert_eq!(r[0].frame.data, ip);
        assert_eq!(r[0].frame.link, LinkType::RawIp);
        assert_eq!(r[0].frame.ts_ns, 1_000_002_000);
    }

    #[test]
    fn empty_captures_are_valid() {
        let header_only = Builder::new(false)
            .pcap_header(PCAP_MAGIC_NS, 101)
            .buf
            .clone();
        assert!(read_capture_bytes(&header_only).unwrap().is_empty());
        let shb_only = PcapngWriter::new(Vec::new(), None)
            .unwrap()
            .finish()
            .unwrap();
        assert!(read_capture_bytes(&shb_only).unwrap().is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Reader: errors
    // -----------------------------------------------------------------------------------------

    fn malformed_at(bytes: &[u8]) -> (usize, String, String) {
        match Capture::from_bytes(bytes).unwrap_err() {
            PcapError::Malformed {
                offset,
                block,
                message,
            } => (offset, block, message),
            e => panic!("{e}"),
        }
    }

    fn sample_pcapng() -> Vec<u8> {
        let mut w = PcapngWriter::new(Vec::new(), Some("sample")).unwrap();
        w.add_interface("veth-a", LinkType::Ethernet, Some("a"))
            .unwrap();
        w.add_interface("tun", LinkType::RawIp, None).unwrap();
        for (i, (f, d)) in tcp_conversation(1_700_000_000_000_000_001)
            .iter()
            .enumerate()
        {
            w.write_frame(0, f, Some(*d), (i % 2 == 0).then_some("c"))
                .unwrap();
        }
        w.write_frame(1, &frame(9, LinkType::RawIp, raw_ip_packet()), None, None)
            .unwrap();
        w.finish().unwrap()
    }

    fn sample_pcap() -> Vec<u8> {
        let eth = ethernet(true, &raw_ip_packet());
        let mut b = Builder::new(true);
        b.pcap_header(PCAP_MAGIC_NS, 1);
        for i in 0..4 {
            b.pcap_record(i, i * 3, &eth[..eth.len() - i as usize], eth.len() as u32);
        }
        b.buf
    }

    #[test]
    fn errors_name_offset_and_block() {
        let good = sample_pcapng();
        let shb_len = u32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
        let idb_len =
            u32::from_le_bytes(good[shb_len + 4..shb_len + 8].try_into().unwrap()) as usize;
        let idb2_len = u32::from_le_bytes(
            good[shb_len + idb_len + 4..shb_len + idb_len + 8]
                .try_into()
                .unwrap(),
        ) as usize;
        let epb = shb_len + idb_len + idb2_len;

        // Truncated in the middle of the first EPB.
        let (offset, block, message) = malformed_at(&good[..epb + 20]);
        assert_eq!((offset, block.as_str()), (epb, "Enhanced Packet Block"));
        assert!(message.contains("truncated"), "{message}");

        // Trailing length mismatch.
        let mut bad = good.clone();
        bad[shb_len - 4] ^= 4;
        let (offset, block, _) = malformed_at(&bad);
        assert_eq!(
            (offset, block.as_str()),
            (shb_len - 4, "Section Header Block")
        );

        // Captured length overrunning the block.
        let mut bad = good.clone();
        bad[epb + 20..epb + 24].copy_from_slice(&1000u32.to_le_bytes());
        let (offset, block, message) = malformed_at(&bad);
        assert_eq!(
            (offset, block.as_str()),
            (epb + 28, "Enhanced Packet Block")
        );
        assert!(message.contains("packet data"), "{message}");

        // Unknown interface.
        let mut bad = good.clone();
        bad[epb + 8] = 7;
        let err = Capture::from_bytes(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "malformed capture: Enhanced Packet Block at byte offset {}: interface ID 7 has \
                 no Interface Description Block in this section (2 interfaces)",
                epb + 8
            )
        );

        // Bad byte-order magic, bad version, bad block length, unknown format.
        let mut bad = good.clone();
        bad[8] = 0;
        assert_eq!(malformed_at(&bad).0, 8);
        let mut bad = good.clone();
        bad[12] = 2;
        let (offset, _, message) = malformed_at(&bad);
        assert_eq!(offset, 12);
        assert!(message.contains("version 2.0"), "{message}");
        let mut bad = good.clone();
        bad[shb_len + 4] = 13;
        let (offset, block, message) = malformed_at(&bad);
        assert_eq!(
            (offset, block.as_str()),
            (shb_len, "Interface Description Block")
        );
        assert!(message.contains("multiple of 4"), "{message}");
        let (offset, block, _) = malformed_at(b"GIF89a....");
        assert_eq!((offset, block.as_str()), (0, "file header"));
        assert!(malformed_at(b"").2.contains("0 bytes"));

        // Option overrunning its block.
        let mut bad = good.clone();
        bad[shb_len + 16 + 2] = 200; // if_name length
        let (offset, block, message) = malformed_at(&bad);
        assert_eq!(
            (offset, block.as_str()),
            (shb_len + 16, "Interface Description Block")
        );
        assert!(message.contains("option 2 of length 200"), "{message}");

        // Classic pcap: truncated record data.
        let pcap = sample_pcap();
        let (offset, block, message) = malformed_at(&pcap[..24 + 16 + 5]);
        assert_eq!((offset, block.as_str()), (40, PCAP_RECORD));
        assert!(message.contains("truncated packet data"), "{message}");
        let (offset, block, _) = malformed_at(&pcap[..10]);
        assert_eq!((offset, block.as_str()), (8, PCAP_FILE_HEADER));

        // An io error names the path.
        let err = Capture::read(Path::new("/nonexistent/x.pcapng")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.pcapng"), "{err}");
        assert!(err.source().is_some());
    }

    #[test]
    fn out_of_range_timestamps_are_errors_not_overflows() {
        let mut b = Builder::new(false);
        b.shb(None)
            .idb(LINKTYPE_RAW, 0, Some(0))
            .epb(0, u64::MAX, &[0x45], None);
        let (_, block, message) = malformed_at(&b.buf);
        assert_eq!(block, "Enhanced Packet Block");
        assert!(message.contains("out of range"), "{message}");
        // Absurdly fine resolutions round down to 0 instead of overflowing.
        for resol in [127, 0xff, 60] {
            let mut b = Builder::new(false);
            b.shb(None)
                .idb(LINKTYPE_RAW, 0, Some(resol))
                .epb(0, u64::MAX, &[0x45], None);
            assert!(read_capture_bytes(&b.buf).unwrap()[0].frame.ts_ns < 1_000_000_000);
        }
    }

    /// xorshift64*: a tiny deterministic generator, enough to shake the parser.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parses `bytes` and touches the outcome; any panic fails the calling test.
    fn parse_without_panic(bytes: &[u8]) {
        match Capture::from_bytes(bytes) {
            Ok(capture) => {
                for w in &capture.warnings {
                    let _ = w.to_string();
                }
            }
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("byte offset"), "{text}");
            }
        }
    }

    #[test]
    fn every_truncation_is_handled_without_panic() {
        for good in [sample_pcapng(), sample_pcap()] {
            assert!(Capture::from_bytes(&good).is_ok());
            for len in 0..good.len() {
                parse_without_panic(&good[..len]);
            }
        }
        // A pcapng cut inside a block is an error, cut between blocks it is a shorter file.
        let good = sample_pcapng();
        let cut_errors = (1..good.len())
            .filter(|&len| Capture::from_bytes(&good[..len]).is_err())
            .count();
        assert_eq!(
            cut_errors,
            good.len() - 1 - 8,
            "8 block boundaries besides the end"
        );
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds = [sample_pcapng(), sample_pcap()];
        let prefixes: [&[u8]; 5] = [
            b"",
            &[0x0A, 0x0D, 0x0D, 0x0A],
            &[
                0x0A, 0x0D, 0x0D, 0x0A, 0x1C, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A,
            ],
            &[0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0],
            &[0xA1, 0xB2, 0x3C, 0x4D, 0, 2, 0, 4],
        ];
        // Pure random bytes behind each plausible magic.
        for i in 0..2_500 {
            let mut bytes = prefixes[i % prefixes.len()].to_vec();
            let len = rng.below(300);
            bytes.extend((0..len).map(|_| rng.next() as u8));
            parse_without_panic(&bytes);
        }
        // Valid files with a few bytes flipped, overwritten with extreme values, or spliced.
        for _ in 0..3_000 {
            let mut bytes = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
                    _ => {
                        let end = (at + 4).min(bytes.len());
                        bytes[at..end].fill(0xff);
                    }
                }
            }
            if rng.below(4) == 0 {
                let cut = rng.below(bytes.len());
                bytes.truncate(cut);
            }
            parse_without_panic(&bytes);
        }
    }
}
