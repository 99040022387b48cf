//! The exponential families fegpu fits by IRLS, each with its canonical link: what the
//! iteration needs (mean, working weight and variable, deviance), the log-likelihood, the null
//! model and the outcome rule its data must meet.
//!
//! Notation: `ξ` is the linear predictor of the regressors and fixed effects, `o` the offset,
//! `η = ξ + o`, `μ = g⁻¹(η)`; `w` the observation weights (1 without weights).

use serde::Serialize;

/// The model's family (`--family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Linear model (OLS): today's `fit`.
    #[default]
    Gaussian,
    /// Poisson with log link (PPML: y ≥ 0, not necessarily integer).
    Poisson,
    /// Binomial with logit link (y ∈ {0, 1}).
    Logit,
}

impl Family {
    pub fn parse(s: &str) -> crate::error::Result<Family> {
        match s.to_ascii_lowercase().as_str() {
            "gaussian" | "ols" | "linear" => Ok(Family::Gaussian),
            "poisson" | "ppml" => Ok(Family::Poisson),
            "logit" | "binomial" => Ok(Family::Logit),
            _ => Err(crate::error::Error::Usage(format!(
                "unknown --family `{s}` (expected gaussian, poisson or logit)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Gaussian => "gaussian",
            Family::Poisson => "poisson",
            Family::Logit => "logit",
        }
    }

    /// μ = g⁻¹(η).
    pub fn mean(self, eta: f64) -> f64 {
        match self {
            Family::Gaussian => eta,
            Family::Poisson => eta.exp(),
            Family::Logit => {
                // 1 / (1 + e^−η) without overflow on either side
                if eta >= 0.0 {
                    1.0 / (1.0 + (-eta).exp())
                } else {
                    let e = eta.exp();
                    e / (1.0 + e)
                }
            }
        }
    }

    /// g(μ) = η.
    pub fn link(self, mu: f64) -> f64 {
        match self {
            Family::Gaussian => mu,
            Family::Poisson => mu.ln(),
            Family::Logit => (mu / (1.0 - mu)).ln(),
        }
    }

    /// Var(y)/φ as a function of μ, which under the canonical link is also dμ/dη: the IRLS
    /// weight is `w · variance(μ)` and the working variable `ξ + (y − μ) / variance(μ)`.
    pub fn variance(self, mu: f64) -> f64 {
        match self {
            Family::Gaussian => 1.0,
            Family::Poisson => mu,
            Family::Logit => mu * (1.0 - mu),
        }
    }

    /// The starting mean (fixest's `mustart`: y + 0.1 for Poisson, (y + 0.5)/2 for logit).
    pub fn start(self, y: f64) -> f64 {
        match self {
            Family::Gaussian => y,
            Family::Poisson => y + 0.1,
            Family::Logit => (y + 0.5) / 2.0,
        }
    }

    /// One observation's unit deviance `d(y, μ)` (the deviance is Σ w d).
    pub fn unit_deviance(self, y: f64, mu: f64) -> f64 {
        match self {
            Family::Gaussian => (y - mu) * (y - mu),
            Family::Poisson => 2.0 * (xlogy(y, y / mu) - (y - mu)),
            Family::Logit => -2.0 * (xlogy(y, mu) + xlogy(1.0 - y, 1.0 - mu)),
        }
    }

    /// One observation's log-likelihood at mean `mu` (Poisson with the log Γ(y + 1) term, so
    /// that it equals fixest's and ppmlhdfe's for integer and non-integer outcomes alike).
    pub fn loglik(self, y: f64, mu: f64) -> f64 {
        match self {
            Family::Gaussian => f64::NAN,
            Family::Poisson => xlogy(y, mu) - mu - ln_factorial(y),
            Family::Logit => xlogy(y, mu) + xlogy(1.0 - y, 1.0 - mu),
        }
    }
}

/// ln Γ(y + 1): from a table for the whole numbers a count outcome mostly takes (the same
/// values, computed once), else [`crate::stats::ln_gamma`].
fn ln_factorial(y: f64) -> f64 {
    const TABLE: usize = 4096;
    static LOG_FACTORIALS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    if y >= 0.0 && y < TABLE as f64 && y.fract() == 0.0 {
        let t = LOG_FACTORIALS.get_or_init(|| (0..TABLE).map(|k| crate::stats::ln_gamma(k as f64 + 1.0)).collect());
        t[y as usize]
    } else {
        crate::stats::ln_gamma(y + 1.0)
    }
}

/// `x · ln(y)`, 0 when `x` is 0 (the limit every deviance term takes there).
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_invert_links_and_deviances_vanish_at_the_outcome() {
        for fam in [Family::Poisson, Family::Logit] {
            for &eta in &[-30.0, -2.0, 0.0, 0.7, 5.0] {
                let mu = fam.mean(eta);
                assert!((fam.link(mu) - eta).abs() < 1e-9 * (1.0 + eta.abs()), "{fam:?} {eta}");
            }
        }
        assert_eq!(Family::Poisson.unit_deviance(3.0, 3.0), 0.0);
        assert_eq!(Family::Poisson.unit_deviance(0.0, 2.0), 4.0);
        assert!((Family::Logit.unit_deviance(1.0, 0.5) - 2.0 * 2f64.ln()).abs() < 1e-15);
    }
}
