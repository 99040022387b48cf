//! The field-by-field checks of a shard file ([`super::shard_file::read`]): a file that is not
//! one this fegpu wrote — edited, truncated, or from another version — is refused with the path
//! of the first field that is wrong (`part.estimates[3]`) and what is wrong with it, in words,
//! before any arithmetic uses it.
//!
//! [`locate`] names the field where a JSON file stops reading as a shard file (a missing key,
//! a value of the wrong type, a draw of the wrong width); [`check`] takes a file that reads and
//! checks that its fields fit together: the shard's number and span, the engine seconds, the
//! part's command against the options', and the part's counts and array lengths (one value per
//! coefficient in the observed fit and in every replicate, one replicate per place in the span)
//! and finite observed values. Replicate statistics may be non-finite (the engines can produce
//! them, and a single run would use them alike).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::shard_file::{Fingerprint, Num, Part, ShardFile, SplitPart};
use super::{BdiffSpec, BootKind, BootSpec, ReplicateSpec, Spec};
use crate::inference::bootstrap::PairsObserved;
use crate::inference::permutation::BdiffObserved;
use crate::inference::shard::Shard;
use crate::inference::wild::WildObserved;

/// What is wrong with one field: its path in the file and the problem, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Bad {
    pub field: String,
    pub problem: String,
}

type Check = std::result::Result<(), Bad>;

fn bad(field: impl Into<String>, problem: impl Into<String>) -> Check {
    Err(Bad {
        field: field.into(),
        problem: problem.into(),
    })
}

/// The first field of `v` that does not read as a shard file's.
pub fn locate(v: &Value) -> Bad {
    match locate_file(v) {
        Err(b) => b,
        Ok(()) => Bad {
            field: "(the whole file)".into(),
            problem: "does not read as a shard file".into(),
        },
    }
}

fn get<'a>(v: &'a Value, key: &str, path: &str) -> std::result::Result<&'a Value, Bad> {
    v.get(key).ok_or_else(|| Bad {
        field: path.into(),
        problem: "is missing".into(),
    })
}

/// `v` read as a `T`, or the serde problem at the deepest field of `v` that holds it (serde
/// says where in the text it stopped, [`field_at`] turns that into a path below `path`).
fn typed<T: DeserializeOwned>(v: &Value, path: &str) -> Check {
    let text = v.to_string();
    let Err(e) = serde_json::from_str::<T>(&text) else {
        return Ok(());
    };
    let message = e.to_string();
    let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    // serde's column ends on the last byte it read, or just before a value it only peeked at
    let field = [e.column().saturating_sub(1), e.column()]
        .map(|pos| field_at(v, pos, path.to_string()))
        .into_iter()
        .max_by_key(String::len)
        .unwrap_or_default();
    bad(field, format!("cannot be read: {message}"))
}

/// The path of the deepest value of `v` (written compactly, as `Value::to_string` does) whose
/// text holds byte `pos`.
fn field_at(v: &Value, pos: usize, path: String) -> String {
    // each child: its path, the length of its `"key":` (0 in arrays) and its value
    let children: Vec<(String, usize, &Value)> = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| (format!("{path}.{k}"), Value::from(k.as_str()).to_string().len() + 1, x))
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("{path}[{i}]"), 0, x))
            .collect(),
        _ => return path,
    };
    let mut at = 1; // after `{` or `[`
    for (child, key, x) in children {
        at += key;
        let len = x.to_string().len();
        if (at..at + len).contains(&pos) {
            return field_at(x, pos - at, child);
        }
        at += len + 1; // the value and its `,`
    }
    path
}

fn locate_file(v: &Value) -> Check {
    if !v.is_object() {
        return bad("(the whole file)", "is not a JSON object");
    }
    for key in ["fegpu", "data", "backend"] {
        typed::<String>(get(v, key, key)?, key)?;
    }
    locate_spec(get(v, "spec", "spec")?)?;
    typed::<Fingerprint>(get(v, "sample", "sample")?, "sample")?;
    for key in ["shard", "shards", "first", "end", "total"] {
        typed::<usize>(get(v, key, key)?, key)?;
    }
    typed::<f64>(get(v, "seconds", "seconds")?, "seconds")?;
    locate_part(get(v, "part", "part")?)
}

/// The options, read as their command's (serde locates a problem inside an internally tagged
/// enum only at its end, so the command's struct is read directly).
fn locate_spec(v: &Value) -> Check {
    let command = get(v, "command", "spec.command")?;
    match command.as_str() {
        Some("bdiff") => typed::<BdiffSpec>(v, "spec")?,
        Some("boot") => typed::<BootSpec>(v, "spec")?,
        Some("replicate") => typed::<ReplicateSpec>(v, "spec")?,
        _ => {
            return bad(
                "spec.command",
                format!("is {command}; expected \"bdiff\", \"boot\" or \"replicate\""),
            )
        }
    }
    typed::<Spec>(v, "spec")
}

/// The observed fit and the draws, read as their kind's (as [`locate_spec`]).
fn locate_part(p: &Value) -> Check {
    let kind = get(p, "kind", "part.kind")?;
    let field = |key: &str| get(p, key, &format!("part.{key}"));
    let (observed, draws) = ("part.observed", "part.draws");
    match kind.as_str() {
        Some("bdiff") => {
            typed::<BdiffObserved>(field("observed")?, observed)?;
            typed::<Vec<Option<Vec<Num>>>>(field("differences")?, "part.differences")?;
        }
        Some("wild") => {
            typed::<WildObserved>(field("observed")?, observed)?;
            typed::<Vec<[Num; 5]>>(field("draws")?, draws)?;
        }
        Some("pairs") => {
            typed::<PairsObserved>(field("observed")?, observed)?;
            typed::<Vec<Option<Vec<Num>>>>(field("estimates")?, "part.estimates")?;
        }
        Some("replicate") => typed::<Vec<SplitPart>>(field("tests")?, "part.tests")?,
        _ => {
            return bad(
                "part.kind",
                format!("is {kind}; expected \"bdiff\", \"wild\", \"pairs\" or \"replicate\""),
            )
        }
    }
    typed::<Part>(p, "part")
}

/// The fields of a file that reads, checked against each other.
pub fn check(f: &ShardFile) -> Check {
    numbering(f)?;
    if !(f.seconds.is_finite() && f.seconds >= 0.0) {
        return bad(
            "seconds",
            format!(
                "is {}; the engine's time is a finite number of seconds, 0 or more",
                f.seconds
            ),
        );
    }
    command(f)?;
    let held = f.end - f.first;
    match (&f.part, &f.spec) {
        (Part::Bdiff { observed, differences }, Spec::Bdiff(s)) => {
            let o = observed;
            bdiff_observed(o, f.total, "part.observed")?;
            same("part.observed.reps_requested", o.reps_requested, "spec.reps", s.reps)?;
            same("part.observed.seed", o.seed, "spec.seed", s.seed)?;
            same("part.observed.bsample", o.bsample, "spec.bsample", s.bsample)?;
            replicates(differences, held, o.names.len(), "part.differences")
        }
        (Part::Wild { observed, draws }, Spec::Boot(s)) => {
            wild_observed(observed, f.total, s.reps)?;
            same("part.observed.seed", observed.seed, "spec.seed", s.seed)?;
            same("part.observed.null", observed.null, "spec.null", s.null)?;
            same_count("part.draws", draws.len(), held)
        }
        (Part::Pairs { observed, estimates }, Spec::Boot(s)) => {
            pairs_observed(observed, f.total)?;
            same("part.observed.reps", observed.reps, "spec.reps", s.reps)?;
            same("part.observed.seed", observed.seed, "spec.seed", s.seed)?;
            replicates(estimates, held, observed.names.len(), "part.estimates")
        }
        (Part::Replicate { tests }, _) => tests
            .iter()
            .enumerate()
            .try_for_each(|(i, t)| split(t, &format!("part.tests[{i}]"))),
        _ => Ok(()), // `command` refused the other pairs
    }
}

/// The shard's number, the number of shards and the span `first..end` of `total` they imply.
fn numbering(f: &ShardFile) -> Check {
    if f.shards == 0 {
        return bad("shards", "is 0; a run is split into at least one shard");
    }
    let Ok(shard) = Shard::new(f.shard, f.shards) else {
        return bad(
            "shard",
            format!(
                "is {}, but the shards of a run of {} are numbered 1 to {}",
                f.shard, f.shards, f.shards
            ),
        );
    };
    let want = shard.range(f.total);
    if (f.first, f.end) != (want.start, want.end) {
        return bad(
            "first, end",
            format!(
                "are {}..{}, but shard {shard} of a run of {} replicates holds replicates {}..{}",
                f.first, f.end, f.total, want.start, want.end
            ),
        );
    }
    Ok(())
}

/// The part's command is the options': bdiff draws for `bdiff`, wild or pairs draws for `boot
/// --kind wild|pairs`, split tests for `replicate`.
fn command(f: &ShardFile) -> Check {
    let (wanted, run) = match &f.spec {
        Spec::Bdiff(_) => ("bdiff", "`fegpu bdiff`"),
        Spec::Boot(b) if b.kind == BootKind::Wild => ("wild", "`fegpu boot --kind wild`"),
        Spec::Boot(_) => ("pairs", "`fegpu boot --kind pairs`"),
        Spec::Replicate(_) => ("replicate", "`fegpu replicate`"),
    };
    let kind = f.part.kind();
    if kind == wanted {
        return Ok(());
    }
    bad(
        "part.kind",
        format!("is \"{kind}\", but `spec` is the options of a {run} run, whose draws are \"{wanted}\""),
    )
}

/// `field` (`a`) must equal `other` (`b`).
fn same<T: PartialEq + std::fmt::Display>(field: &str, a: T, other: &str, b: T) -> Check {
    if a == b {
        return Ok(());
    }
    bad(field, format!("is {a}, but `{other}` is {b}; the two must agree"))
}

/// An array that must hold one entry per replicate of the span.
fn same_count(field: &str, held: usize, span: usize) -> Check {
    if held == span {
        return Ok(());
    }
    bad(
        field,
        format!("holds {held} replicates, but the shard's span (`first`..`end`) has {span}"),
    )
}

/// One value per coefficient, all finite.
fn per_coefficient(field: &str, v: &[f64], k: usize) -> Check {
    if v.len() != k {
        return bad(
            field,
            format!("holds {} values, but the model has {k} coefficients (`names`)", v.len()),
        );
    }
    finite(field, v)
}

fn finite(field: &str, v: &[f64]) -> Check {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => bad(
            format!("{field}[{i}]"),
            format!("is {}; it must be a finite number", v[i]),
        ),
    }
}

fn names(field: &str, names: &[String]) -> Check {
    if names.is_empty() {
        return bad(field, "is empty; the model has at least one coefficient");
    }
    Ok(())
}

/// Replicate statistics: one entry per replicate of the span, each `null` (a failed replicate)
/// or one value per coefficient.
fn replicates(draws: &[Option<Vec<Num>>], span: usize, k: usize, field: &str) -> Check {
    same_count(field, draws.len(), span)?;
    match draws.iter().position(|d| d.as_ref().is_some_and(|v| v.len() != k)) {
        None => Ok(()),
        Some(i) => bad(
            format!("{field}[{i}]"),
            format!(
                "holds {} values, but the model has {k} coefficients (`part.observed.names`)",
                draws[i].as_ref().map_or(0, Vec::len)
            ),
        ),
    }
}

fn bdiff_observed(o: &BdiffObserved, total: usize, at: &str) -> Check {
    names(&format!("{at}.names"), &o.names)?;
    let k = o.names.len();
    per_coefficient(&format!("{at}.estimate_group1"), &o.estimate_group1, k)?;
    per_coefficient(&format!("{at}.estimate_group0"), &o.estimate_group0, k)?;
    same(&format!("{at}.total"), o.total, "total", total)?;
    if o.total > o.reps_requested {
        return bad(
            format!("{at}.total"),
            format!(
                "is {}, more than the {} replicates asked for (`reps_requested`)",
                o.total, o.reps_requested
            ),
        );
    }
    if o.units_group1 > o.units {
        return bad(
            format!("{at}.units_group1"),
            format!("is {}, more than the {} units (`units`)", o.units_group1, o.units),
        );
    }
    Ok(())
}

fn wild_observed(o: &WildObserved, total: usize, reps: usize) -> Check {
    let at = "part.observed";
    for (name, x) in [
        ("estimate", o.estimate),
        ("variance", o.variance),
        ("q", o.q),
        ("null", o.null),
    ] {
        if !x.is_finite() {
            return bad(format!("{at}.{name}"), format!("is {x}; it must be a finite number"));
        }
    }
    if o.variance < 0.0 {
        return bad(
            format!("{at}.variance"),
            format!("is {}; a variance is 0 or more", o.variance),
        );
    }
    if o.q <= 0.0 {
        return bad(
            format!("{at}.q"),
            format!("is {}; the small-sample factor is positive", o.q),
        );
    }
    same(&format!("{at}.total"), o.total, "total", total)?;
    if o.total > reps {
        return bad(
            format!("{at}.total"),
            format!(
                "is {}, more than the {reps} replicates asked for (`spec.reps`)",
                o.total
            ),
        );
    }
    if let Some(l) = o.level.filter(|l| !(l.is_finite() && *l > 0.0 && *l < 1.0)) {
        return bad(
            format!("{at}.level"),
            format!("is {l}; a confidence level is between 0 and 1"),
        );
    }
    clusters(at, o.clusters)
}

fn pairs_observed(o: &PairsObserved, total: usize) -> Check {
    let at = "part.observed";
    names(&format!("{at}.names"), &o.names)?;
    per_coefficient(&format!("{at}.estimate"), &o.estimate, o.names.len())?;
    same(&format!("{at}.reps"), o.reps, "total", total)?;
    if !(o.level.is_finite() && o.level > 0.0 && o.level < 1.0) {
        return bad(
            format!("{at}.level"),
            format!("is {}; a confidence level is between 0 and 1", o.level),
        );
    }
    clusters(at, o.clusters)
}

fn clusters(at: &str, g: usize) -> Check {
    if g < 2 {
        return bad(
            format!("{at}.clusters"),
            format!("is {g}; the cluster bootstrap needs at least 2 clusters"),
        );
    }
    Ok(())
}

/// One split test of a `replicate` shard: its span, its observed fit and its differences.
fn split(t: &SplitPart, at: &str) -> Check {
    if t.first > t.end || t.end > t.total {
        return bad(
            format!("{at}.first, end"),
            format!(
                "are {}..{}, which is not a span of the test's {} replicates (`total`)",
                t.first, t.end, t.total
            ),
        );
    }
    bdiff_observed(&t.observed, t.total, &format!("{at}.observed"))?;
    replicates(
        &t.differences,
        t.end - t.first,
        t.observed.names.len(),
        &format!("{at}.differences"),
    )
}
