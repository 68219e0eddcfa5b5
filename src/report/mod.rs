//! Looking inside a cache: `dump` (rows), `verify` lives on the reader, reports and plots.
pub mod dump;
pub mod plot;
pub mod compare;
pub mod html;
