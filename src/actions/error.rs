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
    #[error("no GPIO chip with path, name or label {chip:?}")]
    NoSuchChip { chip: String },
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
    #[error("no line named {name:?} on {}", chip.display())]
    NoLineOnChip { name: String, chip: PathBuf },
    #[error("no line named {name:?} on any GPIO chip")]
    NoLineAnywhere { name: String },
    /// The simulated backend's EBUSY: another output holds the line.
    #[error("simulated line {line:?} is already held by another output (busy)")]
    SimulatedBusy { line: String },
    /// The kernel refused the line request (busy, bad offset, no permission).
    #[error("requesting line {line} on {}: {source}", chip.display())]
    Request {
        line: LineSpec,
        chip: PathBuf,
        #[source]
        source: gpiocdev::Error,
    },
}
