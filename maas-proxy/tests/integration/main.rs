//! Integration tests of `maas-proxy`: the fuzz corpus replayed.

mod fuzz_corpus;
