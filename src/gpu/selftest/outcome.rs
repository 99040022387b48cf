//! What a df64 self-test concluded — the verdict, its named checks, and what
//! `FEGPU_SELFTEST` asks for. Plain data: the GPU context keeps an outcome per adapter
//! without depending on the kernels that produce it ([`super`]).

/// Outcome of the whole test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    #[serde(rename = "passed")]
    Passed,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "not run")]
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::NotRun => "not run",
        }
    }
}

/// One named check.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was measured (worst error, first mismatch).
    pub detail: String,
}

/// The outcome on one adapter: its checks and their verdict.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SelfTest {
    pub status: Status,
    pub checks: Vec<Check>,
    /// Seconds the test took when it ran.
    pub seconds: f64,
    /// Read from the cache rather than run by this process.
    #[serde(skip)]
    pub from_cache: bool,
}

impl SelfTest {
    /// The verdict of `checks` (passed when all passed).
    pub fn of(checks: Vec<Check>, seconds: f64) -> SelfTest {
        let status = if checks.iter().all(|c| c.passed) {
            Status::Passed
        } else {
            Status::Failed
        };
        SelfTest {
            status,
            checks,
            seconds,
            from_cache: false,
        }
    }

    /// A test that was skipped (`FEGPU_SELFTEST=off`).
    pub fn not_run() -> SelfTest {
        SelfTest::of(Vec::new(), 0.0).with_status(Status::NotRun)
    }

    fn with_status(mut self, status: Status) -> SelfTest {
        self.status = status;
        self
    }

    /// "check: detail" of the first failed check.
    pub fn first_failure(&self) -> Option<String> {
        let c = self.checks.iter().find(|c| !c.passed)?;
        Some(format!("{} ({})", c.name, c.detail))
    }
}

/// What `FEGPU_SELFTEST` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Use a cached outcome where there is one (the default).
    UseCache,
    /// Run the test and overwrite the cache (`FEGPU_SELFTEST=force`).
    Force,
    /// Do not run it (`FEGPU_SELFTEST=off`).
    Off,
}

impl Policy {
    pub fn from_env() -> Policy {
        match std::env::var("FEGPU_SELFTEST").as_deref() {
            Ok("force") => Policy::Force,
            Ok("off") => Policy::Off,
            _ => Policy::UseCache,
        }
    }
}
