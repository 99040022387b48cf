//! One error type for the whole crate. Every message names the thing that is wrong (a column,
//! a formula position, a file) so the CLI can print it in one or two lines and exit non-zero.

use std::fmt;

/// All failures fegpu reports to a user.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Reading or writing a file failed.
    Io { path: String, message: String },
    /// The formula could not be parsed; `pos` is the character offset of the offending token.
    Formula {
        formula: String,
        pos: usize,
        message: String,
    },
    /// A column is missing or has the wrong type.
    Column { column: String, message: String },
    /// The data left no usable observations, or too few for the model.
    NoObservations(String),
    /// The design cannot be estimated (no regressors left, singular, ...).
    Estimation(String),
    /// Invalid command-line usage or option value.
    Usage(String),
    /// The underlying data library failed (message carries its context).
    Data(String),
    /// No usable GPU, a GPU error, out of GPU memory, or device loss.
    Gpu(String),
}

impl Error {
    pub fn column(column: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Column {
            column: column.into(),
            message: message.into(),
        }
    }
    pub fn io(path: impl Into<String>, err: impl fmt::Display) -> Self {
        Error::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Formula { formula, pos, message } => {
                // Point at the offending character with a caret under it.
                let col = formula.chars().take(*pos).count();
                write!(
                    f,
                    "formula error at character {}: {message}\n  {formula}\n  {}^",
                    col + 1,
                    " ".repeat(col)
                )
            }
            Error::Column { column, message } => write!(f, "column `{column}`: {message}"),
            Error::NoObservations(m) => write!(f, "no usable observations: {m}"),
            Error::Estimation(m) => write!(f, "cannot estimate: {m}"),
            Error::Usage(m) => write!(f, "{m}"),
            Error::Data(m) => write!(f, "data error: {m}"),
            Error::Gpu(m) => write!(f, "gpu: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
