//! Standard output that a closed pipe cannot break: `simbulk demo | head -3` or
//! `simbulk run … | true` go on (or stop) quietly instead of panicking.
//!
//! Guarantees: nothing here panics; once a write finds standard output closed, [`closed`]
//! says so and later writes are dropped silently, like ripgrep does.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `s` to standard output; `false` when it is closed (or fails).
pub(crate) fn print(s: &str) -> bool {
    write_bytes(s.as_bytes())
}

/// Writes bytes to standard output; `false` when it is closed (or fails).
pub(crate) fn write_bytes(b: &[u8]) -> bool {
    if CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    let ok = out.write_all(b).and_then(|()| out.flush()).is_ok();
    if !ok {
        CLOSED.store(true, Ordering::Relaxed);
    }
    ok
}

/// Whether standard output was found closed.
pub(crate) fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// A writer over standard output for streams (the export's CSV, a man page): its errors
/// are real errors, and [`is_closed_pipe`] tells a reader that went away.
pub(crate) fn writer() -> impl Write {
    std::io::stdout().lock()
}

/// Whether an error means the reader of our output went away (`| head`).
pub(crate) fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Whether the reader of standard output has gone away (a pipe whose other end closed),
/// found without writing.
pub(crate) fn reader_gone() -> bool {
    if closed() {
        return true;
    }
    #[cfg(unix)]
    {
        let mut fds = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one struct we pass, and returns at once.
        let n = unsafe { libc::poll(&mut fds, 1, 0) };
        if n > 0 && fds.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            CLOSED.store(true, Ordering::Relaxed);
            return true;
        }
    }
    false
}

/// Cancels `stop` as soon as the reader of standard output goes away (checked four times a
/// second), for commands whose only use is their output.
pub(crate) fn stop_when_reader_gone(stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if reader_gone() {
                        stop.cancel();
                        return;
                    }
                }
            }
        }
    });
}
