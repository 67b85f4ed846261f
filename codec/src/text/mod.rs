//! Text encodings and concatenation.
