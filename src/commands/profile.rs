//! Profiles: named settings for several accounts in one config file
//! (`$XDG_CONFIG_HOME/simbulk/config.toml`, or `--config` / `SIMBULK_CONFIG`), picked with
//! `--profile NAME` / `SIMBULK_PROFILE` or the file's `default-profile`. A profile's keys are
//! the long option names (`base-url`, `client-secret-file`, `rate`, …) plus `provider`,
//! `region` and a `wire` table; every option also reads `SIMBULK_<OPTION>`.
//!
//! Precedence: flag > environment > profile > default. The profile's values go into the
//! command line right after the subcommand's name, for the options the subcommand has and
//! the environment does not set; a flag given later overrides them.
//!
//! Guarantees: a profile never holds the secret itself (`client-secret` is refused: use a
//! file or a command); an unknown key or profile is a usage error naming the file; the file
//! is read bounded.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest config file read.
const MAX_CONFIG: u64 = 1 << 20;

/// The subcommands that talk to the provider: the ones a profile's settings go to.
const PROFILE_COMMANDS: [&str; 3] = ["run", "apply", "export"];

/// Global options that take a value (to find the subcommand's name among the arguments).
const GLOBAL_VALUES: [&str; 4] = ["--log-format", "--config", "--profile", "--color"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct File {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Table>,
}

/// The profile in use.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    /// Its settings, `wire` flattened to `wire-suspend` and `wire-attribute-name`.
    pub(crate) settings: BTreeMap<String, toml::Value>,
}

/// The value of a global option in `argv` (`--name V` or `--name=V`), before any `--`.
pub(crate) fn global(argv: &[OsString], name: &str) -> Option<OsString> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == name {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.into());
        }
    }
    None
}

/// The config file: `--config`, `SIMBULK_CONFIG`, or the XDG one; whether it was named.
pub(crate) fn config_path(argv: &[OsString]) -> Option<(PathBuf, bool)> {
    if let Some(p) = global(argv, "--config").or_else(|| std::env::var_os("SIMBULK_CONFIG")) {
        return Some((PathBuf::from(p), true));
    }
    use etcetera::BaseStrategy as _;
    let dir = etcetera::choose_base_strategy().ok()?.config_dir();
    Some((dir.join("simbulk").join("config.toml"), false))
}

/// The profile `argv` and the environment select, if any.
pub(crate) fn select(argv: &[OsString]) -> Result<Option<Selected>, String> {
    let asked = global(argv, "--profile")
        .or_else(|| std::env::var_os("SIMBULK_PROFILE"))
        .map(|p| p.to_string_lossy().into_owned());
    let Some((path, named)) = config_path(argv) else {
        return match asked {
            Some(p) => Err(format!(
                "--profile {p}: no config file (give --config PATH)"
            )),
            None => Ok(None),
        };
    };
    if !named && !path.exists() {
        return match asked {
            Some(p) => Err(format!(
                "--profile {p}: there is no config file at {}; create it (see simbulk config --help) or give --config PATH",
                path.display()
            )),
            None => Ok(None),
        };
    }
    let file = read(&path)?;
    let Some(name) = asked.or(file.default_profile.clone()) else {
        return Ok(None);
    };
    let Some(table) = file.profiles.get(&name) else {
        let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        return Err(format!(
            "config file {}: no profile {name:?} (it has: {})",
            path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    };
    let settings = flatten(table)
        .map_err(|e| format!("config file {}, profile {name}: {e}", path.display()))?;
    Ok(Some(Selected {
        path,
        name,
        settings,
    }))
}

fn read(path: &Path) -> Result<File, String> {
    let bytes =
        crate::files::read_regular(path, "--config", MAX_CONFIG).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("config file {} is not UTF-8 text", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// A profile's table as option names and values: the `wire` table's keys become
/// `wire-<key>`; the secret itself is refused.
fn flatten(t: &toml::Table) -> Result<BTreeMap<String, toml::Value>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in t {
        match (k.as_str(), v) {
            ("client-secret", _) => {
                return Err("a profile does not hold the secret itself: give client-secret-file (chmod 600) or client-secret-command".into());
            }
            ("wire", toml::Value::Table(w)) => {
                let checked: crate::api::wire::Wire =
                    w.clone().try_into().map_err(|e| format!("wire: {e}"))?;
                let _ = checked;
                for (wk, wv) in w {
                    out.insert(format!("wire-{}", wk.replace('_', "-")), wv.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

/// A setting's value as a command-line word (`~/` expanded for paths).
fn word(key: &str, v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) if key.ends_with("-file") || key == "ca-bundle" => {
            match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => Path::new(&home).join(rest).display().to_string(),
                _ => s.clone(),
            }
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(format!(
                "{key}: a {} is not a value an option takes",
                other.type_str()
            ));
        }
    })
}

/// The index of the subcommand's name in `argv`.
fn subcommand_at(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let s = argv[i].to_string_lossy();
        if GLOBAL_VALUES.contains(&s.as_ref()) {
            i += 2;
            continue;
        }
        if !s.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// How an option of `sub` gets its value from the profile: the words to add, or `None` when
/// the environment sets it (or the subcommand has no such option).
fn words_for(
    sub: &clap::Command,
    key: &str,
    v: &toml::Value,
) -> Result<Option<Vec<String>>, String> {
    let Some(arg) = sub.get_arguments().find(|a| a.get_long() == Some(key)) else {
        return Ok(None);
    };
    if arg
        .get_env()
        .is_some_and(|e| std::env::var_os(e).is_some_and(|v| !v.is_empty()))
    {
        return Ok(None);
    }
    let flag = format!("--{key}");
    if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
        return match v {
            toml::Value::Boolean(true) => Ok(Some(vec![flag])),
            toml::Value::Boolean(false) => Ok(Some(Vec::new())),
            _ => Err(format!("{key} is a switch: give true or false")),
        };
    }
    Ok(Some(vec![flag, word(key, v)?]))
}

/// `argv` with the profile's settings after the subcommand's name, for the options the
/// subcommand has and the environment does not set. A key no subcommand has is an error.
pub(crate) fn apply(
    cmd: &clap::Command,
    argv: Vec<OsString>,
    sel: &Selected,
) -> Result<Vec<OsString>, String> {
    let known = |key: &str| {
        cmd.get_subcommands()
            .chain(std::iter::once(cmd))
            .any(|c| c.get_arguments().any(|a| a.get_long() == Some(key)))
    };
    for key in sel.settings.keys() {
        if !known(key) {
            return Err(format!(
                "config file {}, profile {}: unknown setting {key:?}; settings are the long option names (e.g. rate = 10, base-url = \"https://…\")",
                sel.path.display(),
                sel.name
            ));
        }
    }
    let Some(at) = subcommand_at(&argv) else {
        return Ok(argv);
    };
    let name = argv[at].to_string_lossy().into_owned();
    let Some(sub) = cmd
        .find_subcommand(&name)
        .filter(|_| PROFILE_COMMANDS.contains(&name.as_str()))
    else {
        return Ok(argv);
    };
    let mut added = Vec::new();
    for (key, v) in &sel.settings {
        let words = words_for(sub, key, v).map_err(|e| {
            format!(
                "config file {}, profile {}: {e}",
                sel.path.display(),
                sel.name
            )
        })?;
        added.extend(words.into_iter().flatten().map(OsString::from));
    }
    let mut out = argv;
    out.splice(at + 1..at + 1, added);
    Ok(out)
}

/// The environment variable of an option: `SIMBULK_` and its long name in capitals.
pub(crate) fn env_name(long: &str) -> String {
    format!("SIMBULK_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// Subcommands whose options do not read the environment: the simulator and the tools that
/// start one (`SIMBULK_CLIENT_SECRET`, a provider's secret, must never become the
/// simulator's printed demo secret).
const NO_ENV: [&str; 3] = ["sim", "bench", "demo"];

/// Whether `argv` runs a subcommand that reads no `SIMBULK_` variable (global options
/// included) and takes no profile.
pub(crate) fn without_env(argv: &[OsString]) -> bool {
    subcommand_at(argv).is_some_and(|i| NO_ENV.contains(&argv[i].to_string_lossy().as_ref()))
}

/// `cmd` with every `SIMBULK_` variable of its own options (the global ones) unread.
pub(crate) fn no_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.env(None::<&'static str>))
}

/// Every option with a long name reads `SIMBULK_<OPTION>` unless it names its own variable
/// (counters and help excepted), but in [`NO_ENV`]. A flag's variable takes `1`/`0`,
/// `true`/`false`, `yes`/`no` (and `on`/`off`).
pub(crate) fn with_env(cmd: clap::Command) -> clap::Command {
    fn each(c: clap::Command) -> clap::Command {
        if NO_ENV.contains(&c.get_name()) {
            return c;
        }
        let c = c.mut_args(|a| {
            let skip = a.get_env().is_some()
                || a.get_long()
                    .is_none_or(|l| l == "help" || l == "version" || l.contains("secret"))
                || matches!(
                    a.get_action(),
                    clap::ArgAction::Count | clap::ArgAction::Help | clap::ArgAction::Version
                )
                // An option whose value may be left out (`--preview [PATH]`): in a variable,
                // `1` could mean "on" or a file named 1, so it reads none.
                || (a.get_action().takes_values()
                    && a.get_num_args().is_some_and(|n| n.min_values() == 0));
            let flag = matches!(
                a.get_action(),
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
            );
            match a.get_long().map(env_name) {
                Some(name) if !skip && flag => a
                    .env(name)
                    .value_parser(clap::builder::BoolishValueParser::new()),
                Some(name) if !skip => a.env(name),
                _ => a,
            }
        });
        c.mut_subcommands(each)
    }
    each(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_globals_and_the_subcommand() {
        let a = os(&[
            "simbulk",
            "--profile",
            "prod",
            "-q",
            "run",
            "x.csv",
            "--config=c.toml",
        ]);
        assert_eq!(global(&a, "--profile"), Some("prod".into()));
        assert_eq!(global(&a, "--config"), Some("c.toml".into()));
        assert_eq!(subcommand_at(&a), Some(4));
        assert_eq!(env_name("max-retries"), "SIMBULK_MAX_RETRIES");
    }

    #[test]
    fn the_simulator_never_takes_a_secret_from_the_environment() {
        use clap::CommandFactory;
        let cmd = with_env(crate::commands::Cli::command());
        let sim = cmd.find_subcommand("sim").unwrap();
        assert!(sim.get_arguments().all(|a| a.get_env().is_none()));
        let run = cmd.find_subcommand("run").unwrap();
        let rate = run
            .get_arguments()
            .find(|a| a.get_long() == Some("rate"))
            .unwrap();
        assert_eq!(rate.get_env().unwrap(), "SIMBULK_RATE");
    }

    #[test]
    fn flattens_wire_and_refuses_the_secret() {
        let t: toml::Table = toml::from_str("rate = 5\n[wire]\nsuspend = \"yes-no\"").unwrap();
        let f = flatten(&t).unwrap();
        assert_eq!(f["wire-suspend"].as_str(), Some("yes-no"));
        let t: toml::Table = toml::from_str("client-secret = \"x\"").unwrap();
        assert!(
            flatten(&t)
                .unwrap_err()
                .contains("does not hold the secret")
        );
        let t: toml::Table = toml::from_str("[wire]\nsuspnd = \"yes-no\"").unwrap();
        assert!(flatten(&t).is_err());
    }
}
