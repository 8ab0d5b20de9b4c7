//! Cross-crate tests of Fathom live in `tests/`: every scenario file under its bounds,
//! determinism of whole runs, and (feature `production`) a real three-broker cluster.
