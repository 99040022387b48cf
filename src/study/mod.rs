//! The reference study's data work (issue 6, in progress): the raw-data simulator
//! ([`simulate`]), firm-name normalisation ([`names`]) and the customs ↔ survey match
//! ([`matching`]), the CNIPA 2023 digital-economy IPC classification and knowledge breadth
//! ([`ipc`]) and the firm-year patent variables ([`patents`]), and co-applicant network measures
//! ([`network`]). The panel build comes next.

pub mod ipc;
pub mod matching;
pub mod names;
pub mod network;
pub mod panel;
pub mod patents;
pub mod quality;
pub mod simulate;
