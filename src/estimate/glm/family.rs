//! The exponential families fegpu fits by IRLS, each with its canonical link: what the
//! iteration needs (mean, working weight and variable, deviance), the log-likelihood, the null
//! model and the outcome rule its data must meet.
//!
//! Notation: `ξ` is the linear predictor of the regressors and fixed effects, `o` the offset,
//! `η = ξ + o`, `μ = g⁻¹(η)`; `w` the observation weights (1 without weights).

use serde::Serialize;

/// The model's family (`--family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
            Family::Poisson => xlogy(y, mu) - mu - ln_gamma(y + 1.0),
            Family::Logit => xlogy(y, mu) + xlogy(1.0 - y, 1.0 - mu),
        }
    }

    /// Whether `y` is an admissible outcome, else the rule it breaks.
    pub fn check_outcome(self, y: f64) -> Option<&'static str> {
        match self {
            Family::Gaussian => None,
            Family::Poisson if y < 0.0 => Some("a Poisson outcome must be non-negative"),
            Family::Logit if y != 0.0 && y != 1.0 => Some("a logit outcome must be 0 or 1"),
            _ => None,
        }
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

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: relative error below 1e-15 over the positive
/// reals, which is all a log-likelihood printed to 6 digits needs).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // reflection
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (k, g) in G.iter().enumerate().skip(1) {
        a += g / (x + k as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..30 {
            f *= n as f64;
            let got = ln_gamma(n as f64 + 1.0);
            assert!(
                (got - f.ln()).abs() <= 1e-13 * f.ln().max(1.0),
                "{n}: {got} vs {}",
                f.ln()
            );
        }
        // Γ(1/2) = √π
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
    }

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
