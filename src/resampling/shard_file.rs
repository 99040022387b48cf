//! The shard file: what `fegpu bdiff|boot --shard I/K --out FILE` writes and `fegpu merge`
//! reads (JSON, one object; README "Sharding").
//!
//! It holds (a) what proves that K files are the K parts of one run — the command's options
//! ([`Spec`]: formula, seed, reps, every option that changes the result), a fingerprint of the
//! estimation sample (rows and a 64-bit FNV-1a hash of every column the model uses, so a
//! shard run on a different or changed file is caught whatever its path), the fegpu version,
//! and the shard's number, K and replicate span — and (b) what the output needs: the observed
//! fit (the engines' `*Observed` structs) and the shard's replicate statistics in replicate
//! order (bdiff: the differences; pairs: the estimates; wild: the five numbers per replicate
//! that give t* at every β0, so the inverted-test interval is exact too). `null` marks a failed
//! replicate. Numbers are written by serde_json's shortest round-trip form and read back with
//! its exact parser (`float_roundtrip`), so every f64 survives bit for bit; non-finite values
//! are written as the strings "NaN", "inf", "-inf".
//!
//! `fegpu replicate --shard` writes the same file with one [`SplitPart`] per permutation test of
//! the study ([`Part::Replicate`]; each test has its own span, since enumeration depends on the
//! test); `fegpu replicate --merge` reads it through [`read_run`] and [`merge_splits`].
//!
//! [`read`] refuses, naming the file and the field, a file that is not a shard file of this
//! format or whose fields do not fit together (arrays of the wrong length, replicates of the wrong
//! width, a span that is not its shard's, non-finite observed values: `super::shard_check`).
//! [`merge`] refuses, naming the files and the problem in words: shards of different runs (the
//! first differing option, e.g. "A was run with --bsample, B without", or the sample), a mixture
//! of K, a shard given twice, a missing shard, and shards whose observed fits differ.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{shard_check, Computed, Draws, Request, Spec};
use crate::data::Design;
use crate::error::{Error, Result};
use crate::inference::bootstrap::{PairsDraws, PairsObserved};
use crate::inference::permutation::{BdiffDraws, BdiffObserved};
use crate::inference::shard::Shard;
use crate::inference::wild::{WildDraw, WildDraws, WildObserved};

/// The value of the file's `format` key.
pub const FORMAT: &str = "fegpu-shard";
/// The layout version; merge reads only its own.
pub const FORMAT_VERSION: u32 = 1;

/// Rows and a 64-bit FNV-1a hash of the estimation sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub rows: usize,
    pub hash: String,
}

/// FNV-1a, 64 bits: stable across platforms and compiler versions (unlike std's hasher).
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn text(&mut self, s: &str) {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }
    fn floats(&mut self, v: &[f64]) {
        self.bytes(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.bytes(&x.to_bits().to_le_bytes()));
    }
    fn ids(&mut self, v: &[u32]) {
        self.bytes(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.bytes(&x.to_le_bytes()));
    }
}

/// FNV-1a hash of a file's bytes (as 16 hex digits), read in blocks.
pub fn file_hash(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path.display().to_string(), e))?;
        if k == 0 {
            break;
        }
        h.bytes(&buf[..k]);
    }
    Ok(format!("{:016x}", h.0))
}

/// FNV-1a hash of a text (as 16 hex digits).
pub fn text_hash(s: &str) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.text(s);
    format!("{:016x}", h.0)
}

impl Fingerprint {
    /// Outcome, regressors, weights, extra columns (bdiff's group), fixed effects and clusters.
    pub fn of(d: &Design) -> Fingerprint {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.text(&d.y_name);
        h.floats(&d.y);
        for (name, x) in d.x_names.iter().zip(&d.x) {
            h.text(name);
            h.floats(x);
        }
        h.floats(d.weights.as_deref().unwrap_or(&[]));
        d.extra.iter().for_each(|e| h.floats(e));
        for f in &d.fes {
            h.text(&f.name);
            h.ids(&f.ids);
        }
        for c in &d.clusters {
            h.text(&c.name);
            h.ids(&c.ids);
        }
        Fingerprint {
            rows: d.nobs(),
            hash: format!("{:016x}", h.0),
        }
    }
}

/// An f64 that survives JSON exactly: finite values as numbers, others as strings.
#[derive(Debug, Clone, Copy)]
pub struct Num(pub f64);

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        // bit for bit, except that every NaN is one (its payload is not kept)
        self.0.to_bits() == other.0.to_bits() || (self.0.is_nan() && other.0.is_nan())
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }
}

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or \"NaN\", \"inf\", \"-inf\"")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Num, E> {
        Ok(Num(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Num, E> {
        Ok(Num(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Num, E> {
        Ok(Num(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Num, E> {
        match v {
            "NaN" => Ok(Num(f64::NAN)),
            "inf" => Ok(Num(f64::INFINITY)),
            "-inf" => Ok(Num(f64::NEG_INFINITY)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Num, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

fn nums(v: &[f64]) -> Vec<Num> {
    v.iter().map(|&x| Num(x)).collect()
}

fn floats(v: &[Num]) -> Vec<f64> {
    v.iter().map(|x| x.0).collect()
}

/// The observed fit and the shard's replicate statistics, by command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Part {
    Bdiff {
        observed: BdiffObserved,
        differences: Vec<Option<Vec<Num>>>,
    },
    Wild {
        observed: WildObserved,
        /// Per replicate: num0, num1, center, ortho, slope (see `inference::wild::WildDraw`).
        draws: Vec<[Num; 5]>,
    },
    Pairs {
        observed: PairsObserved,
        estimates: Vec<Option<Vec<Num>>>,
    },
    /// `fegpu replicate --shard`: every split test of the study, each with its own span.
    Replicate { tests: Vec<SplitPart> },
}

/// One permutation test of `fegpu replicate` in a shard: its key (table, column, split, unit),
/// its estimation sample, its replicate span `first..end` of `total`, its observed fit and the
/// shard's differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPart {
    pub key: String,
    pub sample: Fingerprint,
    pub first: usize,
    pub end: usize,
    pub total: usize,
    pub observed: BdiffObserved,
    pub differences: Vec<Option<Vec<Num>>>,
}

impl SplitPart {
    pub fn new(key: String, sample: Fingerprint, d: &BdiffDraws) -> SplitPart {
        SplitPart {
            key,
            sample,
            first: d.first,
            end: d.first + d.differences.len(),
            total: d.observed.total,
            observed: d.observed.clone(),
            differences: d.differences.iter().map(|v| v.as_deref().map(nums)).collect(),
        }
    }
}

impl Part {
    fn of(d: &Draws) -> Part {
        let opt = |v: &Option<Vec<f64>>| v.as_deref().map(nums);
        match d {
            Draws::Bdiff(d) => Part::Bdiff {
                observed: d.observed.clone(),
                differences: d.differences.iter().map(opt).collect(),
            },
            Draws::Wild(d) => Part::Wild {
                observed: d.observed.clone(),
                draws: d
                    .draws
                    .iter()
                    .map(|w| [w.num0, w.num1, w.center, w.ortho, w.slope].map(Num))
                    .collect(),
            },
            Draws::Pairs(d) => Part::Pairs {
                observed: d.observed.clone(),
                estimates: d.estimates.iter().map(opt).collect(),
            },
        }
    }

    /// The draws of `parts` (in replicate order, one run) put end to end.
    fn concat(parts: &[&Part]) -> Result<Draws> {
        let opt = |v: &Option<Vec<Num>>| v.as_deref().map(floats);
        Ok(match parts[0] {
            Part::Bdiff { observed, .. } => Draws::Bdiff(BdiffDraws {
                observed: observed.clone(),
                first: 0,
                differences: parts
                    .iter()
                    .flat_map(|p| match p {
                        Part::Bdiff { differences, .. } => differences.iter().map(opt).collect(),
                        _ => vec![],
                    })
                    .collect(),
            }),
            Part::Wild { observed, .. } => Draws::Wild(WildDraws {
                observed: observed.clone(),
                first: 0,
                draws: parts
                    .iter()
                    .flat_map(|p| match p {
                        Part::Wild { draws, .. } => draws.iter().map(wild_draw).collect(),
                        _ => vec![],
                    })
                    .collect(),
            }),
            Part::Pairs { observed, .. } => Draws::Pairs(PairsDraws {
                observed: observed.clone(),
                first: 0,
                estimates: parts
                    .iter()
                    .flat_map(|p| match p {
                        Part::Pairs { estimates, .. } => estimates.iter().map(opt).collect(),
                        _ => vec![],
                    })
                    .collect(),
            }),
            Part::Replicate { .. } => {
                return Err(Error::Usage(
                    "these are shards of `fegpu replicate`: merge them with `fegpu replicate --merge FILE...` and the run's options".into(),
                ))
            }
        })
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Part::Bdiff { .. } => "bdiff",
            Part::Wild { .. } => "wild",
            Part::Pairs { .. } => "pairs",
            Part::Replicate { .. } => "replicate",
        }
    }

    /// What the part holds, in words.
    fn what(&self) -> &'static str {
        match self {
            Part::Bdiff { .. } => "the permutation draws of `fegpu bdiff`",
            Part::Wild { .. } => "wild-bootstrap draws",
            Part::Pairs { .. } => "pairs-bootstrap draws",
            Part::Replicate { .. } => "the permutation tests of `fegpu replicate`",
        }
    }

    /// Replicates held; `None` for `replicate`, whose tests each have their own span.
    fn replicates(&self) -> Option<usize> {
        match self {
            Part::Bdiff { differences, .. } => Some(differences.len()),
            Part::Wild { draws, .. } => Some(draws.len()),
            Part::Pairs { estimates, .. } => Some(estimates.len()),
            Part::Replicate { .. } => None,
        }
    }

    /// The observed fit, as JSON (to compare shards' fits across kinds in one place).
    fn observed(&self) -> serde_json::Value {
        let v = match self {
            Part::Bdiff { observed, .. } => serde_json::to_value(observed),
            Part::Wild { observed, .. } => serde_json::to_value(observed),
            Part::Pairs { observed, .. } => serde_json::to_value(observed),
            Part::Replicate { tests } => {
                serde_json::to_value(tests.iter().map(|t| (&t.key, &t.observed)).collect::<Vec<_>>())
            }
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

fn wild_draw(n: &[Num; 5]) -> WildDraw {
    WildDraw {
        num0: n[0].0,
        num1: n[1].0,
        center: n[2].0,
        ortho: n[3].0,
        slope: n[4].0,
    }
}

/// One shard's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// The fegpu version that computed the shard.
    pub fegpu: String,
    pub spec: Spec,
    pub sample: Fingerprint,
    /// The data argument, for messages only (a shard may read a copy elsewhere).
    pub data: String,
    /// The shard's number, from 1, and the number of shards.
    pub shard: usize,
    pub shards: usize,
    /// The replicates computed, `first..end`, of the run's `total`.
    pub first: usize,
    pub end: usize,
    pub total: usize,
    pub backend: String,
    pub seconds: f64,
    pub part: Part,
}

impl ShardFile {
    pub fn new(req: &Request, shard: Shard, c: &Computed) -> ShardFile {
        let (first, total) = c.draws.span();
        let part = Part::of(&c.draws);
        ShardFile {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            fegpu: env!("CARGO_PKG_VERSION").into(),
            spec: req.spec.clone(),
            sample: c.sample.clone(),
            data: req.data.clone(),
            shard: shard.number(),
            shards: shard.count(),
            first,
            end: first + part.replicates().unwrap_or(0),
            total,
            backend: c.backend.clone(),
            seconds: c.seconds,
            part,
        }
    }
}

impl ShardFile {
    /// The shard file of `fegpu replicate --shard`: every split test's part; the file's
    /// sample fingerprint combines the tests' (and the panel's rows), its span is nominal
    /// (`shard`'s range of `reps`; each test has its own).
    pub fn replicate(
        spec: super::ReplicateSpec,
        rows: usize,
        data: String,
        shard: Shard,
        backend: String,
        seconds: f64,
        tests: Vec<SplitPart>,
    ) -> ShardFile {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        for t in &tests {
            h.text(&t.key);
            h.text(&t.sample.hash);
        }
        let span = shard.range(spec.reps);
        ShardFile {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            fegpu: env!("CARGO_PKG_VERSION").into(),
            total: spec.reps,
            spec: Spec::Replicate(spec),
            sample: Fingerprint {
                rows,
                hash: format!("{:016x}", h.0),
            },
            data,
            shard: shard.number(),
            shards: shard.count(),
            first: span.start,
            end: span.end,
            backend,
            seconds,
            part: Part::Replicate { tests },
        }
    }

    /// Refuse unless the file was computed for `spec`, naming the first difference.
    pub fn check_spec(&self, spec: &Spec) -> Result<()> {
        if &self.spec == spec {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "the shards come from another run than these options: {}",
            first_difference((&self.spec, "the shards"), (spec, "these options"))
        )))
    }
}

impl Draws {
    /// The first replicate held and the run's total.
    fn span(&self) -> (usize, usize) {
        match self {
            Draws::Bdiff(d) => (d.first, d.observed.total),
            Draws::Wild(d) => (d.first, d.observed.total),
            Draws::Pairs(d) => (d.first, d.observed.reps),
        }
    }
}

/// Refuse an output path whose directory does not exist before computing anything.
pub fn check_writable(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(Error::io(
            path.display().to_string(),
            format!("directory {} does not exist", dir.display()),
        )),
        _ => crate::report::output_target(path).map(|_| ()),
    }
}

/// Write `file` to `path` atomically, after checking that it reads back equal.
pub fn write(path: &Path, file: &ShardFile) -> Result<()> {
    let text = serde_json::to_string(file).map_err(|e| Error::Data(e.to_string()))?;
    let back: std::result::Result<ShardFile, _> = serde_json::from_str(&text);
    if back.as_ref().ok() != Some(file) {
        return Err(Error::Estimation(
            "the shard's results do not survive JSON (a non-finite observed value?); no shard file written".into(),
        ));
    }
    crate::report::write_atomic(path, &(text + "\n"))
}

/// Read and check the format of one shard file.
pub fn read(path: &Path) -> Result<ShardFile> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(&shown, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::io(&shown, format!("not a fegpu shard file (not JSON: {e})")))?;
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(Error::io(
            &shown,
            "not a fegpu shard file (no \"format\": \"fegpu-shard\")",
        ));
    }
    let version = v.get("format_version").and_then(|f| f.as_u64());
    if version != Some(FORMAT_VERSION as u64) {
        let found = version.map_or("no format version".into(), |n| format!("shard-file format {n}"));
        return Err(Error::io(
            &shown,
            format!(
                "{found}; this fegpu reads shard-file format {FORMAT_VERSION} (write the shards again with this fegpu)"
            ),
        ));
    }
    let damaged =
        |b: shard_check::Bad| Error::io(&shown, format!("damaged shard file: field `{}` {}", b.field, b.problem));
    let file: ShardFile = serde_json::from_value(v.clone()).map_err(|_| damaged(shard_check::locate(&v)))?;
    shard_check::check(&file).map_err(damaged)?;
    Ok(file)
}

/// The K shards of one run, combined: what [`super::finish`] needs.
#[derive(Debug, Clone)]
pub struct Merged {
    pub spec: Spec,
    pub draws: Draws,
    /// The shards' backends (distinct names in shard order, joined by " + ").
    pub backend: String,
    /// The shards' engine seconds, summed.
    pub seconds: f64,
}

/// Read the shard files at `paths`, check that they are the K shards of one run, each once, and
/// put their replicates end to end.
pub fn merge(paths: &[PathBuf]) -> Result<Merged> {
    let files = read_run(paths)?;
    let parts: Vec<&Part> = files.iter().map(|f| &f.part).collect();
    let mut backends: Vec<&str> = Vec::new();
    for f in &files {
        if !backends.contains(&f.backend.as_str()) {
            backends.push(&f.backend);
        }
    }
    Ok(Merged {
        spec: files[0].spec.clone(),
        draws: Part::concat(&parts)?,
        backend: backends.join(" + "),
        seconds: files.iter().map(|f| f.seconds).sum(),
    })
}

/// The K shard files of one run at `paths`, checked (see [`merge`]), in shard order.
pub fn read_run(paths: &[PathBuf]) -> Result<Vec<ShardFile>> {
    if paths.is_empty() {
        return Err(Error::Usage("merging needs the shard files".into()));
    }
    let files: Vec<(String, ShardFile)> = paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<Result<_>>()?;
    for f in &files[1..] {
        same_run(&files[0], f)?;
    }
    let order = complete(&files)?;
    let mut slots: Vec<Option<ShardFile>> = files.into_iter().map(|(_, f)| Some(f)).collect();
    Ok(order
        .iter()
        .map(|&i| slots[i].take().expect("each file once"))
        .collect())
}

/// The split tests of `fegpu replicate` shards (from [`read_run`]), each test's replicates put
/// end to end, by key, with the test's estimation sample.
pub fn merge_splits(files: &[ShardFile]) -> Result<BTreeMap<String, (Fingerprint, BdiffDraws)>> {
    let mut out: BTreeMap<String, (Fingerprint, BdiffDraws)> = BTreeMap::new();
    for f in files {
        let Part::Replicate { tests } = &f.part else {
            return Err(Error::Usage(format!(
                "shard {}/{} is a `{}` shard, not one of `fegpu replicate`",
                f.shard,
                f.shards,
                f.part.kind()
            )));
        };
        for t in tests {
            let e = out.entry(t.key.clone()).or_insert_with(|| {
                let draws = BdiffDraws {
                    observed: t.observed.clone(),
                    first: 0,
                    differences: vec![],
                };
                (t.sample.clone(), draws)
            });
            let want = Shard::new(f.shard, f.shards)?.range(t.total);
            let fits = (t.first, t.end) == (want.start, want.end) && t.differences.len() == want.len();
            if !fits || e.0 != t.sample || e.1.differences.len() != want.start {
                return Err(Error::Usage(format!(
                    "shard {}/{}: test `{}` holds replicates {}..{} of {} (expected {}..{}) or another sample",
                    f.shard, f.shards, t.key, t.first, t.end, t.total, want.start, want.end
                )));
            }
            e.1.differences
                .extend(t.differences.iter().map(|v| v.as_deref().map(floats)));
        }
    }
    if let Some((key, _)) = out.iter().find(|(_, (_, d))| d.differences.len() != d.observed.total) {
        return Err(Error::Usage(format!("test `{key}` is missing from some of the shards")));
    }
    Ok(out)
}

/// Refuse `b` unless it comes from the run `a` comes from, naming the first difference.
fn same_run((na, a): &(String, ShardFile), (nb, b): &(String, ShardFile)) -> Result<()> {
    let differ = |what: String| {
        Err(Error::Usage(format!(
            "{na} and {nb} are not shards of the same run: {what}"
        )))
    };
    if a.fegpu != b.fegpu {
        return differ(format!(
            "{na} was written by fegpu {}, {nb} by fegpu {}",
            a.fegpu, b.fegpu
        ));
    }
    if a.spec != b.spec {
        return differ(first_difference((&a.spec, na), (&b.spec, nb)));
    }
    if a.part.kind() != b.part.kind() {
        return differ(format!("{na} holds {}, {nb} {}", a.part.what(), b.part.what()));
    }
    if a.sample != b.sample {
        return differ(format!(
            "the estimation samples differ ({} rows, hash {} vs {} rows, hash {}: data {} vs {})",
            a.sample.rows, a.sample.hash, b.sample.rows, b.sample.hash, a.data, b.data
        ));
    }
    if a.total != b.total {
        return differ(format!("{} vs {} replicates in all", a.total, b.total));
    }
    if a.shards != b.shards {
        return differ(format!(
            "shard {}/{} vs shard {}/{} (one run is split one way: --shard I/K with the same K)",
            a.shard, a.shards, b.shard, b.shards
        ));
    }
    if a.part.observed() != b.part.observed() {
        let how = if a.backend == b.backend {
            format!(
                "both ran on the {} backend, so the data or the fegpu build differ",
                a.backend
            )
        } else {
            format!(
                "{na} ran on the {} backend, {nb} on {}; run every shard on the same backend",
                a.backend, b.backend
            )
        };
        return differ(format!("their observed fits differ ({how})"));
    }
    Ok(())
}

/// The first option in which two specs (labelled `la`, `lb`) differ, in words: `--seed 1 vs 2`,
/// `A was run with --bsample, B without`, `A is a run of `fegpu bdiff`, B of `fegpu boot``.
fn first_difference((a, la): (&Spec, &str), (b, lb): (&Spec, &str)) -> String {
    use serde_json::Value;
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let empty = serde_json::Map::new();
    let (ma, mb) = (va.as_object().unwrap_or(&empty), vb.as_object().unwrap_or(&empty));
    let command =
        |m: &serde_json::Map<String, Value>| m.get("command").and_then(Value::as_str).unwrap_or("?").to_string();
    if command(ma) != command(mb) {
        return format!(
            "{la} is a run of `fegpu {}`, {lb} of `fegpu {}`",
            command(ma),
            command(mb)
        );
    }
    for (k, x) in ma {
        let y = mb.get(k).unwrap_or(&Value::Null);
        if x == y {
            continue;
        }
        let flag = option_flag(k);
        return match (x, y) {
            (Value::Bool(_), _) | (_, Value::Bool(_)) => {
                let (with, without) = if x == &Value::Bool(true) { (la, lb) } else { (lb, la) };
                format!("{with} was run with {flag}, {without} without")
            }
            (Value::Null, _) => format!("{la} was run without {flag}, {lb} with {flag} {}", plain(y)),
            (_, Value::Null) => format!("{la} was run with {flag} {}, {lb} without", plain(x)),
            _ => format!("{flag} {} vs {}", plain(x), plain(y)),
        };
    }
    format!("{la} and {lb} were run with different options")
}

/// The command-line name of a spec field: `--weights-type`, `the formula`, `--spec (tables)`.
fn option_flag(field: &str) -> String {
    match field {
        "formula" => "the formula".into(),
        "tables" => "--spec (the tables' specification)".into(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// A JSON value as it would be typed: strings without quotes (formulas in back quotes).
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.contains(' ') => format!("`{s}`"),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Indices of `files` in shard order, once each shard 1..K is present exactly once and holds
/// the replicates its number implies.
fn complete(files: &[(String, ShardFile)]) -> Result<Vec<usize>> {
    let k = files[0].1.shards;
    let mut at: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, (name, f)) in files.iter().enumerate() {
        let shard = Shard::new(f.shard, k).map_err(|e| Error::io(name, e))?;
        if let Some(&j) = at.get(&f.shard) {
            return Err(Error::Usage(format!(
                "shard {shard} is given twice: {} and {name}",
                files[j].0
            )));
        }
        let want = shard.range(f.total);
        let held = f.part.replicates().unwrap_or(want.len());
        if (f.first, f.end) != (want.start, want.end) || held != want.len() {
            return Err(Error::io(
                name,
                format!(
                    "shard {shard} should hold replicates {}..{} of {}, it holds {}..{} ({} stored)",
                    want.start, want.end, f.total, f.first, f.end, held
                ),
            ));
        }
        at.insert(f.shard, i);
    }
    if at.len() < k {
        return Err(missing_shards(&at, k, files.len()));
    }
    Ok(at.into_values().collect())
}

/// The error for a run of `k` shards of which only those in `at` were given (the first ten
/// missing are named).
fn missing_shards(at: &BTreeMap<usize, usize>, k: usize, given: usize) -> Error {
    let absent = k - at.len();
    let mut named: Vec<String> = (1..=k)
        .filter(|s| !at.contains_key(s))
        .take(10)
        .map(|s| format!("{s}/{k}"))
        .collect();
    if absent > named.len() {
        named.push(format!("and {} more", absent - named.len()));
    }
    Error::Usage(format!(
        "shard{} {} of the run {} missing ({given} of {k} given)",
        if absent > 1 { "s" } else { "" },
        named.join(", "),
        if absent > 1 { "are" } else { "is" },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_survive_json_bit_for_bit() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(f64::from_bits(x));
        }
        let n = nums(&v);
        let back: Vec<Num> = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(n, back);
        assert!(back
            .iter()
            .zip(&v)
            .all(|(b, x)| b.0.to_bits() == x.to_bits() || x.is_nan()));
    }
}
