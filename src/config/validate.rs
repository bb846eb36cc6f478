//! Checks serde cannot express: values that parse but cannot work, and
//! references between sections. Each error points at the key at fault.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ConfigError, DURATION_HINT, ErrorKind, suggest};
use super::schema::{AgentConfig, JobMode};
use super::source::{Index, KeyPath, Sources};
use crate::actions::{ActionError, CheckDepth, OutputConfig};
use crate::duration::DurationError;
use crate::rules::{RuleErrorKind, RuleSet};

/// What an error needs to find its place in the text.
pub(crate) struct Check<'a> {
    pub index: &'a Index,
    pub sources: &'a Sources<'a>,
}

impl Check<'_> {
    pub fn error(
        &self,
        kind: ErrorKind,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        let path = KeyPath::parse(key);
        let pos = self.index.position(&path);
        self.sources.error(kind, message, pos, &path, hint)
    }

    fn invalid(&self, key: &str, message: String, hint: Option<String>) -> ConfigError {
        self.error(ErrorKind::InvalidValue, key, message, hint)
    }
}

/// Applies board-wide defaults to the sections they fill.
pub(crate) fn resolve(mut config: AgentConfig) -> AgentConfig {
    if let Some(chip) = &config.gpio.chip {
        for output in config.outputs.values_mut() {
            if let OutputConfig::Gpio(g) = output
                && g.chip.is_none()
            {
                g.chip = Some(chip.clone());
            }
        }
    }
    config
}

/// Returns warnings (things that work but are probably not meant).
pub(crate) fn validate(
    c: &AgentConfig,
    check: &Check<'_>,
    depth: CheckDepth,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    if let Err(e) = c.camera.validate() {
        let key = if e.to_string().contains("camera source") {
            "camera.source"
        } else {
            "camera"
        };
        return Err(check.invalid(key, e.to_string(), None));
    }
    if let Err(e) = c.encoder.validate() {
        let key = if e.to_string().contains("bitrate") {
            "encoder.bitrate_kbps"
        } else {
            "encoder.gop_seconds"
        };
        return Err(check.invalid(key, e.to_string(), None));
    }
    match &c.job {
        JobMode::Static(s) => {
            let urls = [
                ("publish_url", Some(&s.publish_url)),
                ("subscribe_url", s.subscribe_url.as_ref()),
                ("control_url", s.control_url.as_ref()),
                ("events_url", s.events_url.as_ref()),
                ("data_url", s.data_url.as_ref()),
            ];
            for (name, url) in urls {
                if let Some(url) = url {
                    check_url(check, &format!("job.{name}"), url)?;
                }
            }
        }
        JobMode::Worker(w) => {
            check_url(check, "job.worker_url", &w.worker_url)?;
            let p = w.api_prefix.as_str();
            let path_ok = p.starts_with('/')
                && !p.contains("//")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c));
            if p != "auto" && !path_ok {
                return Err(check.invalid(
                    "job.api_prefix",
                    format!("invalid API prefix {p:?} for `job.api_prefix`"),
                    Some(
                        "use \"auto\", \"/\" (pytrickle's default routes) or a path such as \"/api\""
                            .into(),
                    ),
                ));
            }
            let ok = |ch: char| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_';
            if w.channel_prefix.is_empty() || !w.channel_prefix.chars().all(ok) {
                return Err(check.invalid(
                    "job.channel_prefix",
                    format!("invalid channel prefix {:?}", w.channel_prefix),
                    Some("use letters, digits, `-` and `_` (it becomes part of URLs)".into()),
                ));
            }
        }
        JobMode::Byoc(b) => {
            check_url(check, "job.orchestrator_url", &b.orchestrator_url)?;
            let ok = |ch: char| ch.is_ascii_graphic() && ch != ',';
            if b.capability.is_empty() || !b.capability.chars().all(ok) {
                return Err(check.invalid(
                    "job.capability",
                    format!("invalid capability name {:?}", b.capability),
                    Some(
                        "the name the worker registered with the orchestrator: no spaces or commas"
                            .into(),
                    ),
                ));
            }
            if b.timeout_seconds == 0 {
                return Err(check.invalid(
                    "job.timeout_seconds",
                    "`job.timeout_seconds` must be at least 1 (orchestrators refuse 0)".into(),
                    None,
                ));
            }
            check_signer(check, &b.signer(), &mut warnings)?;
            if let Some(u) = &b.grpc_url {
                check_url(check, "job.grpc_url", u)?;
            }
            if b.payment_interval.is_zero() {
                return Err(check.invalid(
                    "job.payment_interval",
                    "`payment_interval` is zero".into(),
                    Some("Livepeer's gateway pays every 50s (the default); the orchestrator wants 60 s of balance ahead".into()),
                ));
            }
        }
        JobMode::Livepeer(l) => {
            check_livepeer(check, l)?;
            check_signer(check, &l.signer(), &mut warnings)?;
        }
    }
    check_tls(c, check, &mut warnings)?;
    let auth = [
        ("auth.token", c.auth.token.is_some()),
        ("auth.token_file", c.auth.token_file.is_some()),
        ("auth.token_env", c.auth.token_env.is_some()),
    ];
    if let [_, (second, _), ..] = auth.iter().filter(|(_, set)| *set).collect::<Vec<_>>()[..] {
        return Err(check.invalid(
            second,
            "`[auth]` sets more than one token source".into(),
            Some("keep one of `token`, `token_file`, `token_env`".into()),
        ));
    }
    let s = &c.supervisor;
    let has_token = auth.iter().any(|(_, set)| *set);
    if !s.listen.ip().is_loopback() && !s.allow_remote {
        return Err(check.invalid(
            "supervisor.listen",
            format!(
                "`supervisor.listen` = {} is not a loopback address: the status page shows the camera to whoever connects",
                s.listen
            ),
            Some("keep 127.0.0.1 and use `ssh -L 9464:127.0.0.1:9464 board`, or set `supervisor.allow_remote = true` with a token in `[auth]`".into()),
        ));
    }
    if (s.allow_remote || !s.trust_loopback) && !has_token {
        let key = if s.allow_remote {
            "supervisor.allow_remote"
        } else {
            "supervisor.trust_loopback"
        };
        return Err(check.invalid(
            key,
            format!("`{key}` needs a token in `[auth]`: requests without it are refused"),
            Some("set `[auth] token_file = \"/etc/trickle-edge/token\"`".into()),
        ));
    }
    for (key, d) in [
        ("supervisor.watchdog_interval", s.watchdog_interval),
        ("supervisor.pipeline_dead_after", s.pipeline_dead_after),
        ("supervisor.keepalive_interval", s.keepalive_interval),
    ] {
        if d.is_zero() {
            return Err(check.invalid(
                key,
                format!("`{key}` must be longer than 0"),
                Some(DURATION_HINT.into()),
            ));
        }
    }
    if c.queue.gops == 0 {
        return Err(check.invalid(
            "queue.gops",
            "`queue.gops` must be at least 1".into(),
            Some("the queue must hold the GOP being sent".into()),
        ));
    }
    for (name, output) in &c.outputs {
        if let OutputConfig::Gpio(g) = output
            && g.backend == crate::actions::GpioBackend::Gpiocdev
            && g.line.is_none()
        {
            return Err(check.error(
                ErrorKind::MissingKey,
                &format!("outputs.{name}"),
                format!("missing field `line` in `outputs.{name}`"),
                Some(
                    "a GPIO output needs `line = 17` (offset) or `line = \"GPIO17\"` (name)".into(),
                ),
            ));
        }
    }
    crate::actions::check_outputs(&c.outputs, depth).map_err(|e| output_error(check, &e))?;
    for (name, output) in &c.outputs {
        warnings.extend(crate::actions::output_warnings(name, output));
    }
    check_rules(c, check, &mut warnings)?;
    Ok(warnings)
}

/// An output's refusal, placed at `outputs.NAME.FIELD` (or the output's
/// table when the field is a default).
fn output_error(check: &Check<'_>, e: &ActionError) -> ConfigError {
    let (output, field) = match e {
        ActionError::Invalid { output, field, .. }
        | ActionError::Io { output, field, .. }
        | ActionError::Tls { output, field, .. }
        | ActionError::Device { output, field, .. } => (output, *field),
    };
    let hint = match (e, field) {
        (ActionError::Device { source, .. }, _) => {
            // "did you mean" when one name is close; the message itself
            // already lists every name there is.
            let close = source
                .candidates()
                .and_then(|(got, names)| suggest("names", got, names))
                .filter(|s| s.starts_with("did you mean"));
            let probe = "`trickle-edge probe` lists this machine's GPIO chips, their labels and \
                         line names; `backend = \"simulated\"` needs none";
            Some(match close {
                Some(close) => format!("{close} {probe}"),
                None => probe.into(),
            })
        }
        (ActionError::Tls { .. }, "ca_file") => Some(
            "a PEM file holding the certificate of the CA that signed the server's certificate"
                .into(),
        ),
        (ActionError::Tls { .. }, "client_cert" | "client_key") => Some(
            "`client_cert` and `client_key` are PEM files: the certificate the broker trusts and its private key"
                .into(),
        ),
        (ActionError::Invalid { .. }, "argv") if e.to_string().contains("PATH") => Some(
            "give the program's absolute path; the service's PATH may differ from your shell's"
                .into(),
        ),
        _ => None,
    };
    let message = crate::error_chain::error_chain(e);
    check.invalid(&format!("outputs.{output}.{field}"), message, hint)
}

/// An `http(s)://host[:port]/…` URL with a usable port.
/// `mode = "livepeer"`: a model, somewhere to find orchestrators, a
/// certificate policy that can work.
fn check_livepeer(check: &Check<'_>, l: &crate::config::LivepeerJob) -> Result<(), ConfigError> {
    if l.model_id.trim().is_empty() {
        return Err(check.invalid(
            "job.model_id",
            "`job.model_id` is empty".into(),
            Some("the pipeline to run, e.g. `model_id = \"noop\"` (orchestrators refuse a start without one)".into()),
        ));
    }
    for url in &l.orchestrators {
        check_url(check, "job.orchestrators", url)?;
    }
    if let Some(u) = &l.discovery_url {
        check_url(check, "job.discovery_url", u)?;
    }
    let sources = !l.orchestrators.is_empty()
        || l.discovery_url.is_some()
        || l.signer_url.is_some()
        || l.token_file.is_some();
    if !sources {
        return Err(check.invalid(
            "job.model_id",
            "`mode = \"livepeer\"` has nowhere to find orchestrators".into(),
            Some("set `orchestrators = [\"https://host:8935\"]`, `discovery_url`, `signer_url` or `token_file`".into()),
        ));
    }
    if l.max_segments_behind == 0 {
        return Err(check.invalid(
            "job.max_segments_behind",
            "`max_segments_behind = 0` would fail over on every segment".into(),
            Some("Livepeer's gateway uses 3".into()),
        ));
    }
    for (key, d) in [
        ("job.output_silent_after", l.output_silent_after),
        ("job.swap_window", l.swap_window),
        ("job.swap_backoff", l.swap_backoff),
    ] {
        if d.is_zero() {
            return Err(check.invalid(
                key,
                format!("`{}` is zero", key.trim_start_matches("job.")),
                Some("defaults: output_silent_after 30s, swap_window 3m, swap_backoff 10s".into()),
            ));
        }
    }
    match l.orchestrator_tls.as_str() {
        "tofu" | "insecure" => {}
        "pin" if l.orchestrator_pins.is_empty() => {
            return Err(check.invalid(
                "job.orchestrator_tls",
                "`orchestrator_tls = \"pin\"` with no `orchestrator_pins`".into(),
                Some(
                    "add `[job.orchestrator_pins]` with `\"host:8935\" = \"<sha256 hex>\"`".into(),
                ),
            ));
        }
        "pin" => {}
        other => {
            return Err(check.invalid(
                "job.orchestrator_tls",
                format!("unknown `orchestrator_tls` {other:?}"),
                Some("use \"tofu\", \"pin\" or \"insecure\"".into()),
            ));
        }
    }
    for (target, pin) in &l.orchestrator_pins {
        if let Err(e) = crate::trickle::tls::parse_pin(pin) {
            return Err(check.invalid(
                "job.orchestrator_pins",
                format!("pin for {target:?}: {e}"),
                None,
            ));
        }
    }
    Ok(())
}

/// The remote signer's settings, as both Livepeer modes take them: a usable
/// URL, and a headers file every user can read is warned about (it holds
/// the signer's bearer token).
fn check_signer(
    check: &Check<'_>,
    s: &crate::config::SignerSettings<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Some(u) = s.url {
        check_url(check, "job.signer_url", u)?;
    }
    if let Some(file) = s.headers_file {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file)
            && meta.permissions().mode() & 0o004 != 0
        {
            warnings.push(format!(
                "job.signer_headers_file {} is readable by every user (mode {:04o}): `chmod o-r {}`",
                file.display(),
                meta.permissions().mode() & 0o7777,
                file.display()
            ));
        }
    }
    Ok(())
}

fn check_url(check: &Check<'_>, key: &str, url: &str) -> Result<(), ConfigError> {
    let hint = || Some("expected `http://HOST[:PORT]/PATH` or `https://…`".into());
    let bad = |why: &str| {
        check.invalid(
            key,
            format!("invalid URL {url:?} for `{key}`: {why}"),
            hint(),
        )
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("no host"));
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    // `Uri` drops a port that is not a u16; the text still shows it.
    let after_host = authority.as_str().rsplit(']').next().unwrap_or_default();
    if after_host.contains(':') && uri.port_u16().is_none_or(|p| p == 0) {
        return Err(bad("the port must be 1 to 65535"));
    }
    Ok(())
}

fn check_tls(
    c: &AgentConfig,
    check: &Check<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let t = &c.tls;
    let set: Vec<&str> = [
        ("tls.ca_file", t.ca_file.is_some()),
        ("tls.pin_sha256", t.pin_sha256.is_some()),
        ("tls.insecure", t.insecure),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if let [first, second, ..] = set[..] {
        return Err(check.invalid(
            second,
            format!("`{first}` and `{second}` contradict each other"),
            Some("choose one way to trust the server: a CA file, a pinned certificate, or (lab only) insecure".into()),
        ));
    }
    if let Some(pin) = &t.pin_sha256 {
        let hex: String = pin.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(check.invalid(
                "tls.pin_sha256",
                format!("invalid certificate pin {pin:?}"),
                Some("64 hex digits (colons allowed): `openssl x509 -in cert.pem -outform DER | sha256sum`".into()),
            ));
        }
    }
    if t.insecure {
        warnings.push("tls.insecure = true: server certificates are not verified".into());
    }
    Ok(())
}

fn check_rules(
    c: &AgentConfig,
    check: &Check<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Err(e) = RuleSet::new(c.rules.clone()) {
        // Duplicates point at the later rule, anything else at the first.
        let mut same_name = c.rules.iter().enumerate().filter(|(_, r)| r.name == e.rule);
        let found = if e.kind == RuleErrorKind::DuplicateName {
            same_name.nth(1)
        } else {
            same_name.next()
        };
        let i = found.map_or(0, |(i, _)| i);
        let key = format!("rules[{i}].{}", e.field);
        let hint = matches!(
            e.kind,
            RuleErrorKind::BadDuration(_) | RuleErrorKind::BadDebounce(_)
        )
        .then(|| DURATION_HINT.to_owned());
        let message = match &e.kind {
            RuleErrorKind::BadDuration(DurationError::Invalid(text)) => {
                format!("invalid duration {text:?} for `{key}`")
            }
            kind => format!("{kind} in `{key}`"),
        };
        return Err(check.invalid(&key, message, hint));
    }
    let names: Vec<&str> = c.outputs.keys().map(String::as_str).collect();
    let mut used = BTreeSet::new();
    for (i, rule) in c.rules.iter().enumerate() {
        for (j, action) in rule.then.iter().enumerate() {
            let key = format!("rules[{i}].then[{j}].output");
            let Some(output) = c.outputs.get(&action.output) else {
                let hint = suggest("defined outputs", &action.output, names.iter().copied())
                    .unwrap_or_else(|| {
                        format!(
                            "no outputs are defined: add an `[outputs.{}]` table",
                            action.output
                        )
                    });
                return Err(check.error(
                    ErrorKind::UnknownOutput,
                    &key,
                    format!(
                        "rule `{}` uses unknown output `{}`",
                        rule.name, action.output
                    ),
                    Some(hint),
                ));
            };
            used.insert(action.output.as_str());
            if matches!(output, OutputConfig::Gpio(_)) && action.action.is_none() {
                return Err(check.invalid(
                    &format!("rules[{i}].then[{j}]"),
                    format!("rule `{}` must say what to do with GPIO output `{}`", rule.name, action.output),
                    Some("add `action = \"pulse\"` (with `ms`), `\"set\"`, `\"clear\"` or `\"hold\"`".into()),
                ));
            }
        }
    }
    for name in names.iter().filter(|n| !used.contains(*n)) {
        warnings.push(format!("output `{name}` is not used by any rule"));
    }
    check_home_assistant_ids(c, check)
}

/// Home Assistant discovery makes an entity of every rule, its id the rule's
/// name with anything but letters, digits, `_` and `-` made `_`. Two names
/// that clean alike ("door open", "door_open") would be one entity whose
/// state both rules write: refused here, naming both rules.
fn check_home_assistant_ids(c: &AgentConfig, check: &Check<'_>) -> Result<(), ConfigError> {
    let Some(output) = c.outputs.iter().find_map(|(name, o)| match o {
        OutputConfig::Mqtt(m) if m.homeassistant => Some(name),
        _ => None,
    }) else {
        return Ok(());
    };
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (i, rule) in c.rules.iter().enumerate() {
        let id = crate::actions::home_assistant_id(&rule.name);
        if let Some(first) = seen.insert(id.clone(), &rule.name) {
            return Err(check.invalid(
                &format!("rules[{i}].name"),
                format!(
                    "rules `{first}` and `{}` would be one Home Assistant entity `{id}` (output `{output}` has `homeassistant = true`)",
                    rule.name
                ),
                Some(
                    "rename one: entity ids keep letters, digits, `_` and `-` and make anything else `_`"
                        .into(),
                ),
            ));
        }
    }
    Ok(())
}
