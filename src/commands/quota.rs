//! `simbulk quota status`: the accounts whose jobs share a rate budget here (or in Redis),
//! each with its rate and its active jobs (host, pid, share, calls, 429s).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;

use crate::exit;
use crate::quota::state::State;

/// `simbulk quota …`.
#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
    /// The shared rate budgets and their active jobs.
    Status {
        /// The folder of this host's budgets [default: $XDG_RUNTIME_DIR/simbulk].
        #[arg(long, value_name = "DIR")]
        quota_dir: Option<PathBuf>,
        /// A Redis holding budgets shared across hosts.
        #[arg(long, value_name = "URL")]
        quota_url: Option<String>,
    },
}

/// `simbulk quota status`.
pub(crate) async fn run(c: QuotaCommand) -> u8 {
    let QuotaCommand::Status {
        quota_dir,
        quota_url,
    } = c;
    let states = match &quota_url {
        Some(url) => match crate::quota::remote::RedisStore::connect(url, "").await {
            Ok(r) => r.all().await,
            Err(e) => Err(e),
        },
        None => Ok(crate::quota::file::all(
            &quota_dir.unwrap_or_else(crate::quota::default_dir),
        )),
    };
    match states {
        Ok(s) => {
            crate::output::stdout::print(&text(&s, crate::quota::now()));
            exit::OK
        }
        Err(e) => {
            super::fatal(e);
            exit::HALTED
        }
    }
}

fn text(states: &[State], now: f64) -> String {
    let mut s = String::new();
    let mut any = false;
    for st in states {
        let live: Vec<_> = st.jobs.iter().filter(|(_, l)| l.expires >= now).collect();
        if live.is_empty() {
            continue;
        }
        any = true;
        let total: f64 = live.iter().map(|(_, l)| l.weight).sum();
        let _ = writeln!(
            s,
            "account {}: {:.1}/s (now {:.1}/s), burst {}, {} job(s)",
            st.account,
            st.rate,
            st.effective(now),
            st.burst,
            live.len()
        );
        for (_, l) in live {
            let _ = writeln!(
                s,
                "  {:<24} pid {:<8} share {:>5.1} %  asked {:.1}/s  calls {}  429s {}",
                l.host,
                l.pid,
                l.weight * 100.0 / total.max(1e-9),
                l.asked,
                l.calls,
                l.throttled
            );
        }
    }
    if !any {
        s += "no job shares a rate budget now\n";
    }
    s
}
