//! The bounded inference pool: a few OS threads that run the local pipeline's speech-to-text,
//! intent and text-to-speech work, so none of it ever runs on the async workers that carry
//! the media path. Each thread keeps its own Whisper state (one per concurrent decode).
//!
//! Jobs wait in a bounded queue; a full queue makes the caller wait asynchronously
//! (backpressure), it never blocks a runtime thread.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use speech::stt::Transcriber;

use super::Models;

/// What a job gets to work with: the shared models and this thread's own transcriber.
pub struct Worker {
    pub models: Arc<Models>,
    pub transcriber: Transcriber,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the inference pool has stopped")]
    Stopped,
    #[error("an inference job panicked")]
    Panicked,
}

/// A fixed set of inference threads behind a bounded queue. Dropping the pool closes the
/// queue; each thread ends after its current job (they are not joined, so a drop never blocks
/// an async worker).
pub struct InferencePool {
    jobs: flume::Sender<Job>,
    threads: usize,
}

impl InferencePool {
    /// Starts `threads` workers sharing `models`, with room for `queue` waiting jobs.
    pub fn start(
        models: Arc<Models>,
        threads: usize,
        queue: usize,
    ) -> Result<Self, speech::stt::SttError> {
        let (sender, receiver) = flume::bounded::<Job>(queue.max(1));
        let threads = threads.max(1);
        for index in 0..threads {
            let mut worker = Worker {
                transcriber: models.whisper.transcriber()?,
                models: Arc::clone(&models),
            };
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("vg-inference-{index}"))
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        // A panicking job drops its reply sender: its caller sees `Panicked`,
                        // the thread lives on.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut worker)));
                    }
                })
                .expect("spawning an inference thread");
        }
        Ok(Self {
            jobs: sender,
            threads,
        })
    }

    /// Runs `work` on an inference thread and returns its result with the time it waited in
    /// the queue.
    pub async fn run<T, F>(&self, work: F) -> Result<(T, Duration), PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> T + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let queued = Instant::now();
        let job: Job = Box::new(move |worker| {
            let waited = queued.elapsed();
            let _ = reply.send((work(worker), waited));
        });
        self.jobs
            .send_async(job)
            .await
            .map_err(|_| PoolError::Stopped)?;
        result.await.map_err(|_| PoolError::Panicked)
    }

    /// How many inference threads run.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }
}
