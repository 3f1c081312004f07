//! The one long-lived thread that waits on the card for the telemetry log: the once-a-second
//! `fdatasync` of the active segment, the cursor's write (fsync, rename, directory sync), and
//! the forwarder's reads of a backlog. The runtime thread hands it a job and awaits the answer;
//! it never waits on the card itself, and no thread is started per job.
//!
//! One thread per process, started on first use: the jobs are short and sequential by nature
//! (one log, one card). A job that panics is answered with the panic, re-raised in the task that
//! awaited it; the thread goes on with the next job.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Where jobs are sent; the thread ends only with the process.
static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Stack of the thread: its jobs are file system calls, not deep recursion.
const STACK_BYTES: usize = 256 << 10;

fn jobs() -> &'static mpsc::Sender<Job> {
    JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("rgw-log-io".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                for job in receiver {
                    job();
                }
            });
        if let Err(e) = started {
            // The receiver is gone with the closure: every job then runs where it is asked for.
            tracing::error!(error = %e, "Cannot start the log I/O thread; log I/O runs in place");
        }
        sender
    })
}

/// Runs `work` on the I/O thread and returns its result. Should the thread be missing, `work`
/// runs in place (correct, only no longer off the runtime's thread).
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (answer, answered) = oneshot::channel::<Result<T, Box<dyn Any + Send>>>();
    let job: Job = Box::new(move || {
        let _ = answer.send(catch_unwind(AssertUnwindSafe(work)));
    });
    if let Err(mpsc::SendError(job)) = jobs().send(job) {
        job();
    }
    match answered.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // The job was dropped unrun: only when the thread itself died, which catch_unwind
        // prevents.
        Err(_) => unreachable!("the log I/O thread dropped a job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_one_named_thread_and_answer_in_order() {
        let mut names = Vec::new();
        for i in 0..3 {
            let (name, echoed) =
                run(move || (std::thread::current().name().map(String::from), i)).await;
            assert_eq!(echoed, i);
            names.push(name);
        }
        assert!(
            names.iter().all(|n| n.as_deref() == Some("rgw-log-io")),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_panics_its_caller_and_the_thread_goes_on() {
        let failed = tokio::spawn(run(|| -> u8 { panic!("job failed") })).await;
        assert!(failed.is_err_and(|e| e.is_panic()));
        assert_eq!(run(|| 7).await, 7);
    }
}
