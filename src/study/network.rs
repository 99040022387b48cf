//! Co-applicant network measures (Table 13): degree centrality and Burt's (1992) structural
//! holes — constraint and effective size — with networkx's definitions, so results can be set
//! beside shared/data/network_measures_reference.json.
//!
//! For node i with neighbours N(i) and tie weights w (1 when unweighted):
//! * degree centrality = |N(i)| / (n − 1);
//! * p_ij = (w_ij + w_ji) / Σ_{k∈N(i)} (w_ik + w_ki), the proportional tie strength;
//! * constraint c_i = Σ_{j∈N(i)} (p_ij + Σ_{q∈N(i), q≠i,j} p_iq p_qj)² (NaN for isolates);
//! * effective size: unweighted, |N(i)| − 2t/|N(i)| with t the ties among the neighbours
//!   (Borgatti 1997); weighted, Σ_{j∈N(i)} (1 − Σ_{q∈N(i)\{j}} p_iq m_jq), m_jq = w_jq / max_k w_jk.

use std::collections::BTreeMap;

/// An undirected weighted graph on nodes 0..n.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    adj: Vec<BTreeMap<usize, f64>>,
    weighted: bool,
}

impl Graph {
    pub fn new(n: usize) -> Graph {
        Graph {
            adj: vec![BTreeMap::new(); n],
            weighted: false,
        }
    }

    pub fn n(&self) -> usize {
        self.adj.len()
    }

    /// Add (or strengthen) an undirected tie; self-loops are ignored.
    pub fn add_edge(&mut self, a: usize, b: usize, w: f64) {
        if a == b {
            return;
        }
        if w != 1.0 {
            self.weighted = true;
        }
        *self.adj[a].entry(b).or_insert(0.0) += w;
        *self.adj[b].entry(a).or_insert(0.0) += w;
        if self.adj[a][&b] != 1.0 {
            self.weighted = true;
        }
    }

    /// Number of distinct neighbours (Freeman's degree).
    pub fn degree(&self, i: usize) -> usize {
        self.adj[i].len()
    }

    pub fn degree_centrality(&self, i: usize) -> f64 {
        if self.n() <= 1 {
            return 1.0;
        }
        self.adj[i].len() as f64 / (self.n() - 1) as f64
    }

    fn p(&self, i: usize, j: usize) -> f64 {
        let total: f64 = self.adj[i].values().map(|w| 2.0 * w).sum();
        self.adj[i].get(&j).map_or(0.0, |w| 2.0 * w / total)
    }

    pub fn constraint(&self, i: usize) -> f64 {
        if self.adj[i].is_empty() {
            return f64::NAN;
        }
        self.adj[i]
            .keys()
            .map(|&j| {
                let indirect: f64 = self.adj[i]
                    .keys()
                    .filter(|&&q| q != j)
                    .map(|&q| self.p(i, q) * self.p(q, j))
                    .sum();
                (self.p(i, j) + indirect).powi(2)
            })
            .sum()
    }

    pub fn effective_size(&self, i: usize) -> f64 {
        let nbrs: Vec<usize> = self.adj[i].keys().copied().collect();
        if nbrs.is_empty() {
            return f64::NAN;
        }
        if !self.weighted {
            let n = nbrs.len() as f64;
            let mut ties = 0.0;
            for (a, &u) in nbrs.iter().enumerate() {
                for &v in &nbrs[a + 1..] {
                    if self.adj[u].contains_key(&v) {
                        ties += 1.0;
                    }
                }
            }
            return n - 2.0 * ties / n;
        }
        nbrs.iter()
            .map(|&j| {
                let max_w = self.adj[j].values().copied().fold(0.0, f64::max);
                let redundancy: f64 = nbrs
                    .iter()
                    .filter(|&&q| q != j)
                    .map(|&q| self.p(i, q) * self.adj[j].get(&q).map_or(0.0, |w| w / max_w))
                    .sum();
                1.0 - redundancy
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../data/network_measures_reference.json");

    fn reference(key: &str) -> Vec<f64> {
        let v: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let m = v[key].as_object().unwrap();
        (0..m.len()).map(|i| m[&i.to_string()].as_f64().unwrap()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn star_and_triangle_with_pendant_match_networkx() {
        let mut star = Graph::new(5);
        for k in 1..5 {
            star.add_edge(0, k, 1.0);
        }
        for (i, r) in reference("star5_constraint").iter().enumerate() {
            assert!(close(star.constraint(i), *r), "star constraint {i}");
        }
        for (i, r) in reference("star5_degree_centrality").iter().enumerate() {
            assert!(close(star.degree_centrality(i), *r));
        }
        let mut g = Graph::new(4);
        for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 3)] {
            g.add_edge(a, b, 1.0);
        }
        for (i, r) in reference("tri_pendant_constraint").iter().enumerate() {
            assert!(close(g.constraint(i), *r), "constraint {i}: {} vs {r}", g.constraint(i));
        }
        for (i, r) in reference("tri_pendant_effective_size").iter().enumerate() {
            assert!(close(g.effective_size(i), *r), "effective size {i}");
        }
        for (i, r) in reference("tri_pendant_degree_centrality").iter().enumerate() {
            assert!(close(g.degree_centrality(i), *r));
        }
    }

    #[test]
    fn zachary_karate_club_matches_networkx() {
        // Zachary (1977), 0-indexed as in networkx's karate_club_graph (78 ties).
        let ties: [(usize, &[usize]); 26] = [
            (0, &[1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 17, 19, 21, 31]),
            (1, &[2, 3, 7, 13, 17, 19, 21, 30]),
            (2, &[3, 7, 8, 9, 13, 27, 28, 32]),
            (3, &[7, 12, 13]),
            (4, &[6, 10]),
            (5, &[6, 10, 16]),
            (6, &[16]),
            (8, &[30, 32, 33]),
            (9, &[33]),
            (13, &[33]),
            (14, &[32, 33]),
            (15, &[32, 33]),
            (18, &[32, 33]),
            (19, &[33]),
            (20, &[32, 33]),
            (22, &[32, 33]),
            (23, &[25, 27, 29, 32, 33]),
            (24, &[25, 27, 31]),
            (25, &[31]),
            (26, &[29, 33]),
            (27, &[33]),
            (28, &[31, 33]),
            (29, &[32, 33]),
            (30, &[32, 33]),
            (31, &[32, 33]),
            (32, &[33]),
        ];
        let mut g = Graph::new(34);
        for (a, bs) in ties {
            for &b in bs {
                g.add_edge(a, b, 1.0);
            }
        }
        for (i, r) in reference("karate_constraint_first5").iter().enumerate() {
            assert!(
                (g.constraint(i) - r).abs() < 1e-12,
                "karate constraint {i}: {} vs {r}",
                g.constraint(i)
            );
        }
        for (i, r) in reference("karate_degcent_first5").iter().enumerate() {
            assert!(close(g.degree_centrality(i), *r));
        }
    }

    #[test]
    fn isolates_have_no_constraint() {
        let g = Graph::new(3);
        assert!(g.constraint(0).is_nan());
        assert!(g.effective_size(0).is_nan());
        assert_eq!(g.degree_centrality(0), 0.0);
    }
}
