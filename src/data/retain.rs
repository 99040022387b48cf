//! Narrowing a prepared [`Design`] to some of its rows (separated observations leaving a GLM's
//! sample): every column keeps the rows marked, in order, and the fixed-effect and cluster
//! levels are numbered densely again over them.

use super::prepare::{ClusterVar, Design};
use crate::fe::index::compact;
use crate::fe::FixedEffect;

impl Design {
    /// Keep the rows `i` with `keep[i]` (the caller counts why the others left in `dropped`).
    /// The weights keep their scale: only their ratios enter an estimate.
    pub fn retain(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.nobs(), "one flag per row");
        if keep.iter().all(|&k| k) {
            return;
        }
        let rows: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        let pick = |v: &mut Vec<f64>| *v = rows.iter().map(|&i| v[i]).collect();
        pick(&mut self.y);
        self.x.iter_mut().for_each(pick);
        self.endog.iter_mut().for_each(pick);
        self.inst.iter_mut().for_each(pick);
        self.extra.iter_mut().for_each(pick);
        if let Some(w) = self.weights.as_mut() {
            pick(w);
        }
        for fe in &mut self.fes {
            let (ids, levels) = compact(&fe.ids, fe.levels, &rows);
            *fe = FixedEffect {
                name: std::mem::take(&mut fe.name),
                ids,
                levels,
            };
        }
        for c in &mut self.clusters {
            let (ids, levels) = compact(&c.ids, c.levels, &rows);
            *c = ClusterVar {
                name: std::mem::take(&mut c.name),
                ids,
                levels,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_rows_keep_their_order_and_levels_are_renumbered() {
        let mut d = Design {
            y_name: "y".into(),
            y: vec![0.0, 1.0, 2.0, 3.0],
            x_names: vec!["x".into()],
            x: vec![vec![10.0, 11.0, 12.0, 13.0]],
            intercept: false,
            endog_names: vec![],
            endog: vec![],
            inst_names: vec![],
            inst: vec![],
            weights: Some(vec![1.0, 2.0, 3.0, 4.0]),
            weight_scale: 1.0,
            extra: vec![],
            fes: vec![FixedEffect {
                name: "g".into(),
                ids: vec![0, 1, 1, 2],
                levels: 3,
            }],
            clusters: vec![],
            nobs_raw: 4,
            dropped: Default::default(),
        };
        d.retain(&[false, true, true, true]);
        assert_eq!(d.y, vec![1.0, 2.0, 3.0]);
        assert_eq!(d.x[0], vec![11.0, 12.0, 13.0]);
        assert_eq!(d.weights.as_deref(), Some(&[2.0, 3.0, 4.0][..]));
        assert_eq!(d.fes[0].ids, vec![0, 0, 1]);
        assert_eq!(d.fes[0].levels, 2);
    }
}
