//! The commands: one module per subcommand, each owning its arguments and its glue; this
//! module parses the command line, sets up logging and the runtime, and dispatches.
//!
//! Guarantees: the library below (engine, api, input, …) never sees a raw argument; every
//! command's outcome becomes an exit code of the documented table.

pub(crate) mod apply;
pub(crate) mod args;
pub(crate) mod bench;
pub use bench::cpu_seconds;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod help;
pub(crate) mod hook;
pub(crate) mod profile;
pub(crate) mod quota;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod sim;
pub(crate) mod undo;
pub(crate) mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::exit;
use args::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "simbulk",
    version,
    about = "Apply bulk changes to IoT SIM cards through a provider's SIM API: fast, safe, resumable, auditable.",
    after_help = exit::TABLE
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Less output: warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// More output (-v debug, -vv trace). RUST_LOG, when set, wins.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Colours on stderr: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub(crate) color: Color,

    /// The config file with the profiles [default: $XDG_CONFIG_HOME/simbulk/config.toml].
    #[arg(long, global = true, env = "SIMBULK_CONFIG", value_name = "PATH")]
    pub(crate) config: Option<std::path::PathBuf>,

    /// The profile of the config file to use [default: its default-profile].
    #[arg(long, global = true, env = "SIMBULK_PROFILE", value_name = "NAME")]
    pub(crate) profile: Option<String>,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether stderr gets colours.
    pub(crate) fn on(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a bulk job: apply every row of INPUT through the SIM API.
    #[command(after_help = help::run(), args_override_self = true)]
    Run(Box<run::RunArgs>),
    /// Make the fleet what a desired-state file says: plan against live state, show, apply.
    #[command(after_help = help::apply(), args_override_self = true)]
    Apply(Box<apply::ApplyArgs>),
    /// Run sample jobs against an embedded simulator, to see simbulk at work.
    #[command(after_help = help::DEMO)]
    Demo(demo::DemoArgs),
    /// Serve the SIM API simulator (for rehearsals, tests and benchmarks).
    #[command(after_help = help::SIM)]
    Sim(Box<sim::SimArgs>),
    /// Measure the engine against a simulator (rows/s, latency, memory, CPU per row).
    #[command(after_help = help::BENCH, args_override_self = true)]
    Bench(Box<bench::BenchArgs>),
    /// Summarise a results file: outcomes, errors, throughput over time (text, or --html).
    #[command(after_help = help::REPORT)]
    Report(report::ReportArgs),
    /// Write the job that puts back what a finished job changed (from its results file).
    #[command(after_help = help::UNDO)]
    Undo(undo::UndoArgs),
    /// Read every SIM a job touched and name each that is no longer as the job left it.
    #[command(args_override_self = true)]
    Verify(Box<verify::VerifyArgs>),
    /// List SIMs (with filters) to a CSV that `simbulk run` can take as input.
    #[command(after_help = help::EXPORT, args_override_self = true)]
    Export(Box<export::ExportArgs>),
    /// The account rate budgets shared by concurrent jobs: `quota status` lists them.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// Profiles and settings: `config show` prints the effective settings and their sources.
    #[command(after_help = help::CONFIG, subcommand)]
    Config(ConfigCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per subcommand with --dir.
    #[command(after_help = help::MAN)]
    Man {
        /// Write simbulk.1 and simbulk-<subcommand>.1 into this folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

impl Command {
    /// Threads of the async runtime. A client needs one: its work is waiting on the network,
    /// and its file and CPU work has threads of its own (reader, recorder, fingerprint), so a
    /// second worker only adds wake-ups between the two (measured in
    /// docs/design/performance.md: a fifth to a quarter of the CPU per row). A simulator
    /// serves with every core (`sim`, `demo`, `bench --in-process`).
    fn workers(&self) -> usize {
        let serves = match self {
            Command::Sim(_) | Command::Demo(_) => true,
            Command::Bench(b) => b.in_process,
            _ => false,
        };
        if serves {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            1
        }
    }
}

/// `simbulk config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// The settings a subcommand would use, each with its source (flag > env > profile >
    /// default); secrets masked.
    Show {
        /// The subcommand whose settings to show.
        #[arg(long = "for", value_name = "SUBCOMMAND", default_value = "run")]
        command: String,
    },
    /// Where the config file is looked for, and the profiles it has.
    Path,
}

/// The command line as clap sees it: every option reading `SIMBULK_<OPTION>`.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    profile::with_env(Cli::command())
}

/// Parses the process's arguments with the selected profile's settings in them.
fn parse() -> Result<(Cli, Option<profile::Selected>), String> {
    use clap::FromArgMatches;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The simulator and the tools that start one read no SIMBULK_ variable and no profile.
    if profile::without_env(&argv) {
        use clap::CommandFactory;
        let matches = profile::no_env(Cli::command()).get_matches_from(argv);
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        return Ok((cli, None));
    }
    let cmd = command();
    let selected = profile::select(&argv)?;
    let argv = match &selected {
        Some(sel) => profile::apply(&cmd, argv, sel)?,
        None => argv,
    };
    let color = match profile::global(&argv, "--color").is_some_and(|c| c == "never")
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    {
        true => clap::ColorChoice::Never,
        false => clap::ColorChoice::Auto,
    };
    let matches = cmd.color(color).get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    Ok((cli, selected))
}

/// The profile in use (set once, at start), for `config show`.
static PROFILE: std::sync::OnceLock<profile::Selected> = std::sync::OnceLock::new();

/// `-q`: a job's summary stays off standard output (set once, at start).
static QUIET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Says why simbulk cannot go on: `error: …` on standard error, or with `--log-format
/// json` one JSON log record (level ERROR, the message in `error`).
pub(crate) fn fatal(e: impl std::fmt::Display) {
    if crate::output::progress::json() {
        tracing::error!(error = %e, "fatal");
    } else {
        eprintln!("error: {e}");
    }
}

/// Whether `-q` was given.
pub(crate) fn quiet() -> bool {
    QUIET.get().copied().unwrap_or(false)
}

/// Runs `simbulk` with the process's arguments.
pub fn main() -> ExitCode {
    let (cli, selected) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE.into();
        }
    };
    if let Some(sel) = &selected {
        PROFILE.get_or_init(|| sel.clone());
    }
    let _ = QUIET.set(cli.quiet);
    crate::output::progress::set_json(cli.log_format == LogFormat::Json);
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.command.workers())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::USAGE.into();
        }
    };
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            fatal(&e);
            e.exit_code()
        }
    };
    // In-flight work abandoned by an abort must not hold the process open.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    // Tests of bounded memory read the program's own peak here (debug builds only).
    #[cfg(debug_assertions)]
    if std::env::var_os("SIMBULK_TEST_PEAK_RSS").is_some() {
        eprintln!(
            "simbulk-test-peak-rss-kib {}",
            bench::peak_rss_kib().unwrap_or(0)
        );
    }
    code.into()
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    // Dependencies stay at info unless RUST_LOG asks: their trace output is noise (and may
    // echo request headers).
    let default = format!("{level},hyper=info,hyper_util=info,reqwest=info,rustls=info,h2=info");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::output::progress::LogWriter)
        .with_target(false)
        .with_ansi(cli.color.on());
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn dispatch(cli: Cli) -> error::Outcome {
    match cli.command {
        Command::Run(args) => run::run(*args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sim(args) => sim::run(*args).await,
        Command::Bench(args) => bench::run(*args).await,
        Command::Report(args) => report::run(&args),
        Command::Undo(args) => undo::run(&args),
        Command::Verify(args) => verify::run(*args).await,
        Command::Apply(args) => apply::run(*args).await,
        Command::Export(args) => export::run(*args).await,
        Command::Config(c) => config::run(&c, PROFILE.get()),
        Command::Quota(c) => quota::run(c).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "simbulk", &mut out);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            crate::output::stdout::write_bytes(&out);
            Ok(exit::OK)
        }
        Command::Man { dir } => config::man(dir.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_flag_for_the_secret() {
        let r = Cli::try_parse_from(["simbulk", "run", "x.csv", "--client-secret", "s"]);
        assert!(r.is_err());
    }

    #[test]
    fn out_of_range_flags_are_usage_errors() {
        for bad in [
            ["--max-retries", "4294967295"],
            ["--burst", "0"],
            ["--concurrency", "0"],
        ] {
            let r = Cli::try_parse_from(["simbulk", "run", "x.csv", bad[0], bad[1]]);
            assert!(r.is_err(), "{bad:?}");
        }
    }
}
