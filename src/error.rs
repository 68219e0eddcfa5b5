//! The one error type of the library. `main` prints its chain and maps [`Error::is_bad_input`] to exit 2.
use std::path::PathBuf;

/// What went wrong, coarsely: tests and callers match on this, messages carry the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Io,
    Corrupt,
    Version,
    Invalid,
    Exists,
    Mismatch,
    NonFinite,
    Interrupted,
    Complete,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file's content breaks the format. `at` names shard/block/row where known.
    #[error("{}: corrupt{}: {what}", path.display(), at.as_deref().map(|a| format!(" ({a})")).unwrap_or_default())]
    Corrupt { path: PathBuf, at: Option<String>, what: String },
    #[error("{}: format version {found} is newer than this kdcache supports ({supported}); upgrade kdcache", path.display())]
    Version { path: PathBuf, found: u64, supported: u64 },
    /// A bad argument or a bad input value.
    #[error("{0}")]
    Invalid(String),
    #[error("{}: already holds a different cache ({why}); pass --overwrite to replace it", path.display())]
    Exists { path: PathBuf, why: String },
    /// The cache does not belong to what it is used with (signature, class count, rows).
    #[error("cache mismatch: {what}: the cache has {cache}, but {given} was given")]
    Mismatch { what: String, cache: String, given: String },
    #[error("non-finite teacher logit (NaN or Inf) in row {row}, class {class}")]
    NonFinite { row: u64, class: u64 },
    #[error("interrupted; re-run the same command to resume")]
    Interrupted,
    /// Not a failure: the output directory already holds the complete cache that was asked for.
    #[error("{} already holds this cache, complete ({rows} rows): nothing to do", path.display())]
    Complete { path: PathBuf, rows: u64 },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[cfg(feature = "torch")]
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } | Error::Parquet(_) => ErrorKind::Corrupt,
            Error::Version { .. } => ErrorKind::Version,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Exists { .. } => ErrorKind::Exists,
            Error::Mismatch { .. } => ErrorKind::Mismatch,
            Error::NonFinite { .. } => ErrorKind::NonFinite,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Complete { .. } => ErrorKind::Complete,
            Error::Arrow(_) | Error::Internal(_) => ErrorKind::Internal,
            #[cfg(feature = "torch")]
            Error::Torch(_) => ErrorKind::Internal,
        }
    }

    /// True when the user (an argument, an input file) is at fault: exit code 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::AlreadyExists
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::IsADirectory
            ),
            e => !matches!(e.kind(), ErrorKind::Internal | ErrorKind::Interrupted),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn corrupt(path: impl Into<PathBuf>, at: Option<String>, what: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), at, what: what.into() }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// `.ctx(path)` turns an io::Result into a Result that names the file.
pub trait IoContext<T> {
    fn ctx(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
