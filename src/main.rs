//! The `simbulk` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    simbulk::commands::main()
}
