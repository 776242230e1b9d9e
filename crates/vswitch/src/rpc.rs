//! The control socket: JSON-RPC 2.0 over a unix stream socket, one request per line (the
//! `ovs-appctl` model). `ferrovia-ctl` is its client; any tool that writes a line of JSON can be.
//!
//! ```text
//! → {"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"vhu2","bridge":"br0","devargs":"net_vhost2,iface=/tmp/vhu2.sock"}}
//! ← {"jsonrpc":"2.0","id":1,"result":null}
//! ```
//!
//! Errors use JSON-RPC's codes: -32700 (the line is not JSON), -32600 (not a request),
//! -32601 (no such method; the message lists them), -32602 (bad params; the message says
//! which), and -32000 for a request the switch refused (the message says why and what to do).
//! A bad request never disturbs the switch or the other clients.
//!
//! The server and client are not tied to the switch: another daemon serves its own methods
//! with [`RpcServer::start_with`] and a [`Handler`] (`ferrovia-vfd` does), and its CLI connects
//! with [`RpcClient::connect_with_hint`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{BridgeConfig, PortConfig, RouterInterfaceConfig, RxqAssign};
use crate::control::Switch;
use crate::vlan::VlanConfig;
use ferrovia_telemetry::status_json;

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;
/// A client that sends nothing for this long is disconnected.
const IDLE: Duration = Duration::from_secs(300);

/// The methods, with their parameters, as `help` lists them.
pub const METHODS: &[(&str, &str)] = &[
    ("add-br", "name [fdb_limit] [aging_secs]"),
    ("del-br", "name"),
    (
        "add-port",
        "name bridge devargs [tag] [trunks] [native] [max_frame]",
    ),
    ("del-port", "name"),
    ("set-port-vlan", "name [tag] [trunks] [native]"),
    ("add-router-interface", "name bridge [vlan] address [mac]"),
    ("del-router-interface", "name"),
    ("add-route", "prefix via"),
    ("del-route", "prefix"),
    ("show-bridges", ""),
    ("show-ports", ""),
    ("show-stats", ""),
    ("show-fdb", "bridge"),
    ("fdb-flush", "bridge"),
    ("show-routes", ""),
    ("show-pmd-stats", ""),
    ("dump-flows", ""),
    ("pmd-rxq-rebalance", ""),
    ("set-rxq-assign", "mode (roundrobin|cycles)"),
    ("reset-stats", ""),
    (
        "capture-start",
        "port file [queue] [dir (rx|tx|both)] [snaplen] [ring_size]",
    ),
    ("capture-stop", "[id]"),
    ("capture-list", ""),
    ("version", ""),
    ("help", ""),
];

/// A JSON-RPC error.
#[derive(Debug)]
pub struct RpcError {
    /// JSON-RPC code.
    pub code: i64,
    /// Message.
    pub message: String,
}

impl RpcError {
    fn params(method: &str, e: impl std::fmt::Display) -> RpcError {
        RpcError {
            code: -32602,
            message: format!("invalid params for {method}: {e}"),
        }
    }
    fn switch(e: impl std::fmt::Display) -> RpcError {
        RpcError {
            code: -32000,
            message: e.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Name {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeArg {
    bridge: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetVlan {
    name: String,
    #[serde(default)]
    tag: Option<u16>,
    #[serde(default)]
    trunks: Vec<u16>,
    #[serde(default)]
    native: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteArg {
    prefix: String,
    #[serde(default)]
    via: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignArg {
    mode: RxqAssign,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureArg {
    port: String,
    file: String,
    #[serde(default)]
    queue: Option<u16>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    snaplen: Option<u64>,
    #[serde(default)]
    ring_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureId {
    #[serde(default)]
    id: Option<u32>,
}

fn capture_start(sw: &Switch, a: CaptureArg) -> Result<Value, RpcError> {
    let (rx, tx) = match a.dir.as_deref() {
        None | Some("both") => (true, true),
        Some("rx") => (true, false),
        Some("tx") => (false, true),
        Some(d) => {
            return Err(RpcError::params(
                "capture-start",
                format!("dir {d:?}: expected rx, tx or both"),
            ));
        }
    };
    let snaplen = match a.snaplen {
        Some(n) => ferrovia_ethdev::capture::check_snaplen(n)
            .map_err(|e| RpcError::params("capture-start", e))?,
        None => ferrovia_ethdev::capture::pcapng::MAX_SNAPLEN,
    };
    let spec = ferrovia_ethdev::CaptureSpec {
        queue: a.queue,
        rx,
        tx,
        snaplen,
        path: PathBuf::from(a.file),
        ring_size: a.ring_size,
    };
    sw.capture_start(&a.port, spec)
        .map(|s| status_json(&s))
        .map_err(RpcError::switch)
}

fn params<T: for<'de> Deserialize<'de>>(method: &str, p: Value) -> Result<T, RpcError> {
    let p = if p.is_null() { json!({}) } else { p };
    serde_json::from_value(p).map_err(|e| RpcError::params(method, e))
}

/// Runs one method.
pub fn call(sw: &Switch, method: &str, p: Value) -> Result<Value, RpcError> {
    let ok = |r: Result<(), crate::SwitchError>| r.map(|()| Value::Null).map_err(RpcError::switch);
    match method {
        "add-br" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct A {
                name: String,
                fdb_limit: Option<usize>,
                aging_secs: Option<u32>,
            }
            let a: A = params(method, p)?;
            let mut c: BridgeConfig = serde_json::from_value(json!({ "name": a.name }))
                .map_err(|e| RpcError::params(method, e))?;
            if let Some(l) = a.fdb_limit {
                c.fdb_limit = l;
            }
            if let Some(s) = a.aging_secs {
                c.aging_secs = s;
            }
            ok(sw.add_bridge(&c))
        }
        "del-br" => ok(sw.del_bridge(&params::<Name>(method, p)?.name)),
        "add-port" => ok(sw.add_port(&params::<PortConfig>(method, p)?)),
        "del-port" => ok(sw.del_port(&params::<Name>(method, p)?.name)),
        "set-port-vlan" => {
            let a: SetVlan = params(method, p)?;
            ok(sw.set_port_vlan(
                &a.name,
                &VlanConfig {
                    tag: a.tag,
                    trunks: a.trunks,
                    native: a.native,
                },
            ))
        }
        "add-router-interface" => {
            ok(sw.add_router_interface(&params::<RouterInterfaceConfig>(method, p)?))
        }
        "del-router-interface" => ok(sw.del_router_interface(&params::<Name>(method, p)?.name)),
        "add-route" => {
            let a: RouteArg = params(method, p)?;
            let via = a
                .via
                .ok_or_else(|| RpcError::params(method, "missing field `via`"))?;
            ok(sw.add_route(&a.prefix, &via))
        }
        "del-route" => ok(sw.del_route(&params::<RouteArg>(method, p)?.prefix)),
        "show-bridges" => Ok(json!(sw.bridges())),
        "show-ports" => Ok(json!(sw.ports())),
        "show-stats" => Ok(json!({ "bridges": sw.bridges(), "ports": sw.ports() })),
        "show-fdb" => sw
            .fdb(&params::<BridgeArg>(method, p)?.bridge)
            .map(|r| json!(r))
            .map_err(RpcError::switch),
        "fdb-flush" => sw
            .fdb_flush(&params::<BridgeArg>(method, p)?.bridge)
            .map(|n| json!({ "flushed": n }))
            .map_err(RpcError::switch),
        "show-routes" => Ok(sw.routes()),
        "show-pmd-stats" => Ok(json!(sw.pmd_stats())),
        "dump-flows" => Ok(json!(
            sw.dump_flows()
                .into_iter()
                .map(|(pmd, flows)| json!({ "pmd": pmd, "flows": flows }))
                .collect::<Vec<_>>()
        )),
        "pmd-rxq-rebalance" => sw
            .rebalance()
            .map(|m| {
                json!(
                    m.into_iter()
                        .map(|(port, q, from, to)| json!({"port": port, "queue": q, "from": from, "to": to}))
                        .collect::<Vec<_>>()
                )
            })
            .map_err(RpcError::switch),
        "set-rxq-assign" => {
            sw.set_rxq_assign(params::<AssignArg>(method, p)?.mode);
            Ok(Value::Null)
        }
        "reset-stats" => {
            sw.reset_stats();
            Ok(Value::Null)
        }
        "capture-start" => capture_start(sw, params(method, p)?),
        "capture-stop" => sw
            .capture_stop(params::<CaptureId>(method, p)?.id)
            .map(|v| json!(v.iter().map(status_json).collect::<Vec<_>>()))
            .map_err(RpcError::switch),
        "capture-list" => Ok(json!(
            sw.capture_list().iter().map(status_json).collect::<Vec<_>>()
        )),
        "version" => Ok(json!({ "version": env!("CARGO_PKG_VERSION"), "pmd_threads": sw.pmd_threads() })),
        "help" => Ok(json!(
            METHODS
                .iter()
                .map(|(m, a)| json!({"method": m, "params": a}))
                .collect::<Vec<_>>()
        )),
        _ => Err(RpcError {
            code: -32601,
            message: format!(
                "unknown method {method:?} (methods: {})",
                METHODS.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Handles one request line; returns the response line.
pub fn handle_line(sw: &Switch, line: &str) -> String {
    handle_line_with(&|method: &str, p: Value| call(sw, method, p), line)
}

/// What answers a method call: any daemon's method table (`ferrovia-switch`'s is [`call`]).
pub type Handler = Arc<dyn Fn(&str, Value) -> Result<Value, RpcError> + Send + Sync>;

/// Handles one request line with `call`; returns the response line.
pub fn handle_line_with(
    call: &dyn Fn(&str, Value) -> Result<Value, RpcError>,
    line: &str,
) -> String {
    let req: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error_response(Value::Null, -32700, &format!("parse error: {e}")),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error_response(
            id,
            -32600,
            "invalid request: expected an object with a string \"method\"",
        );
    };
    let p = req.get("params").cloned().unwrap_or(Value::Null);
    match call(method, p) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
        Err(e) => error_response(id, e.code, &e.message),
    }
}

fn error_response(id: Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// The control socket server: a thread that accepts clients, and one thread per client.
pub struct RpcServer {
    path: PathBuf,
    /// A second handle on the listening socket: shutting it down wakes the accept thread
    /// even when the socket file is gone (its directory removed first).
    waker: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("path", &self.path)
            .finish()
    }
}

impl RpcServer {
    /// Listens on `path` (its directory is made if missing). A stale socket file is replaced;
    /// a live one (another switch answers on it) is an error.
    pub fn start(sw: Arc<Switch>, path: &Path) -> std::io::Result<RpcServer> {
        Self::start_with(
            Arc::new(move |method: &str, p: Value| call(&sw, method, p)),
            path,
            "another switch is listening on {path} (stop it, or set control_socket to another path)",
        )
    }

    /// Listens on `path` and answers each request with `handler` (the server of another
    /// daemon than the switch). `in_use` is the error when a live daemon already answers on
    /// `path`; `{path}` in it is replaced by the path.
    pub fn start_with(handler: Handler, path: &Path, in_use: &str) -> std::io::Result<RpcServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    in_use.replace("{path}", &path.display().to_string()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", path.display()),
            )
        })?;
        let waker = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rpc".into())
                .spawn(move || accept_loop(listener, handler, stop))?
        };
        Ok(RpcServer {
            path: path.to_path_buf(),
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes accept(): it fails with EINVAL once the listening socket is shut down.
        // SAFETY: shutdown(2) on a descriptor this struct owns; no memory is involved.
        unsafe { libc::shutdown(self.waker.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let handler = handler.clone();
        let _ = std::thread::Builder::new()
            .name("rpc-client".into())
            .spawn(move || serve_client(conn, &*handler));
    }
}

fn serve_client(conn: UnixStream, handler: &dyn Fn(&str, Value) -> Result<Value, RpcError>) {
    let _ = conn.set_read_timeout(Some(IDLE));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn.take(u64::MAX));
    let mut line = String::new();
    loop {
        line.clear();
        reader.get_mut().set_limit(MAX_REQUEST as u64 + 1);
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_REQUEST => {
                let r = error_response(
                    Value::Null,
                    -32600,
                    &format!("request longer than {MAX_REQUEST} bytes"),
                );
                let _ = writeln!(out, "{r}");
                return;
            }
            Ok(_) => {}
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let resp = handle_line_with(handler, trimmed);
        if writeln!(out, "{resp}").is_err() {
            return;
        }
    }
}

/// A blocking client: sends one request and reads its response.
#[derive(Debug)]
pub struct RpcClient {
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl RpcClient {
    /// Connects to a switch's control socket.
    pub fn connect(path: &Path) -> std::io::Result<RpcClient> {
        Self::connect_with_hint(
            path,
            "is ferrovia-switch running? its control_socket may be elsewhere: pass --socket",
        )
    }

    /// Connects to another daemon's control socket; `hint` ends the error when nothing
    /// answers there (what to start, or which option names the socket).
    pub fn connect_with_hint(path: &Path, hint: &str) -> std::io::Result<RpcClient> {
        let s = UnixStream::connect(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot connect to {}: {e} ({hint})", path.display()),
            )
        })?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RpcClient {
            reader: BufReader::new(s),
            next_id: 1,
        })
    }

    /// Calls `method`; Ok(result) or Err((code, message)).
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> std::io::Result<Result<Value, (i64, String)>> {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.reader.get_mut(), "{req}")?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the control connection (did it stop? see its log)",
            ));
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if let Some(e) = v.get("error") {
            return Ok(Err((
                e.get("code").and_then(Value::as_i64).unwrap_or(0),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )));
        }
        Ok(Ok(v.get("result").cloned().unwrap_or(Value::Null)))
    }
}
