//! GPU-side timing of a forward's phases with CUDA events, for debug traces. Inert (no events,
//! no syncs) on the CPU, without the `cuda` feature, or unless debug logging is on.

use candle_core::Device;

/// Accumulates device time per phase label between marks.
#[derive(Default)]
pub struct PhaseTimer {
    #[cfg(feature = "cuda")]
    inner: Option<cuda::Events>,
}

impl PhaseTimer {
    /// Starts timing on `device` if it is a GPU and debug logging is enabled.
    pub fn start(device: &Device) -> Self {
        #[cfg(feature = "cuda")]
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Device::Cuda(d) = device {
                return Self {
                    inner: cuda::Events::start(d),
                };
            }
        }
        let _ = device;
        Self::default()
    }

    /// Attributes the device time since the previous mark to `label`.
    pub fn mark(&mut self, label: &'static str) {
        #[cfg(feature = "cuda")]
        if let Some(e) = self.inner.as_mut() {
            e.mark(label);
        }
        let _ = label;
    }

    /// Waits for the last mark and returns `label=ms` pairs (empty when inert).
    pub fn finish(self) -> String {
        #[cfg(feature = "cuda")]
        if let Some(e) = self.inner {
            return e.finish();
        }
        String::new()
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{sys::CUevent_flags, CudaEvent, CudaStream};
    use std::sync::Arc;

    pub(super) struct Events {
        stream: Arc<CudaStream>,
        start: CudaEvent,
        marks: Vec<(&'static str, CudaEvent)>,
    }

    impl Events {
        pub(super) fn start(d: &candle_core::CudaDevice) -> Option<Self> {
            let stream = d.cuda_stream();
            let start = stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .ok()?;
            Some(Self {
                stream,
                start,
                marks: Vec::new(),
            })
        }

        pub(super) fn mark(&mut self, label: &'static str) {
            if let Ok(e) = self
                .stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            {
                self.marks.push((label, e));
            }
        }

        /// Device time between consecutive marks, summed per label (events are resolved
        /// only here, so marking does not stall the host).
        pub(super) fn finish(self) -> String {
            let Some((_, last)) = self.marks.last() else {
                return String::new();
            };
            if last.synchronize().is_err() {
                return String::new();
            }
            let mut totals: Vec<(&'static str, f32)> = Vec::new();
            let mut prev = &self.start;
            for (label, e) in &self.marks {
                let ms = prev.elapsed_ms(e).unwrap_or(f32::NAN);
                match totals.iter_mut().find(|(l, _)| l == label) {
                    Some((_, t)) => *t += ms,
                    None => totals.push((label, ms)),
                }
                prev = e;
            }
            totals
                .iter()
                .map(|(l, ms)| format!("{l}={ms:.3}ms"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}
