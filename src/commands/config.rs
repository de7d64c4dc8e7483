//! `simbulk config show|path` (the effective settings and where they come from) and
//! `simbulk man` (the man pages, one per subcommand with `--dir`).
//!
//! Guarantees: a secret's value is never printed (masked); `man --dir` writes only into the
//! folder it is given.

use std::fmt::Write as _;
use std::path::Path;

use super::error::{CliError, Outcome};
use super::profile::Selected;
use super::{ConfigCommand, command};
use crate::exit;

/// `simbulk config …`.
pub(crate) fn run(c: &ConfigCommand, profile: Option<&Selected>) -> Outcome {
    match c {
        ConfigCommand::Show { command: sub } => {
            let text = show(sub, profile).map_err(CliError::Usage)?;
            crate::output::stdout::print(&text);
            Ok(exit::OK)
        }
        ConfigCommand::Path => {
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            let mut s = String::new();
            match super::profile::config_path(&argv) {
                Some((p, _)) => {
                    let _ = writeln!(
                        s,
                        "config file: {}{}",
                        p.display(),
                        if p.exists() { "" } else { " (not there)" }
                    );
                }
                None => s += "config file: none (no home folder)\n",
            }
            if let Some(p) = profile {
                let _ = writeln!(s, "profile:     {}", p.name);
            }
            crate::output::stdout::print(&s);
            Ok(exit::OK)
        }
    }
}

/// Whether a setting holds or names a secret (its value is masked).
fn secret(name: &str) -> bool {
    name.contains("secret")
}

/// The settings of `sub`, each with its value and source.
fn show(sub: &str, profile: Option<&Selected>) -> Result<String, String> {
    let cmd = command();
    let Some(c) = cmd.find_subcommand(sub) else {
        return Err(format!("no subcommand {sub:?}"));
    };
    let mut s = String::new();
    match profile {
        Some(p) => {
            let _ = writeln!(s, "profile {} from {}", p.name, p.path.display());
        }
        None => s += "no profile in use\n",
    }
    let _ = writeln!(
        s,
        "settings of simbulk {sub} (flag > env > profile > default):"
    );
    for arg in c.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .and_then(|e| std::env::var_os(e).map(|v| (e.to_string_lossy().into_owned(), v)))
            .filter(|(_, v)| !v.is_empty());
        let (value, source) = if let Some((name, v)) = env {
            (v.to_string_lossy().into_owned(), format!("env {name}"))
        } else if let Some(v) = profile.and_then(|p| p.settings.get(long).map(|v| (p, v))) {
            (toml_text(v.1), format!("profile {}", v.0.name))
        } else {
            let d: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if d.is_empty() {
                continue;
            }
            (d.join(","), "default".to_owned())
        };
        let value = if secret(long) && long != "client-secret-file" {
            "********".to_owned()
        } else {
            value
        };
        let _ = writeln!(s, "  {long:<26} {value:<40} ({source})");
    }
    if std::env::var_os("SIMBULK_CLIENT_SECRET").is_some_and(|v| !v.is_empty()) {
        let _ = writeln!(
            s,
            "  {:<26} {:<40} (env SIMBULK_CLIENT_SECRET)",
            "client secret", "********"
        );
    }
    Ok(s)
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `simbulk man`: the main page on stdout, or every page into `dir`.
pub(crate) fn man(dir: Option<&Path>) -> Outcome {
    let cmd = command();
    let written = match dir {
        Some(d) => std::fs::create_dir_all(d).and_then(|()| clap_mangen::generate_to(cmd, d)),
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out).map(|()| {
                crate::output::stdout::write_bytes(&out);
            })
        }
    };
    written.map_err(|e| CliError::halted(format_args!("cannot write the man pages: {e}")))?;
    Ok(exit::OK)
}
