//! Data in: files (CSV, Parquet, Stata .dta) and the built-in demo panel, read into a [`Table`]
//! (delimited files by our parallel reader [`csv`] where it can, otherwise and for Parquet
//! through polars, .dta files by [`dta`]), then turned into the f64 design of one model by
//! [`prepare`]; [`subset`] and [`split`] choose the rows of each estimation sample.

pub mod csv;
pub mod demo;
pub mod dta;
pub mod factor;
pub mod hard;
pub mod load;
pub mod prepare;
mod retain;
pub mod scan;
pub mod split;
pub mod subset;

pub use load::{load, Table};
pub use prepare::{prepare, prepare_taking, prepare_with_rows, used_columns, Design, Dropped, PrepareOptions};
pub use subset::Subset;
