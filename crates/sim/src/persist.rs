//! `--state-file`: the simulator's SIMs, attributes and ledger saved across restarts, so a
//! rehearsal can span several nights or survive a restart mid-job.
//!
//! Guarantees: the file is written to a temporary sibling, synced and renamed, so a crash
//! while saving leaves the previous state intact; the format carries a version and a file
//! of another version is refused with a clear error.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::app::App;
use super::ledger::LedgerEntry;
use super::state::SimRecord;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    seed: u64,
    next_attribute_id: i64,
    sims: Vec<SimRecord>,
    ledger: Vec<LedgerEntry>,
}

/// Saves the state to the configured file; `None` when there is none.
pub(crate) fn save_state(app: &App) -> std::io::Result<Option<PathBuf>> {
    let Some(path) = app.cfg.state_file.clone() else {
        return Ok(None);
    };
    let saved = Saved {
        version: VERSION,
        seed: app.cfg.seed,
        next_attribute_id: app.world.next_attribute_id(),
        sims: app
            .world
            .sims
            .values()
            .map(|m| app.world.lock(m).clone())
            .collect(),
        ledger: app.ledger.since(0, None),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sim-state")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer(std::io::BufWriter::new(&mut f), &saved)?;
        f.flush()?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Some(path))
}

/// What a state file restores.
pub(crate) struct Restored {
    pub(crate) sims: Vec<SimRecord>,
    pub(crate) next_attribute_id: i64,
    pub(crate) ledger: Vec<LedgerEntry>,
}

/// Why a simulator cannot start or save.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting the chosen provider's mode does not have.
    #[error("{0}")]
    Unsupported(String),
    /// The state file cannot be read.
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a simulator's state.
    #[error("state file {} is not a simulator state file ({reason}); delete it or point --state-file elsewhere", path.display())]
    NotState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state file is of another format version.
    #[error("state file {} has format version {found}, this simulator reads version {VERSION}; delete it to start from the seed", path.display())]
    Version {
        /// The state file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The state could not be saved at stop.
    #[error("cannot save the state file: {0}")]
    Save(#[source] std::io::Error),
}

/// Loads a state file; `Ok(None)` when it does not exist yet.
pub(crate) fn load_state(path: &Path) -> Result<Option<Restored>, SimError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SimError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| SimError::NotState {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if saved.version != VERSION {
        return Err(SimError::Version {
            path: path.to_owned(),
            found: saved.version,
        });
    }
    Ok(Some(Restored {
        sims: saved.sims,
        next_attribute_id: saved.next_attribute_id,
        ledger: saved.ledger,
    }))
}
