//! Preconditioners for the fixed-effect normal equations `D'WD α = D'W v`, weakest to strongest
//! (the ladder [`super::strategy`] climbs):
//!
//! * **Jacobi**: `diag(D'WD)⁻¹`, the inverse level weights — what one alternating-projection
//!   sweep uses. Free to build, applied on any backend's device; enough for well-connected
//!   panels.
//! * **Block of the two largest effects**: the two-effect sub-problem (worker × firm, exporter
//!   × importer) solved by block elimination — the larger effect's diagonal block eliminated,
//!   the smaller effect's Schur complement factored (exactly when it is small, by approximate
//!   Cholesky otherwise) — with Jacobi on the other effects. fixest treats the two-effect
//!   sub-problem as the hard core of every model in the same spirit.
//! * **Schwarz**: one-level additive Schwarz over every pair of effects, each pair's subdomain
//!   factored by randomized approximate Cholesky (Gao, Kyng & Spielman 2025): strong on
//!   weakly connected graphs of three or more effects.
//!
//! The two factored preconditioners come from the `within` crate (MIT, by pyfixest's authors),
//! which we measured (README, "Hard panels") and found the best available implementation;
//! fegpu's own Krylov iteration ([`super::krylov`]) calls them through `apply` on host vectors,
//! whatever backend runs the operator. All of them are fixed symmetric positive (semi)definite
//! maps, so plain PCG applies; a preconditioner built for one weight vector stays valid (only
//! less sharp) for another, which is how replicates reuse it.

use within::{LocalSolverConfig, PreconditionerConfig, ReductionStrategy, SchurMode};

use crate::error::{Error, Result};
use crate::fe::FixedEffect;

/// Where each effect's levels sit in a coefficient vector.
#[derive(Debug, Clone)]
pub struct Layout {
    pub offsets: Vec<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(fes: &[&FixedEffect]) -> Layout {
        let mut offsets = Vec::with_capacity(fes.len());
        let mut total = 0;
        for fe in fes {
            offsets.push(total);
            total += fe.levels;
        }
        Layout { offsets, total }
    }
}

/// Which rung of the ladder to use (`--solver`'s preconditioner part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jacobi,
    Block2,
    Schwarz,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jacobi => "jacobi",
            Kind::Block2 => "block2",
            Kind::Schwarz => "schwarz",
        }
    }
}

/// A built preconditioner.
pub enum Preconditioner {
    /// `inv[replicate][j]`: inverse diagonal of D'W_rD for each weight vector.
    Jacobi { inv: Vec<Vec<f64>> },
    /// A factored map from `within` over the effects at `effects` (coefficient ranges in the full
    /// layout), Jacobi (from `inv`) on the coefficients outside them.
    Factored {
        kind: Kind,
        map: within::Preconditioner,
        /// (offset in the full layout, levels) of each effect the map covers, in its order.
        covers: Vec<(usize, usize)>,
        inv: Vec<Vec<f64>>,
    },
}

impl Preconditioner {
    pub fn kind(&self) -> Kind {
        match self {
            Preconditioner::Jacobi { .. } => Kind::Jacobi,
            Preconditioner::Factored { kind, .. } => *kind,
        }
    }

    /// Jacobi for every weight vector (`None`: unweighted).
    pub fn jacobi(fes: &[&FixedEffect], weights: &[Option<&[f64]>]) -> Preconditioner {
        Preconditioner::Jacobi {
            inv: weights.iter().map(|w| inverse_diagonal(fes, *w)).collect(),
        }
    }

    /// A factored preconditioner of `kind` (Block2 or Schwarz) built for the weights `base`
    /// (the full sample's), with Jacobi per weight vector outside the factored block.
    pub fn factored(
        kind: Kind,
        fes: &[&FixedEffect],
        base: Option<&[f64]>,
        weights: &[Option<&[f64]>],
    ) -> Result<Preconditioner> {
        let layout = Layout::new(fes);
        let chosen: Vec<usize> = match kind {
            Kind::Block2 => {
                let mut by_size: Vec<usize> = (0..fes.len()).collect();
                by_size.sort_by_key(|&k| std::cmp::Reverse(fes[k].levels));
                by_size.truncate(2);
                by_size.sort();
                by_size
            }
            _ => (0..fes.len()).collect(),
        };
        let effects = chosen
            .iter()
            .map(|&k| within::Effect::new(&fes[k].ids, true, std::iter::empty()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Usage(format!("building the {} preconditioner: {e}", kind.name())))?;
        let design = within::Design::new(effects)
            .map_err(|e| Error::Usage(format!("building the {} preconditioner: {e}", kind.name())))?;
        let local_solver = match kind {
            // exact Schur complement of the pair, factored exactly up to this many levels
            Kind::Block2 => LocalSolverConfig {
                schur: SchurMode::Exact,
                dense_threshold: 2_000,
                ..LocalSolverConfig::default()
            },
            _ => LocalSolverConfig::default(),
        };
        let config = PreconditionerConfig::Additive {
            local_solver,
            reduction: ReductionStrategy::default(),
        };
        let solver = within::Solver::new(design, base, &config)
            .map_err(|e| Error::Usage(format!("building the {} preconditioner: {e}", kind.name())))?;
        let map = solver
            .preconditioner()
            .cloned()
            .ok_or_else(|| Error::Usage(format!("the {} preconditioner was not built", kind.name())))?;
        Ok(Preconditioner::Factored {
            kind,
            map,
            covers: chosen.iter().map(|&k| (layout.offsets[k], fes[k].levels)).collect(),
            inv: weights.iter().map(|w| inverse_diagonal(fes, *w)).collect(),
        })
    }

    /// `z ← M⁻¹ r` for a lane under weight vector `replicate`.
    pub fn apply(&self, replicate: usize, r: &[f64], z: &mut [f64]) -> Result<()> {
        match self {
            Preconditioner::Jacobi { inv } => {
                for ((zi, ri), d) in z.iter_mut().zip(r).zip(&inv[replicate]) {
                    *zi = ri * d;
                }
                Ok(())
            }
            Preconditioner::Factored { map, covers, inv, kind } => {
                for ((zi, ri), d) in z.iter_mut().zip(r).zip(&inv[replicate]) {
                    *zi = ri * d;
                }
                let mut rin = Vec::with_capacity(map.nrows());
                for &(o, len) in covers {
                    rin.extend_from_slice(&r[o..o + len]);
                }
                let mut zin = vec![0.0; rin.len()];
                map.apply(&rin, &mut zin)
                    .map_err(|e| Error::Usage(format!("applying the {} preconditioner: {e}", kind.name())))?;
                let mut at = 0;
                for &(o, len) in covers {
                    z[o..o + len].copy_from_slice(&zin[at..at + len]);
                    at += len;
                }
                // levels without weight under this replicate are outside its system (zero rows
                // of D'WD): the base-built block must not move them, or the coefficients drift
                // in the null space until they overflow. Masked, M stays symmetric positive
                // definite on the replicate's levels (a principal block of an SPD map).
                for (zi, d) in z.iter_mut().zip(&inv[replicate]) {
                    if *d == 0.0 {
                        *zi = 0.0;
                    }
                }
                Ok(())
            }
        }
    }

    /// The inverse diagonal for weight vector `replicate` (the device's Jacobi kernel input).
    pub fn inverse_diagonal(&self, replicate: usize) -> &[f64] {
        match self {
            Preconditioner::Jacobi { inv } | Preconditioner::Factored { inv, .. } => &inv[replicate],
        }
    }
}

/// `1 / Σ_{i∈g} w_i` for every effect's levels, concatenated (0 for levels without weight).
pub fn inverse_diagonal(fes: &[&FixedEffect], w: Option<&[f64]>) -> Vec<f64> {
    fes.iter()
        .flat_map(|fe| {
            fe.weight_sums(w)
                .into_iter()
                .map(|s| if s > 0.0 { 1.0 / s } else { 0.0 })
        })
        .collect()
}
