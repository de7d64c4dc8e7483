//! The budget of one host: a small JSON state file per account under the quota folder,
//! changed under an exclusive file lock.
//!
//! Guarantees: the folder is private (0700) and the file 0600; a state file that cannot be
//! parsed (a crash mid-write) starts afresh rather than stopping jobs; reads are bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::QuotaError;
use super::state::{Grant, State};

/// Largest state file read (thousands of leases).
const MAX_STATE: u64 = 1 << 20;

/// Longest wait for the lock (another job holds it for microseconds; a stopped process that
/// holds it makes the budget unusable, and the job paces alone).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes the file's exclusive lock, or says it could not within `wait`.
fn lock_within(file: &File, wait: std::time::Duration) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "its lock is held by another process",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// One account's state file.
pub(crate) struct FileStore {
    path: PathBuf,
    account: String,
}

/// The state file of `account` in `dir`.
pub(crate) fn path_for(dir: &Path, account: &str) -> PathBuf {
    dir.join(format!("budget-{}.json", super::short_digest(account)))
}

impl FileStore {
    /// The store of `account` in `dir` (made if need be).
    pub(crate) fn open(dir: &Path, account: &str) -> Result<Self, QuotaError> {
        let err = |source| QuotaError::File {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self {
            path: path_for(dir, account),
            account: account.to_owned(),
        })
    }

    fn open_file(&self) -> std::io::Result<File> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&self.path)
    }

    /// Runs `f` on the state under the lock and writes it back.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State) -> Grant) -> Result<Grant, QuotaError> {
        let err = |source| QuotaError::File {
            path: self.path.clone(),
            source,
        };
        let mut file = self.open_file().map_err(err)?;
        lock_within(&file, LOCK_WAIT).map_err(err)?;
        let mut text = Vec::new();
        (&file)
            .take(MAX_STATE)
            .read_to_end(&mut text)
            .map_err(err)?;
        let mut state: State = serde_json::from_slice(&text).unwrap_or_default();
        state.account.clone_from(&self.account);
        let g = f(&mut state);
        let out = serde_json::to_vec(&state).map_err(|e| err(e.into()))?;
        file.rewind().map_err(err)?;
        file.set_len(0).map_err(err)?;
        file.write_all(&out).map_err(err)?;
        // Unlocked when the file closes.
        Ok(g)
    }
}

/// The states of every account in `dir`.
pub(crate) fn all(dir: &Path) -> Vec<State> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("budget-"))
        .filter_map(|e| {
            let f = File::open(e.path()).ok()?;
            let mut text = Vec::new();
            f.take(MAX_STATE).read_to_end(&mut text).ok()?;
            serde_json::from_slice(&text).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::state::Me;

    #[test]
    fn two_stores_of_one_account_share_one_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileStore::open(dir.path(), "acct").unwrap();
        let b = FileStore::open(dir.path(), "acct").unwrap();
        let me = |id: &str| Me {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            weight: 1.0,
            rate: 10.0,
            burst: 1.0,
        };
        a.update(|s| s.reserve(&me("a"), super::super::now()))
            .unwrap();
        let g = b
            .update(|s| s.reserve(&me("b"), super::super::now()))
            .unwrap();
        assert_eq!(g.jobs, 2);
        let states = all(dir.path());
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].account, "acct");
        // A torn file starts afresh.
        std::fs::write(path_for(dir.path(), "acct"), b"{\"rate\":").unwrap();
        let g = a
            .update(|s| s.reserve(&me("a"), super::super::now()))
            .unwrap();
        assert_eq!(g.jobs, 1);
    }
}
