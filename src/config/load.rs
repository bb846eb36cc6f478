//! Reading a config: file ► board preset merged under it ► serde ► checks.
//! The merge works on spanned TOML (before serde) so that defaults come from
//! one place (the schema) and every error can still name its file and line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, DURATION_HINT, ErrorKind, quoted_list, suggest};
use super::resolved::ResolvedConfig;
use super::schema::{AgentConfig, AuthConfig};
use super::source::{Index, KeyPath, Sources};
use super::validate;
use crate::actions::Secret;

/// How to find and choose a board preset, and how far to check.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Overrides the file's `board` (the CLI's `--board`).
    pub board: Option<String>,
    /// Searched before the default preset directories (`--boards-dir`).
    pub boards_dir: Option<PathBuf>,
    /// Also check what only this machine can show: GPIO chips and lines,
    /// `exec` programs, log directories. `check` and `run` set it, so both
    /// refuse the same configs; tests of the text alone leave it off.
    pub host_checks: bool,
}

/// Tables a board preset may fill: hardware facts, never where data goes.
const PRESET_KEYS: &[&str] = &["camera", "encoder", "gpio", "queue"];

/// Where presets are looked for, in order.
pub(crate) fn board_dirs(opts: &LoadOptions) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = opts.boards_dir.iter().cloned().collect();
    dirs.extend(std::env::var_os("TRICKLE_EDGE_BOARDS").map(PathBuf::from));
    dirs.push("/usr/share/trickle-edge/boards".into());
    // Development: the presets next to this crate's sources.
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("boards"));
    dirs
}

pub(crate) fn load(path: &Path, opts: &LoadOptions) -> Result<ResolvedConfig, ConfigError> {
    let text = read(path)?;
    load_text(path, &text, opts)
}

/// [`load`] of a config already in memory; `path` only names it in errors
/// (presets and token files it names are still read).
pub(crate) fn load_text(
    path: &Path,
    text: &str,
    opts: &LoadOptions,
) -> Result<ResolvedConfig, ConfigError> {
    let mut sources = Sources::new(path, text);
    let doc = parse(&sources, text, 0)?;
    let (board, at) = match &opts.board {
        Some(name) => (Some(name.clone()), None),
        None => board_key(&doc, &sources)?,
    };
    let preset = match &board {
        Some(name) => {
            let file = find_preset(name, at, opts, &sources)?;
            let text = read(&file)?;
            Some((file, text))
        }
        None => None,
    };

    let root_span = doc.span();
    let mut table = doc.into_inner();
    if let Some((file, preset_text)) = &preset {
        // The preset's spans go past the file's, so one offset names both
        // the file and the place (see `Sources`).
        let offset = sources.add(file, preset_text);
        let preset_doc = parse(&sources, preset_text, offset)?;
        let preset_table = shift_table(preset_doc.into_inner(), offset);
        check_preset_keys(&preset_table, &sources)?;
        table = merge(preset_table, table);
    }
    if let Some(name) = &opts.board {
        // `--board` wins over the file's `board`, and is what gets printed.
        let key = Spanned::new(0..0, "board".into());
        table.insert(
            key,
            Spanned::new(0..0, DeValue::String(name.clone().into())),
        );
    }
    let empty = table.is_empty();
    let root = Spanned::new(root_span, table);
    let index = Index::build(&root, &sources);

    // serde reports unknown and mistyped keys as it meets them and missing
    // ones at the end, so a typo is still named before the missing `[job]`.
    let config = AgentConfig::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
        if e.message() == "missing field `job`" {
            missing_job(&sources, empty)
        } else {
            de_error(&e, &index, &sources)
        }
    })?;
    let check = validate::Check {
        index: &index,
        sources: &sources,
    };
    let config = validate::resolve(config);
    let depth = if opts.host_checks {
        crate::actions::CheckDepth::Host
    } else {
        crate::actions::CheckDepth::Config
    };
    let mut warnings = validate::validate(&config, &check, depth)?;
    let token = load_token(&config.auth, &check, &mut warnings)?;
    Ok(ResolvedConfig {
        path: path.to_owned(),
        preset: preset.map(|(file, _)| file),
        config,
        token,
        warnings,
    })
}

/// An empty file, or one without `[job]`: nothing says where media goes.
fn missing_job(sources: &Sources<'_>, empty: bool) -> ConfigError {
    let message = if empty {
        "the config is empty: it needs at least a `[job]` table".to_string()
    } else {
        "no `[job]` table: the agent needs to know where to publish".to_string()
    };
    sources.error(
        ErrorKind::MissingKey,
        message,
        None,
        &KeyPath::parse("job"),
        Some(
            "add `[job]` with `mode = \"static\"` and `publish_url = \"…\"` (a gateway's \
             channels), `mode = \"worker\"` and `worker_url = \"http://HOST:PORT\"` (a \
             worker on the LAN), or `mode = \"byoc\"` with `orchestrator_url` and \
             `capability` (a Livepeer orchestrator); examples/config.toml shows them"
                .into(),
        ),
    )
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        kind: ErrorKind::Read,
        message: format!("cannot read {}: {e}", path.display()),
        file: path.to_owned(),
        position: None,
        key: String::new(),
        hint: None,
    })
}

fn parse<'i>(
    sources: &Sources<'_>,
    text: &'i str,
    offset: usize,
) -> Result<Spanned<DeTable<'i>>, ConfigError> {
    DeTable::parse(text).map_err(|e| {
        let pos = e.span().map(|s| s.start + offset).unwrap_or(offset);
        let message = format!("invalid TOML: {}", e.message().trim_end());
        sources.error(
            ErrorKind::Syntax,
            message,
            Some(pos),
            &KeyPath::default(),
            None,
        )
    })
}

/// The file's `board = "NAME"` and where it is written.
fn board_key(
    doc: &Spanned<DeTable<'_>>,
    sources: &Sources<'_>,
) -> Result<(Option<String>, Option<usize>), ConfigError> {
    let Some(value) = doc.get_ref().get("board") else {
        return Ok((None, None));
    };
    match value.get_ref().as_str() {
        Some(name) => Ok((Some(name.to_owned()), Some(value.span().start))),
        None => Err(sources.error(
            ErrorKind::WrongType,
            format!(
                "wrong type for `board`: expected a string, found {}",
                value.get_ref().type_str()
            ),
            Some(value.span().start),
            &KeyPath::parse("board"),
            Some("write the preset name in quotes, e.g. `board = \"rpi5\"`".into()),
        )),
    }
}

fn find_preset(
    name: &str,
    at: Option<usize>,
    opts: &LoadOptions,
    sources: &Sources<'_>,
) -> Result<PathBuf, ConfigError> {
    let dirs = board_dirs(opts);
    // A name, not a path: `board = "../../etc/x"` must not read arbitrary files.
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid
        && let Some(file) = dirs
            .iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|f| f.is_file())
    {
        return Ok(file);
    }
    let mut known: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    known.sort();
    known.dedup();
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let hint =
        suggest("known boards", name, known.iter().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "no presets found in {}",
                quoted_list(&searched.iter().map(String::as_str).collect::<Vec<_>>())
            )
        });
    let source = if at.is_some() { "" } else { " (from --board)" };
    Err(sources.error(
        ErrorKind::UnknownBoard,
        format!("unknown board `{name}`{source}"),
        at,
        &KeyPath::parse("board"),
        Some(hint),
    ))
}

fn check_preset_keys(preset: &DeTable<'_>, sources: &Sources<'_>) -> Result<(), ConfigError> {
    match preset
        .iter()
        .find(|(k, _)| !PRESET_KEYS.contains(&k.get_ref().as_ref()))
    {
        Some((k, _)) => Err(sources.error(
            ErrorKind::UnknownKey,
            format!("a board preset cannot set `{}`", k.get_ref()),
            Some(k.span().start),
            &KeyPath::parse(k.get_ref()),
            Some(format!("presets may set only {}", quoted_list(PRESET_KEYS))),
        )),
        None => Ok(()),
    }
}

/// Moves every span of a preset by `by` bytes (see [`Sources`]).
fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(k, v)| {
            (
                Spanned::new(moved(k.span(), by), k.into_inner()),
                shift(v, by),
            )
        })
        .collect()
}

fn shift(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = moved(value.span(), by);
    let value = match value.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(mut items) => {
            // In place, so the array keeps its "array of tables" flag.
            for item in items.iter_mut() {
                let old = std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false)));
                *item = shift(old, by);
            }
            DeValue::Array(items)
        }
        other => other,
    };
    Spanned::new(span, value)
}

fn moved(span: std::ops::Range<usize>, by: usize) -> std::ops::Range<usize> {
    span.start + by..span.end + by
}

/// Deep merge, `over` wins: tables merge key by key, anything else
/// (including arrays such as `[[rules]]`) is replaced whole.
fn merge<'i>(mut base: DeTable<'i>, over: DeTable<'i>) -> DeTable<'i> {
    for (key, value) in over {
        let merged = match (base.remove(key.get_ref().as_ref()), value.get_ref()) {
            (Some(old), DeValue::Table(_)) if matches!(old.get_ref(), DeValue::Table(_)) => {
                let span = value.span();
                match (old.into_inner(), value.into_inner()) {
                    (DeValue::Table(b), DeValue::Table(o)) => {
                        Spanned::new(span, DeValue::Table(merge(b, o)))
                    }
                    _ => unreachable!("both matched as tables"),
                }
            }
            _ => value,
        };
        base.insert(key, merged);
    }
    base
}

/// The serde error, reworded with its key path and a hint.
fn de_error(err: &toml::de::Error, index: &Index, sources: &Sources<'_>) -> ConfigError {
    let msg = err.message();
    let span = err.span().unwrap_or(0..0);
    let mut path = index.path_at(&span);
    let mut pos = Some(span.start);
    // serde quotes names in backticks: the first is what was written, the
    // rest (for unknown fields and variants) what is allowed.
    let ticks: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
    let first = ticks.first().copied().unwrap_or_default();
    let place = |p: &KeyPath| {
        if p.is_root() {
            "at the top level".to_owned()
        } else {
            format!("in `{p}`")
        }
    };
    // Inside `[outputs.NAME]` serde only knows the table; find the key by
    // the text it complained about.
    let literal = if msg.starts_with("unknown variant") {
        Some(first)
    } else if let Some(rest) = msg.strip_prefix("invalid type: string \"") {
        rest.split('"').next()
    } else if let Some(rest) = msg.strip_prefix("invalid duration \"") {
        rest.split('"').next()
    } else {
        None
    };
    if let Some(found) = literal.and_then(|l| index.find_literal(&path, l, sources)) {
        pos = index.value_position(&found);
        path = found;
    }
    let (kind, message, key, pos, hint) = if msg.starts_with("unknown field") {
        let table = if path.last_key() == Some(first) {
            path.parent()
        } else {
            path.clone()
        };
        let key = table.key(first);
        let pos = if index.contains(&key) {
            index.position(&key)
        } else {
            pos
        };
        let hint = suggest("allowed keys", first, ticks[1..].iter().copied())
            .or_else(|| Some("this table takes no keys".into()));
        let message = format!("unknown field `{first}` {}", place(&table));
        (ErrorKind::UnknownKey, message, key, pos, hint)
    } else if msg.starts_with("unknown variant") {
        let hint = suggest("expected one of", first, ticks[1..].iter().copied());
        let message = format!("unknown value `{first}` for `{path}`");
        (ErrorKind::InvalidValue, message, path, pos, hint)
    } else if msg.starts_with("missing field") {
        let key = path.key(first);
        let hint = Some(missing_hint(&path, first));
        let message = format!("missing field `{first}` {}", place(&path));
        (ErrorKind::MissingKey, message, key, pos, hint)
    } else if let Some(detail) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = detail.split_once(", expected ").unwrap_or((detail, "?"));
        // Serde's data-model words, in TOML's terms.
        let expected = expected
            .replace("a sequence", "an array")
            .replace("a map", "a table");
        let found = found.replace("sequence", "array").replace("map", "table");
        let hint = type_hint(&found, &expected);
        let message = format!("wrong type for `{path}`: expected {expected}, found {found}");
        (ErrorKind::WrongType, message, path, pos, hint)
    } else if msg.starts_with("invalid duration") {
        let text = msg.split(':').next().unwrap_or(msg);
        let message = format!("{text} for `{path}`");
        (
            ErrorKind::InvalidValue,
            message,
            path,
            pos,
            Some(DURATION_HINT.into()),
        )
    } else if msg.contains("socket address") {
        let message = format!("invalid address for `{path}`");
        let hint = Some("expected IP:PORT, e.g. `127.0.0.1:9464` or `[::1]:9464`".into());
        (ErrorKind::InvalidValue, message, path, pos, hint)
    } else {
        let message = format!("invalid value for `{path}`: {msg}");
        (ErrorKind::InvalidValue, message, path, pos, None)
    };
    sources.error(kind, message, pos, &key, hint)
}

fn missing_hint(table: &KeyPath, field: &str) -> String {
    match (table.to_string().as_str(), field) {
        ("job", "publish_url") => "`mode = \"static\"` needs the trickle URL camera segments are published to, e.g. `publish_url = \"https://gateway.example/ai/trickle/cam\"`".into(),
        ("job", "mode") => "add `mode = \"worker\"`, `mode = \"static\"`, `mode = \"byoc\"` or `mode = \"livepeer\"`".into(),
        ("job", "orchestrator_url") => "`mode = \"byoc\"` needs the orchestrator's address, e.g. `orchestrator_url = \"https://orchestrator.example:8935\"`".into(),
        ("job", "model_id") => "`mode = \"livepeer\"` needs the pipeline to run, e.g. `model_id = \"noop\"`".into(),
        ("job", "capability") => "`mode = \"byoc\"` needs the capability name the container was registered under, e.g. `capability = \"ball-detector\"`".into(),
        ("", _) => format!("add `{field} = …` at the top level"),
        (t, _) => format!("add `{field} = …` under `[{t}]`"),
    }
}

fn type_hint(found: &str, expected: &str) -> Option<String> {
    let numeric = [
        "integer", "float", "u8", "u16", "u32", "u64", "usize", "f64", "i64",
    ];
    if found.starts_with("string") && numeric.iter().any(|n| expected.contains(n)) {
        Some("numbers are written without quotes".into())
    } else if found.starts_with("string") && expected.contains("bool") {
        Some("write `true` or `false` without quotes".into())
    } else if expected.contains("string") {
        Some("text values are written in double quotes".into())
    } else {
        None
    }
}

/// Reads the bearer token from wherever `[auth]` says. Never puts the value
/// in an error message.
/// A warning when every user of the machine can read the token file: a
/// bearer token there is anyone's. Group-readable is fine (the packaged
/// layout is `root:trickle-edge 0640`).
fn world_readable(file: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "auth.token_file {} is readable by every user (mode {:04o}): `chmod o-r {}`",
            file.display(),
            mode & 0o7777,
            file.display()
        )
    })
}

fn load_token(
    auth: &AuthConfig,
    check: &validate::Check<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = &auth.token {
        return Ok(Some(token.clone()));
    }
    if let Some(file) = &auth.token_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            check.error(
                ErrorKind::Read,
                "auth.token_file",
                format!("cannot read token file {}: {e}", file.display()),
                Some("the file must exist and be readable by the agent's user".into()),
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(check.error(
                ErrorKind::Secret,
                "auth.token_file",
                format!("token file {} is empty", file.display()),
                None,
            ));
        }
        if let Some(w) = world_readable(file) {
            warnings.push(w);
        }
        return Ok(Some(Secret(token.to_owned())));
    }
    if let Some(var) = &auth.token_env {
        return match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Ok(Some(Secret(token.trim().to_owned()))),
            _ => Err(check.error(
                ErrorKind::Secret,
                "auth.token_env",
                format!("environment variable `{var}` is not set or empty"),
                Some("set it in the systemd unit (`Environment=` or `EnvironmentFile=`), or use `token_file`".into()),
            )),
        };
    }
    Ok(None)
}
