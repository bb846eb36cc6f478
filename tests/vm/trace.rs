//! The kernel's `gpio:gpio_value` trace event (tracefs, mounted by the VM's
//! init): every value a GPIO line is set to, timestamped by the kernel.

use std::fs;
use std::path::Path;

const TRACEFS: &str = "/sys/kernel/tracing";

/// Records `gpio_value` events from `start` to `stop`. One at a time: the
/// trace buffer is global (the VM runs tests one by one).
pub struct GpioValueTrace;

fn write(file: &str, value: &str) {
    let path = Path::new(TRACEFS).join(file);
    fs::write(&path, value)
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

impl GpioValueTrace {
    /// Clears the buffer and enables the event.
    pub fn start() -> GpioValueTrace {
        // CLOCK_MONOTONIC, as `Instant`: the agent's deadlines and these
        // timestamps are on one clock.
        write("trace_clock", "mono");
        write("trace", "");
        write("events/gpio/gpio_value/enable", "1");
        write("tracing_on", "1");
        GpioValueTrace
    }

    /// The `set` events so far: (kernel time in seconds, value).
    pub fn sets(&self) -> Vec<(f64, bool)> {
        let path = Path::new(TRACEFS).join("trace");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text.lines().filter_map(parse_set).collect()
    }

    pub fn stop(self) -> Vec<(f64, bool)> {
        let sets = self.sets();
        drop(self);
        sets
    }
}

impl Drop for GpioValueTrace {
    fn drop(&mut self) {
        let _ = fs::write(
            Path::new(TRACEFS).join("events/gpio/gpio_value/enable"),
            "0",
        );
    }
}

/// `  task-12 [001] ..... 123.456789: gpio_value: 512 set 1`
fn parse_set(line: &str) -> Option<(f64, bool)> {
    let (head, event) = line.split_once(": gpio_value: ")?;
    let mut f = event.split_whitespace();
    let (_gpio, op, value) = (f.next()?, f.next()?, f.next()?);
    if op != "set" {
        return None;
    }
    let at: f64 = head.rsplit(' ').next()?.parse().ok()?;
    Some((at, value == "1"))
}
