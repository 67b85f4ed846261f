//! Configuration errors: each one knows where it came from (a line of the file, or an environment
//! variable) and prints as `FILE:LINE: message`.

use std::fmt;

/// Where in the configuration an error was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// The source as a whole (it could not be read, or a setting that is nowhere in the file).
    Whole,
    /// A line of the file, counted from 1.
    Line(usize),
    /// A line and column (from 1) of the file: syntax errors.
    LineColumn {
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// A value that came from this environment variable.
    Env(String),
}

impl Location {
    /// The line number, when the error points into the file.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Location::Line(line) | Location::LineColumn { line, .. } => Some(*line),
            Location::Whole | Location::Env(_) => None,
        }
    }
}

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The TOML itself is malformed.
    Syntax,
    /// A section or field that does not exist, a missing required field, or a value of the wrong
    /// type (string where an integer belongs, an unknown choice, an unparsable address or CIDR).
    Schema,
    /// An environment override that names no setting or carries a value of the wrong type.
    Environment,
    /// A number outside its hard ceiling (see [`crate::config::limits`]).
    OutOfRange {
        /// The configured value.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A string longer than its field allows.
    TooLong {
        /// Length of the configured value, in characters.
        len: usize,
        /// Longest accepted length.
        max: usize,
    },
    /// Two entries with the same name (or claiming the same thing).
    Duplicate,
    /// A reference to a vendor or customer that is not defined.
    UnknownReference,
    /// Any other invalid value (bad prefix, bad password hash, inconsistent settings, ...).
    Invalid,
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where it is.
    pub location: Location,
    /// What kind of problem it is.
    pub kind: ErrorKind,
    /// What is wrong and how to fix it, in one sentence or two.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(location: Location, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { location, kind, message: message.into() }
    }

    /// Writes this error as `SOURCE:LINE: message` (or `env:VAR: message` for an override).
    fn write(&self, f: &mut fmt::Formatter<'_>, source_name: &str) -> fmt::Result {
        match &self.location {
            Location::Whole => write!(f, "{source_name}: {}", self.message),
            Location::Line(line) => write!(f, "{source_name}:{line}: {}", self.message),
            Location::LineColumn { line, column } => {
                write!(f, "{source_name}:{line}:{column}: {}", self.message)
            }
            Location::Env(var) => write!(f, "env:{var}: {}", self.message),
        }
    }
}

/// Every problem found in one configuration source, in the order of the file.
///
/// Loading reports in stages: syntax errors first (nothing else can be trusted in a file that does
/// not parse), then every structural error (unknown or missing fields, wrong types, bad environment
/// overrides), then every semantic one (limits, duplicates, references). Within a stage all errors
/// are collected. `Display` prints one per line as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    source_name: String,
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn new(source_name: &str, mut errors: Vec<ConfigError>) -> Self {
        // Order of the file first, then environment overrides, then whole-file errors.
        errors.sort_by_key(|e| match &e.location {
            Location::Line(line) | Location::LineColumn { line, .. } => (0, *line, String::new()),
            Location::Env(var) => (1, 0, var.clone()),
            Location::Whole => (2, 0, String::new()),
        });
        Self { source_name: source_name.to_owned(), errors }
    }

    /// Name of the source the errors refer to (a file path, or `<embedded default>`).
    #[must_use]
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The errors, in file order.
    #[must_use]
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Number of errors (never 0 for a value returned by the loader).
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are no errors.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            error.write(f, &self.source_name)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
