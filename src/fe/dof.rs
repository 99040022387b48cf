//! Degrees of freedom absorbed by the fixed effects.
//!
//! Two named conventions (see [`crate::estimate::Ssc`]):
//! * **reghdfe** (`dofadjustments(pairwise clusters)`, its default): an effect nested in a
//!   cluster variable costs nothing (all its levels are "redundant": the cluster-robust VCE
//!   already allows for it); of the remaining effects the first costs all its levels — all but
//!   one when some effect is nested in a cluster, since the constant then sits in the nested
//!   effect (reghdfe's `estimate_dof`, DoF.mata) — and every later effect `j` loses
//!   `max(1, max_{i<j} C(i, j))` levels, where `C(i, j)` is the number of connected components
//!   (mobility groups) of the bipartite graph linking the levels of `i` and `j`. Exact for two
//!   effects, conservative beyond.
//! * **fixest** (`fixef.K = "nested"`, `fixef.force_exact = FALSE`): `Σ G_k − (n_fe − 1)`, minus
//!   the levels of effects nested in a cluster variable, plus one for each such effect.

use super::index::FixedEffect;

/// Per-effect accounting, as reghdfe's "Absorbed degrees of freedom" table prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeDof {
    pub name: String,
    pub levels: usize,
    pub redundant: usize,
    /// Nested in (one of) the cluster variables.
    pub nested: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AbsorbedDof {
    pub per_fe: Vec<FeDof>,
    /// Σ (levels − redundant).
    pub df_a: usize,
}

/// Which rule counts redundant levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DofRule {
    /// reghdfe's pairwise connected components.
    Pairwise,
    /// fixest's one reference level per effect after the first.
    OnePerEffect,
}

/// Number of connected components of the bipartite graph whose nodes are the levels of `a` and
/// `b` and whose edges are the observations (Abowd, Creecy & Kramarz 2002 mobility groups).
pub fn connected_components(a: &FixedEffect, b: &FixedEffect) -> usize {
    let n = a.levels + b.levels;
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            let gp = p[p[x as usize] as usize];
            p[x as usize] = gp;
            x = gp;
        }
        x
    }
    let mut components = n;
    for (&i, &j) in a.ids.iter().zip(&b.ids) {
        let ri = find(&mut parent, i);
        let rj = find(&mut parent, a.levels as u32 + j);
        if ri != rj {
            parent[ri as usize] = rj;
            components -= 1;
        }
    }
    components
}

/// Whether every level of `fe` lies within a single cluster.
pub fn nested_in(fe: &FixedEffect, cluster: &[u32]) -> bool {
    let mut owner = vec![u32::MAX; fe.levels];
    for (&g, &c) in fe.ids.iter().zip(cluster) {
        let o = &mut owner[g as usize];
        if *o == u32::MAX {
            *o = c;
        } else if *o != c {
            return false;
        }
    }
    true
}

/// Absorbed degrees of freedom under `rule`; `clusters` are the cluster id vectors when the VCE
/// is clustered (empty otherwise: nesting only matters for cluster-robust inference).
pub fn absorbed_dof(fes: &[FixedEffect], clusters: &[&[u32]], rule: DofRule) -> AbsorbedDof {
    let nested: Vec<bool> = fes.iter().map(|fe| clusters.iter().any(|c| nested_in(fe, c))).collect();
    let mut per_fe: Vec<FeDof> = fes
        .iter()
        .zip(&nested)
        .map(|(fe, &n)| FeDof {
            name: fe.name.clone(),
            levels: fe.levels,
            redundant: 0,
            nested: n,
        })
        .collect();
    match rule {
        DofRule::Pairwise => {
            let idx: Vec<usize> = (0..fes.len()).filter(|&k| !nested[k]).collect();
            for k in 0..fes.len() {
                if nested[k] {
                    per_fe[k].redundant = fes[k].levels;
                }
            }
            // the constant sits in a nested effect: the first free intercept is redundant by one
            if let (Some(&first), true) = (idx.first(), nested.iter().any(|&n| n)) {
                per_fe[first].redundant = 1.min(fes[first].levels);
            }
            // every earlier free effect against every later one, the pairs in parallel
            let pairs: Vec<(usize, usize)> = (1..idx.len())
                .flat_map(|pos| idx[..pos].iter().map(move |&i| (i, pos)))
                .collect();
            let comps: Vec<usize> = {
                use rayon::prelude::*;
                pairs
                    .par_iter()
                    .map(|&(i, pos)| connected_components(&fes[i], &fes[idx[pos]]))
                    .collect()
            };
            for (pos, &j) in idx.iter().enumerate().skip(1) {
                let m = pairs
                    .iter()
                    .zip(&comps)
                    .filter(|((_, p), _)| *p == pos)
                    .fold(1, |m, (_, &c)| m.max(c));
                per_fe[j].redundant = m.min(fes[j].levels);
            }
        }
        DofRule::OnePerEffect => {
            for (k, d) in per_fe.iter_mut().enumerate() {
                d.redundant = match (k, d.nested) {
                    (0, false) => 0,
                    (0, true) => d.levels - 1,
                    (_, false) => 1,
                    (_, true) => d.levels,
                };
            }
        }
    }
    let df_a = per_fe.iter().map(|d| d.levels - d.redundant).sum();
    AbsorbedDof { per_fe, df_a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(name: &str, ids: Vec<u32>) -> FixedEffect {
        let levels = ids.iter().max().map_or(0, |m| *m as usize + 1);
        FixedEffect {
            name: name.into(),
            ids,
            levels,
        }
    }

    #[test]
    fn coarser_effect_is_not_projected_when_a_finer_one_spans_it() {
        let firm = fe("firm", vec![0, 0, 0, 1, 1, 1]);
        let year = fe("year", vec![0, 1, 2, 0, 1, 2]);
        let firm_dest = fe("firm^dest", vec![0, 0, 1, 2, 3, 3]);
        assert_eq!(
            effects_to_project(&[firm.clone(), year.clone(), firm_dest.clone()]),
            vec![1, 2]
        );
        let twin = fe("twin", firm.ids.clone());
        assert_eq!(effects_to_project(&[firm, twin, year]), vec![0, 2]);
    }

    #[test]
    fn two_disconnected_mobility_groups() {
        // workers 0,1 only at firm 0; workers 2,3 only at firm 1 -> two components.
        let a = fe("w", vec![0, 1, 2, 3, 0, 2]);
        let b = fe("f", vec![0, 0, 1, 1, 0, 1]);
        assert_eq!(connected_components(&a, &b), 2);
        let d = absorbed_dof(&[a.clone(), b.clone()], &[], DofRule::Pairwise);
        assert_eq!(d.df_a, 4 + 2 - 2);
        let f = absorbed_dof(&[a, b], &[], DofRule::OnePerEffect);
        assert_eq!(f.df_a, 4 + 2 - 1);
    }

    #[test]
    fn nested_effect_costs_nothing_under_reghdfe_and_one_under_fixest() {
        let firm = fe("firm", vec![0, 0, 1, 1, 2, 2]);
        let year = fe("year", vec![0, 1, 0, 1, 0, 1]);
        let cluster = vec![0u32, 0, 0, 0, 1, 1]; // firms 0,1 in cluster 0; firm 2 in cluster 1
        let r = absorbed_dof(&[firm.clone(), year.clone()], &[&cluster], DofRule::Pairwise);
        assert!(r.per_fe[0].nested);
        assert_eq!(r.per_fe[0].redundant, 3);
        // year is the first non-nested effect, but the constant sits in the nested firm effect
        assert_eq!(r.per_fe[1].redundant, 1);
        assert_eq!(r.df_a, 1);
        // whatever the order of the effects
        let swapped = absorbed_dof(&[year.clone(), firm.clone()], &[&cluster], DofRule::Pairwise);
        assert_eq!(swapped.df_a, 1);
        // nothing nested: the first effect keeps every level
        let free = absorbed_dof(&[firm.clone(), year.clone()], &[], DofRule::Pairwise);
        assert_eq!(free.per_fe[0].redundant, 0);
        let f = absorbed_dof(&[firm, year], &[&cluster], DofRule::OnePerEffect);
        assert_eq!(f.df_a, 1 + 1);
    }
}

/// Indices of the effects the demeaning must project on. An effect whose every level is a union
/// of levels of another effect (firm, given firm×destination) spans a subspace of that effect's
/// dummies, so projecting on the finer one already removes it: dropping it from the sweeps gives
/// the same residuals with less work and faster convergence. The degrees-of-freedom count still
/// sees every effect (there the coarser one's levels are all redundant).
pub fn effects_to_project(fes: &[FixedEffect]) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    for a in 0..fes.len() {
        let spanned = (0..fes.len()).any(|b| {
            b != a
                && fes[b].levels >= fes[a].levels
                && nested_in(&fes[b], &fes[a].ids)
                // identical partitions: keep the first of them
                && (fes[b].levels > fes[a].levels || b < a)
        });
        if !spanned {
            keep.push(a);
        }
    }
    keep
}
