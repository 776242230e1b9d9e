//! The `ferrovia-cni` executable: the runtime sets the CNI_* environment, writes the network
//! configuration to stdin and reads the result (or the error object) on stdout.

use std::io::{Read, Write};
use std::process::ExitCode;

use ferrovia_cni::env::CniEnv;
use ferrovia_cni::plugin;

const HELP: &str = "\
ferrovia-cni: a Kubernetes CNI plugin (spec 1.0, 1.1) attaching pods to ferrovia-switch over
vhost-user. A container runtime runs it: CNI_COMMAND (ADD, DEL, CHECK, VERSION, GC, STATUS),
CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in the environment, the network
configuration on stdin, the result or an error object on stdout.

  -h, --help    this text

Try: CNI_COMMAND=VERSION ferrovia-cni < /dev/null. See docs/cni.md for the configuration.";

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let print = |v: &serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_default()
        );
    };
    let env = match CniEnv::from_lookup(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => {
            print(&e.to_json("1.1.0"));
            return ExitCode::FAILURE;
        }
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let e = ferrovia_cni::error::CniError::new(
            ferrovia_cni::error::Code::Io,
            "cannot read the network configuration from stdin",
        )
        .details(e);
        print(&e.to_json("1.1.0"));
        return ExitCode::FAILURE;
    }
    match plugin::run(&env, &stdin) {
        Ok(Some(v)) => {
            print(&v);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err((version, e)) => {
            eprintln!("ferrovia-cni: {e}");
            print(&e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
