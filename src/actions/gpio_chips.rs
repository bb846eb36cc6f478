//! This machine's GPIO chips as `check`, `run` and `probe` see them: each
//! chip's path, name, label and line names, read once from the kernel
//! ([`probe_chips`]), and the pure lookup of a configured `chip` and `line`
//! in such a listing ([`ChipListing::locate`]). The lookup is kept apart
//! from the reading so that its answers, above all the errors that say which
//! lines a chip has, are tested with data here and with real chips (gpio-sim)
//! on a real kernel.

use std::fmt;
use std::path::{Path, PathBuf};

use super::config::LineSpec;
use super::error::GpioDeviceError;

/// One GPIO chip: what the kernel says about it and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipLines {
    /// `/dev/gpiochipN`.
    pub path: PathBuf,
    /// `gpiochipN`.
    pub name: String,
    /// What the driver calls it: `pinctrl-rp1`, `gpio-sim.0-node0`, …
    pub label: String,
    /// Each line's name by offset; `""` for an unnamed line.
    pub lines: Vec<String>,
}

impl ChipLines {
    /// Opens the chip and reads its info and every line's name.
    pub fn read(path: &Path) -> Result<ChipLines, gpiocdev::Error> {
        let chip = gpiocdev::Chip::from_path(path)?;
        let info = chip.info()?;
        let lines = (0..info.num_lines)
            .map(|offset| chip.line_info(offset).map(|l| l.name))
            .collect::<Result<_, _>>()?;
        Ok(ChipLines {
            path: path.to_owned(),
            name: info.name,
            label: info.label,
            lines,
        })
    }

    /// `gpiochip0 (pinctrl-rp1)`: how errors name a chip.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.label)
    }

    /// Offsets and names of the named lines.
    pub fn named_lines(&self) -> impl Iterator<Item = (u32, &str)> {
        (0u32..)
            .zip(&self.lines)
            .filter(|(_, n)| !n.is_empty())
            .map(|(o, n)| (o, n.as_str()))
    }

    fn offset_of(&self, name: &str) -> Option<u32> {
        self.named_lines().find(|(_, n)| *n == name).map(|(o, _)| o)
    }
}

/// The GPIO chips `trickle-edge probe` lists and `check` looks lines up in,
/// so a config's `chip` and `line` can be picked without another tool.
#[derive(Debug, Clone)]
pub struct ChipListing {
    pub chips: Vec<ChipProbe>,
}

/// One chip device and what reading it gave.
#[derive(Debug, Clone)]
pub struct ChipProbe {
    pub path: PathBuf,
    /// The chip and its lines, or why it could not be read (often
    /// permissions: the agent's user needs the `gpio` group).
    pub info: Result<ChipLines, String>,
}

/// Where a configured line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLocation {
    pub chip: PathBuf,
    pub offset: u32,
}

/// Every GPIO chip device on this machine, each read once. A machine where
/// the chips cannot be listed at all reports none, which is what matters to
/// the reader: only `backend = "simulated"` will work there.
pub fn probe_chips() -> ChipListing {
    let paths = gpiocdev::chip::chips().unwrap_or_default();
    let chips = paths
        .into_iter()
        .map(|path| {
            let info = ChipLines::read(&path).map_err(|e| e.to_string());
            ChipProbe { path, info }
        })
        .collect();
    ChipListing { chips }
}

impl ChipListing {
    /// The chips that could be read.
    pub fn readable(&self) -> impl Iterator<Item = &ChipLines> {
        self.chips.iter().filter_map(|c| c.info.as_ref().ok())
    }

    /// Finds a configured line: `chip` by path, `gpiochipN` name or label
    /// (`None`: every chip is searched for the line's name), `line` by
    /// offset or name. The errors name what exists instead: the chips, or
    /// the named lines of the chip (or of every chip), so the config can be
    /// fixed from the message alone. An absolute `chip` path must be the
    /// chip's own `/dev/gpiochipN` (the caller resolves links first).
    pub fn locate(
        &self,
        chip: Option<&str>,
        line: &LineSpec,
    ) -> Result<LineLocation, GpioDeviceError> {
        let Some(chip) = chip else {
            let LineSpec::Name(name) = line else {
                return Err(GpioDeviceError::ChipRequired);
            };
            return self.locate_anywhere(name);
        };
        let found = self
            .chips
            .iter()
            .find(|c| chip_matches(c, chip))
            .ok_or_else(|| GpioDeviceError::NoSuchChip {
                chip: chip.to_owned(),
                known: self.chip_names(),
            })?;
        let lines = found
            .info
            .as_ref()
            .map_err(|why| GpioDeviceError::ReadChip {
                chip: found.path.clone(),
                reason: why.clone(),
            })?;
        let offset = match line {
            LineSpec::Offset(o) if (*o as usize) < lines.lines.len() => *o,
            LineSpec::Offset(o) => {
                return Err(GpioDeviceError::OffsetOutOfRange {
                    offset: *o,
                    chip: lines.describe(),
                    num_lines: lines.lines.len(),
                });
            }
            LineSpec::Name(name) => {
                lines
                    .offset_of(name)
                    .ok_or_else(|| GpioDeviceError::NoLineOnChip {
                        name: name.clone(),
                        chip: lines.describe(),
                        lines: lines.named_lines().map(|(_, n)| n.to_owned()).collect(),
                        num_lines: lines.lines.len(),
                    })?
            }
        };
        Ok(LineLocation {
            chip: lines.path.clone(),
            offset,
        })
    }

    /// The first chip, in device order, with a line called `name`.
    fn locate_anywhere(&self, name: &str) -> Result<LineLocation, GpioDeviceError> {
        for chip in self.readable() {
            if let Some(offset) = chip.offset_of(name) {
                return Ok(LineLocation {
                    chip: chip.path.clone(),
                    offset,
                });
            }
        }
        Err(GpioDeviceError::NoLineAnywhere {
            name: name.to_owned(),
            lines: self
                .readable()
                .flat_map(|c| c.named_lines().map(|(_, n)| (n.to_owned(), c.name.clone())))
                .collect(),
            readable: self.readable().count(),
            unreadable: self.chips.iter().filter(|c| c.info.is_err()).count(),
        })
    }

    /// `gpiochipN (label)` of every chip, or its path when it cannot be read.
    fn chip_names(&self) -> Vec<String> {
        self.chips
            .iter()
            .map(|c| match &c.info {
                Ok(lines) => lines.describe(),
                Err(_) => c.path.display().to_string(),
            })
            .collect()
    }
}

/// By path, by `gpiochipN` or by label.
fn chip_matches(probe: &ChipProbe, chip: &str) -> bool {
    if probe.path == Path::new(chip) {
        return true;
    }
    probe
        .info
        .as_ref()
        .is_ok_and(|c| c.name == chip || c.label == chip)
}

impl fmt::Display for ChipListing {
    /// A chip a line, then its named lines as `offset=name`, which is what
    /// a config's `chip` and `line` take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "GPIO chips:")?;
        if self.chips.is_empty() {
            return writeln!(f, "  (none: use backend = \"simulated\" for GPIO outputs)");
        }
        for chip in &self.chips {
            let lines = match &chip.info {
                Ok(lines) => lines,
                Err(e) => {
                    writeln!(f, "  {} (cannot open: {e})", chip.path.display())?;
                    continue;
                }
            };
            writeln!(
                f,
                "  {} label={} lines={}",
                chip.path.display(),
                lines.label,
                lines.lines.len()
            )?;
            let named: Vec<String> = lines
                .named_lines()
                .map(|(o, n)| format!("{o}={n}"))
                .collect();
            if named.is_empty() {
                writeln!(f, "    (no line names: use offsets)")?;
            } else {
                writeln!(f, "    {}", named.join(" "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(n: u32, label: &str, lines: &[&str]) -> ChipProbe {
        let path = PathBuf::from(format!("/dev/gpiochip{n}"));
        ChipProbe {
            path: path.clone(),
            info: Ok(ChipLines {
                path,
                name: format!("gpiochip{n}"),
                label: label.into(),
                lines: lines.iter().map(|l| l.to_string()).collect(),
            }),
        }
    }

    /// A Raspberry Pi 5 in miniature: the RP1's header lines, a chip whose
    /// lines have no names, and one the agent's user may not open.
    fn board() -> ChipListing {
        ChipListing {
            chips: vec![
                chip(0, "gpio-brcmstb@107d508500", &["", "", "", ""]),
                chip(
                    4,
                    "pinctrl-rp1",
                    &["ID_SDA", "ID_SCL", "GPIO2", "GPIO3", "", "GPIO17"],
                ),
                ChipProbe {
                    path: "/dev/gpiochip5".into(),
                    info: Err("Permission denied".into()),
                },
            ],
        }
    }

    fn name(n: &str) -> LineSpec {
        LineSpec::Name(n.into())
    }

    #[test]
    fn finds_a_line_by_name_or_offset_on_a_chip_by_path_name_or_label() {
        let listing = board();
        let at = |chip: &str, line: LineSpec| listing.locate(Some(chip), &line).unwrap();
        let want = LineLocation {
            chip: "/dev/gpiochip4".into(),
            offset: 5,
        };
        assert_eq!(at("pinctrl-rp1", name("GPIO17")), want);
        assert_eq!(at("gpiochip4", name("GPIO17")), want);
        assert_eq!(at("/dev/gpiochip4", LineSpec::Offset(5)), want);
        assert_eq!(listing.locate(None, &name("GPIO17")).unwrap(), want);
    }

    #[test]
    fn a_wrong_line_name_lists_the_lines_of_its_chip() {
        let err = board()
            .locate(Some("pinctrl-rp1"), &name("GPIO71"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no line named \"GPIO71\" on gpiochip4 (pinctrl-rp1); its named lines: \
             ID_SDA, ID_SCL, GPIO2, GPIO3, GPIO17"
        );
        let (got, candidates) = err.candidates().unwrap();
        assert_eq!(got, "GPIO71");
        assert!(candidates.contains(&"GPIO17"), "{candidates:?}");

        let err = board()
            .locate(Some("gpiochip0"), &name("relay"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no line named \"relay\" on gpiochip0 (gpio-brcmstb@107d508500); \
             it has no named lines: give an offset, 0 to 3"
        );
    }

    #[test]
    fn a_line_searched_everywhere_lists_every_named_line_and_unreadable_chips() {
        let err = board().locate(None, &name("relay1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no line named \"relay1\" on any GPIO chip; named lines: ID_SDA (gpiochip4), \
             ID_SCL (gpiochip4), GPIO2 (gpiochip4), GPIO3 (gpiochip4), GPIO17 (gpiochip4); \
             1 chip could not be opened (see `trickle-edge probe`)"
        );
        let none = ChipListing { chips: Vec::new() };
        assert_eq!(
            none.locate(None, &name("relay1")).unwrap_err().to_string(),
            "no line named \"relay1\" on any GPIO chip; this machine has no GPIO chips"
        );
    }

    #[test]
    fn a_wrong_chip_lists_the_chips_and_a_bad_offset_the_range() {
        let err = board()
            .locate(Some("pinctrl-rp2"), &LineSpec::Offset(1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no GPIO chip with path, name or label \"pinctrl-rp2\"; chips here: \
             gpiochip0 (gpio-brcmstb@107d508500), gpiochip4 (pinctrl-rp1), /dev/gpiochip5"
        );
        let (_, candidates) = err.candidates().unwrap();
        assert!(candidates.contains(&"pinctrl-rp1"), "{candidates:?}");
        let err = board()
            .locate(Some("pinctrl-rp1"), &LineSpec::Offset(6))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line offset 6 is not on gpiochip4 (pinctrl-rp1), which has lines 0 to 5"
        );
        let err = board()
            .locate(Some("/dev/gpiochip5"), &LineSpec::Offset(0))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/gpiochip5 cannot be opened: Permission denied"
        );
        assert!(matches!(
            board().locate(None, &LineSpec::Offset(3)),
            Err(GpioDeviceError::ChipRequired)
        ));
    }

    #[test]
    fn probe_lists_labels_and_named_lines() {
        assert_eq!(
            board().to_string(),
            "GPIO chips:\n\
             \x20 /dev/gpiochip0 label=gpio-brcmstb@107d508500 lines=4\n\
             \x20   (no line names: use offsets)\n\
             \x20 /dev/gpiochip4 label=pinctrl-rp1 lines=6\n\
             \x20   0=ID_SDA 1=ID_SCL 2=GPIO2 3=GPIO3 5=GPIO17\n\
             \x20 /dev/gpiochip5 (cannot open: Permission denied)\n"
        );
        let none = ChipListing { chips: Vec::new() };
        assert_eq!(
            none.to_string(),
            "GPIO chips:\n  (none: use backend = \"simulated\" for GPIO outputs)\n"
        );
    }

    #[test]
    fn finds_none_where_the_machine_has_no_chip_devices() {
        let has_chips = std::fs::read_dir("/dev").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("gpiochip"))
        });
        let listing = probe_chips();
        assert_eq!(!listing.chips.is_empty(), has_chips, "{listing:?}");
    }
}
