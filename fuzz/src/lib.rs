//! Fuzz targets for the parsers that read outside input. Each target's body
//! lives in `checks`, so the same code also runs over the seed corpus as an
//! ordinary test of the main crate (`tests/fuzz_seeds.rs`).

pub mod checks;
