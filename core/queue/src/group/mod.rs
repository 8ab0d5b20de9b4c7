//! Consumer groups: membership, generations and who reads which partition.
//!
//! - [`assignor`]: the pure partition assignors (range, round robin, sticky) and KIP-429's
//!   cooperative withholding rule.

pub mod assignor;

#[cfg(test)]
mod tests;
