//! Fixed-effect structure: dense level ids per effect ([`index`]), reghdfe's iterative singleton
//! removal ([`singletons`]), the count of absorbed degrees of freedom ([`dof`]: redundant
//! levels through connected components, effects nested in clusters) and the effects' values
//! with fixest's normalisation ([`values`]).

pub mod dof;
pub mod index;
pub mod singletons;
pub mod values;

pub use dof::{absorbed_dof, AbsorbedDof, FeDof};
pub use index::FixedEffect;
pub use singletons::drop_singletons;
