//! Integration tests of maas-discovery: real captured frames, properties of the observer and
//! the scan, and the fuzz corpora replayed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_corpus;
mod properties;
mod testdata;
