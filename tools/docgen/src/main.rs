//! `ferrovia-docgen`: man pages and shell completions for every Ferrovia binary, from the
//! clap definitions in `commands.rs`, and a check that those definitions still match what
//! each binary's `--help` says.
//!
//! ```text
//! ferrovia-docgen man DIR           # DIR/<binary>.1
//! ferrovia-docgen completions DIR   # DIR/bash/<binary>, DIR/zsh/_<binary>, DIR/fish/<binary>.fish
//! ferrovia-docgen check BINDIR      # run BINDIR/<binary> --help and compare the options
//! ```
//!
//! `man` and `completions` take `--rename OLD=NEW` to document a binary installed under
//! another name (the Debian package installs testpmd as ferrovia-testpmd).

mod commands;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use clap_complete::Shell;

const USAGE: &str = "usage: ferrovia-docgen man DIR [--rename OLD=NEW] | completions DIR [--rename OLD=NEW] | check BINDIR";

/// The commands, with `--rename OLD=NEW` applied.
fn commands_renamed(args: &[String]) -> Result<Vec<clap::Command>, String> {
    let mut renames = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rename" => {
                let v = it.next().ok_or("--rename needs OLD=NEW")?;
                let (old, new) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--rename {v:?}: expected OLD=NEW"))?;
                renames.push((old.to_string(), new.to_string()));
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let mut cmds = commands::all();
    for (old, new) in renames {
        let c = cmds
            .iter_mut()
            .find(|c| c.get_name() == old)
            .ok_or_else(|| format!("--rename: no command named {old:?}"))?;
        *c = c.clone().name(new.clone()).bin_name(new);
    }
    Ok(cmds)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match (args.first().map(String::as_str), args.get(1)) {
        (Some("man"), Some(d)) => commands_renamed(&args[2..]).and_then(|c| man(Path::new(d), c)),
        (Some("completions"), Some(d)) => {
            commands_renamed(&args[2..]).and_then(|c| completions(Path::new(d), c))
        }
        (Some("check"), Some(d)) => check(Path::new(d)),
        (Some("-h" | "--help"), _) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrovia-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn create_dir(d: &Path) -> Result<(), String> {
    std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
}

fn man(dir: &Path, cmds: Vec<clap::Command>) -> Result<(), String> {
    create_dir(dir)?;
    for cmd in cmds {
        // One page per command, and one per subcommand (ferrovia-ctl-add-br.1, ...), which the
        // command's page lists.
        let cmd = cmd
            .version(env!("CARGO_PKG_VERSION"))
            .disable_version_flag(true);
        clap_mangen::generate_to(cmd.clone(), dir)
            .map_err(|e| format!("writing the pages of {}: {e}", cmd.get_name()))?;
        println!("{}", dir.join(format!("{}.1", cmd.get_name())).display());
    }
    Ok(())
}

fn completions(dir: &Path, cmds: Vec<clap::Command>) -> Result<(), String> {
    for (shell, sub) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let d = dir.join(sub);
        create_dir(&d)?;
        for mut cmd in cmds.iter().cloned() {
            let name = cmd.get_name().to_string();
            let path = clap_complete::generate_to(shell, &mut cmd, &name, &d)
                .map_err(|e| format!("{sub} completion for {name}: {e}"))?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// The long options (`--name`) a text mentions.
fn long_options(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'-');
        if starts && b[i + 2].is_ascii_lowercase() {
            let mut j = i + 2;
            while j < b.len()
                && (b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-')
            {
                j += 1;
            }
            out.insert(text[i + 2..j].trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The long options a definition declares (with its subcommands').
fn declared(cmd: &clap::Command) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for s in cmd.get_subcommands() {
        out.extend(declared(s));
    }
    out
}

fn check(bindir: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    for cmd in commands::all() {
        let name = cmd.get_name().to_string();
        let bin = bindir.join(&name);
        let out = std::process::Command::new(&bin)
            .arg("--help")
            .env("CNI_COMMAND", "")
            .output()
            .map_err(|e| format!("cannot run {} --help: {e} (build it first)", bin.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut said = long_options(&text);
        said.insert("help".into());
        let mut decl = declared(&cmd);
        decl.insert("help".into());
        for o in said.difference(&decl) {
            problems.push(format!(
                "{name}: --{o} is in --help but not in the man page definition (add it to tools/docgen/src/commands.rs)"
            ));
        }
        for o in decl.difference(&said) {
            problems.push(format!(
                "{name}: --{o} is in the man page definition but not in --help (remove it, or the binary lost it)"
            ));
        }
        // ferrovia-ctl, iplex: every command word of the usage is a subcommand of the
        // definition (clap's own `help` subcommand counts where the definition keeps it).
        if name == "ferrovia-ctl" || name == "iplex" {
            let mut subs: BTreeSet<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            if !cmd.is_disable_help_subcommand_set() {
                subs.insert("help".into());
            }
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("  ") else {
                    continue;
                };
                let word = rest.split_whitespace().next().unwrap_or("");
                if !word.is_empty()
                    && !word.starts_with('-')
                    && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    && !subs.contains(word)
                {
                    problems.push(format!(
                        "{name}: command {word:?} is in --help but not in the definition"
                    ));
                }
            }
        }
        println!("{name}: {} long options checked", decl.len());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_valid_and_render() {
        for cmd in commands::all() {
            cmd.clone().debug_assert();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd.clone()).render(&mut buf).unwrap();
            let s = String::from_utf8(buf).unwrap();
            assert!(s.contains(".TH"), "{s}");
            let mut c = cmd.clone();
            let mut out = Vec::new();
            clap_complete::generate(Shell::Bash, &mut c, cmd.get_name(), &mut out);
            assert!(!out.is_empty());
        }
    }

    #[test]
    fn finds_long_options() {
        let s = long_options("  --rxq=N, --txq=N   x--y  --no-pci --tx-first\n-l, --lcores LIST");
        let v: Vec<_> = s.into_iter().collect();
        assert_eq!(v, ["lcores", "no-pci", "rxq", "tx-first", "txq"]);
    }
}
