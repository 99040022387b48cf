//! The reference study's data work: the raw-data simulator ([`simulate`]), firm-name
//! normalisation ([`names`]) and the customs ↔ survey match ([`matching`]), industry codes and
//! Table 5's industry split ([`industry`]), the CNIPA 2023
//! digital-economy IPC classification and knowledge breadth ([`ipc`]), the firm-year patent
//! variables ([`patents`]) and co-applicant network measures ([`network`]), batched export
//! quality ([`quality`]) and the analysis panel ([`panel`]); the paper's published numbers
//! ([`paper`]) and the patterns the simulator plants ([`planted`]); [`replicate`] runs the tables
//! (`fegpu replicate`; also reachable as `crate::replicate`).

pub mod industry;
pub mod ipc;
pub mod matching;
pub mod names;
pub mod network;
pub mod panel;
pub mod paper;
pub mod patents;
pub mod planted;
pub mod quality;
pub mod replicate;
pub mod simulate;
