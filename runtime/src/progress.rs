//! Progress feedback for long operations (key generation, runs).
//!
//! A [`Progress`] is shared by reference across worker threads (atomic counters). It draws a bar on
//! stderr only once the current task has lasted more than a second, and only when stderr is a
//! terminal (or `FHEC_PROGRESS=1`); `FHEC_PROGRESS=0` silences it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHOW_AFTER: Duration = Duration::from_secs(1);
const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    enabled: bool,
    /// Steps timed by [`Progress::tick_while`], labelled with the current message (only for
    /// [`Progress::timed`]).
    timings: Option<Mutex<Vec<(String, f64)>>>,
    total: AtomicU64,
    done: AtomicU64,
    drawn: AtomicBool,
    state: Mutex<State>,
}

struct State {
    label: String,
    started: Instant,
    last_draw: Instant,
}

impl Progress {
    /// A progress reporter that never draws.
    pub fn silent() -> Progress {
        Progress::new(false)
    }

    /// Draws on stderr when it is a terminal (override with `FHEC_PROGRESS=0|1`).
    pub fn stderr() -> Progress {
        let enabled = match std::env::var("FHEC_PROGRESS").as_deref() {
            Ok("0") => false,
            Ok("1") => true,
            _ => std::io::stderr().is_terminal(),
        };
        Progress::new(enabled)
    }

    /// A progress reporter that never draws but records how long each step of
    /// [`Progress::tick_while`] took, under the message current at the time ([`Progress::timings`]):
    /// benchmarks use it to split key generation and expansion into their parts.
    pub fn timed() -> Progress {
        Progress {
            timings: Some(Mutex::new(Vec::new())),
            ..Progress::new(false)
        }
    }

    /// The steps recorded so far by a [`Progress::timed`] reporter: `(message, seconds)`, in order
    /// of completion; empty for the others.
    pub fn timings(&self) -> Vec<(String, f64)> {
        self.timings
            .as_ref()
            .and_then(|t| t.lock().ok().map(|t| t.clone()))
            .unwrap_or_default()
    }

    fn new(enabled: bool) -> Progress {
        let now = Instant::now();
        Progress {
            enabled,
            timings: None,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            drawn: AtomicBool::new(false),
            state: Mutex::new(State {
                label: String::new(),
                started: now,
                last_draw: now,
            }),
        }
    }

    /// Starts a task of `total` steps.
    pub fn start(&self, label: &str, total: u64) {
        if !self.enabled {
            return;
        }
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.drawn.store(false, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.label = label.to_string();
            s.started = Instant::now();
        }
    }

    pub fn set_message(&self, label: &str) {
        if !self.enabled && self.timings.is_none() {
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            s.label = label.to_string();
        }
    }

    /// Records `n` more steps done; redraws at most five times a second.
    pub fn advance(&self, n: u64) {
        if !self.enabled {
            return;
        }
        self.done.fetch_add(n, Ordering::Relaxed);
        let Ok(mut s) = self.state.try_lock() else { return };
        let now = Instant::now();
        if now.duration_since(s.started) < SHOW_AFTER || now.duration_since(s.last_draw) < REDRAW_EVERY {
            return;
        }
        s.last_draw = now;
        self.draw(&s, now);
    }

    fn draw(&self, s: &State, now: Instant) {
        let total = self.total.load(Ordering::Relaxed).max(1);
        let done = self.done.load(Ordering::Relaxed).min(total);
        let width = 30;
        let filled = (done * width / total) as usize;
        let bar: String = "#".repeat(filled) + &".".repeat(width as usize - filled);
        let secs = now.duration_since(s.started).as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{:<18} [{bar}] {done}/{total} {secs:.1}s", s.label);
        let _ = err.flush();
        self.drawn.store(true, Ordering::Relaxed);
    }

    /// Runs `work` (one long step of the current task that cannot report progress itself, such as
    /// generating a bootstrap key) while a helper thread keeps the bar's clock moving; then counts
    /// the step as done.
    pub fn tick_while<T>(&self, work: impl FnOnce() -> T) -> T {
        if let Some(timings) = &self.timings {
            let t0 = Instant::now();
            let out = work();
            let secs = t0.elapsed().as_secs_f64();
            let label = self.state.lock().map(|s| s.label.clone()).unwrap_or_default();
            if let Ok(mut t) = timings.lock() {
                t.push((label, secs));
            }
            return out;
        }
        if !self.enabled {
            return work();
        }
        let done = AtomicBool::new(false);
        let out = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(mut s) = self.state.try_lock() {
                        let now = Instant::now();
                        if now.duration_since(s.started) >= SHOW_AFTER
                            && now.duration_since(s.last_draw) >= REDRAW_EVERY
                        {
                            s.last_draw = now;
                            self.draw(&s, now);
                        }
                    }
                }
            });
            let out = work();
            done.store(true, Ordering::Relaxed);
            out
        });
        self.advance(1);
        out
    }

    /// Ends the task: completes the bar if it was drawn.
    pub fn finish(&self) {
        if !self.enabled || !self.drawn.load(Ordering::Relaxed) {
            return;
        }
        self.done.store(self.total.load(Ordering::Relaxed), Ordering::Relaxed);
        if let Ok(s) = self.state.lock() {
            self.draw(&s, Instant::now());
        }
        let _ = writeln!(std::io::stderr());
        self.drawn.store(false, Ordering::Relaxed);
    }
}
