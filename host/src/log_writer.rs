//! Where the gateway's log lines go: a shared buffer that one background thread writes out at
//! most every 20 ms (sooner past 64 KB). A request's log line costs a copy under a lock, not
//! a wake-up of another thread and a `write(2)` per line, which is what a channel-per-line
//! writer (tracing-appender's `non_blocking`) costs a gateway serving 1,000 requests a second.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the first line of a batch may wait for company.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A batch this large is written at once.
const FLUSH_AT: usize = 64 * 1024;
/// Past this much unwritten text (a stalled terminal or pipe), lines are dropped and counted
/// rather than held: a slow log must never stall requests or grow without bound.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
    dropped: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` for `tracing_subscriber::fmt`: every line goes into the shared buffer.
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is still buffered and stops the thread when dropped (keep it until exit).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer whose lines reach `out` from a background thread, in batches.
pub fn batched<W: Write + Send + 'static>(out: W) -> std::io::Result<(BatchedWriter, FlushGuard)> {
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || run(&s, out))?;
    Ok((
        BatchedWriter {
            shared: shared.clone(),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && !st.closed {
            st = shared.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.buf.is_empty() {
            return; // closed and drained
        }
        if !st.closed && st.buf.len() < FLUSH_AT {
            st = shared
                .ready
                .wait_timeout(st, FLUSH_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        std::mem::swap(&mut st.buf, &mut spare);
        let dropped = std::mem::take(&mut st.dropped);
        drop(st);
        // Nowhere to report a failing stderr; the lines are gone either way.
        let _ = out.write_all(&spare);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "bitrouter: {dropped} log lines dropped (the log output was not keeping up)"
            );
        }
        let _ = out.flush();
        spare.clear();
        if spare.capacity() > 4 * FLUSH_AT {
            spare = Vec::new();
        }
    }
}

/// One log line's writer: a borrow of the shared buffer (no reference count per line).
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut st = self.shared.lock();
        if st.buf.len() + data.len() > MAX_BUFFERED {
            st.dropped += 1;
            return Ok(data.len());
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(data);
        let full = st.buf.len() >= FLUSH_AT;
        drop(st);
        if was_empty || full {
            self.shared.ready.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A `Write` whose bytes and write calls the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(data);
            s.1 += 1;
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_all_by_the_guard_drop() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone()).unwrap();
        let lines: Vec<String> = (0..2_000).map(|i| format!("line {i}\n")).collect();
        for l in &lines {
            w.make_writer().write_all(l.as_bytes()).unwrap();
        }
        drop(guard);
        let s = sink.0.lock().unwrap();
        assert_eq!(String::from_utf8_lossy(&s.0), lines.concat());
        assert!(s.1 < 100, "{} writes for 2,000 lines", s.1);
    }

    #[test]
    fn a_stalled_output_drops_and_counts_instead_of_growing() {
        /// Blocks every write until the test lets it go.
        struct Stalled(Arc<(Mutex<bool>, Condvar)>, Sink);
        impl Write for Stalled {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                let (go, cv) = &*self.0;
                let mut g = go.lock().unwrap();
                while !*g {
                    g = cv.wait(g).unwrap();
                }
                self.1.write(data)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (w, guard) = batched(Stalled(gate.clone(), sink.clone())).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..40 {
            w.make_writer().write_all(&line).unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let s = sink.0.lock().unwrap();
        let text = String::from_utf8_lossy(&s.0);
        assert!(s.0.len() <= MAX_BUFFERED * 2 + 200, "{} bytes", s.0.len());
        assert!(text.contains("log lines dropped"), "the drop is reported");
    }
}
