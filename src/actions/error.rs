//! Errors of building outputs: each names the output and the field at
//! fault, with the device's own error as its cause.

use std::path::PathBuf;

use super::config::LineSpec;
use crate::trickle::tls::TlsError;

/// A config or device problem, naming the output and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("output `{output}`: `{field}`: {reason}")]
    Invalid {
        output: String,
        field: &'static str,
        reason: String,
    },
    #[error("output `{output}`: `{field}`: {path}: {source}", path = path.display())]
    Io {
        output: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TLS setting that cannot be used: a missing or non-PEM file, a
    /// key that does not match its certificate, a malformed pin.
    #[error("output `{output}`: `{field}`: {source}")]
    Tls {
        output: String,
        field: &'static str,
        /// Boxed: rustls' errors are large (see `Device`).
        #[source]
        source: Box<TlsError>,
    },
    #[error("output `{output}`: `{field}`: {source}")]
    Device {
        output: String,
        field: &'static str,
        /// Boxed: the kernel's errors are large, and every `ActionError`
        /// would otherwise carry their size.
        #[source]
        source: Box<GpioDeviceError>,
    },
}

/// Why a GPIO output could not be opened: the cause inside
/// [`ActionError::Device`], which names the output and the field.
#[derive(Debug, thiserror::Error)]
pub enum GpioDeviceError {
    #[error("required for backend \"gpiocdev\"")]
    LineRequired,
    #[error("required when `line` is an offset")]
    ChipRequired,
    /// `chip` is neither a character device path, nor a `gpiochipN` name,
    /// nor the label of any chip.
    #[error(
        "no GPIO chip with path, name or label {chip:?}; {}",
        chips_here(known)
    )]
    NoSuchChip {
        chip: String,
        /// `gpiochipN (label)` of each chip on this machine.
        known: Vec<String>,
    },
    /// `chip` is an absolute path the kernel does not accept as a GPIO chip.
    #[error("{chip}: {source}")]
    NotAChip {
        chip: String,
        #[source]
        source: gpiocdev::Error,
    },
    #[error("listing GPIO chips: {0}")]
    ListChips(#[source] gpiocdev::Error),
    /// The chip was found but could not be opened to look a line name up.
    #[error("{0}")]
    OpenChip(#[source] gpiocdev::Error),
    /// The chip was found but could not be opened to read its lines.
    #[error("{} cannot be opened: {reason}", chip.display())]
    ReadChip { chip: PathBuf, reason: String },
    #[error("line offset {offset} is not on {chip}, which has {}", line_range(*num_lines))]
    OffsetOutOfRange {
        offset: u32,
        chip: String,
        num_lines: usize,
    },
    #[error("no line named {name:?} on {chip}; {}", named_lines_of_chip(lines, *num_lines))]
    NoLineOnChip {
        name: String,
        /// `gpiochipN (label)`.
        chip: String,
        /// The chip's named lines, in offset order.
        lines: Vec<String>,
        num_lines: usize,
    },
    #[error("no line named {name:?} on any GPIO chip; {}", named_lines_anywhere(lines, *readable, *unreadable))]
    NoLineAnywhere {
        name: String,
        /// Every named line and its chip's `gpiochipN`.
        lines: Vec<(String, String)>,
        /// Chips that were looked in.
        readable: usize,
        /// Chips that could not be opened to look.
        unreadable: usize,
    },
    /// The simulated backend's EBUSY: another output holds the line.
    #[error("simulated line {line:?} is already held by another output (busy)")]
    SimulatedBusy { line: String },
    /// Another request holds the line (another process, a kernel driver, or
    /// a second output of this agent naming the same line).
    #[error("line {line} on {} is held by {consumer:?}: the kernel refuses a second request (busy)", chip.display())]
    Held {
        line: LineSpec,
        chip: PathBuf,
        /// The holder's consumer label, as the kernel shows it.
        consumer: String,
    },
    /// The kernel refused the line request (bad offset, no permission).
    #[error("requesting line {line} on {}: {source}", chip.display())]
    Request {
        line: LineSpec,
        chip: PathBuf,
        #[source]
        source: gpiocdev::Error,
    },
}

impl GpioDeviceError {
    /// What was asked for and the names that exist instead, for a "did you
    /// mean" hint: line names for a wrong line, chip names and labels for a
    /// wrong chip.
    pub fn candidates(&self) -> Option<(&str, Vec<&str>)> {
        match self {
            GpioDeviceError::NoSuchChip { chip, known } => Some((
                chip,
                known
                    .iter()
                    .flat_map(|k| match k.split_once(" (") {
                        Some((name, label)) => vec![name, label.trim_end_matches(')')],
                        None => vec![k.as_str()],
                    })
                    .collect(),
            )),
            GpioDeviceError::NoLineOnChip { name, lines, .. } => {
                Some((name, lines.iter().map(String::as_str).collect()))
            }
            GpioDeviceError::NoLineAnywhere { name, lines, .. } => {
                Some((name, lines.iter().map(|(l, _)| l.as_str()).collect()))
            }
            _ => None,
        }
    }
}

fn chips_here(known: &[String]) -> String {
    if known.is_empty() {
        "this machine has no GPIO chips".into()
    } else {
        format!("chips here: {}", known.join(", "))
    }
}

fn line_range(num_lines: usize) -> String {
    match num_lines {
        0 => "no lines".into(),
        n => format!("lines 0 to {}", n - 1),
    }
}

fn named_lines_of_chip(lines: &[String], num_lines: usize) -> String {
    if lines.is_empty() {
        format!(
            "it has no named lines: give an offset, {}",
            line_range(num_lines).trim_start_matches("lines ")
        )
    } else {
        format!("its named lines: {}", lines.join(", "))
    }
}

fn named_lines_anywhere(lines: &[(String, String)], readable: usize, unreadable: usize) -> String {
    let mut out = if readable + unreadable == 0 {
        "this machine has no GPIO chips".to_owned()
    } else if lines.is_empty() {
        "no chip here has named lines".to_owned()
    } else {
        let named: Vec<String> = lines.iter().map(|(l, c)| format!("{l} ({c})")).collect();
        format!("named lines: {}", named.join(", "))
    };
    if unreadable > 0 {
        let chips = if unreadable == 1 { "chip" } else { "chips" };
        out += &format!("; {unreadable} {chips} could not be opened (see `trickle-edge probe`)");
    }
    out
}
