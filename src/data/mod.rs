//! Data in: files (CSV, Parquet) and the built-in demo panel, read through polars into a
//! [`Table`], then turned into the f64 design of one model by [`prepare`].

pub mod demo;
pub mod hard;
pub mod load;
pub mod prepare;
pub mod scan;

pub use load::{load, Table};
pub use prepare::{prepare, Design, Dropped, PrepareOptions};
