//! The estimation driver: design → demean → OLS → vcov → [`FitResult`] (in [`super::result`],
//! the one result type every report writer and the JSON contract read).

pub use super::common::FitOptions;
pub use super::result::FitResult;

use std::time::Instant;

use super::common::{
    assemble, check_kept, degrees, not_converged_note, weighted_centred_ss, Degrees, Own, Run, Solved,
};
use super::finite;
use super::ols;
use super::result::Coefficient;
use super::vcov::{self, Ssc, VcovInput};
use crate::data::prepare::{prepare, prepare_taking, Design, PrepareOptions};
use crate::data::Table;
use crate::demean::{Absorb, Demeaner};
use crate::error::Result;
use crate::fe::dof::effects_to_project;
use crate::fe::FixedEffect;
use crate::formula::Model;
use crate::stats::t_two_sided_p;

/// Prepare the sample of `model` from `table` and estimate it.
pub fn fit(table: &Table, model: &Model, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = Instant::now();
    let design = prepare(table, model, &prepare_options(opts))?;
    estimate_prepared(design, model, opts, demeaner, t0)
}

/// [`fit`] for a command's last model: the table is dropped once the sample is prepared, so
/// the raw data frame is not held while demeaning (a third of the peak memory of a large fit).
pub fn fit_last(table: Table, model: &Model, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    let t0 = Instant::now();
    let mut table = table;
    let design = prepare_taking(&mut table, model, &prepare_options(opts))?;
    // freeing a 10-million-row frame takes a noticeable moment: do it beside the estimation
    std::thread::spawn(move || drop(table));
    estimate_prepared(design, model, opts, demeaner, t0)
}

/// What preparing a sample needs of `opts` (also used to prepare it again, `crate::fitted`).
pub fn prepare_options(opts: &FitOptions) -> PrepareOptions {
    PrepareOptions {
        weights: opts.weights.clone(),
        clusters: opts.vcov.cluster_vars().to_vec(),
        keep_singletons: opts.keep_singletons,
        subset: opts.subset.clone(),
        panel: opts.panel.clone(),
        ..Default::default()
    }
}

fn estimate_prepared(
    mut design: Design,
    model: &Model,
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
    t0: Instant,
) -> Result<FitResult> {
    crate::timing::lap("prepare");
    let mut r = if model.iv.is_some() {
        super::iv::fit_iv_design(&design, &model.formula, opts, demeaner)?
    } else {
        // the design's own y and x are demeaned in place of copies
        let y = std::mem::take(&mut design.y);
        let x = std::mem::take(&mut design.x);
        fit_columns(&design, y, x, &model.formula, opts, demeaner)?
    };
    r.seconds = t0.elapsed().as_secs_f64();
    r.notes.splice(0..0, model.notes.iter().cloned());
    Ok(r)
}

/// Estimate a prepared design (the CPU/GPU-independent part of [`fit`]).
pub fn fit_design(design: &Design, formula: &str, opts: &FitOptions, demeaner: &dyn Demeaner) -> Result<FitResult> {
    fit_columns(design, design.y.clone(), design.x.clone(), formula, opts, demeaner)
}

/// The demeaned `[y, x…]` must be finite (an overflow inside the demeaner names the column).
fn check_demeaned(design: &Design, cols: &[Vec<f64>], w: Option<&[f64]>) -> Result<()> {
    let names = std::iter::once(&design.y_name).chain(&design.x_names);
    finite::check_demeaned(names.map(|s| s.as_str()).zip(cols.iter().map(|c| c.as_slice())), w).map(drop)
}

/// Demean on the host side of the [`Demeaner`], solve OLS on the columns and form the variance.
fn solve_host(
    design: &Design,
    y: Vec<f64>,
    x: Vec<Vec<f64>>,
    raw_ss: &[f64],
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<(Solved, Degrees)> {
    let w = design.weights.as_deref();
    let has_fe = !design.fes.is_empty();
    let mut notes = Vec::new();
    let (yt, xt, iterations, converged, raw_ss, method) = if has_fe {
        let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
            .into_iter()
            .map(|k| &design.fes[k])
            .collect();
        let absorb = Absorb::new(project, w);
        let mut cols = Vec::with_capacity(x.len() + 1);
        cols.push(y);
        cols.extend(x);
        let dm = demeaner.demean(&absorb, cols, &opts.demean)?;
        crate::timing::lap("demean");
        check_demeaned(design, &dm.columns, w)?;
        for &c in &dm.not_converged {
            let name = if c == 0 { &design.y_name } else { &design.x_names[c - 1] };
            notes.push(not_converged_note(name, &dm, &opts.demean));
        }
        let converged = dm.not_converged.is_empty();
        let method = (dm.method.clone(), dm.residual);
        let mut it = dm.columns.into_iter();
        let yt = it.next().unwrap();
        (
            yt,
            it.collect::<Vec<_>>(),
            dm.iterations,
            converged,
            Some(raw_ss),
            method,
        )
    } else {
        (y, x, 0, true, None, (Default::default(), 0.0))
    };
    let est = ols::solve_checked(&design.x_names, &xt, &yt, w, raw_ss, opts.collin_tol)?;
    crate::timing::lap("estimate");
    check_kept(design, &est, &mut notes)?;
    let deg = degrees(design, yt.len(), est.kept.len(), opts);
    let kept_x: Vec<&[f64]> = est.kept.iter().map(|&j| xt[j].as_slice()).collect();
    let v = vcov::compute(
        &opts.vcov,
        &VcovInput {
            x: kept_x,
            resid: &est.resid,
            weights: w,
            bread: &est.bread,
            df_resid: deg.df_resid,
        },
        &design.clusters,
    )?;
    crate::timing::lap("variance");
    let rss = weighted_centred_ss(&est.resid, w, false);
    let within_ss = has_fe.then(|| weighted_centred_ss(&yt, w, false));
    let solved = Solved {
        est,
        v,
        rss,
        within_ss,
        iterations,
        converged,
        method,
        notes,
    };
    Ok((solved, deg))
}

/// [`fit_design`] with the design's `y` and `x` passed by value (`design.y`/`design.x` are not
/// read), so that they are demeaned without a copy.
fn fit_columns(
    design: &Design,
    y: Vec<f64>,
    x: Vec<Vec<f64>>,
    formula: &str,
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<FitResult> {
    let t0 = Instant::now();
    let n = y.len();
    let w = design.weights.as_deref();
    let has_fe = !design.fes.is_empty();
    let centred = has_fe || design.intercept;
    let names = std::iter::once(&design.y_name).chain(&design.x_names);
    let cols = std::iter::once(y.as_slice()).chain(x.iter().map(|c| c.as_slice()));
    finite::check_weights(opts.weights.as_deref(), w)?;
    let moments = finite::checked_moments(names.map(|s| s.as_str()).zip(cols), w)?;
    let tss = if centred {
        moments[0].centred_ss
    } else {
        moments[0].sum_sq
    };
    let raw_ss: Vec<f64> = moments[1..].iter().map(|m| m.centred_ss).collect();
    crate::timing::lap("prepare");
    let (solved, deg) = match super::resident::solve(design, &y, &x, &raw_ss, opts, demeaner)? {
        Some(s) => s,
        None => solve_host(design, y, x, &raw_ss, opts, demeaner)?,
    };
    let Solved {
        est,
        v,
        rss,
        within_ss,
        iterations,
        converged,
        method,
        mut notes,
    } = solved;
    let Degrees {
        dof_vcov,
        df_resid,
        df_resid_full,
    } = deg;
    let k = est.kept.len();
    if opts.ssc == Ssc::Fixest && design.dropped.singletons > 0 {
        notes.push(format!(
            "{} singleton observations were dropped (reghdfe's rule); fixest keeps them by default, so N and the standard errors differ from fixest's — use --keep-singletons to match it",
            design.dropped.singletons
        ));
    }
    if v.eigen_fixed {
        notes.push("the multiway cluster variance was not positive semi-definite; negative eigenvalues were set to zero (Cameron, Gelbach & Miller 2011)".into());
    }

    let r2 = 1.0 - rss / tss;
    let within_r2 = within_ss.map(|ss| 1.0 - rss / ss);
    // in the user's weight units (the solve ran on weights of mean one)
    let (rss, tss) = super::finite::in_weight_units(opts.weights.as_deref(), design.weight_scale, rss, tss)?;
    let adj_r2 = if centred {
        1.0 - (1.0 - r2) * (n as f64 - 1.0) / df_resid_full
    } else {
        1.0 - (1.0 - r2) * n as f64 / df_resid_full
    };
    let rmse = match opts.ssc {
        Ssc::Reghdfe => (rss / df_resid_full).sqrt(),
        Ssc::Fixest => (rss / n as f64).sqrt(),
    };

    let coefficients = est
        .kept
        .iter()
        .enumerate()
        .map(|(a, &j)| {
            let se = v.matrix.get(a, a).max(0.0).sqrt();
            let t = est.beta[a] / se;
            Coefficient {
                name: design.x_names[j].clone(),
                estimate: est.beta[a],
                std_error: se,
                t,
                p: t_two_sided_p(t, v.df_t),
            }
        })
        .collect();
    let vcov_matrix = (0..k).map(|a| (0..k).map(|b| v.matrix.get(a, b)).collect()).collect();

    let own = Own {
        nobs: n,
        coefficients,
        r2,
        adj_r2,
        within_r2,
        rmse,
        rss,
        tss,
        collinear: est.dropped.clone(),
        vcov_matrix,
        notes,
        iv: None,
    };
    let run = Run::new(iterations, converged, method, has_fe, demeaner, t0);
    let r = assemble(formula, design, opts, &dof_vcov, df_resid, &v, run, own);
    finite::check_result(&r)?;
    crate::timing::lap("estimate");
    Ok(r)
}
