//! The JSON-RPC control socket: every method through a real socket, and bad input (not
//! JSON, not a request, unknown methods, bad params, unknown objects, an oversized line)
//! answered with a clear error while the switch and other clients carry on.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ferrovia_vswitch::rpc::{RpcClient, RpcServer};
use serde_json::{Value, json};
use support::*;

fn raw(sock: &std::path::Path, line: &str) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    writeln!(s, "{line}").unwrap();
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn methods_and_errors() {
    let dir = TempDir::new("rpc");
    let sw = switch(vec![vhost_port(&dir, "br0", "p0", 0)], |_| {});
    let path = dir.0.join("ctl.sock");
    let server = RpcServer::start(sw.clone(), &path).unwrap();
    let mut c = RpcClient::connect(&path).unwrap();
    // Happy path: bridges, ports, VLANs, show commands.
    c.call("add-br", json!({"name": "br1", "fdb_limit": 10}))
        .unwrap()
        .unwrap();
    let dev = format!("net_vhost7,iface={}", dir.sock("q").display());
    c.call(
        "add-port",
        json!({"name": "q", "bridge": "br1", "devargs": dev, "tag": 5}),
    )
    .unwrap()
    .unwrap();
    let ports = c.call("show-ports", Value::Null).unwrap().unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 2);
    assert_eq!(ports[1]["vlan"]["tag"], 5);
    c.call("set-port-vlan", json!({"name": "q", "trunks": [7, 8]}))
        .unwrap()
        .unwrap();
    let ports = c.call("show-ports", Value::Null).unwrap().unwrap();
    assert_eq!(ports[1]["vlan"]["trunks"], json!([7, 8]));
    let br = c.call("show-bridges", Value::Null).unwrap().unwrap();
    assert_eq!(br[1]["fdb_limit"], 10);
    assert!(
        c.call("show-fdb", json!({"bridge": "br1"}))
            .unwrap()
            .unwrap()
            .is_array()
    );
    assert!(
        c.call("show-pmd-stats", Value::Null)
            .unwrap()
            .unwrap()
            .is_array()
    );
    assert!(
        c.call("dump-flows", Value::Null)
            .unwrap()
            .unwrap()
            .is_array()
    );
    c.call("del-port", json!({"name": "q"})).unwrap().unwrap();
    c.call("del-br", json!({"name": "br1"})).unwrap().unwrap();

    // Errors: each names the problem.
    let e = raw(&path, "{not json");
    assert_eq!(e["error"]["code"], -32700);
    let e = raw(&path, r#"{"jsonrpc":"2.0","id":3}"#);
    assert_eq!(e["error"]["code"], -32600);
    assert_eq!(e["id"], 3);
    let e = raw(&path, r#"{"jsonrpc":"2.0","id":4,"method":"frobnicate"}"#);
    assert_eq!(e["error"]["code"], -32601);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("add-port"),
        "{e}"
    );
    let (code, msg) = c
        .call("add-port", json!({"name": "x"}))
        .unwrap()
        .unwrap_err();
    assert_eq!(code, -32602);
    assert!(msg.contains("missing field `bridge`"), "{msg}");
    let (_, msg) = c
        .call("add-br", json!({"name": "b", "colour": "red"}))
        .unwrap()
        .unwrap_err();
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    let (code, msg) = c
        .call("del-port", json!({"name": "ghost"}))
        .unwrap()
        .unwrap_err();
    assert_eq!(code, -32000);
    assert!(
        msg.contains("no port named ghost") && msg.contains("p0"),
        "{msg}"
    );
    let (_, msg) = c
        .call(
            "add-port",
            json!({"name": "p9", "bridge": "br0", "devargs": "net_bogus0"}),
        )
        .unwrap()
        .unwrap_err();
    assert!(
        msg.contains("port p9") && msg.contains("net_bogus"),
        "{msg}"
    );
    let (_, msg) = c
        .call(
            "add-port",
            json!({"name": "p0", "bridge": "br0", "devargs": "net_null9"}),
        )
        .unwrap()
        .unwrap_err();
    assert!(msg.contains("port p0 already exists"), "{msg}");
    let (_, msg) = c
        .call("set-port-vlan", json!({"name": "p0", "tag": 9999}))
        .unwrap()
        .unwrap_err();
    assert!(msg.contains("VLAN id 9999 is out of range"), "{msg}");
    // An oversized line gets an error and the connection closes; the switch carries on.
    let mut s = UnixStream::connect(&path).unwrap();
    let big = vec![b'x'; ferrovia_vswitch::rpc::MAX_REQUEST + 10];
    let _ = s.write_all(&big);
    let _ = s.write_all(b"\n");
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).unwrap();
    assert!(out.contains("longer than"), "{out}");
    // The first client still works, and nothing changed.
    let ports = c.call("show-ports", Value::Null).unwrap().unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 1);
    let help = c.call("help", Value::Null).unwrap().unwrap();
    assert!(help.as_array().unwrap().len() > 10);
    drop(server);
    assert!(!path.exists(), "the socket file is removed on stop");
    sw.shutdown();
}

#[test]
fn a_second_server_on_a_live_socket_is_refused() {
    let dir = TempDir::new("rpc2");
    let sw = switch(vec![], |_| {});
    let path = dir.0.join("ctl.sock");
    let _a = RpcServer::start(sw.clone(), &path).unwrap();
    let e = RpcServer::start(sw.clone(), &path).unwrap_err().to_string();
    assert!(e.contains("another switch is listening"), "{e}");
    sw.shutdown();
}
