//! Out for the next step of an analysis (`fegpu fit --save`, `--predict`): per row of a
//! model's estimation sample its fitted value, residual and fixed-effect values ([`Fitted`],
//! written by [`write_files`]), and predictions for new rows ([`predict`]).
//!
//! The estimation hands over only its coefficients ([`FitResult`]); the sample is prepared again
//! from the same table and options, so the estimation path is untouched. Then:
//! * `r = y − Xβ` (β of a collinear, removed column is 0; IV: the endogenous regressors' own
//!   values, as fixest's `fitted` and `resid` of 2SLS);
//! * the residual `e` is `r` projected off the fixed effects by the fit's demeaner (its
//!   tolerance tightened to 1e-12 at least: the projection is the one step that iterates), the
//!   fitted value `y − e`, and the effects' sum per row `S = r − e`;
//! * the effects' values are back-solved from `S` exactly, with fixest's `fixef()`
//!   normalisation ([`crate::fe::values`]): the first effect free, one level of each other
//!   effect set to 0 per connected set (the level of the set's first row in the input).

pub mod predict;

use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};

use crate::data::prepare::{prepare_with_rows, Design};
use crate::data::Table;
use crate::demean::{Absorb, DemeanOptions, Demeaner};
use crate::error::{Error, Result};
use crate::estimate::{fit::prepare_options, FitOptions, FitResult};
use crate::fe::dof::effects_to_project;
use crate::fe::values::{fixest_values, FeValues};
use crate::fe::FixedEffect;
use crate::formula::Model;

/// The tolerance of the residual's projection: the fit's, or 1e-12 if that is looser.
const SAVE_TOL: f64 = 1e-12;

/// A fit's estimation sample, row by row in the input's order.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The input row (from 0) of each sample row, increasing.
    pub rows: Vec<usize>,
    pub fitted: Vec<f64>,
    pub residual: Vec<f64>,
    /// The fixed effects over the sample, in `rows` order (ids as the design numbers them).
    pub effects: Vec<FixedEffect>,
    /// Their values per level and how they were normalised.
    pub values: FeValues,
    /// The coefficients by column name (0 for a removed column), for [`predict`].
    pub beta: Vec<(String, f64)>,
    /// How the values were normalised, in words (a note of the fit).
    pub note: Option<String>,
}

/// The estimation sample of `model` (fitted by `result` with `opts` on `table`) row by row.
pub fn fitted(
    table: &Table,
    model: &Model,
    opts: &FitOptions,
    result: &FitResult,
    demeaner: &dyn Demeaner,
) -> Result<Fitted> {
    let (design, rows) = prepare_with_rows(table, model, &prepare_options(opts))?;
    if design.nobs() != result.nobs {
        return Err(Error::Estimation(format!(
            "{}: the sample prepared again has {} rows, the fit had {}",
            model.formula,
            design.nobs(),
            result.nobs
        )));
    }
    let beta = coefficients_by_column(&design, result)?;
    let r = linear_residual(&design, &beta);
    let (e, s) = project(&design, &r, opts, demeaner)?;
    // everything in the input's row order
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&k| rows[k]);
    let values = match &s {
        Some(s) => fixest_values(&design.fes.iter().collect::<Vec<_>>(), s, &order),
        None => FeValues {
            values: Vec::new(),
            references: Vec::new(),
            normalised: true,
        },
    };
    let pick = |v: &[f64]| order.iter().map(|&k| v[k]).collect::<Vec<f64>>();
    let effects = design
        .fes
        .iter()
        .map(|f| FixedEffect {
            name: f.name.clone(),
            ids: order.iter().map(|&k| f.ids[k]).collect(),
            levels: f.levels,
        })
        .collect();
    let fitted: Vec<f64> = design.y.iter().zip(&e).map(|(y, e)| y - e).collect();
    Ok(Fitted {
        rows: order.iter().map(|&k| rows[k]).collect(),
        fitted: pick(&fitted),
        residual: pick(&e),
        note: normalisation_note(&design.fes, &values),
        effects,
        values,
        beta,
    })
}

/// β by design column: the regressors (and endogenous regressors) in design order, 0 where the
/// fit removed the column. A coefficient without a column is an error.
fn coefficients_by_column(design: &Design, result: &FitResult) -> Result<Vec<(String, f64)>> {
    let names: Vec<&String> = design.x_names.iter().chain(&design.endog_names).collect();
    if let Some(c) = result.coefficients.iter().find(|c| !names.contains(&&c.name)) {
        return Err(Error::Estimation(format!(
            "coefficient `{}` of {} has no column in the prepared sample",
            c.name, result.formula
        )));
    }
    Ok(names
        .into_iter()
        .map(|n| {
            let b = result
                .coefficients
                .iter()
                .find(|c| &c.name == n)
                .map_or(0.0, |c| c.estimate);
            (n.clone(), b)
        })
        .collect())
}

/// `y − Xβ` over the sample (regressors, then endogenous regressors).
fn linear_residual(design: &Design, beta: &[(String, f64)]) -> Vec<f64> {
    let mut r = design.y.clone();
    for (col, (_, b)) in design.x.iter().chain(&design.endog).zip(beta) {
        if *b != 0.0 {
            r.iter_mut().zip(col).for_each(|(r, x)| *r -= b * x);
        }
    }
    r
}

/// The residual `e` (r projected off the effects) and the effects' sum `S = r − e` (`None`
/// without fixed effects).
fn project(
    design: &Design,
    r: &[f64],
    opts: &FitOptions,
    demeaner: &dyn Demeaner,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    if design.fes.is_empty() {
        return Ok((r.to_vec(), None));
    }
    let project: Vec<&FixedEffect> = effects_to_project(&design.fes)
        .into_iter()
        .map(|k| &design.fes[k])
        .collect();
    let absorb = Absorb::new(project, design.weights.as_deref());
    let dopts = DemeanOptions {
        tol: opts.demean.tol.min(SAVE_TOL),
        ..opts.demean
    };
    let dm = demeaner.demean(&absorb, vec![r.to_vec()], &dopts)?;
    if !dm.not_converged.is_empty() {
        return Err(Error::Estimation(format!(
            "the residual's projection on the fixed effects did not converge in {} iterations (tolerance {:e}); the fixed-effect values would be inaccurate: raise --maxiter",
            dm.iterations, dopts.tol
        )));
    }
    let e = dm.columns.into_iter().next().expect("one column");
    let s = r.iter().zip(&e).map(|(r, e)| r - e).collect();
    Ok((e, Some(s)))
}

/// The normalisation of the values in words.
fn normalisation_note(fes: &[FixedEffect], v: &FeValues) -> Option<String> {
    let first = fes.first()?;
    if !v.normalised {
        return Some(format!(
            "--save: fixest's references did not reproduce the effects' sum on this structure; the fixed-effect values come from sweeps on it and carry no normalisation (only their sum per row is identified), as fixest's fallback"
        ));
    }
    let refs: Vec<String> = fes
        .iter()
        .zip(&v.references)
        .skip(1)
        .map(|(f, k)| format!("`{}` {k}", f.name))
        .collect();
    Some(format!(
        "--save: fixed-effect values normalised as fixest's fixef(): `{}` free{}",
        first.name,
        if refs.is_empty() {
            String::new()
        } else {
            format!(
                "; levels set to 0 (the first row's level in each connected set): {}",
                refs.join(", ")
            )
        }
    ))
}

impl Fitted {
    /// The sample as a table: `row` (its row in the input, from 1 for the first row after the
    /// header), `fitted`, `residual`, and `fe_NAME` per fixed effect.
    pub fn frame(&self) -> Result<DataFrame> {
        let n = self.rows.len();
        let mut cols = vec![
            Column::new(
                "row".into(),
                self.rows.iter().map(|&r| r as u64 + 1).collect::<Vec<u64>>(),
            ),
            Column::new("fitted".into(), self.fitted.clone()),
            Column::new("residual".into(), self.residual.clone()),
        ];
        for (f, v) in self.effects.iter().zip(&self.values.values) {
            let per_row: Vec<f64> = f.ids.iter().map(|&g| v[g as usize]).collect();
            cols.push(Column::new(format!("fe_{}", f.name).into(), per_row));
        }
        DataFrame::new(n, cols).map_err(|e| Error::Data(format!("--save: {e}")))
    }
}

/// The file of model `k` (from 1) of `count`: `path` itself for one model, else `stem_k.ext`.
pub fn numbered(path: &Path, k: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}_{k}.{ext}"),
        None => format!("{stem}_{k}"),
    };
    path.with_file_name(name)
}

/// Write every table (`.csv` or `.parquet`) atomically as one: all into temporary files beside
/// their targets first, then renamed; on any error nothing is renamed and the temporary files
/// are removed.
pub fn write_files(files: Vec<(PathBuf, DataFrame)>) -> Result<()> {
    let mut staged: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    let result = (|| -> Result<()> {
        for (path, mut df) in files {
            let shown = path.display().to_string();
            let ext = crate::data::load::check_output(&path)?;
            let target = crate::report::output_target(&path)?;
            let tmp = crate::report::temporary_beside(&target);
            staged.push((tmp.clone(), target, shown.clone()));
            crate::data::load::write_table(&mut df, &tmp, &ext, &shown)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        staged.iter().for_each(|(tmp, _, _)| drop(std::fs::remove_file(tmp)));
        return Err(e);
    }
    for (k, (tmp, target, shown)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target) {
            staged[k..]
                .iter()
                .for_each(|(tmp, _, _)| drop(std::fs::remove_file(tmp)));
            return Err(Error::io(shown, e));
        }
    }
    Ok(())
}

/// What `fegpu fit` writes besides its table: `--save FILE` and `--predict NEWDATA` with
/// `--predict-out FILE`.
pub struct Outputs<'a> {
    pub save: Option<&'a Path>,
    pub predict: Option<(&'a str, &'a Path)>,
}

/// Write the outputs of every fit (`fits[k]` estimated `results[k]` on `table`): one file per
/// model ([`numbered`]), all or none ([`write_files`]). The normalisation of the fixed-effect
/// values joins each saved model's notes (and is printed).
pub fn write_outputs(
    table: &Table,
    fits: &[(&Model, &FitOptions)],
    results: &mut [FitResult],
    out: &Outputs,
    demeaner: &dyn Demeaner,
) -> Result<()> {
    let new = match out.predict {
        Some((data, _)) => {
            let mut columns: Vec<String> = Vec::new();
            for c in fits.iter().flat_map(|(m, _)| predict::needed_columns(m)) {
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
            Some(crate::data::load(data, &columns)?)
        }
        None => None,
    };
    let count = fits.len();
    let mut files = Vec::new();
    for (k, ((model, opts), result)) in fits.iter().zip(results.iter_mut()).enumerate() {
        let f = fitted(table, model, opts, result, demeaner)?;
        if let Some(path) = out.save {
            if let Some(note) = &f.note {
                eprintln!("note ({}): {note}", model.formula);
                result.notes.push(note.clone());
            }
            files.push((numbered(path, k + 1, count), f.frame()?));
        }
        if let (Some(new), Some((_, path))) = (&new, out.predict) {
            let p = predict::predict(table, model, &f, new)?;
            let df = DataFrame::new(
                p.len(),
                vec![
                    Column::new("row".into(), (1..=p.len() as u64).collect::<Vec<u64>>()),
                    Column::new(
                        "prediction".into(),
                        p.iter()
                            .map(|v| v.is_finite().then_some(*v))
                            .collect::<Vec<Option<f64>>>(),
                    ),
                ],
            )
            .map_err(|e| Error::Data(format!("--predict: {e}")))?;
            files.push((numbered(path, k + 1, count), df));
        }
    }
    write_files(files)
}
