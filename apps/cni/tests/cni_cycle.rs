//! ferrovia-cni driven as a container runtime drives it (a small driver following the CNI
//! spec: CNI_* environment, configuration on stdin, result or error object on stdout)
//! against a real ferrovia-switch control socket: ADD/CHECK/DEL with DEL idempotent and a
//! repeated ADD refused, GC, STATUS, VERSION, bad input, and two pods' virtio-user ports
//! reaching each other through the switch. The pods are network namespaces when the test
//! runs as root with `ip`; otherwise a placeholder file stands for the namespace path (the
//! plugin only checks that it exists; vhost-user sockets do not care about namespaces).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_vswitch::Switch;
use ferrovia_vswitch::config::{BridgeConfig, SwitchConfig};
use ferrovia_vswitch::rpc::{RpcClient, RpcServer};
use serde_json::{Value, json};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("fcni-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pod's network namespace: a real one as root, a placeholder file otherwise.
struct Netns {
    path: PathBuf,
    name: Option<String>,
}
impl Netns {
    fn new(dir: &Path, tag: &str) -> Netns {
        let name = format!("fcni-{}-{tag}", std::process::id());
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        if is_root
            && Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success())
        {
            return Netns {
                path: PathBuf::from(format!("/var/run/netns/{name}")),
                name: Some(name),
            };
        }
        let path = dir.join(format!("netns-{tag}"));
        std::fs::write(&path, b"").unwrap();
        eprintln!(
            "note: not root or no `ip`: {} stands for a netns",
            path.display()
        );
        Netns { path, name: None }
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(n) = &self.name {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// The test's world: a switch with bridge br0 and its control socket, a fake IPAM plugin
/// that logs its calls, and the plugin's directories.
struct World {
    dir: TempDir,
    sw: Arc<Switch>,
    _rpc: RpcServer,
    ctl: PathBuf,
    ipam_dir: PathBuf,
}

const FAKE_IPAM: &str = r#"#!/bin/sh
# A static IPAM plugin for tests: hands out 10.99.0.<n>/24 by container, logs each call.
conf=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME" >> "$(dirname "$0")/ipam.log"
case "$CNI_COMMAND" in
ADD)
    n=$(printf '%s' "$CNI_CONTAINERID" | cksum | cut -d' ' -f1)
    n=$((n % 200 + 2))
    printf '{"cniVersion":"1.0.0","ips":[{"address":"10.99.0.%s/24","gateway":"10.99.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.99.0.1"]}}\n' "$n" ;;
DEL|CHECK) ;;
*) echo '{"cniVersion":"1.0.0","code":4,"msg":"bad command"}'; exit 1 ;;
esac
"#;

impl World {
    fn new(tag: &str) -> World {
        let dir = TempDir::new(tag);
        let mut c = SwitchConfig::default();
        c.switch.mbufs = 8192;
        c.switch.pmd_threads = 1;
        c.bridge.push(BridgeConfig {
            name: "br0".into(),
            fdb_limit: 1024,
            aging_secs: 300,
        });
        let sw = Switch::start(&c).expect("switch starts");
        let ctl = dir.0.join("switch.sock");
        let rpc = RpcServer::start(sw.clone(), &ctl).unwrap();
        let ipam_dir = dir.0.join("cni-bin");
        std::fs::create_dir_all(&ipam_dir).unwrap();
        let p = ipam_dir.join("fake-ipam");
        std::fs::write(&p, FAKE_IPAM).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        World {
            dir,
            sw,
            _rpc: rpc,
            ctl,
            ipam_dir,
        }
    }

    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "userspace-net",
            "type": "ferrovia-cni",
            "bridge": "br0",
            "controlSocket": self.ctl,
            "sharedDir": self.dir.0.join("shared"),
            "deviceInfoDir": self.dir.0.join("devinfo"),
            "stateDir": self.dir.0.join("state"),
            "ipam": {"type": "fake-ipam"},
        })
    }

    fn ipam_log(&self) -> String {
        std::fs::read_to_string(self.ipam_dir.join("ipam.log")).unwrap_or_default()
    }
}

/// One plugin invocation: (success, stdout parsed as JSON or Null, stderr).
fn cni(
    w: &World,
    cmd: &str,
    container: &str,
    ifname: &str,
    netns: Option<&Path>,
    conf: &[u8],
) -> (bool, Value, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrovia-cni"));
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", format!("{}:/usr/lib/cni", w.ipam_dir.display()))
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = netns {
        c.env("CNI_NETNS", n);
    }
    let mut child = c.spawn().unwrap();
    // The plugin may reject its environment and exit before reading the
    // configuration; a broken pipe then is expected, not a failure.
    if let Err(e) = child.stdin.take().unwrap().write_all(conf) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing plugin stdin: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout not JSON ({e}): {stdout}"))
    };
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn ports(w: &World) -> Vec<Value> {
    let mut c = RpcClient::connect(&w.ctl).unwrap();
    c.call("show-ports", Value::Null)
        .unwrap()
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A pod's application: our virtio-user port on the socket the device-info file names.
struct PodApp {
    _port: Box<dyn Port>,
    rx: Box<dyn RxQueue>,
    tx: Box<dyn TxQueue>,
    caches: LcoreCaches,
    pool: Mempool,
}

impl PodApp {
    fn from_devinfo(path: &Path, n: u16) -> PodApp {
        let d: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(d["type"], "vhost-user");
        assert_eq!(d["vhost-user"]["mode"], "client", "the switch listens");
        let sock = d["vhost-user"]["path"].as_str().unwrap();
        let pool = Mempool::new(MempoolConfig {
            count: 2048,
            ..Default::default()
        })
        .unwrap();
        let mut port = ferrovia_pmd::open(
            &format!("net_virtio_user{n},path={sock}"),
            &PortConf::new(n, pool.clone()),
        )
        .expect("virtio-user opens on the pod's socket");
        port.start().unwrap();
        let t0 = Instant::now();
        while !port.link().up {
            assert!(t0.elapsed() < Duration::from_secs(10), "link never came up");
            std::thread::sleep(Duration::from_millis(5));
        }
        let rx = port.rx_queue(0).unwrap();
        let tx = port.tx_queue(0).unwrap();
        PodApp {
            _port: port,
            rx,
            tx,
            caches: LcoreCaches::new(),
            pool,
        }
    }

    fn send(&mut self, frames: &[Vec<u8>]) {
        let mut b = Burst::new();
        for f in frames {
            let mut m = self.caches.for_pool(&self.pool).alloc().expect("mbuf");
            m.append(f.len()).expect("room").copy_from_slice(f);
            b.push(m);
        }
        let t0 = Instant::now();
        while !b.is_empty() {
            self.tx.tx_burst(&mut self.caches, &mut b);
            assert!(t0.elapsed() < Duration::from_secs(2), "tx stuck");
        }
    }

    fn recv_n(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = Burst::new();
        let t0 = Instant::now();
        while out.len() < n && t0.elapsed() < Duration::from_secs(5) {
            if self.rx.rx_burst(&mut self.caches, &mut b, 32) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            for m in b.drain(..) {
                out.push(m.to_vec());
                self.caches.free(m);
            }
        }
        out
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend(dst);
    f.extend(src);
    f.extend(0x88b5u16.to_be_bytes());
    f.extend(seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u8).wrapping_mul(13) ^ seq as u8);
    }
    f
}

#[test]
fn add_check_del_and_pods_talk_through_the_switch() {
    let w = World::new("cycle");
    let conf = w.conf("1.0.0");
    let conf_b = bytes(&conf);
    let ns_a = Netns::new(&w.dir.0, "a");
    let ns_b = Netns::new(&w.dir.0, "b");
    let cid_a = "aaaaaaaaaaaa1111111111111111";
    let cid_b = "bbbbbbbbbbbb2222222222222222";

    // ADD pod A.
    let (ok, r, err) = cni(&w, "ADD", cid_a, "net1", Some(&ns_a.path), &conf_b);
    assert!(ok, "ADD failed: {r} {err}");
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], "net1");
    assert_eq!(
        r["interfaces"][0]["sandbox"],
        ns_a.path.display().to_string()
    );
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.99.0.")
    );
    assert_eq!(r["ips"][0]["interface"], 0);
    assert_eq!(r["dns"]["nameservers"][0], "10.99.0.1");
    let key_a = "aaaaaaaaaaaa-net1";
    let sock_a = w.dir.0.join("shared").join(key_a);
    assert!(sock_a.exists(), "the switch created {}", sock_a.display());
    let dev_a = w
        .dir
        .0
        .join("devinfo")
        .join(format!("userspace-net-{cid_a}-net1-device-info.json"));
    let d: Value = serde_json::from_slice(&std::fs::read(&dev_a).unwrap()).unwrap();
    assert_eq!(
        d,
        json!({"type":"vhost-user","version":"1.1.0",
               "vhost-user":{"mode":"client","path": sock_a.display().to_string()}})
    );
    let p = ports(&w);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["name"], key_a);
    assert_eq!(p[0]["bridge"], "br0");

    // A repeated ADD is refused, and changes nothing.
    let (ok, e, _) = cni(&w, "ADD", cid_a, "net1", Some(&ns_a.path), &conf_b);
    assert!(!ok);
    assert_eq!(e["code"], 101, "{e}");
    assert!(
        e["msg"].as_str().unwrap().contains("attached already"),
        "{e}"
    );
    assert_eq!(ports(&w).len(), 1);
    assert!(sock_a.exists() && dev_a.exists());

    // CHECK passes (with the prevResult the runtime keeps).
    let mut conf_check = conf.clone();
    conf_check["prevResult"] = r.clone();
    let (ok, e, err) = cni(
        &w,
        "CHECK",
        cid_a,
        "net1",
        Some(&ns_a.path),
        &bytes(&conf_check),
    );
    assert!(ok, "CHECK failed: {e} {err}");

    // Pod B, then the two pods' applications exchange frames through the switch.
    let (ok, rb, err) = cni(&w, "ADD", cid_b, "net1", Some(&ns_b.path), &conf_b);
    assert!(ok, "ADD B failed: {rb} {err}");
    assert_ne!(rb["ips"][0]["address"], r["ips"][0]["address"]);
    let dev_b = w
        .dir
        .0
        .join("devinfo")
        .join(format!("userspace-net-{cid_b}-net1-device-info.json"));
    let mut app_a = PodApp::from_devinfo(&dev_a, 500);
    let mut app_b = PodApp::from_devinfo(&dev_b, 501);
    let (mac_a, mac_b) = ([2, 0xc, 0, 0, 0, 1], [2, 0xc, 0, 0, 0, 2]);
    // A's first frame floods (B unknown) and teaches the switch A's MAC; B answers.
    let fa: Vec<_> = (0..16)
        .map(|i| frame(mac_b, mac_a, 60 + i * 90, i as u32))
        .collect();
    app_a.send(&fa);
    let got = app_b.recv_n(16);
    assert_eq!(got, fa, "pod B receives A's frames byte for byte");
    let fb: Vec<_> = (0..16)
        .map(|i| frame(mac_a, mac_b, 1514 - i * 80, 100 + i as u32))
        .collect();
    app_b.send(&fb);
    let got = app_a.recv_n(16);
    assert_eq!(got, fb, "pod A receives B's frames byte for byte");
    drop(app_a);
    drop(app_b);

    // CHECK notices a port removed behind the plugin's back.
    let mut c = RpcClient::connect(&w.ctl).unwrap();
    c.call("del-port", json!({"name": "bbbbbbbbbbbb-net1"}))
        .unwrap()
        .unwrap();
    let (ok, e, _) = cni(&w, "CHECK", cid_b, "net1", Some(&ns_b.path), &conf_b);
    assert!(!ok);
    assert_eq!(e["code"], 102, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("missing"), "{e}");
    // DEL still succeeds (the port is gone already) and cleans up the rest.
    let (ok, e, err) = cni(&w, "DEL", cid_b, "net1", Some(&ns_b.path), &conf_b);
    assert!(ok, "DEL B: {e} {err}");
    assert!(!dev_b.exists());

    // DEL pod A: port, socket, device-info and the address go; DEL again is a no-op success.
    let (ok, e, err) = cni(&w, "DEL", cid_a, "net1", Some(&ns_a.path), &conf_b);
    assert!(ok, "DEL A: {e} {err}");
    assert_eq!(e, Value::Null, "DEL prints nothing");
    assert!(ports(&w).is_empty());
    assert!(!sock_a.exists());
    assert!(!dev_a.exists());
    let (ok, e, err) = cni(&w, "DEL", cid_a, "net1", None, &conf_b);
    assert!(ok, "a repeated DEL succeeds: {e} {err}");
    let log = w.ipam_log();
    assert_eq!(
        log.matches(&format!("ADD {cid_a} net1")).count(),
        1,
        "{log}"
    );
    assert!(
        log.matches(&format!("DEL {cid_a} net1")).count() >= 1,
        "{log}"
    );
    assert!(log.contains(&format!("CHECK {cid_a} net1")), "{log}");
    // Nothing left on the switch; the switch keeps running.
    assert!(w.sw.ports().is_empty());
}

#[test]
fn gc_status_version() {
    let w = World::new("gc");
    let conf = w.conf("1.1.0");
    let ns = Netns::new(&w.dir.0, "gc");
    for cid in ["c1c1c1c1c1c1c1", "c2c2c2c2c2c2c2", "c3c3c3c3c3c3c3"] {
        let (ok, r, err) = cni(&w, "ADD", cid, "net1", Some(&ns.path), &bytes(&conf));
        assert!(ok, "{r} {err}");
        // CNI 1.1 results carry the socket path.
        assert!(
            r["interfaces"][0]["socketPath"]
                .as_str()
                .unwrap()
                .ends_with("-net1")
        );
    }
    assert_eq!(ports(&w).len(), 3);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c2c2c2c2c2c2c2", "ifname": "net1"}]);
    let (ok, e, err) = cni(&w, "GC", "", "", None, &bytes(&gc));
    assert!(ok, "GC: {e} {err}");
    let p = ports(&w);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["name"], "c2c2c2c2c2c2-net1");
    assert!(w.ipam_log().contains("DEL c1c1c1c1c1c1c1 net1"));
    assert!(w.ipam_log().contains("DEL c3c3c3c3c3c3c3 net1"));
    // GC is a 1.1 command.
    let (ok, e, _) = cni(&w, "GC", "", "", None, &bytes(&w.conf("1.0.0")));
    assert!(!ok);
    assert_eq!(e["code"], 1);

    // STATUS: ready; then with a bridge the switch lacks, and with no switch.
    let (ok, e, _) = cni(&w, "STATUS", "", "", None, &bytes(&conf));
    assert!(ok, "{e}");
    let mut no_br = conf.clone();
    no_br["bridge"] = json!("br9");
    let (ok, e, _) = cni(&w, "STATUS", "", "", None, &bytes(&no_br));
    assert!(!ok);
    assert_eq!(e["code"], 50);
    let mut no_sw = conf.clone();
    no_sw["controlSocket"] = json!(w.dir.0.join("nothing.sock"));
    let (ok, e, _) = cni(&w, "STATUS", "", "", None, &bytes(&no_sw));
    assert!(!ok);
    assert_eq!(e["code"], 50);
    assert!(e["msg"].as_str().unwrap().contains("is it running"), "{e}");

    // VERSION.
    let (ok, v, _) = cni(&w, "VERSION", "", "", None, br#"{"cniVersion":"1.0.0"}"#);
    assert!(ok);
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
}

#[test]
fn bad_input_gets_clear_errors_and_touches_nothing() {
    let w = World::new("bad");
    let ns = Netns::new(&w.dir.0, "bad");
    let conf = w.conf("1.0.0");
    let add = |c: &[u8]| cni(&w, "ADD", "cafecafecafe00", "net1", Some(&ns.path), c);
    // Not JSON, and an empty stdin.
    let (ok, e, _) = add(b"{\"cniVersion\": ");
    assert!(!ok);
    assert_eq!(e["code"], 6);
    let (ok, e, _) = add(b"");
    assert!(!ok);
    assert!(e["msg"].as_str().unwrap().contains("stdin"), "{e}");
    // Invalid values.
    for (k, v, code, word) in [
        ("vlan", json!(5000), 7, "vlan"),
        ("queues", json!(99), 7, "queues"),
        ("cniVersion", json!("0.3.1"), 1, "not supported"),
        ("type", json!("bridge"), 7, "ferrovia-cni"),
        ("sharedDir", json!("relative"), 7, "absolute"),
        (
            "ipam",
            json!({"type": "no-such-ipam"}),
            7,
            "not found in CNI_PATH",
        ),
        ("bridge", json!("br9"), 7, "no bridge"),
        (
            "controlSocket",
            json!("/nonexistent/switch.sock"),
            11,
            "is it running",
        ),
    ] {
        let mut c = conf.clone();
        c[k] = v;
        let (ok, e, _) = add(&bytes(&c));
        assert!(!ok, "{k}");
        assert_eq!(e["code"], code, "{k}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(word), "{k}: {e}");
    }
    // A missing namespace, and missing environment.
    let (ok, e, _) = cni(
        &w,
        "ADD",
        "cafecafecafe00",
        "net1",
        Some(Path::new("/var/run/netns/does-not-exist")),
        &bytes(&conf),
    );
    assert!(!ok);
    assert_eq!(e["code"], 3);
    let (ok, e, _) = cni(&w, "ADD", "", "net1", Some(&ns.path), &bytes(&conf));
    assert!(!ok);
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
    let (ok, e, _) = cni(&w, "ADD", "x", "net1/../x", Some(&ns.path), &bytes(&conf));
    assert!(!ok);
    assert_eq!(e["code"], 4);
    // An IPAM plugin that fails: its message comes through, nothing is left behind.
    let failing = w.ipam_dir.join("failing-ipam");
    std::fs::write(
        &failing,
        "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no addresses left in 10.99.0.0/24\"}'\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = conf.clone();
    c["ipam"] = json!({"type": "failing-ipam"});
    let (ok, e, _) = add(&bytes(&c));
    assert!(!ok);
    assert!(
        e["msg"].as_str().unwrap().contains("no addresses left"),
        "{e}"
    );
    // A switch refusal (an unwritable shared directory for the socket) rolls back IPAM.
    // Nothing of any failed ADD is on the switch or in the state directory.
    assert!(ports(&w).is_empty());
    let state = w.dir.0.join("state");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn host_local_ipam_when_installed() {
    if !Path::new("/usr/lib/cni/host-local").exists() {
        eprintln!(
            "skipped: /usr/lib/cni/host-local absent (apt-get install containernetworking-plugins)"
        );
        return;
    }
    let w = World::new("hl");
    let ns = Netns::new(&w.dir.0, "hl");
    let mut conf = w.conf("1.0.0");
    conf["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{"subnet": "10.77.0.0/24"}]],
        "dataDir": w.dir.0.join("ipam-data"),
    });
    let cb = bytes(&conf);
    let (ok, r1, err) = cni(&w, "ADD", "11111111111111", "net1", Some(&ns.path), &cb);
    assert!(ok, "{r1} {err}");
    let (ok, r2, err) = cni(&w, "ADD", "22222222222222", "net1", Some(&ns.path), &cb);
    assert!(ok, "{r2} {err}");
    let a1 = r1["ips"][0]["address"].as_str().unwrap().to_string();
    let a2 = r2["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(
        a1.starts_with("10.77.0.") && a2.starts_with("10.77.0.") && a1 != a2,
        "{a1} {a2}"
    );
    let mut chk = conf.clone();
    chk["prevResult"] = r1.clone();
    let (ok, e, err) = cni(
        &w,
        "CHECK",
        "11111111111111",
        "net1",
        Some(&ns.path),
        &bytes(&chk),
    );
    assert!(ok, "{e} {err}");
    // DEL releases the address: a new container gets it back.
    let (ok, e, err) = cni(&w, "DEL", "11111111111111", "net1", Some(&ns.path), &cb);
    assert!(ok, "{e} {err}");
    let ip1 = a1.split('/').next().unwrap();
    assert!(
        !w.dir.0.join("ipam-data/userspace-net").join(ip1).exists(),
        "host-local released {ip1}"
    );
    let (ok, e, _) = cni(&w, "DEL", "22222222222222", "net1", Some(&ns.path), &cb);
    assert!(ok, "{e}");
    assert!(ports(&w).is_empty());
}
