//! virtio-user over vhost-kernel, as far as a host without `/dev/vhost-net` can check it: the
//! devargs, which backend a path picks, and the errors. The data path through vhost-net runs
//! in the QEMU guest (`tests/qemu/vhost-kernel.sh`).

use ferrovia_ethdev::{Error, PortConf};
use ferrovia_memory::{Mempool, MempoolConfig};

fn conf() -> PortConf {
    let pool = Mempool::new(MempoolConfig {
        name: "vk".into(),
        count: 1024,
        ..Default::default()
    })
    .unwrap();
    PortConf::new(0, pool)
}

fn open_err(devargs: &str) -> Error {
    match ferrovia_pmd::open(devargs, &conf()) {
        Ok(_) => panic!("{devargs}: opened"),
        Err(e) => e,
    }
}

/// A `/dev/vhost-*` path that does not exist is vhost-kernel with the module not loaded.
const MISSING: &str = "/dev/vhost-net-ferrovia-test-missing";

#[test]
fn a_missing_vhost_net_says_to_load_the_module() {
    let e = open_err(&format!("net_virtio_user0,path={MISSING}"));
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "net_virtio_user0: {MISSING}: no such file (load the vhost_net module: modprobe vhost_net)"
        )
    );
    // the DPDK spelling of the device name too
    let e = open_err(&format!(
        "virtio_user0,path={MISSING},queues=2,queue_size=1024"
    ));
    assert!(e.to_string().contains("modprobe vhost_net"), "{e}");
}

#[test]
fn a_char_device_that_is_not_vhost_net_names_the_refused_ioctl() {
    let e = open_err("net_virtio_user0,path=/dev/null").to_string();
    assert!(
        e.starts_with(
            "net_virtio_user0: VHOST_SET_OWNER on /dev/null (queue pair 0) failed: ENOTTY"
        ),
        "{e}"
    );
}

#[test]
fn bad_tap_names_are_refused_before_anything_is_opened() {
    for (iface, why) in [
        ("a_tap_name_too_long", "too long"),
        ("tap/0", "character"),
        ("tap%s", "pattern"),
    ] {
        let e = open_err(&format!("net_virtio_user0,path={MISSING},iface={iface}"));
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("net_virtio_user0: iface={iface}: ")),
            "{s}"
        );
        assert!(s.contains(why), "{s}");
    }
}

#[test]
fn vhost_user_only_keys_are_refused_with_vhost_kernel_and_back() {
    let e = open_err(&format!("net_virtio_user0,path={MISSING},server=1")).to_string();
    assert!(e.contains("server=1 is for vhost-user sockets"), "{e}");
    let e = open_err(&format!("net_virtio_user0,path={MISSING},packed_vq=1")).to_string();
    assert!(e.contains("vhost-net has no packed ring"), "{e}");
    let e = open_err("net_virtio_user0,path=/tmp/ferrovia-no-such.sock,iface=tap0").to_string();
    assert!(
        e.contains("iface= names the tap of a vhost-kernel port"),
        "{e}"
    );
}

#[test]
fn other_devargs_are_still_checked_first() {
    let e = open_err(&format!("net_virtio_user0,path={MISSING},queue_size=1000")).to_string();
    assert!(e.contains("power of two"), "{e}");
    let e = open_err(&format!("net_virtio_user0,path={MISSING},ifac=tap0")).to_string();
    assert!(e.contains("unknown devargs key 'ifac'"), "{e}");
    assert!(e.contains("iface="), "{e}");
}
