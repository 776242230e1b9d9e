//! Replays every committed fuzz corpus entry and crash regression through the harness, so the
//! normal test suite covers what fuzzing found (no libFuzzer needed).

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_file() {
            f(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no corpus for {target}");
    eprintln!("{target}: replayed {n} inputs");
}

#[test]
fn vhost_user_messages_corpus() {
    replay("vhost_user_messages", |d| {
        ferrovia_fuzz_harness::vhost_user_messages(d);
    });
}

/// The chunked seeds (with fds) really reach the memory table and ring set-up paths: every
/// message of the good handshakes is accepted; the bad ones stop where they should.
#[test]
fn vhost_user_seeds_with_fds_reach_the_handler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/vhost_user_messages");
    let run =
        |n: &str| ferrovia_fuzz_harness::vhost_user_messages(&std::fs::read(dir.join(n)).unwrap());
    // 5 negotiation + 1 table + 4 vrings x 6 + 7 more messages: all of them.
    assert_eq!(run("fds_handshake"), 37);
    assert_eq!(run("fds_handshake_indirect_event"), 37);
    // The rings lie outside the table: the first SET_VRING_ENABLE that completes a vring
    // is refused (negotiation, table, then NUM, BASE, ADDR, CALL, KICK of vring 0).
    assert_eq!(run("fds_rings_outside"), 11);
    assert_eq!(run("fds_wrong"), 0);
}

#[test]
fn device_walk_corpus() {
    replay("device_walk", ferrovia_fuzz_harness::device_walk);
}

#[test]
fn driver_used_corpus() {
    replay("driver_used", ferrovia_fuzz_harness::driver_used);
}

/// Random used rings against both descriptor layouts, beyond the committed corpus.
#[test]
fn driver_used_random_rings() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400u32 {
        let mut d: Vec<u8> = (0..140).map(|_| next() as u8).collect();
        d[0] = (i % 4) as u8;
        // Keep used.idx small half the time, so receive gets past the count check.
        if i % 2 == 0 {
            d[3] = (next() % 8) as u8;
            d[4] = 0;
        }
        ferrovia_fuzz_harness::driver_used(&d);
    }
}

#[test]
fn driver_packed_used_corpus() {
    replay(
        "driver_packed_used",
        ferrovia_fuzz_harness::driver_packed_used,
    );
}

/// Random descriptor rings against both packed layouts, beyond the committed corpus.
#[test]
fn driver_packed_used_random_rings() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400u32 {
        let mut d: Vec<u8> = (0..260).map(|_| next() as u8).collect();
        d[0] = (i % 4) as u8;
        ferrovia_fuzz_harness::driver_packed_used(&d);
    }
}

#[test]
fn device_walk_packed_corpus() {
    replay(
        "device_walk_packed",
        ferrovia_fuzz_harness::device_walk_packed,
    );
}

/// Random packed rings, beyond the committed corpus: every size class, feature set and start
/// position.
#[test]
fn device_walk_packed_random_rings() {
    let mut x = 0x51af_d7ed_558c_cd27u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..200u32 {
        let n = 6 + (next() % 600) as usize;
        let mut d: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        d[2] = (i % 16) as u8;
        ferrovia_fuzz_harness::device_walk_packed(&d);
    }
}

#[test]
fn vhost_user_sequence_corpus() {
    replay("vhost_user_sequence", |d| {
        ferrovia_fuzz_harness::vhost_user_sequence(d);
    });
}

/// The structured seeds reach the whole set-up: every message of the good handshakes is
/// accepted (negotiation, table, and six messages per vring).
#[test]
fn vhost_user_sequence_seeds_reach_the_handler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/vhost_user_sequence");
    let run =
        |n: &str| ferrovia_fuzz_harness::vhost_user_sequence(&std::fs::read(dir.join(n)).unwrap());
    assert_eq!(run("handshake"), 6 + 2 * 6);
    assert_eq!(run("handshake_ack"), 6 + 2 * 6);
    assert_eq!(run("handshake_packed"), 6 + 2 * 6);
    assert_eq!(run("handshake_4vrings"), 6 + 4 * 6);
    assert_eq!(run("early_enable"), 6 + 6 + 2 * 6);
}

#[test]
fn net_hdr_corpus() {
    replay("net_hdr", ferrovia_fuzz_harness::net_hdr);
}

/// Random headers and metadata beyond the committed corpus, every selector.
#[test]
fn net_hdr_random() {
    let mut x = 0x8f1b_c3d2_a4e5_f607u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000u32 {
        let n = 27 + (next() % 400) as usize;
        let mut d: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        d[0] = (i % 64) as u8;
        // Keep the offsets inside small packets a third of the time.
        if i % 3 == 0 {
            d[7] = (next() % 80) as u8;
            d[8] = 0;
            d[9] = (next() % 20) as u8;
            d[10] = 0;
        }
        ferrovia_fuzz_harness::net_hdr(&d);
    }
}

#[test]
fn l3_parse_corpus() {
    replay("l3_parse", ferrovia_fuzz_harness::l3_parse);
}

#[test]
fn switch_frames_corpus() {
    replay("switch_frames", ferrovia_fuzz_harness::switch_frames);
}

/// The l3_parse seeds reach the rewriters: the echo requests and the ARP requests (tagged,
/// untagged, QinQ) are answered.
#[test]
fn l3_parse_seeds_reach_the_rewriters() {
    use ferrovia_route::{arp, eth, ipv4};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/l3_parse");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    for n in ["icmp_echo", "icmp_echo_tagged", "icmp_echo_options", "qinq"] {
        let mut f = read(n);
        let (l3, _) = eth::l3_offset(&f).unwrap();
        ipv4::icmp_echo_reply(&mut f, l3).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    for n in ["arp_request", "arp_request_tagged"] {
        let mut f = read(n);
        let (l3, _) = eth::l3_offset(&f).unwrap();
        assert_eq!(
            arp::reply_in_place(&mut f, l3, [2, 0, 0, 0, 0, 9], |_| true),
            Ok(true)
        );
    }
    let mut f = read("udp_ttl1");
    assert_eq!(
        ipv4::decrement_ttl(&mut f, 14),
        Err(ipv4::Ipv4Error::TtlExpired(1))
    );
}

#[test]
fn ctrl_request_corpus() {
    replay("ctrl_request", ferrovia_fuzz_harness::ctrl_request);
}

/// The seeds are what they say.
#[test]
fn ctrl_request_seeds_parse() {
    use ferrovia_ethdev::ctrl::{CtrlError, CtrlRequest};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ctrl_request");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert!(matches!(
        CtrlRequest::parse(&read("mac_addr_set")),
        Ok(CtrlRequest::MacAddrSet(_))
    ));
    assert!(matches!(
        CtrlRequest::parse(&read("mac_table_set")),
        Ok(CtrlRequest::MacTableSet { .. })
    ));
    assert_eq!(
        CtrlRequest::parse(&read("mac_table_too_large")),
        Err(CtrlError::TableTooLarge(1000))
    );
    assert_eq!(
        CtrlRequest::parse(&read("vlan_add")),
        Ok(CtrlRequest::VlanAdd(10))
    );
    assert_eq!(
        CtrlRequest::parse(&read("vlan_del_4096")),
        Err(CtrlError::BadVlan(4096))
    );
    assert_eq!(
        CtrlRequest::parse(&read("unknown_class")),
        Err(CtrlError::UnknownClass(9))
    );
}

#[test]
fn kernel_vfinfo_corpus() {
    replay("kernel_vfinfo", ferrovia_fuzz_harness::kernel_vfinfo);
}

/// The seeds are what they say: a recorded reply with two VFs, an error with the kernel's
/// text, an ack, and a truncated reply that is refused.
#[test]
fn kernel_vfinfo_seeds_parse() {
    use ferrovia_eswitch::kernel_pf::{Reply, parse_link_reply, parse_reply, parse_vfinfo_list};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/kernel_vfinfo");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let l = parse_link_reply(&read("newlink_two_vfs")).unwrap();
    assert_eq!((l.ifindex, l.num_vf, l.vfs.len()), (5, Some(2), 2));
    assert_eq!(
        (l.vfs[0].vlan, l.vfs[0].qos, l.vfs[1].trust),
        (10, 3, Some(true))
    );
    assert_eq!(parse_vfinfo_list(&read("vfinfo_list_only")).unwrap(), l.vfs);
    assert!(
        parse_link_reply(&read("newlink_no_vfs"))
            .unwrap()
            .vfs
            .is_empty()
    );
    assert!(parse_link_reply(&read("newlink_truncated")).is_err());
    assert_eq!(
        parse_reply(&read("error_capped_extack"), 3).unwrap(),
        Some(Reply::Error(libc::EOPNOTSUPP, Some("no VFs here".into())))
    );
    assert_eq!(parse_reply(&read("ack"), 3).unwrap(), Some(Reply::Ack));
}

#[test]
fn frontend_link_messages_corpus() {
    replay("frontend_link_messages", |d| {
        ferrovia_fuzz_harness::frontend_link_messages(d);
    });
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frontend_link_messages");
    let run = |n: &str| {
        ferrovia_fuzz_harness::frontend_link_messages(&std::fs::read(dir.join(n)).unwrap())
    };
    assert_eq!(
        run("change_then_up"),
        2,
        "two config changes, with and without a body"
    );
    assert_eq!(run("bad_code"), 0);
}
