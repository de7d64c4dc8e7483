//! The binary's body: parse the command line, set up logging and the runtime, dispatch,
//! and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};
use crate::exit;

/// Runs `simbulk` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = rt.block_on(dispatch(cli));
    // In-flight work abandoned by an abort must not hold the process open.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    // Tests of bounded memory read the program's own peak here (debug builds only).
    #[cfg(debug_assertions)]
    if std::env::var_os("SIMBULK_TEST_PEAK_RSS").is_some() {
        eprintln!(
            "simbulk-test-peak-rss-kib {}",
            crate::bench::peak_rss_kib().unwrap_or(0)
        );
    }
    ExitCode::from(code)
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => crate::job::run_command(*args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Sim(args) => run_sim(*args).await,
        Command::Bench(args) => crate::bench::run(*args).await,
        Command::Report(args) => crate::report::run(&args),
        Command::Export(args) => crate::export::run(*args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "simbulk", &mut out);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            crate::output::stdout::write_bytes(&out);
            exit::OK
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => {
                    crate::output::stdout::write_bytes(&out);
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::HALTED
                }
            }
        }
    }
}

async fn run_sim(args: crate::cli::SimArgs) -> u8 {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let client = cfg.clients[0].clone();
    let (sims, seed) = (cfg.sims, cfg.seed);
    let server = match crate::sim::SimServer::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    crate::output::stdout::print(&format!(
        "{}\nclient id:     {}\nclient secret: {}\nsims: {sims} (seed {seed}); stats at {}/__sim/stats, ledger at {}/__sim/ledger\n",
        server.base_url(),
        client.id,
        client.secret,
        server.base_url(),
        server.base_url()
    ));
    crate::signal::first().await;
    tracing::info!("stopping the simulator");
    match server.stop().await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: saving the simulator state failed: {e:#}");
            exit::HALTED
        }
    }
}
