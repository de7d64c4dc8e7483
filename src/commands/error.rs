//! The one error type at the top: every way a command can fail, and the one function that
//! maps a failure to its exit code ([`CliError::exit_code`], applied once in
//! `commands::main`).
//!
//! Guarantees: a command returns the code of what it did, or a `CliError`; no command
//! module decides the code of an error; the message says what to do and never holds a
//! secret (the errors it wraps do not).

use crate::engine::{self, ConnectError};
use crate::exit::{Code, HALTED, STOPPED, USAGE};

use super::args::SettingsError;

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The settings (flags, environment, profile) do not describe what to do.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A job could not run, or not to its end.
    #[error(transparent)]
    Job(#[from] engine::Error),
    /// The provider could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// `apply` could not make its plan.
    #[error(transparent)]
    Plan(#[from] engine::apply::ApplyError),
    /// `verify` could not check the results.
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// A usage or file error found by the command itself; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The provider or an output refused after the command had begun.
    #[error("{0}")]
    Halted(String),
    /// A task of the command ended without an answer (a bug): the job is resumable.
    #[error("the job stopped unexpectedly: {0}")]
    Crashed(String),
    /// A failure, and what it means for the command's output.
    #[error("{source}; {note}")]
    Noted {
        source: Box<CliError>,
        note: &'static str,
    },
    /// The demo, the bench or the simulator failed after it began.
    #[error("{0:#}")]
    Tool(#[from] anyhow::Error),
}

impl CliError {
    /// The exit code of this failure: 2 when nothing was sent (settings, files, usage), 3
    /// when the provider or the outputs refused, 75 when stopped.
    pub(crate) fn exit_code(&self) -> Code {
        use crate::verify::VerifyError as V;
        use engine::Error as E;
        use engine::apply::ApplyError as A;
        let connect = |e: &ConnectError| match e {
            ConnectError::Setup(_) => USAGE,
            ConnectError::Stopped => STOPPED,
            ConnectError::Budget(_)
            | ConnectError::Credentials(_)
            | ConnectError::Unreachable { .. } => HALTED,
        };
        match self {
            CliError::Noted { source, .. } => source.exit_code(),
            CliError::Job(E::Connect(e)) | CliError::Connect(e) => connect(e),
            CliError::Job(E::Outputs(_)) => HALTED,
            CliError::Job(E::StoppedEarly) => STOPPED,
            CliError::Plan(A::Read(_)) | CliError::Verify(V::Read(_)) => HALTED,
            CliError::Plan(A::Stopped) | CliError::Verify(V::Stopped) => STOPPED,
            CliError::Halted(_) | CliError::Crashed(_) | CliError::Tool(_) => HALTED,
            CliError::Settings(_)
            | CliError::Job(_)
            | CliError::Plan(_)
            | CliError::Verify(_)
            | CliError::Usage(_) => USAGE,
        }
    }

    /// A usage error with this message.
    pub(crate) fn usage(e: impl std::fmt::Display) -> Self {
        CliError::Usage(e.to_string())
    }

    /// This failure, with what it means for the command's output.
    pub(crate) fn noting(self, note: &'static str) -> Self {
        CliError::Noted {
            source: Box::new(self),
            note,
        }
    }

    /// A halt with this message.
    pub(crate) fn halted(e: impl std::fmt::Display) -> Self {
        CliError::Halted(e.to_string())
    }
}

/// What a command returns: the code of what it did, or why it could not.
pub(crate) type Outcome = Result<Code, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_sent_is_2_a_refusal_3_a_stop_75() {
        assert_eq!(CliError::usage("x").exit_code(), USAGE);
        assert_eq!(
            CliError::Job(engine::Error::StoppedEarly).exit_code(),
            STOPPED
        );
        assert_eq!(
            CliError::Connect(ConnectError::Stopped).exit_code(),
            STOPPED
        );
        let e = engine::Error::Outputs(crate::files::Error::Read {
            what: "--results".into(),
            path: "r.csv".into(),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(CliError::Job(e).exit_code(), HALTED);
        assert_eq!(CliError::Crashed("panic".into()).exit_code(), HALTED);
        assert_eq!(
            CliError::Settings(SettingsError::Missing(vec!["x"])).exit_code(),
            USAGE
        );
    }
}
