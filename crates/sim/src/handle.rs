//! Starting and stopping a simulator, in process (tests, demo, bench) or as `simbulk sim`.
//!
//! Guarantees: [`SimServer::start`] returns once the socket is bound, so the address it
//! reports accepts connections; [`SimServer::stop`] closes every connection and saves the
//! state file when one is configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::app::App;
use super::config::SimConfig;
use super::ledger::{Ledger, LedgerEntry, StatsReport};
use super::persist;
use super::server;
use super::state::World;
use super::{FaultConfig, seed};

/// A running simulator.
pub struct SimServer {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl SimServer {
    /// Builds the world (from the state file or the seed), binds `cfg.addr` and serves.
    pub async fn start(cfg: SimConfig) -> Result<Self, persist::SimError> {
        let other = cfg.provider != super::config::Provider::Eseye;
        if other && cfg.state_file.is_some() {
            return Err(persist::SimError::Unsupported(format!(
                "--state-file is kept only by the Eseye mode, not with --provider {}: leave it out",
                cfg.provider.name()
            )));
        }
        let restored = match &cfg.state_file {
            Some(p) => persist::load_state(p)?,
            None => None,
        };
        let (world, ledger) = match restored {
            Some(r) => {
                let now = Instant::now();
                let mut sims = r.sims;
                for s in &mut sims {
                    if s.sim.status == "pendingProvision" {
                        s.active_at = Some(now + cfg.activation_delay);
                    }
                }
                (World::new(sims, r.next_attribute_id), r.ledger)
            }
            // The other providers' modes keep their own fleet (built by the app from the seed).
            None if other => (World::new(Vec::new(), seed::FIRST_ATTRIBUTE_ID), Vec::new()),
            None => {
                let (sims, next) = seed::generate(cfg.seed, cfg.sims);
                (World::new(sims, next), Vec::new())
            }
        };
        let ledger = Ledger::new(cfg.ledger_limit, ledger);
        let listener =
            TcpListener::bind(cfg.addr)
                .await
                .map_err(|source| persist::SimError::Listen {
                    addr: cfg.addr,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| persist::SimError::Listen {
                addr: cfg.addr,
                source,
            })?;
        let revoke_every = cfg.faults.revoke_every;
        let app = Arc::new(App::new(cfg, world, ledger));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(server::serve(
            listener,
            app.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        if let Some(every) = revoke_every.filter(|d| !d.is_zero()) {
            let (app, stop) = (app.clone(), shutdown.clone());
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {
                            app.stats.fault("revoke");
                            app.auth.revoke(None);
                        }
                    }
                }
            });
        }
        Ok(Self {
            addr,
            app,
            shutdown,
            tracker,
        })
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters of what it has answered so far.
    pub fn stats(&self) -> StatsReport {
        self.app.stats_report()
    }

    /// Every write it has applied, in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.app.ledger.since(0, None)
    }

    /// Replaces the fault configuration while running.
    pub fn set_faults(&self, f: FaultConfig) {
        self.app.faults.set(f);
    }

    /// Revokes every live token.
    pub fn revoke_all(&self) -> usize {
        self.app.auth.revoke(None)
    }

    /// A SIM as stored, with its attributes, whatever the tenancy.
    pub fn sim(&self, icc: &str) -> Option<super::state::SimRecord> {
        self.app
            .world
            .sims
            .get(icc)
            .map(|m| self.app.world.lock(m).clone())
    }

    /// A Super SIM's status as its API shows it now (`scheduled` while an update runs), by
    /// ICCID; `None` outside the Super SIM mode or for an unknown ICCID.
    pub fn twilio_status(&self, icc: &str) -> Option<String> {
        let w = self.app.twilio.as_ref()?;
        let m = w.sims.get(w.by_iccid.get(icc)?)?;
        let mut s = w.lock(m);
        super::twilio::settle(&mut s, Instant::now(), &crate::clock::now_rfc3339());
        Some(s.shown_status().to_owned())
    }

    /// Changes a SIM as another client would (the portal, another team): without the rules
    /// and without this tenant's ledger; `false` when there is no such SIM.
    pub fn change_as_other(&self, icc: &str, f: impl FnOnce(&mut crate::model::Sim)) -> bool {
        self.app.change_as_other(icc, f)
    }

    /// Stops accepting, closes every connection and saves the state file.
    pub async fn stop(self) -> Result<(), persist::SimError> {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        persist::save_state(&self.app).map_err(persist::SimError::Save)?;
        Ok(())
    }
}
