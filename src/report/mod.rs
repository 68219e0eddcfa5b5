//! Looking inside a cache: `dump` (rows), `verify` lives on the reader, reports and plots.
pub mod compare;
pub mod dump;
pub mod html;
pub mod plot;
