//! The element table (`src/media/elements.rs`) against the system and the
//! packaging: each element GStreamer finds here lives in the package the
//! table names (`gst-inspect-1.0` gives the plugin file, `dpkg -S` its
//! package); every element the code creates is in the table; `ci/setup.sh`
//! installs and the `.deb` depends on, recommends or suggests what the table
//! says. A missing `gstreamer1.0-x` went unnoticed once because none of this
//! was checked.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use trickle_edge::media::elements::{CORE, ELEMENTS, Need, lookup};

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The packages in `ci/setup.sh`'s `pkgs=( … )` list.
fn setup_packages() -> BTreeSet<String> {
    let text = repo("ci/setup.sh");
    let start = text
        .find("pkgs=(")
        .expect("ci/setup.sh has a pkgs=( … ) list")
        + 6;
    let end = start + text[start..].find(')').expect("pkgs list ends");
    text[start..end]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Package names of one `.deb` relation field in Cargo.toml (`$auto` and
/// version constraints left out).
fn deb_field(field: &str) -> BTreeSet<String> {
    let manifest: toml::Table = toml::from_str(&repo("Cargo.toml")).expect("Cargo.toml parses");
    let value = manifest["package"]["metadata"]["deb"]
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("[package.metadata.deb] has no {field}"));
    value
        .split(',')
        .map(|p| p.split_whitespace().next().unwrap_or("").to_owned())
        .filter(|p| !p.is_empty() && !p.starts_with('$'))
        .collect()
}

/// The plugin file of `factory`, or `None` when GStreamer does not know it.
fn plugin_file(factory: &str) -> Option<String> {
    let out = Command::new("gst-inspect-1.0")
        .arg(factory)
        .env("GST_DEBUG", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "gst-inspect-1.0 cannot run ({e}): install gstreamer1.0-tools (bash ci/setup.sh)"
            )
        });
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Filename"))
        .map(|f| f.trim().to_owned())
}

/// The Debian package owning `file`; on merged-/usr systems gst-inspect may
/// print `/lib/…` while dpkg knows `/usr/lib/…` (or the other way round).
fn owning_package(file: &str) -> String {
    let mut candidates = vec![file.to_owned()];
    if let Some(rest) = file.strip_prefix("/usr") {
        candidates.push(rest.to_owned());
    } else {
        candidates.push(format!("/usr{file}"));
    }
    for path in &candidates {
        let out = Command::new("dpkg")
            .args(["-S", path])
            .output()
            .expect("dpkg runs");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let owner = text.lines().next().unwrap_or("");
            let name = owner.split(": ").next().unwrap_or("");
            // `libgstreamer1.0-0:amd64` -> `libgstreamer1.0-0`
            return name.split(':').next().unwrap_or("").to_owned();
        }
    }
    panic!("dpkg -S knows none of {candidates:?}")
}

#[test]
fn each_installed_element_is_in_the_package_the_table_names() {
    let mut checked = 0;
    for e in ELEMENTS {
        let file = plugin_file(e.factory);
        match (e.need, file) {
            (Need::Vendor, _) => {}
            (_, Some(file)) => {
                assert_eq!(
                    owning_package(&file),
                    e.package,
                    "{} (plugin {file}) is shipped by another package than the table says",
                    e.factory
                );
                checked += 1;
            }
            // ci/setup.sh installs every Required and Optional package, and
            // the README's test command runs it first.
            (Need::Required | Need::Optional, None) => panic!(
                "{} is not installed: install {} (bash ci/setup.sh)",
                e.factory, e.package
            ),
            (Need::Board, None) => {}
        }
    }
    let needed = ELEMENTS
        .iter()
        .filter(|e| matches!(e.need, Need::Required | Need::Optional))
        .count();
    assert!(checked >= needed, "checked {checked} of {needed}");
}

#[test]
fn setup_installs_and_the_deb_depends_on_what_the_table_needs() {
    let setup = setup_packages();
    let (depends, recommends, suggests) = (
        deb_field("depends"),
        deb_field("recommends"),
        deb_field("suggests"),
    );
    for e in ELEMENTS {
        let p = e.package.to_owned();
        match e.need {
            Need::Required => {
                assert!(depends.contains(&p), "Depends lacks {p} ({})", e.factory);
            }
            Need::Optional => {
                assert!(
                    recommends.contains(&p) || depends.contains(&p),
                    "Recommends lacks {p} ({})",
                    e.factory
                );
            }
            Need::Board => {
                assert!(
                    suggests.contains(&p) || recommends.contains(&p) || depends.contains(&p),
                    "Suggests lacks {p} ({})",
                    e.factory
                );
            }
            Need::Vendor => continue,
        }
        // libgstreamer1.0-0 comes with libgstreamer1.0-dev.
        if matches!(e.need, Need::Required | Need::Optional) && p != CORE {
            assert!(setup.contains(&p), "ci/setup.sh does not install {p}");
        }
    }
}

/// Every `make("…")`, `ElementFactory::make("…")` and `find("…")` in the
/// sources names an element of the table, so a new element cannot be added
/// without saying which package ships it.
#[test]
fn every_element_the_code_creates_is_in_the_table() {
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut names = BTreeSet::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
            continue;
        }
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for pattern in ["make(\"", "find(\""] {
            for (at, _) in text.match_indices(pattern) {
                let rest = &text[at + pattern.len()..];
                let name = &rest[..rest.find('"').unwrap()];
                if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    assert!(names.contains("mpegtsmux"), "the scan found {names:?}");
    for name in &names {
        assert!(
            lookup(name).is_some(),
            "{name} is created in src/ but not listed in src/media/elements.rs"
        );
    }
}
