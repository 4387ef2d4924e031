//! Integration tests of maas-power.
