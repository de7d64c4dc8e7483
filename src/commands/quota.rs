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
        /// The folder of this host's budgets [default: $XDG_RUNTIME_DIR/simbulk, or
        /// /tmp/simbulk-UID without XDG_RUNTIME_DIR].
        #[arg(long, value_name = "DIR")]
        quota_dir: Option<PathBuf>,
        /// A Redis holding budgets shared across hosts.
        #[arg(long, value_name = "URL")]
        quota_url: Option<crate::quota::RedisUrl>,
    },
}

/// `simbulk quota status`.
pub(crate) async fn run(c: QuotaCommand) -> super::error::Outcome {
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
    let s = states.map_err(super::error::CliError::halted)?;
    crate::output::stdout::print(&text(&s, crate::quota::now()));
    Ok(exit::OK)
}

/// Why the account's rate is what it is: a cut in force and when it is over, or the live job
/// whose wish it is and when that wish lapses.
fn why(st: &State, live: &[(&String, &crate::quota::state::Lease)], now: f64) -> String {
    let effective = st.effective(now);
    if st.cut_rate > 0.0 && effective < st.rate {
        let back = (st.rate - effective) / (0.05 * st.rate).max(1e-9);
        return format!(
            "a 429 cut it; climbing back to {:.1}/s, there in about {back:.0}s",
            st.rate
        );
    }
    let slowest = live
        .iter()
        .min_by(|a, b| a.1.asked.total_cmp(&b.1.asked))
        .map(|(_, l)| l);
    match slowest {
        Some(l) => format!(
            "the smallest rate a live job asked for: {:.1}/s by {} pid {} (its lease lapses in {:.1}s unless it calls again)",
            l.asked,
            l.host,
            l.pid,
            (l.expires - now).max(0.0)
        ),
        None => "no live job".into(),
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
            "account {}: {:.1}/s in force, burst {}, {} job(s)",
            st.account,
            st.effective(now),
            st.burst,
            live.len()
        );
        let _ = writeln!(s, "  why: {}", why(st, &live, now));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::state::Me;

    #[test]
    fn status_says_the_rate_in_force_why_and_when_it_lapses() {
        let me = |id: &str, rate: f64| Me {
            id: id.into(),
            host: "h".into(),
            pid: 7,
            weight: 1.0,
            rate,
            burst: 1.0,
        };
        let mut st = State {
            account: "https://api example-client".into(),
            ..State::default()
        };
        st.reserve(&me("a", 20.0), 100.0);
        st.reserve(&me("b", 10.0), 100.0);
        let t = text(std::slice::from_ref(&st), 101.0);
        assert!(t.contains("10.0/s in force"), "{t}");
        assert!(
            t.contains("asked for: 10.0/s by h pid 7 (its lease lapses in 2.0s"),
            "{t}"
        );
        st.throttled(&me("a", 20.0), None, 101.0);
        let t = text(std::slice::from_ref(&st), 101.5);
        assert!(t.contains("a 429 cut it; climbing back to 10.0/s"), "{t}");
        assert!(text(&[st], 200.0).contains("no job shares a rate budget now"));
    }
}
