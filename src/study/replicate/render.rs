//! Rendering the results: each table in the paper's layout (panels, the paper's numbers, notes) for
//! md/tex/csv, the timing table, and report.html (per-table coefficient plots, permutation
//! histograms, the timing last).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::run::*;
use super::spec::*;
use super::*;

use crate::error::{Error, Result};
use crate::estimate::FitResult;
use crate::report::table::{fmt_num, Grid};
use crate::report::{writers, Stat};
use crate::study::paper::PaperColumn;

/// A table in the paper's layout, one [`Grid`] per panel (one for a table without panels; the
/// panel's name heads its first column): the coefficient table of the panel's columns (labels
/// as headers, variables as the paper names them), then the Controls row, permutation p-values
/// of split differences, wild-bootstrap p-values of columns with few clusters, the planted
/// truth and whether each 95% interval covers it, then the paper's published numbers. The notes
/// (the table's and its columns', failures, tests, few clusters) follow the last panel.
pub fn grids(t: &TableResult, controls: &[String]) -> Vec<Grid> {
    if !t.counts.is_empty() {
        return vec![counts_grid(t)];
    }
    let ok: Vec<&ColumnResult> = t.columns.iter().filter(|c| c.result.is_some()).collect();
    let mut panels: Vec<(Option<String>, Vec<&ColumnResult>)> = Vec::new();
    for c in ok {
        match panels.last_mut() {
            Some((p, cols)) if *p == c.panel => cols.push(c),
            _ => panels.push((c.panel.clone(), vec![c])),
        }
    }
    if panels.is_empty() {
        panels.push((None, vec![]));
    }
    let mut out: Vec<Grid> = panels
        .iter()
        .map(|(name, cols)| {
            let mut g = columns_grid(t, cols, controls);
            if let Some(n) = name {
                g.header[0] = n.clone();
            }
            g
        })
        .collect();
    let mut notes = vec![format!("Table {}: {}.", t.id, t.title)];
    for g in &mut out {
        for n in g.notes.drain(..) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    notes.extend(table_notes(t));
    out.last_mut().expect("one panel at least").notes = notes;
    out
}

/// The table's first panel (the whole table when it has no panels), as [`grids`] lays it out.
pub fn grid(t: &TableResult, controls: &[String]) -> Grid {
    grids(t, controls).swap_remove(0)
}

/// Table 7's layout: per level its code, units, their share, rows, then the planted units and
/// the paper's units, share and rows.
pub(super) fn counts_grid(t: &TableResult) -> Grid {
    let has_truth = t.counts.iter().any(|c| c.truth.is_some());
    let has_paper = t.counts.iter().any(|c| c.paper.is_some());
    let mut header: Vec<String> = ["Strategy", "Code", "Firms", "Share (%)", "Observations"]
        .map(String::from)
        .to_vec();
    if has_truth {
        header.push("Simulated firms (truth)".into());
    }
    if has_paper {
        header.extend(["Paper: firms", "Paper: share (%)", "Paper: observations"].map(String::from));
    }
    let rows = t
        .counts
        .iter()
        .map(|c| {
            let mut r = vec![
                c.label.clone(),
                format!("{}", c.level),
                c.units.to_string(),
                format!("{:.2}", c.share_pct),
                c.rows.to_string(),
            ];
            if has_truth {
                r.push(c.truth.map_or(String::new(), |v| format!("{v:.0}")));
            }
            if has_paper {
                let cell = |key: &str, decimals: usize| {
                    let v = c.paper.as_ref().and_then(|p| p.extra.get(key)?.as_f64());
                    v.map_or(String::new(), |v| format!("{v:.decimals$}"))
                };
                r.extend([cell("firms", 0), cell("share_pct", 2), cell("obs", 0)]);
            }
            r
        })
        .collect();
    let mut notes = vec![format!("Table {}: {}.", t.id, t.title)];
    notes.extend(t.note.clone());
    Grid {
        header,
        sections: vec![rows],
        notes,
    }
}

/// The coefficient table of `cols` with the rows below it (see [`grids`]); its notes are the
/// estimator's (clustering, small-sample convention, warnings).
pub(super) fn columns_grid(t: &TableResult, cols: &[&ColumnResult], controls: &[String]) -> Grid {
    let results: Vec<FitResult> = cols
        .iter()
        .map(|c| {
            let mut r = c.result.clone().unwrap();
            r.coefficients.retain(|k| !controls.contains(&k.name));
            r
        })
        .collect();
    if results.is_empty() {
        return Grid {
            header: vec![String::new()],
            sections: vec![],
            notes: vec![],
        };
    }
    let mut g = Grid::build(&results, Stat::T);
    for (k, c) in cols.iter().enumerate() {
        g.header[k + 1] = c.label.clone();
    }
    relabel(&mut g, &t.labels);
    let mut extra = Vec::new();
    if !controls.is_empty() {
        extra.push(row("Controls", cols, |c| {
            let r = c.result.as_ref().unwrap();
            let has = r.coefficients.iter().any(|k| controls.contains(&k.name));
            (if has { "Yes" } else { "No" }).to_string()
        }));
    }
    if !t.splits.is_empty() {
        // the p-value under the first column of each split pair
        extra.push(row("Permutation p (difference)", cols, |c| match c.split_test {
            Some((k, 1)) => {
                let s = &t.splits[k];
                if s.error.is_some() {
                    "failed".into()
                } else {
                    format!("{:.3}", s.p)
                }
            }
            _ => String::new(),
        }));
    }
    if cols.iter().any(|c| c.few_clusters.is_some()) {
        extra.push(row(
            &format!("Wild bootstrap p (< {FEW_CLUSTERS} clusters)"),
            cols,
            |c| {
                c.few_clusters.as_ref().map_or(String::new(), |w| match w.p {
                    Some(p) => format!("{p:.3} (G={})", w.clusters),
                    None => format!("n/a (G={})", w.clusters),
                })
            },
        ));
    }
    if cols.iter().any(|c| c.truth.is_some()) {
        extra.push(row("Planted truth", cols, |c| c.truth.map_or(String::new(), fmt_num)));
        extra.push(row("95% CI covers truth", cols, |c| match c.covers_truth {
            Some(true) => "yes".into(),
            Some(false) => "NO ⚑".into(),
            None => String::new(),
        }));
    }
    if !extra.is_empty() {
        g.sections.push(extra);
    }
    if cols.iter().any(|c| c.paper.is_some()) {
        g.sections.push(paper_rows(cols));
    }
    g
}

/// A row labelled `label` with one cell per column.
pub(super) fn row(label: &str, cols: &[&ColumnResult], cell: impl Fn(&ColumnResult) -> String) -> Vec<String> {
    std::iter::once(label.to_string())
        .chain(cols.iter().map(|c| cell(c)))
        .collect()
}

/// Dependent variables and coefficient names as the paper writes them.
pub(super) fn relabel(g: &mut Grid, labels: &BTreeMap<String, String>) {
    let show = |name: &str| display_name(labels, name);
    if let Some(depvars) = g.sections.first_mut().and_then(|s| s.first_mut()) {
        for c in depvars.iter_mut().skip(1) {
            *c = show(c);
        }
    }
    if let Some(coefs) = g.sections.get_mut(1) {
        for r in coefs.iter_mut().step_by(2) {
            r[0] = show(&r[0]);
        }
    }
}

/// The paper's numbers for `cols`: each printed coefficient (as the paper names it) with its t
/// statistic, then N, Adj. R² and the difference p-value where printed.
pub(super) fn paper_rows(cols: &[&ColumnResult]) -> Vec<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for p in cols.iter().filter_map(|c| c.paper.as_ref()) {
        for (name, ..) in p.coefficients() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut rows = Vec::new();
    for name in &names {
        let coef = |c: &ColumnResult| {
            c.paper
                .as_ref()
                .and_then(|p| p.coefficients().into_iter().find(|k| &k.0 == name))
        };
        rows.push(row(&format!("Paper: {name}"), cols, |c| {
            coef(c).map_or(String::new(), |k| PaperColumn::coef_cell(k.1, &k.3))
        }));
        rows.push(row("", cols, |c| {
            coef(c).map_or(String::new(), |k| PaperColumn::t_cell(k.2))
        }));
    }
    let paper = |c: &ColumnResult| c.paper.clone();
    rows.push(row("Paper: N", cols, |c| {
        paper(c).and_then(|p| p.n).map_or(String::new(), |n| n.to_string())
    }));
    rows.push(row("Paper: Adj. R2", cols, |c| {
        paper(c).and_then(|p| p.r2).map_or(String::new(), |r| format!("{r:.3}"))
    }));
    rows.push(row("Paper: p (difference)", cols, |c| {
        let first = matches!(c.split_test, Some((_, 1)) | None);
        paper(c)
            .and_then(|p| p.p)
            .filter(|_| first)
            .map_or(String::new(), |p| format!("{p:.3}"))
    }));
    // further printed statistics (Table 2's weak-identification tests), as printed
    let mut keys: Vec<String> = Vec::new();
    for p in cols.iter().filter_map(|c| c.paper.as_ref()) {
        keys.extend(
            p.extra
                .keys()
                .filter(|k| !keys.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    for key in &keys {
        rows.push(row(&format!("Paper: {}", PaperColumn::extra_label(key)), cols, |c| {
            let v = c.paper.as_ref().and_then(|p| p.extra.get(key)?.as_f64());
            v.map_or(String::new(), |v| v.to_string())
        }));
    }
    // a statistic the paper prints for none of these columns gets no row
    rows.retain(|r| r[1..].iter().any(|c| !c.is_empty()));
    rows
}

/// The notes after a table's coefficient rows: the specification's notes, failures, the split
/// tests, and the few-cluster bootstrap.
pub(super) fn table_notes(t: &TableResult) -> Vec<String> {
    let mut notes: Vec<String> = t.note.iter().cloned().collect();
    for c in t.columns.iter().filter(|c| c.note.is_some()) {
        notes.push(format!("{}: {}", c.label, c.note.as_ref().unwrap()));
    }
    for c in t.columns.iter().filter(|c| c.error.is_some()) {
        notes.push(format!("Column `{}` failed: {}", c.label, c.error.as_ref().unwrap()));
    }
    for s in t.splits.iter().filter(|s| s.error.is_some()) {
        notes.push(format!(
            "Permutation test `{}` failed: {}",
            s.label,
            s.error.as_ref().unwrap()
        ));
    }
    for s in t.splits.iter().filter(|s| s.error.is_none()) {
        notes.push(format!(
            "`{}`: difference in {} between {} = 1 and 0 is {}, Fisher permutation p = {:.3} ({} replications, permuting {}).{}",
            s.label,
            s.param,
            s.split,
            fmt_num(s.difference),
            s.p,
            s.reps,
            if s.unit == "obs" { "observations".to_string() } else { format!("whole {}", s.unit) },
            s.note.as_ref().map_or(String::new(), |n| format!(" Note: {n}."))
        ));
        if s.failed > 0 {
            notes.push(format!(
                "WARNING: `{}`: {} of {} replications could not be estimated (a regressor collinear within a permuted group) and are left out of its p-value.",
                s.label, s.failed, s.reps
            ));
        }
    }
    notes.extend(few_clusters_note(t));
    notes.extend(t.recovery.clone());
    if t.columns.iter().any(|c| c.paper.is_some()) {
        notes.push("Paper: the published coefficient (t statistic), N, Adj. R2 and difference p-value of the corresponding column (data/paper_values.json).".into());
    }
    notes
}

/// What the wild-bootstrap row means, and which columns could not have it.
pub(super) fn few_clusters_note(t: &TableResult) -> Option<String> {
    let few: Vec<(&ColumnResult, &FewClusters)> = t
        .columns
        .iter()
        .filter_map(|c| c.few_clusters.as_ref().map(|w| (c, w)))
        .collect();
    let (_, w) = few.first()?;
    let mut n = format!(
        "Fewer than {FEW_CLUSTERS} clusters: clustered t-tests over-reject, so these columns also show the restricted wild cluster bootstrap p-value of H0: coefficient = 0 (Roodman et al. 2019; {} replications; Webb weights with 12 clusters or fewer, Rademacher otherwise), clustered by {}.",
        w.reps, w.cluster
    );
    for (c, w) in few.iter().filter(|(_, w)| w.error.is_some()) {
        n.push_str(&format!(" {}: no bootstrap ({}).", c.label, w.error.as_ref().unwrap()));
    }
    Some(n)
}

/// Write every table's files; returns the paths written.
pub fn write_tables(out: &Path, tables: &[TableResult], controls: &[String]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for t in tables {
        let g = grids(t, controls);
        for (ext, text) in [
            ("md", panels(&g, writers::markdown)),
            ("tex", panels(&g, writers::latex)),
            ("csv", panels(&g, writers::csv)),
        ] {
            let p = out.join(format!("table{}.{ext}", t.id));
            write_atomic(&p, &text)?;
            written.push(p);
        }
    }
    Ok(written)
}

/// A table's panels laid out one after another by `writer`.
pub(super) fn panels(grids: &[Grid], writer: fn(&Grid) -> String) -> String {
    grids.iter().map(writer).collect::<Vec<_>>().join("\n")
}

/// The timing table as Markdown and CSV.
pub fn timing_tables(stages: &[Stage]) -> (String, String) {
    let mut md = String::from("| stage | seconds | backend |\n|:---|---:|:---|\n");
    let mut csv = String::from("stage,seconds,backend\n");
    for s in stages {
        md.push_str(&format!("| {} | {:.2} | {} |\n", s.stage, s.seconds, s.backend));
        csv.push_str(&format!("\"{}\",{:.3},\"{}\"\n", s.stage, s.seconds, s.backend));
    }
    // "panel: …" rows are parts of "build panel (total)"
    let total: f64 = stages
        .iter()
        .filter(|s| !s.stage.starts_with("panel: "))
        .map(|s| s.seconds)
        .sum();
    md.push_str(&format!("| **total** | {total:.2} | |\n"));
    (md, csv)
}

/// The coefficient of interest of each of `t`'s estimated columns that `keep`, labelled
/// `prefix` + the column's label.
pub(super) fn coefficient_rows(
    t: &TableResult,
    prefix: &str,
    keep: impl Fn(&ColumnResult) -> bool,
) -> Vec<crate::report::plot::CoefRow> {
    t.columns
        .iter()
        .filter(|c| keep(c))
        .filter_map(|c| {
            let (e, ci) = (c.estimate?, c.ci95?);
            Some(crate::report::plot::CoefRow {
                label: format!("{prefix}{}", c.label),
                estimate: e,
                lo: ci[0],
                hi: ci[1],
                truth: c.truth,
            })
        })
        .collect()
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The HTML report: summary, then each table with its own coefficient plot (so a table's small
/// effects are not squashed by another's wide intervals) and permutation distributions, then
/// the timing. `coefficients.svg` keeps the one-plot overview of the Digtech columns.
pub(super) fn html_report(rep: &Replication, out: &Path) -> Result<String> {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fegpu replication</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}th,td{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}thead th{border-bottom:2px solid #333}tbody th{text-align:left;font-weight:normal}.flag{color:#c00;font-weight:bold}.note{font-size:90%;color:#444;margin:2px 0}h2{margin-top:2em}</style></head><body>\n<h1>Digital technology innovation and export quality — replication</h1>\n",
    );
    h.push_str(&summary_html(rep));
    let overview: Vec<_> = rep
        .tables
        .iter()
        .flat_map(|t| coefficient_rows(t, &format!("T{} ", t.id), |c| c.param == "digtech" || c.truth.is_some()))
        .collect();
    let svg = crate::report::plot::coefficient_svg(
        &overview,
        "Estimates with 95% intervals (orange tick: planted truth; red: interval misses it)",
    );
    write_atomic(&out.join("coefficients.svg"), &svg)?;
    for t in &rep.tables {
        h.push_str(&format!(
            "<h2 id=\"table{}\">Table {}. {}</h2>\n",
            t.id,
            t.id,
            esc(&t.title)
        ));
        h.push_str(&panels(&grids(t, &rep.controls), writers::html));
        let rows = coefficient_rows(t, "", |_| true);
        if !rows.is_empty() {
            let title = format!(
                "Table {}: estimates with 95% intervals (orange tick: planted truth)",
                t.id
            );
            h.push_str(&crate::report::plot::coefficient_svg(&rows, &title));
        }
        h.push_str(&permutation_plots(t, out)?);
    }
    h.push_str(&timing_html(&rep.timing));
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The report's opening paragraphs: data, backend, failures, intervals missing the truth.
pub(super) fn summary_html(rep: &Replication) -> String {
    let mut h = format!(
        "<p>Data: {} ({}). Panel: {} firm-year-destination rows. Backend: {}. Permutation tests: {} replications, seed {}. Total time {:.1} s. {}</p>\n<p>Each table sets the paper's published numbers (\"Paper:\" rows, data/paper_values.json) beside ours; its notes say where the paper is ambiguous and what we chose.</p>\n",
        esc(&rep.raw),
        if rep.simulated { "simulated; planted effects from truth.json are set beside the estimates" } else { "researcher's data" },
        rep.panel_rows,
        esc(&rep.backend),
        rep.reps,
        rep.seed,
        rep.total_seconds,
        if rep.failures > 0 { format!("<span class=\"flag\">{} specification(s) failed; see the table notes.</span>", rep.failures) } else { "All specifications ran.".into() }
    );
    let misses: Vec<String> = rep
        .tables
        .iter()
        .flat_map(|t| {
            let missing = t.columns.iter().filter(|c| c.covers_truth == Some(false));
            missing.map(move |c| format!("Table {} {}", t.id, c.label))
        })
        .collect();
    if rep.simulated {
        h.push_str(&format!(
            "<p>{}</p>\n",
            if misses.is_empty() {
                "Every 95% interval with a planted truth covers it.".to_string()
            } else {
                format!("<span class=\"flag\">95% intervals missing the planted truth: {}</span> (about one in twenty is expected by chance)", esc(&misses.join(", ")))
            }
        ));
    }
    h
}

/// The permutation distribution of each of `t`'s split tests (also written as SVG files).
pub(super) fn permutation_plots(t: &TableResult, out: &Path) -> Result<String> {
    let mut h = String::new();
    for (k, s) in t.splits.iter().enumerate().filter(|(_, s)| !s.draws.is_empty()) {
        let p = out.join(format!("permutation_table{}_{}.svg", t.id, k + 1));
        crate::report::plot::histogram_svg(
            &p,
            &s.draws,
            s.difference,
            &format!(
                "{}: permutation distribution of the {} difference (p = {:.3})",
                s.label, s.param, s.p
            ),
            &format!("{} ({} = 1) − {} ({} = 0)", s.param, s.split, s.param, s.split),
        )?;
        h.push_str(&std::fs::read_to_string(&p).map_err(|e| Error::io(p.display().to_string(), e))?);
    }
    Ok(h)
}

/// The timing table, after the results.
pub(super) fn timing_html(stages: &[Stage]) -> String {
    let mut h = String::from(
        "<h2>Timing</h2>\n<table><thead><tr><th>stage</th><th>seconds</th><th>backend</th></tr></thead><tbody>\n",
    );
    for s in stages {
        h.push_str(&format!(
            "<tr><th>{}</th><td>{:.2}</td><td>{}</td></tr>\n",
            esc(&s.stage),
            s.seconds,
            esc(&s.backend)
        ));
    }
    h.push_str("</tbody></table>\n");
    h
}
