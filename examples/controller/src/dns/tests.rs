//! Tests of the DNS zones.
