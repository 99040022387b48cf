//! Adapter and device. fegpu asks for the adapter's own limits (wgpu's defaults cap storage
//! buffers at 128 MiB), turns every wgpu error into an [`Error`] instead of wgpu's default panic,
//! and remembers device loss, so a failed GPU run is an error, never stale or partial numbers.

use std::sync::{Arc, Mutex};

use super::selftest::cache::cached_status;
use super::selftest::outcome::{SelfTest, Status};
use crate::error::{Error, Result};

/// Arithmetic of the GPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Double-float: pairs of f32 (about 48 significant bits) using f32 arithmetic only, so it
    /// runs on every adapter (Metal and most consumer GPUs have no f64).
    Df64,
    /// Native f64 (needs `SHADER_F64`).
    F64,
}

/// One adapter as `fegpu devices` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterRow {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub shader_f64: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub driver: String,
    pub driver_info: String,
    /// The cached df64 self-test outcome of this adapter and driver ([`super::selftest`]).
    pub df64_selftest: Status,
}

/// The native APIs (Vulkan, Metal, DX12) unless `WGPU_BACKEND` says otherwise: OpenGL has no
/// f64 and a weaker compute model, and initialising it costs ~200 ms and prints EGL noise.
fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    wgpu::Instance::new(desc)
}

fn row(a: &wgpu::Adapter) -> AdapterRow {
    let info = a.get_info();
    let limits = a.limits();
    AdapterRow {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        shader_f64: a.features().contains(wgpu::Features::SHADER_F64),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        df64_selftest: cached_status(&info),
    }
}

/// Every adapter wgpu can see (all backends).
pub fn list_adapters() -> Vec<AdapterRow> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(row)
        .collect()
}

fn rank(a: &wgpu::Adapter) -> (u8, u8) {
    let info = a.get_info();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    // GL has no f64 and a weaker compute model: prefer the native APIs.
    let backend = if info.backend == wgpu::Backend::Gl { 1 } else { 0 };
    (kind, backend)
}

/// A device ready for compute, with the adapter's real limits.
pub struct GpuContext {
    pub info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub shader_f64: bool,
    /// The df64 self-test's outcome on this device (None until a df64 demeaner admits it).
    pub df64_selftest: Option<SelfTest>,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Open the best adapter (discrete > integrated > virtual > CPU; native APIs before GL).
    /// `want_f64` requests `SHADER_F64` and fails if the adapter lacks it.
    pub fn new(want_f64: bool) -> Result<GpuContext> {
        let inst = instance();
        let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        adapters.retain(|a| a.get_info().backend != wgpu::Backend::Noop);
        adapters.sort_by_key(rank);
        if want_f64 {
            adapters.retain(|a| a.features().contains(wgpu::Features::SHADER_F64));
        }
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            Error::Gpu(if want_f64 {
                "no GPU adapter with SHADER_F64 found (use --precision df64, or --backend cpu)".into()
            } else {
                "no GPU adapter found: install a Vulkan, Metal or DX12 driver (on Linux without a GPU: mesa-vulkan-drivers), or use --backend cpu".into()
            })
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let shader_f64 = adapter.features().contains(wgpu::Features::SHADER_F64);
        let required_features = if want_f64 {
            wgpu::Features::SHADER_F64
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("fegpu"),
            required_features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("opening {} ({:?}): {e}", info.name, info.backend)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost_sink.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
        });
        Ok(GpuContext {
            info,
            device,
            queue,
            limits,
            shader_f64,
            df64_selftest: None,
            errors,
            lost,
        })
    }

    /// A short description for the `backend` field of results.
    pub fn describe(&self, precision: Precision) -> String {
        format!(
            "gpu: {} ({:?}, {:?}, {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            match precision {
                Precision::Df64 => "df64",
                Precision::F64 => "f64",
            }
        )
    }

    /// The df64 self-test's status on this device ("not run" until a df64 demeaner ran it).
    pub fn df64_status(&self) -> Status {
        self.df64_selftest.as_ref().map_or(Status::NotRun, |t| t.status)
    }

    /// Fail if wgpu reported an error or the device was lost since the last check.
    pub fn check(&self, stage: &str) -> Result<()> {
        if let Some(l) = self.lost.lock().unwrap().clone() {
            return Err(Error::Gpu(format!(
                "the GPU device was lost during {stage} ({l}); no results were produced"
            )));
        }
        let mut errs = self.errors.lock().unwrap();
        if !errs.is_empty() {
            let msg = errs.join("; ");
            errs.clear();
            return Err(Error::Gpu(format!("GPU error during {stage}: {msg}")));
        }
        Ok(())
    }

    /// Wait for all submitted work.
    pub fn wait(&self, stage: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU during {stage}: {e}")))?;
        self.check(stage)
    }
}
