//! The parts of a step's work ([`Event::Progress`](solver::Event::Progress)) as
//! BuildKit shows them: `sha256:3ed2… 1.05MB / 1.10MB 0.3s`, `naming to app:1 done`.

use std::time::{Duration, Instant};

/// Below this share of the total and this time since the last line, plain output
/// skips an update of a part (BuildKit's rule: enough lines to follow, not one per
/// chunk).
const MIN_SHARE: f64 = 0.05;
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// One part of a step, as last reported.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: String,
    pub current: u64,
    pub total: Option<u64>,
    pub started: Instant,
    pub completed: Option<Instant>,
    /// The bytes and time of the last update plain output printed, and whether it
    /// was the completed one.
    printed: Option<(u64, Instant, bool)>,
}

impl Status {
    pub fn new(id: &str, now: Instant) -> Status {
        Status { id: id.to_string(), current: 0, total: None, started: now, completed: None, printed: None }
    }

    pub fn update(&mut self, current: u64, total: Option<u64>, completed: bool, now: Instant) {
        self.current = current;
        self.total = total.or(self.total);
        if completed && self.completed.is_none() {
            self.completed = Some(now);
        }
    }

    /// `sha256:… 1.05MB / 1.10MB 0.3s done`: the id, the bytes (when it moves any),
    /// the time it took so far (from 0.1s) and `done` once completed.
    pub fn line(&self, now: Instant) -> String {
        let mut line = self.id.clone();
        match self.total {
            Some(total) if total > 0 => line += &format!(" {} / {}", bytes(self.current), bytes(total)),
            _ if self.current > 0 => line += &format!(" {}", bytes(self.current)),
            _ => {}
        }
        let end = self.completed.unwrap_or(now);
        let secs = end.saturating_duration_since(self.started).as_secs_f64();
        if secs >= 0.05 {
            line += &format!(" {secs:.1}s");
        }
        if self.completed.is_some() {
            line += " done";
        }
        line
    }

    /// Whether plain output shows this update: the first and the completed one
    /// always (once), the others when they moved far enough or enough time passed.
    /// Marks it printed.
    pub fn take_printable(&mut self, now: Instant) -> bool {
        let completed = self.completed.is_some();
        let due = match self.printed {
            None => true,
            Some((_, _, true)) => false,
            Some(_) if completed => true,
            Some((current, at, _)) => {
                let share = match self.total {
                    Some(total) if total > 0 => self.current.saturating_sub(current) as f64 / total as f64,
                    _ => 0.0,
                };
                share >= MIN_SHARE || now.saturating_duration_since(at) >= MIN_INTERVAL
            }
        };
        if due {
            self.printed = Some((self.current, now, completed));
        }
        due
    }
}

/// A byte count as BuildKit writes one: `304B`, `1.05kB`, `3.40MB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_as_buildkit_writes_them() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(304), "304B");
        assert_eq!(bytes(1050), "1.05kB");
        assert_eq!(bytes(3_400_000), "3.40MB");
        assert_eq!(bytes(2_500_000_000), "2.50GB");
    }

    #[test]
    fn lines_show_bytes_time_and_completion() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut status = Status::new("sha256:3ed2", start);
        status.update(0, Some(3_400_000), false, start);
        assert_eq!(status.line(at(10)), "sha256:3ed2 0B / 3.40MB");
        status.update(1_200_000, Some(3_400_000), false, at(300));
        assert_eq!(status.line(at(300)), "sha256:3ed2 1.20MB / 3.40MB 0.3s");
        status.update(3_400_000, None, true, at(500));
        assert_eq!(status.line(at(900)), "sha256:3ed2 3.40MB / 3.40MB 0.5s done");
        let mut naming = Status::new("naming to app:1", start);
        naming.update(0, None, true, start);
        assert_eq!(naming.line(at(100)), "naming to app:1 done");
    }

    #[test]
    fn plain_skips_small_updates() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut status = Status::new("blob", start);
        status.update(0, Some(1000), false, start);
        assert!(status.take_printable(start));
        status.update(10, Some(1000), false, at(10));
        assert!(!status.take_printable(at(10)), "1% after 10ms");
        status.update(60, Some(1000), false, at(20));
        assert!(status.take_printable(at(20)), "6%");
        status.update(61, Some(1000), false, at(6000));
        assert!(status.take_printable(at(6000)), "after 5s");
        status.update(62, Some(1000), true, at(6001));
        assert!(status.take_printable(at(6001)), "completed");
        status.update(62, Some(1000), true, at(6002));
        assert!(!status.take_printable(at(6002)), "completed again");
    }
}
