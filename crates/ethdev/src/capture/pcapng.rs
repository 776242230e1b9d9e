//! A small pcapng writer and reader (the IETF draft "PCAP Next Generation Dump File Format"),
//! limited to what a capture needs: the Section Header Block, Interface Description Blocks,
//! Enhanced Packet Blocks and Interface Statistics Blocks, in host byte order.
//!
//! The reader exists for tests and tools; it checks every block's framing (both length fields,
//! 4-byte alignment) and the options of the blocks above, and returns an error naming the
//! offset of the first bad block instead of panicking.

/// Block type of the Section Header Block.
pub const SHB: u32 = 0x0A0D_0D0A;
/// Block type of the Interface Description Block.
pub const IDB: u32 = 1;
/// Block type of the Interface Statistics Block.
pub const ISB: u32 = 5;
/// Block type of the Enhanced Packet Block.
pub const EPB: u32 = 6;
/// Byte-order magic of the Section Header Block.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Link type of Ethernet frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Largest snap length a capture accepts (Wireshark's own limit).
pub const MAX_SNAPLEN: u32 = 262_144;

const OPT_END: u16 = 0;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const EPB_QUEUE: u16 = 8;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_USRDELIV: u16 = 8;

/// Direction of a packet, as `epb_flags` bits 0-1 carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the port (`epb_flags` = 1).
    Inbound,
    /// Sent by the port (`epb_flags` = 2).
    Outbound,
}

impl Direction {
    fn flags(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes a block: type, total length, `body` (padded to 4 bytes), total length again.
fn block(out: &mut Vec<u8>, ty: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    body(out);
    out.resize(start + pad4(out.len() - start), 0);
    let total = (out.len() - start + 4) as u32;
    out[start + 4..start + 8].copy_from_slice(&total.to_ne_bytes());
    out.extend_from_slice(&total.to_ne_bytes());
}

/// Writes one option: code, length, value padded to 4 bytes.
fn opt(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_ne_bytes());
    out.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

fn end_of_options(out: &mut Vec<u8>) {
    opt(out, OPT_END, &[]);
}

/// Appends a Section Header Block naming the writing application (`shb_userappl`), with an
/// unspecified section length (the file is written as a stream).
pub fn section_header(out: &mut Vec<u8>, application: &str) {
    block(out, SHB, |o| {
        o.extend_from_slice(&BYTE_ORDER_MAGIC.to_ne_bytes());
        o.extend_from_slice(&1u16.to_ne_bytes());
        o.extend_from_slice(&0u16.to_ne_bytes());
        o.extend_from_slice(&(-1i64).to_ne_bytes());
        opt(
            o,
            SHB_USERAPPL,
            &application.as_bytes()[..application.len().min(1024)],
        );
        end_of_options(o);
    });
}

/// Appends an Interface Description Block for an Ethernet interface named `name`, with
/// `snaplen` and nanosecond timestamps (`if_tsresol` = 9).
pub fn interface_description(out: &mut Vec<u8>, name: &str, snaplen: u32) {
    block(out, IDB, |o| {
        o.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        o.extend_from_slice(&0u16.to_ne_bytes());
        o.extend_from_slice(&snaplen.to_ne_bytes());
        opt(o, IF_NAME, &name.as_bytes()[..name.len().min(1024)]);
        opt(o, IF_TSRESOL, &[9]);
        end_of_options(o);
    });
}

fn ts(o: &mut Vec<u8>, ts_ns: u64) {
    o.extend_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
    o.extend_from_slice(&(ts_ns as u32).to_ne_bytes());
}

/// Appends an Enhanced Packet Block: `data` (the kept bytes) of a packet `orig_len` bytes long
/// seen on interface `if_id` at `ts_ns`, with its direction (`epb_flags`) and queue
/// (`epb_queue`).
pub fn enhanced_packet(
    out: &mut Vec<u8>,
    if_id: u32,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
    dir: Direction,
    queue: u32,
) {
    // Header 28, data padded, epb_flags 8, epb_queue 8, end of options 4, trailer 4.
    let total = (28 + pad4(data.len()) + 24) as u32;
    out.reserve(total as usize);
    out.extend_from_slice(&EPB.to_ne_bytes());
    out.extend_from_slice(&total.to_ne_bytes());
    out.extend_from_slice(&if_id.to_ne_bytes());
    ts(out, ts_ns);
    out.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    out.extend_from_slice(&orig_len.to_ne_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&[0u8; 3][..pad4(data.len()) - data.len()]);
    opt(out, EPB_FLAGS, &dir.flags().to_ne_bytes());
    opt(out, EPB_QUEUE, &queue.to_ne_bytes());
    end_of_options(out);
    out.extend_from_slice(&total.to_ne_bytes());
}

/// What an Interface Statistics Block reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfStats {
    /// When the capture started (ns since the epoch).
    pub start_ns: u64,
    /// When it ended.
    pub end_ns: u64,
    /// Packets the capture saw (`isb_ifrecv`): captured plus dropped.
    pub received: u64,
    /// Packets dropped for want of room in the capture queue (`isb_ifdrop`).
    pub dropped: u64,
    /// Packets written to the file (`isb_usrdeliv`).
    pub delivered: u64,
}

/// Appends an Interface Statistics Block for interface `if_id`, stamped `s.end_ns`.
pub fn interface_statistics(out: &mut Vec<u8>, if_id: u32, s: &IfStats) {
    block(out, ISB, |o| {
        o.extend_from_slice(&if_id.to_ne_bytes());
        ts(o, s.end_ns);
        let t = |v: u64| {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&((v >> 32) as u32).to_ne_bytes());
            b[4..].copy_from_slice(&(v as u32).to_ne_bytes());
            b
        };
        opt(o, ISB_STARTTIME, &t(s.start_ns));
        opt(o, ISB_ENDTIME, &t(s.end_ns));
        opt(o, ISB_IFRECV, &s.received.to_ne_bytes());
        opt(o, ISB_IFDROP, &s.dropped.to_ne_bytes());
        opt(o, ISB_USRDELIV, &s.delivered.to_ne_bytes());
        end_of_options(o);
    });
}

/// A block read back by [`read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// Section Header Block.
    Section {
        /// `shb_userappl`, when present.
        application: Option<String>,
    },
    /// Interface Description Block.
    Interface {
        /// Link type.
        linktype: u16,
        /// Snap length.
        snaplen: u32,
        /// `if_name`, when present.
        name: Option<String>,
        /// `if_tsresol`, when present.
        tsresol: Option<u8>,
    },
    /// Enhanced Packet Block.
    Packet {
        /// Interface id.
        if_id: u32,
        /// Timestamp in units of the interface's resolution.
        ts: u64,
        /// Length on the wire.
        orig_len: u32,
        /// Kept bytes.
        data: Vec<u8>,
        /// `epb_flags`, when present.
        flags: Option<u32>,
        /// `epb_queue`, when present.
        queue: Option<u32>,
    },
    /// Interface Statistics Block.
    Statistics {
        /// Interface id.
        if_id: u32,
        /// `isb_ifrecv`, when present.
        received: Option<u64>,
        /// `isb_ifdrop`, when present.
        dropped: Option<u64>,
        /// `isb_usrdeliv`, when present.
        delivered: Option<u64>,
    },
    /// A block of another type, skipped.
    Other(u32),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads options from `b` until `opt_endofopt` or the end: (code, value) pairs.
fn options(b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let (code, len) = (
            u16_at(b, at).unwrap_or(0),
            u16_at(b, at + 2).unwrap_or(0) as usize,
        );
        if code == OPT_END {
            return Ok(v);
        }
        let val = b
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| format!("option {code} runs past its block"))?;
        v.push((code, val));
        at += 4 + pad4(len);
    }
    if at != b.len() {
        return Err("options end inside an option header".into());
    }
    Ok(v)
}

fn find<'a>(opts: &[(u16, &'a [u8])], code: u16) -> Option<&'a [u8]> {
    opts.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

fn opt_u64(opts: &[(u16, &[u8])], code: u16) -> Option<u64> {
    find(opts, code).and_then(|v| u64_at(v, 0))
}

/// Reads every block of a file written in host byte order; fails on the first malformed one.
pub fn read(file: &[u8]) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let bad = |why: &str| format!("pcapng block at offset {at}: {why}");
        let ty = u32_at(file, at).ok_or_else(|| bad("truncated block header"))?;
        let len = u32_at(file, at + 4).ok_or_else(|| bad("truncated block header"))? as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(bad(&format!("bad block length {len}")));
        }
        let b = file.get(at..at + len).ok_or_else(|| {
            bad(&format!(
                "block of {len} bytes runs past the end of the file"
            ))
        })?;
        if u32_at(b, len - 4) != Some(len as u32) {
            return Err(bad("trailing length differs from the leading one"));
        }
        let body = &b[8..len - 4];
        let blk = match ty {
            SHB => {
                if u32_at(body, 0) != Some(BYTE_ORDER_MAGIC) {
                    return Err(bad("byte-order magic is not 0x1A2B3C4D in host order"));
                }
                let opts = options(body.get(16..).unwrap_or(&[])).map_err(|e| bad(&e))?;
                Block::Section {
                    application: find(&opts, SHB_USERAPPL)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                }
            }
            IDB => {
                let opts = options(body.get(8..).unwrap_or(&[])).map_err(|e| bad(&e))?;
                Block::Interface {
                    linktype: u16_at(body, 0).ok_or_else(|| bad("short interface block"))?,
                    snaplen: u32_at(body, 4).ok_or_else(|| bad("short interface block"))?,
                    name: find(&opts, IF_NAME).map(|v| String::from_utf8_lossy(v).into_owned()),
                    tsresol: find(&opts, IF_TSRESOL).and_then(|v| v.first().copied()),
                }
            }
            EPB => {
                let short = || bad("short enhanced packet block");
                let if_id = u32_at(body, 0).ok_or_else(short)?;
                let ts = ((u32_at(body, 4).ok_or_else(short)? as u64) << 32)
                    | u32_at(body, 8).ok_or_else(short)? as u64;
                let cap = u32_at(body, 12).ok_or_else(short)? as usize;
                let orig_len = u32_at(body, 16).ok_or_else(short)?;
                let data = body
                    .get(20..20 + cap)
                    .ok_or_else(|| bad("captured length runs past the block"))?
                    .to_vec();
                let opts =
                    options(body.get(20 + pad4(cap)..).unwrap_or(&[])).map_err(|e| bad(&e))?;
                Block::Packet {
                    if_id,
                    ts,
                    orig_len,
                    data,
                    flags: find(&opts, EPB_FLAGS).and_then(|v| u32_at(v, 0)),
                    queue: find(&opts, EPB_QUEUE).and_then(|v| u32_at(v, 0)),
                }
            }
            ISB => {
                let opts = options(body.get(12..).unwrap_or(&[])).map_err(|e| bad(&e))?;
                Block::Statistics {
                    if_id: u32_at(body, 0).ok_or_else(|| bad("short statistics block"))?,
                    received: opt_u64(&opts, ISB_IFRECV),
                    dropped: opt_u64(&opts, ISB_IFDROP),
                    delivered: opt_u64(&opts, ISB_USRDELIV),
                }
            }
            t => Block::Other(t),
        };
        blocks.push(blk);
        at += len;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_file_reads_back() {
        let mut f = Vec::new();
        section_header(&mut f, "ferrovia test");
        interface_description(&mut f, "net_null0", 128);
        enhanced_packet(
            &mut f,
            0,
            1_700_000_000_123_456_789,
            60,
            &[0xab; 60],
            Direction::Inbound,
            3,
        );
        enhanced_packet(&mut f, 0, 5, 1500, &[1; 128], Direction::Outbound, 0);
        interface_statistics(
            &mut f,
            0,
            &IfStats {
                start_ns: 1,
                end_ns: 2,
                received: 10,
                dropped: 8,
                delivered: 2,
            },
        );
        assert_eq!(f.len() % 4, 0);
        let b = read(&f).unwrap();
        assert_eq!(
            b[0],
            Block::Section {
                application: Some("ferrovia test".into())
            }
        );
        assert_eq!(
            b[1],
            Block::Interface {
                linktype: 1,
                snaplen: 128,
                name: Some("net_null0".into()),
                tsresol: Some(9)
            }
        );
        assert_eq!(
            b[2],
            Block::Packet {
                if_id: 0,
                ts: 1_700_000_000_123_456_789,
                orig_len: 60,
                data: vec![0xab; 60],
                flags: Some(1),
                queue: Some(3)
            }
        );
        assert!(
            matches!(&b[3], Block::Packet { orig_len: 1500, flags: Some(2), data, .. } if data.len() == 128)
        );
        assert_eq!(
            b[4],
            Block::Statistics {
                if_id: 0,
                received: Some(10),
                dropped: Some(8),
                delivered: Some(2)
            }
        );
    }

    #[test]
    fn malformed_files_are_refused_with_the_offset() {
        let mut f = Vec::new();
        section_header(&mut f, "x");
        let n = f.len();
        interface_description(&mut f, "p", 64);
        let mut g = f.clone();
        g[n + 4] = 13; // length not a multiple of 4
        assert!(read(&g).unwrap_err().contains(&format!("offset {n}")));
        let mut g = f.clone();
        g.truncate(g.len() - 2);
        assert!(read(&g).unwrap_err().contains("past the end"));
        let mut g = f.clone();
        let l = g.len();
        g[l - 4] ^= 4;
        assert!(read(&g).unwrap_err().contains("trailing length"));
    }

    proptest! {
        #[test]
        fn packet_blocks_are_framed_and_padded(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            extra in 0u32..2000,
            ts_ns in any::<u64>(),
            queue in any::<u32>(),
            out in any::<bool>(),
            name in "[a-z0-9_]{0,40}",
        ) {
            let mut f = Vec::new();
            section_header(&mut f, &name);
            interface_description(&mut f, &name, 262_144);
            let before = f.len();
            let dir = if out { Direction::Outbound } else { Direction::Inbound };
            let orig = data.len() as u32 + extra;
            enhanced_packet(&mut f, 0, ts_ns, orig, &data, dir, queue);
            let len = f.len() - before;
            // Header 28 + padded data + flags 8 + queue 8 + end 4 + trailer 4.
            prop_assert_eq!(len, 28 + pad4(data.len()) + 8 + 8 + 4 + 4);
            prop_assert_eq!(len % 4, 0);
            prop_assert_eq!(u32::from_ne_bytes(f[before + 4..before + 8].try_into().unwrap()) as usize, len);
            prop_assert!(f[before + 28 + data.len()..before + 28 + pad4(data.len())].iter().all(|&b| b == 0));
            let b = read(&f).unwrap();
            prop_assert_eq!(&b[1], &Block::Interface { linktype: 1, snaplen: 262_144, name: Some(name.clone()), tsresol: Some(9) });
            prop_assert_eq!(&b[2], &Block::Packet {
                if_id: 0, ts: ts_ns, orig_len: orig, data: data.clone(),
                flags: Some(if out { 2 } else { 1 }), queue: Some(queue),
            });
        }

        #[test]
        fn the_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes);
        }
    }
}
