//! The budget of one host: a small JSON state file per account under the quota folder,
//! changed under an exclusive file lock.
//!
//! Guarantees: the folder is private (0700) and the file 0600; a state file that cannot be
//! parsed (a crash mid-write) starts afresh rather than stopping jobs; reads are bounded; no
//! file is left behind for long: the last job to leave an account removes its file, and a
//! job opening the folder removes the files no job has used for [`IDLE`] (jobs that were
//! killed); a removal is made under the file's lock and a job that locked a file since
//! removed opens the path again, so two jobs of an account never hold two states.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::QuotaError;
use super::state::{Grant, State};

/// Largest state file read (thousands of leases).
const MAX_STATE: u64 = 1 << 20;

/// A state file untouched this long has no live lease (leases last seconds) and is removed.
pub(crate) const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Opens of a state file that another job removed meanwhile, before the job paces alone.
const LOCK_TRIES: usize = 8;

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
        sweep(dir, IDLE);
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
        let mut file = self.locked().map_err(err)?;
        let mut text = Vec::new();
        (&file)
            .take(MAX_STATE)
            .read_to_end(&mut text)
            .map_err(err)?;
        let mut state: State = serde_json::from_slice(&text).unwrap_or_default();
        state.account.clone_from(&self.account);
        let g = f(&mut state);
        if state.jobs.is_empty() {
            // The last job left: nothing to keep (a job waiting for the lock opens anew).
            let _ = std::fs::remove_file(&self.path);
            return Ok(g);
        }
        let out = serde_json::to_vec(&state).map_err(|e| err(e.into()))?;
        file.rewind().map_err(err)?;
        file.set_len(0).map_err(err)?;
        file.write_all(&out).map_err(err)?;
        // Unlocked when the file closes.
        Ok(g)
    }
}

impl FileStore {
    /// The state file, open and locked — the one at the path now (a file removed while this
    /// job waited for its lock is let go, and the path opened again).
    fn locked(&self) -> std::io::Result<File> {
        // A file is removed only once its last job left or it sat idle for an hour: a few
        // tries are plenty, and the job paces alone past them.
        for _ in 0..LOCK_TRIES {
            let file = self.open_file()?;
            lock_within(&file, LOCK_WAIT)?;
            if same_file(&file, &self.path) {
                return Ok(file);
            }
        }
        Err(std::io::Error::other(
            "the state file was removed under this job again and again",
        ))
    }
}

/// Whether `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes the state files in `dir` untouched for `idle`, under their locks.
pub(crate) fn sweep(dir: &Path, idle: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("budget-") || !name.ends_with(".json") {
            continue;
        }
        let path = e.path();
        let old = std::fs::symlink_metadata(&path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= idle);
        if !old {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // A job using it holds the lock for microseconds; one that waits re-opens the path.
        if file.try_lock().is_ok() && same_file(&file, &path) {
            let _ = std::fs::remove_file(&path);
        }
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
        // The last to leave removes the file; an idle one is swept.
        a.update(|s| {
            s.release("a");
            s.release("b");
            g
        })
        .unwrap();
        assert!(!path_for(dir.path(), "acct").exists());
        b.update(|s| s.reserve(&me("b"), super::super::now()))
            .unwrap();
        assert!(path_for(dir.path(), "acct").exists());
        sweep(dir.path(), std::time::Duration::from_secs(3600));
        assert!(path_for(dir.path(), "acct").exists(), "in use");
        sweep(dir.path(), std::time::Duration::ZERO);
        assert!(!path_for(dir.path(), "acct").exists(), "idle");
    }
}
