//! The reference study's data work (issue 6, in progress): firm-name normalisation for the
//! customs ↔ survey match ([`names`]), the CNIPA 2023 digital-economy IPC classification and
//! knowledge breadth ([`ipc`]), and co-applicant network measures ([`network`]). The simulator,
//! the matching step itself and the panel build come next.

pub mod ipc;
pub mod names;
pub mod network;
