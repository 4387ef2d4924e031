//! Integration tests of maas-power: corpus replay of the fuzz targets and properties of the
//! wire formats and the RMCP+ cryptography.
#![allow(clippy::unwrap_used)]

mod fuzz_corpus;
mod hostile_bmc;
mod properties;
