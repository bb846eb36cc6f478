//! Simulated GPIO chips on the real kernel (gpio-sim, see the kernel's
//! Documentation/admin-guide/gpio/gpio-sim.rst): a device is a configfs
//! directory with one `gpio-bankN` per chip and `lineN/name` per named line;
//! writing `live` creates or removes the chips. Each line's level (what the
//! requester drives, or the pull when nobody drives it) and pull are in
//! sysfs under the platform device, which is how the tests watch a line.

use std::fs;
use std::path::{Path, PathBuf};

pub const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// One chip of a device: its label and named lines.
pub struct Bank {
    label: String,
    num_lines: u32,
    names: Vec<(u32, String)>,
}

impl Bank {
    pub fn new(label: &str, num_lines: u32) -> Bank {
        Bank {
            label: label.into(),
            num_lines,
            names: Vec::new(),
        }
    }

    /// Names line `offset` (`gpio-line-names`, what `line = "NAME"` finds).
    pub fn line(mut self, offset: u32, name: &str) -> Bank {
        self.names.push((offset, name.into()));
        self
    }
}

/// A live gpio-sim device; dropping it takes it down and removes its
/// configfs tree.
pub struct SimDevice {
    dir: PathBuf,
    banks: Vec<(Bank, String)>,
}

fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

impl SimDevice {
    /// Creates device `name` with these banks and makes it live.
    pub fn create(name: &str, banks: &[Bank]) -> SimDevice {
        let dir = Path::new(CONFIGFS).join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        for (i, bank) in banks.iter().enumerate() {
            let b = dir.join(format!("gpio-bank{i}"));
            fs::create_dir(&b).unwrap();
            write(&b.join("num_lines"), &bank.num_lines.to_string());
            write(&b.join("label"), &bank.label);
            for (offset, line) in &bank.names {
                let l = b.join(format!("line{offset}"));
                fs::create_dir(&l).unwrap();
                write(&l.join("name"), line);
            }
        }
        let mut dev = SimDevice {
            dir,
            banks: Vec::new(),
        };
        dev.set_live(true);
        dev.banks = banks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let chip = read(&dev.dir.join(format!("gpio-bank{i}/chip_name")));
                (
                    Bank {
                        label: b.label.clone(),
                        num_lines: b.num_lines,
                        names: b.names.clone(),
                    },
                    chip,
                )
            })
            .collect();
        dev
    }

    /// Brings the chips up (`true`) or takes them away (`false`), as a
    /// board losing a GPIO expander would.
    pub fn set_live(&self, live: bool) {
        write(&self.dir.join("live"), if live { "1" } else { "0" });
    }

    /// `gpio-sim.N`, the platform device.
    pub fn dev_name(&self) -> String {
        read(&self.dir.join("dev_name"))
    }

    /// `gpiochipN` of bank `bank` (as of the last `create`).
    pub fn chip_name(&self, bank: usize) -> &str {
        &self.banks[bank].1
    }

    pub fn label(&self, bank: usize) -> &str {
        &self.banks[bank].0.label
    }

    /// Line `offset` of bank `bank`, read through sysfs. The chip name is
    /// read anew: a device brought back up may get another number.
    pub fn line(&self, bank: usize, offset: u32) -> SimLine {
        let chip = read(&self.dir.join(format!("gpio-bank{bank}/chip_name")));
        SimLine {
            dir: PathBuf::from(format!(
                "/sys/devices/platform/{}/{chip}/sim_gpio{offset}",
                self.dev_name()
            )),
        }
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("live"), "0");
        for (i, (bank, _)) in self.banks.iter().enumerate() {
            let b = self.dir.join(format!("gpio-bank{i}"));
            for (offset, _) in &bank.names {
                let _ = fs::remove_dir(b.join(format!("line{offset}")));
            }
            let _ = fs::remove_dir(&b);
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// One simulated line's sysfs attributes.
#[derive(Clone)]
pub struct SimLine {
    dir: PathBuf,
}

impl SimLine {
    /// The line's physical level: what its requester drives, else its pull.
    pub fn value(&self) -> bool {
        match read(&self.dir.join("value")).as_str() {
            "1" => true,
            "0" => false,
            v => panic!("{}/value: unexpected {v:?}", self.dir.display()),
        }
    }

    /// `pull-up` or `pull-down`.
    pub fn pull(&self) -> String {
        read(&self.dir.join("pull"))
    }

    pub fn value_path(&self) -> PathBuf {
        self.dir.join("value")
    }
}

/// A line's level sampled in a tight loop on its own thread, kept as the
/// changes seen: how a test watches pulses and proves a line never glitched.
pub struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, bool)>>>,
    samples: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimLine {
    /// Starts sampling; the first entry is the level at the start.
    pub fn watch(&self) -> Watch {
        use std::io::{Read, Seek, SeekFrom};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(AtomicU64::new(0));
        let path = self.value_path();
        let mut f =
            fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let (s, v, n) = (stop.clone(), seen.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let mut last = None;
            while !s.load(Ordering::Relaxed) {
                f.seek(SeekFrom::Start(0)).unwrap();
                let len = f.read(&mut buf).unwrap();
                let now = std::time::Instant::now();
                let level = match &buf[..len] {
                    b"1\n" => true,
                    b"0\n" => false,
                    other => panic!("value: unexpected {other:?}"),
                };
                n.fetch_add(1, Ordering::Relaxed);
                if last != Some(level) {
                    last = Some(level);
                    v.lock().unwrap().push((now, level));
                }
            }
        });
        Watch {
            stop,
            seen,
            samples,
            thread: Some(thread),
        }
    }
}

impl Watch {
    /// The levels seen so far, in order (each a change from the previous).
    pub fn levels(&self) -> Vec<bool> {
        self.seen.lock().unwrap().iter().map(|(_, l)| *l).collect()
    }

    /// The changes seen so far with their times.
    pub fn changes(&self) -> Vec<(std::time::Instant, bool)> {
        self.seen.lock().unwrap().clone()
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops sampling and returns every change seen.
    pub fn stop(mut self) -> Vec<(std::time::Instant, bool)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("watch thread");
        }
        self.changes()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
