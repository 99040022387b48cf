//! The fixed effects' values (fixest's `fixef()`), back-solved from their sum per observation.
//!
//! Given `S_i = Σ_q α_q[g_q(i)]` (in a fit: `y − Xβ − e`, the part of the outcome the effects
//! explain, `e` the residual), the values are not unique: each connected set of levels can move
//! a constant from one effect to another. fixest fixes them as `cpp_get_fe_gnl`
//! (`src/misc_funs.cpp`, called by `fixef.fixest` in `R/methods.R`) does, and so does
//! [`fixest_values`], step for step:
//! 1. the first observation (in the estimation sample's row order) keeps its first effect free
//!    and has its level of every other effect set to 0 (a *reference*);
//! 2. every observation whose levels are known in all effects but one determines that one
//!    (`S_i` minus the others), which makes its level known on all its rows; repeated until
//!    nothing changes;
//! 3. if observations remain (another connected set), the first one with the most known levels
//!    (fixest's scan: one with Q − 2 known stops it) spares its first unknown effect and sets
//!    the others' levels to 0, and step 2 runs again.
//!
//! With one effect every level is its `S` (no reference); with two, the first effect is free
//! and the second has one level at 0 per connected set, the level of that set's first row.
//! With three or more the references are fixest's heuristic; when they do not reproduce `S`
//! (fixest checks this too, and then demeans `S` instead), [`fixest_values`] falls back to
//! Gauss–Seidel sweeps on `S` ([`sweep_values`]) and says the values have no normalisation.

use super::FixedEffect;

/// The values of each effect's levels and how they were normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct FeValues {
    /// `values[q][g]`: the value of level `g` of effect `q`.
    pub values: Vec<Vec<f64>>,
    /// Levels set to 0 per effect (fixest's `references`); empty after the fallback.
    pub references: Vec<usize>,
    /// fixest's references reproduce `S`; false: the fallback ran (no normalisation).
    pub normalised: bool,
}

/// fixest's `fixef()` values of `effects` given their sum `s` per observation, the
/// observations taken in `order` (the estimation sample's row order in the input file).
pub fn fixest_values(effects: &[&FixedEffect], s: &[f64], order: &[usize]) -> FeValues {
    let ids: Vec<Vec<u32>> = effects
        .iter()
        .map(|f| order.iter().map(|&i| f.ids[i]).collect())
        .collect();
    let levels: Vec<usize> = effects.iter().map(|f| f.levels).collect();
    let s_ordered: Vec<f64> = order.iter().map(|&i| s[i]).collect();
    let (values, references) = propagate(&ids, &levels, &s_ordered);
    if reproduces(&ids, &values, &s_ordered) {
        return FeValues {
            values,
            references,
            normalised: true,
        };
    }
    FeValues {
        values: sweep_values(&ids, &levels, &s_ordered),
        references: Vec::new(),
        normalised: false,
    }
}

/// Whether `Σ_q values[q][ids[q][i]]` equals `s` up to the rounding of the back-solve.
fn reproduces(ids: &[Vec<u32>], values: &[Vec<f64>], s: &[f64]) -> bool {
    let scale = s.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    (0..s.len()).all(|i| {
        let sum: f64 = ids.iter().zip(values).map(|(id, v)| v[id[i] as usize]).sum();
        (sum - s[i]).abs() <= 1e-7 * scale
    })
}

/// Observations of each level, in row order (`obsCluster` of fixest: `order(dum)`).
fn members(ids: &[u32], levels: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); levels];
    for (i, &g) in ids.iter().enumerate() {
        out[g as usize].push(i);
    }
    out
}

/// fixest's `cpp_get_fe_gnl`: the values and the number of references per effect.
fn propagate(ids: &[Vec<u32>], levels: &[usize], s: &[f64]) -> (Vec<Vec<f64>>, Vec<usize>) {
    let (q_n, n) = (ids.len(), s.len());
    let mut values: Vec<Vec<f64>> = levels.iter().map(|&g| vec![0.0; g]).collect();
    let mut references = vec![0usize; q_n];
    let rows: Vec<Vec<Vec<usize>>> = ids.iter().zip(levels).map(|(id, &g)| members(id, g)).collect();
    let mut done = vec![false; n * q_n];
    let mut known = vec![0usize; n];
    let mark = |q: usize, g: usize, done: &mut [bool], known: &mut [usize]| {
        for &i in &rows[q][g] {
            done[i * q_n + q] = true;
            known[i] += 1;
        }
    };
    let mut todo: Vec<usize> = (0..n).collect();
    let mut first_round = true;
    while !todo.is_empty() {
        let start = if first_round { 0 } else { pick(&todo, &known, q_n) };
        first_round = false;
        // the references: every unknown effect of `start` but the first
        let unknown: Vec<usize> = (0..q_n).filter(|&q| !done[start * q_n + q]).collect();
        for &q in unknown.iter().skip(1) {
            let g = ids[q][start] as usize;
            values[q][g] = 0.0;
            mark(q, g, &mut done, &mut known);
            references[q] += 1;
        }
        // propagation until no observation changes
        loop {
            let before = todo.len();
            let mut next = Vec::with_capacity(before);
            for &i in &todo {
                let k = known[i];
                if k + 1 < q_n {
                    next.push(i);
                } else if k + 1 == q_n {
                    let q = (0..q_n).find(|&q| !done[i * q_n + q]).expect("one unknown effect");
                    let g = ids[q][i] as usize;
                    // the unknown level's value is still 0, so the sum is over the others
                    let others: f64 = (0..q_n).map(|l| values[l][ids[l][i] as usize]).sum();
                    values[q][g] = s[i] - others;
                    mark(q, g, &mut done, &mut known);
                }
            }
            todo = next;
            if todo.len() == before || todo.is_empty() {
                break;
            }
        }
    }
    (values, references)
}

/// fixest's choice of the observation that takes the next references: the first with Q − 2
/// known effects, else the first with the most (none known: the first in `todo`).
fn pick(todo: &[usize], known: &[usize], q_n: usize) -> usize {
    let mut best = (0usize, 0usize);
    for &i in todo {
        let k = known[i];
        if k + 2 == q_n {
            return i;
        } else if k < q_n && k > best.1 {
            best = (i, k);
        } else if best.0 == 0 && k == 0 {
            best.0 = i;
        }
    }
    best.0
}

/// Values reproducing `s` by Gauss–Seidel sweeps over the effects, largest first, from zero
/// (fixest's fallback demeans `S` the same way): each level's value becomes the mean over its
/// rows of `s` minus the other effects, until a sweep moves no value by more than 1e-14 of
/// `s`'s scale (at most 100,000 sweeps). The values carry no normalisation.
pub fn sweep_values(ids: &[Vec<u32>], levels: &[usize], s: &[f64]) -> Vec<Vec<f64>> {
    let mut values: Vec<Vec<f64>> = levels.iter().map(|&g| vec![0.0; g]).collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&q| std::cmp::Reverse(levels[q]));
    let counts: Vec<Vec<f64>> = ids
        .iter()
        .zip(levels)
        .map(|(id, &g)| {
            let mut c = vec![0.0; g];
            id.iter().for_each(|&l| c[l as usize] += 1.0);
            c
        })
        .collect();
    let scale = s.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
    for _ in 0..100_000 {
        let mut moved = 0.0f64;
        for &q in &order {
            let mut sums = vec![0.0; levels[q]];
            for i in 0..s.len() {
                let others: f64 = (0..ids.len())
                    .filter(|&l| l != q)
                    .map(|l| values[l][ids[l][i] as usize])
                    .sum();
                sums[ids[q][i] as usize] += s[i] - others;
            }
            for (g, sum) in sums.into_iter().enumerate() {
                let v = sum / counts[q][g];
                moved = moved.max((v - values[q][g]).abs());
                values[q][g] = v;
            }
        }
        if moved <= 1e-14 * scale {
            break;
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(name: &str, ids: &[u32]) -> FixedEffect {
        FixedEffect::from_codes(name, ids)
    }

    /// `S` from planted values, then back: fixest's references (first row's second-effect
    /// level at 0 per connected set) and the sums reproduced.
    #[test]
    fn two_effects_take_one_reference_per_connected_set() {
        // two connected sets: levels {0,1}×{0,1} on rows 0-3, {2}×{2,3} on rows 4-5
        let a = fe("a", &[0, 1, 0, 1, 2, 2]);
        let b = fe("b", &[0, 0, 1, 1, 2, 3]);
        let (va, vb) = ([1.0, 2.0, 3.0], [0.5, -1.0, 4.0, 7.0]);
        let s: Vec<f64> = (0..6).map(|i| va[a.ids[i] as usize] + vb[b.ids[i] as usize]).collect();
        let order: Vec<usize> = (0..6).collect();
        let v = fixest_values(&[&a, &b], &s, &order);
        assert!(v.normalised);
        assert_eq!(v.references, [0, 2]);
        // b's level of row 0 and of row 4 are 0; a absorbs the difference
        assert_eq!(v.values[1][b.ids[0] as usize], 0.0);
        assert_eq!(v.values[1][b.ids[4] as usize], 0.0);
        assert!((v.values[0][a.ids[0] as usize] - 1.5).abs() < 1e-15);
        assert!((v.values[1][b.ids[5] as usize] - 3.0).abs() < 1e-15);
        // rows taken in another order: the reference is that order's first row's level
        let v = fixest_values(&[&a, &b], &s, &[3, 2, 1, 0, 5, 4]);
        assert_eq!(v.values[1][b.ids[3] as usize], 0.0);
        assert_eq!(v.values[1][b.ids[5] as usize], 0.0);
    }

    #[test]
    fn one_effect_is_its_sum_and_inconsistent_references_fall_back() {
        let a = fe("a", &[0, 1, 1, 2]);
        let s = [1.0, 2.0, 2.0, -3.0];
        let v = fixest_values(&[&a], &s, &[0, 1, 2, 3]);
        assert_eq!(v.values[0], [1.0, 2.0, -3.0]);
        assert!(v.normalised && v.references == [0]);
        // the sweeps reproduce a sum that three effects explain
        let ids = vec![vec![0, 1, 0, 1, 2], vec![0, 0, 1, 1, 1], vec![0, 1, 1, 0, 0]];
        let planted = [vec![1.0, -2.0, 0.5], vec![3.0, 1.0], vec![0.25, -0.75]];
        let s: Vec<f64> = (0..5)
            .map(|i| (0..3).map(|q| planted[q][ids[q][i] as usize]).sum())
            .collect();
        let values = sweep_values(&ids, &[3, 2, 2], &s);
        assert!(reproduces(&ids, &values, &s));
    }
}
