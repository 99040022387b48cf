//! Resampling inference. A replicate is a set of draws that is a pure function of (seed,
//! replicate, unit) through Philox ([`replicates`]), so results never depend on thread count,
//! batch size or device. [`wild`]: the restricted wild cluster bootstrap (WCR) of one
//! coefficient with every fixed effect absorbed, by the fast algorithm of Roodman, MacKinnon,
//! Nielsen & Webb (2019), whose cost per replicate does not grow with N.

pub mod bootstrap;
pub mod permutation;
pub mod replicates;
pub mod wild;
