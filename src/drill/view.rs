//! The drill's progress while it runs. On a terminal: one block redrawn every drill
//! minute (drill time, events in, each destination's state, queue depth, delivered,
//! errors). Otherwise: one plain line every ten drill minutes (and at every change of
//! a destination's state), for logs and CI.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::{Drill, Sample, hhmm};

pub struct View {
    tty: bool,
    drawn: usize,
    speed: f64,
    last_states: Vec<String>,
}

impl View {
    pub fn new(speed: f64) -> View {
        View {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
            speed,
            last_states: Vec::new(),
        }
    }

    pub fn show(&mut self, d: &Drill, s: &Sample, wall: Duration) {
        let states: Vec<String> = s.dests.iter().map(|x| x.state.clone()).collect();
        let changed = states != self.last_states;
        self.last_states = states;
        let posted = d.posted.len();
        let head = format!(
            "drill {} ({:.0}s wall, {}×) · events in {} · ingested {}",
            hhmm(s.t_ms),
            wall.as_secs_f64(),
            self.speed,
            posted,
            s.ingested
        );
        let lines: Vec<String> = d
            .dests
            .iter()
            .zip(&s.dests)
            .map(|(dest, x)| {
                format!(
                    "  {:<20} {:<8} queue {:>6}  lag {:>5.0}s  delivered {:>7}  errors {:>5}  dlq {:>5}",
                    dest.id,
                    x.state,
                    x.queue_depth,
                    x.lag_s,
                    x.delivered,
                    x.retried + x.throttled,
                    x.dlq_depth
                )
            })
            .collect();
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            let _ = writeln!(out, "\x1b[2K{head}");
            for l in &lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
            self.drawn = 1 + lines.len();
        } else if s.t_ms % 600_000 == 0 || changed {
            let brief: Vec<String> = d
                .dests
                .iter()
                .zip(&s.dests)
                .map(|(dest, x)| {
                    format!(
                        "{} {} q={} ok={} err={}",
                        dest.id,
                        x.state,
                        x.queue_depth,
                        x.delivered,
                        x.retried + x.throttled
                    )
                })
                .collect();
            let _ = writeln!(out, "{head} | {}", brief.join(" | "));
        }
        let _ = out.flush();
    }

    /// Leaves the last block on screen; the next phase draws below it.
    pub fn finish(&mut self) {
        self.drawn = 0;
    }
}
