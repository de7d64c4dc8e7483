//! The `simbulk` binary: everything lives in the library.

/// mimalloc, not glibc's malloc: a row's values are made on the async worker and freed on
/// the recorder's thread, and glibc takes the making arena's lock for each such free (a
/// fifth of a row's CPU at no client limit went to `malloc`/`free` and their lock). Measured
/// in `docs/design/performance.md`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    simbulk::commands::main()
}
