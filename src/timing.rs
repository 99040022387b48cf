//! Where a command's time goes: one clock per command, split into the stages data flows
//! through — read, prepare, demean, estimate, variance, report.
//!
//! The clock starts when the command starts ([`start`]); each [`lap`] charges the time since the
//! previous lap to the stage it names. Stages therefore never overlap, and they sum to the wall
//! time of the command by construction: whatever runs between two laps (a check, a conversion,
//! an allocation) is charged to the later stage rather than lost. A stage met several times
//! (one `prepare` per model of a multi-model fit) accumulates. With `FEGPU_TIMING` set, every
//! lap is printed to standard error as it happens and [`finish`] prints the totals; the JSON of
//! `fegpu fit` carries the same numbers ([`snapshot`]). Library calls without a started clock
//! (the study's tables, tests) do nothing here.

use std::sync::Mutex;
use std::time::Instant;

/// The stages, in the order data flows through them.
pub const STAGES: [&str; 6] = ["read", "prepare", "demean", "estimate", "variance", "report"];

struct Clock {
    start: Instant,
    last: Instant,
    seconds: [f64; STAGES.len()],
}

static CLOCK: Mutex<Option<Clock>> = Mutex::new(None);

fn verbose() -> bool {
    std::env::var_os("FEGPU_TIMING").is_some()
}

/// Start (or restart) the command's clock.
pub fn start() {
    let now = Instant::now();
    *CLOCK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Clock {
        start: now,
        last: now,
        seconds: [0.0; STAGES.len()],
    });
}

/// Charge the time since the previous lap to `stage` (one of [`STAGES`]).
pub fn lap(stage: &str) {
    let k = STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or_else(|| panic!("unknown timing stage `{stage}`"));
    let mut guard = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(clock) = guard.as_mut() else {
        return;
    };
    let now = Instant::now();
    let d = (now - clock.last).as_secs_f64();
    clock.last = now;
    clock.seconds[k] += d;
    if verbose() {
        eprintln!("timing: {stage:<9} {d:>9.4} s");
    }
}

/// Seconds per stage and in all, as the JSON `timing` object carries them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub read: f64,
    pub prepare: f64,
    pub demean: f64,
    pub estimate: f64,
    pub variance: f64,
    pub report: f64,
    /// Wall time from the start of the command to the last lap (= the sum of the stages).
    pub total: f64,
}

/// The stage times so far (`None` when no clock was started).
pub fn snapshot() -> Option<Timing> {
    let guard = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let c = guard.as_ref()?;
    let s = c.seconds;
    Some(Timing {
        read: s[0],
        prepare: s[1],
        demean: s[2],
        estimate: s[3],
        variance: s[4],
        report: s[5],
        total: (c.last - c.start).as_secs_f64(),
    })
}

/// Charge what is left to `report` and, with `FEGPU_TIMING`, print the stage totals and the
/// wall time they sum to.
pub fn finish() {
    lap("report");
    if let (Some(t), true) = (snapshot(), verbose()) {
        let parts = [t.read, t.prepare, t.demean, t.estimate, t.variance, t.report];
        let line: Vec<String> = STAGES.iter().zip(parts).map(|(s, v)| format!("{s} {v:.3}")).collect();
        eprintln!("timing: total     {:>9.4} s = {} s", t.total, line.join(" + "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_do_not_overlap_and_sum_to_the_wall_time() {
        start();
        std::thread::sleep(std::time::Duration::from_millis(20));
        lap("read");
        std::thread::sleep(std::time::Duration::from_millis(10));
        lap("prepare");
        lap("read");
        let t = snapshot().unwrap();
        let sum = t.read + t.prepare + t.demean + t.estimate + t.variance + t.report;
        assert!((sum - t.total).abs() < 1e-9, "{t:?}");
        assert!(t.read >= 0.02 && t.prepare >= 0.01 && t.prepare < t.read, "{t:?}");
    }
}
