//! One run per checkpoint: an OS file lock on `<checkpoint>.lock`, with the holder's pid,
//! host and start time written inside for the error message.
//!
//! Guarantees: the lock is released by the operating system when the holder dies, however
//! it dies, so a stale lock file from a dead process is simply taken over; the holder
//! removes the file when its run ends, and a newcomer checks after locking that the file it
//! locked is still the one at the path, so two runs never both believe they hold the job.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another simbulk run is using checkpoint {} ({holder}); wait for it to finish or stop it first",
        checkpoint.display()
    )]
    Held { checkpoint: PathBuf, holder: String },
    #[error("cannot lock {}: {source}; give --checkpoint in a writable folder", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: it keeps being replaced; is another simbulk run starting and stopping?", path.display())]
    Unstable { path: PathBuf },
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    file: File,
    path: PathBuf,
}

/// `<checkpoint>.lock`.
pub(crate) fn lock_path(checkpoint: &Path) -> PathBuf {
    let mut s = checkpoint.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl JobLock {
    /// Takes the lock, or says who holds it.
    pub fn acquire(checkpoint: &Path) -> Result<Self, LockError> {
        // The previous holder may remove the file between our open and our lock: then we hold
        // a lock on a file no newcomer will see, and try again.
        let path = lock_path(checkpoint);
        for _ in 0..16 {
            let file = Self::try_acquire(checkpoint)?;
            let here = std::fs::symlink_metadata(&path).ok();
            let locked = file.metadata().ok();
            if let (Some(h), Some(l)) = (here, locked)
                && crate::files::FileId::of(&h) == crate::files::FileId::of(&l)
            {
                return Ok(Self { file, path });
            }
            // The path names another file now (or none): drop this one, unremoved.
            let _ = file.unlock();
        }
        Err(LockError::Unstable { path })
    }

    /// Opens the lock file and locks it (writing the holder's name), or says who holds it.
    fn try_acquire(checkpoint: &Path) -> Result<File, LockError> {
        let path = lock_path(checkpoint);
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NOFOLLOW).mode(0o600);
        }
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = o.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    checkpoint: checkpoint.to_owned(),
                    holder: if holder.is_empty() {
                        "holder unknown".to_owned()
                    } else {
                        holder.chars().take(300).collect()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let started = crate::clock::now_rfc3339();
        let info = format!(
            "pid {} on host {host}, started {started}\n",
            std::process::id()
        );
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.write_all(info.as_bytes());
        let _ = file.flush();
        Ok(file)
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Removed while still locked: a newcomer that opened the old file sees, after it
        // locks it, that the path no longer names it (see `acquire`).
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_and_a_stale_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("job.checkpoint");
        std::fs::write(lock_path(&cp), "pid 1 on host gone, started long ago\n").unwrap();
        let held = JobLock::acquire(&cp).unwrap();
        let e = JobLock::acquire(&cp).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        assert!(!lock_path(&cp).exists(), "the holder removes its lock file");
        let again = JobLock::acquire(&cp).unwrap();
        assert!(lock_path(&cp).exists());
        drop(again);
    }
}
