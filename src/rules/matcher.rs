//! The "does this item match" half of a rule, compiled and validated once.

use regex::Regex;
use serde_json::Value;

use super::config::{ConditionConfig, Labels, MatchConfig, ZoneConfig};
use super::error::RuleErrorKind;
use super::zone::{Detection, Zone};
use crate::data::{Item, Payload};

/// Everything an item must satisfy: its type, one qualifying detection, and
/// every `where` condition. An empty matcher matches every item.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    item_type: Option<String>,
    detection: Option<DetectionFilter>,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
struct DetectionFilter {
    list: String,
    labels: Option<Vec<String>>,
    min_confidence: Option<f64>,
    zone: Option<Zone>,
}

#[derive(Debug, Clone)]
struct Condition {
    path: String,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    OneOf(Vec<Value>),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    Regex(Regex),
}

/// A validation failure with the field it belongs to (relative to the rule).
pub(crate) type FieldError = (String, RuleErrorKind);

impl Matcher {
    pub(crate) fn build(
        m: Option<&MatchConfig>,
        conditions: &[ConditionConfig],
    ) -> Result<Matcher, FieldError> {
        let detection = match m {
            Some(m) => DetectionFilter::build(m)?,
            None => None,
        };
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| Condition::build(c).map_err(|(f, k)| (format!("where[{i}].{f}"), k)))
            .collect::<Result<_, _>>()?;
        Ok(Matcher {
            item_type: m.and_then(|m| m.item_type.clone()),
            detection,
            conditions,
        })
    }

    pub(crate) fn matches(&self, item: &Item) -> bool {
        if let Some(t) = &self.item_type
            && item.item_type() != Some(t.as_str())
        {
            return false;
        }
        let text;
        let root = match &item.payload {
            Payload::Json(v) => Some(v),
            Payload::Text(s) => {
                text = Value::String(s.clone());
                Some(&text)
            }
            Payload::Binary { .. } => None,
        };
        let Some(root) = root else {
            return self.detection.is_none() && self.conditions.is_empty();
        };
        self.detection.as_ref().is_none_or(|d| d.matches(root))
            && self.conditions.iter().all(|c| c.matches(root))
    }
}

impl DetectionFilter {
    fn build(m: &MatchConfig) -> Result<Option<DetectionFilter>, FieldError> {
        let wants_boxes = m.label.is_some() || m.min_confidence.is_some() || m.zone.is_some();
        if m.any.is_none() && !wants_boxes {
            return Ok(None);
        }
        let list = m.any.clone().unwrap_or_else(|| "/boxes".to_owned());
        check_pointer(&list).map_err(|k| ("match.any".to_owned(), k))?;
        if let Some(c) = m.min_confidence
            && !(0.0..=1.0).contains(&c)
        {
            let kind = RuleErrorKind::ConfidenceOutOfRange(c);
            return Err(("match.min_confidence".into(), kind));
        }
        let zone = match &m.zone {
            None => None,
            Some(ZoneConfig::Rect(r)) => {
                if !(r[0] <= r[2] && r[1] <= r[3]) {
                    return Err(("match.zone.rect".into(), RuleErrorKind::BadRect));
                }
                Some(Zone::Rect(*r))
            }
            Some(ZoneConfig::Polygon(p)) => {
                if p.len() < 3 {
                    return Err((
                        "match.zone.polygon".into(),
                        RuleErrorKind::PolygonTooSmall(p.len()),
                    ));
                }
                Some(Zone::Polygon(p.clone()))
            }
        };
        let labels = m.label.clone().map(|l| match l {
            Labels::One(s) => vec![s],
            Labels::Many(v) => v,
        });
        Ok(Some(DetectionFilter {
            list,
            labels,
            min_confidence: m.min_confidence,
            zone,
        }))
    }

    /// True if any element of the list satisfies every filter. A list that
    /// is missing or not an array matches nothing (the decoder has already
    /// warned about a non-list `boxes`).
    fn matches(&self, root: &Value) -> bool {
        let Some(list) = root.pointer(&self.list).and_then(Value::as_array) else {
            return false;
        };
        list.iter().map(Detection::read).any(|d| {
            let label_ok = self
                .labels
                .as_ref()
                .is_none_or(|ls| d.label.is_some_and(|l| ls.iter().any(|x| x == l)));
            let conf_ok = self
                .min_confidence
                .is_none_or(|min| d.confidence.is_some_and(|c| c >= min));
            let zone_ok = self
                .zone
                .as_ref()
                .is_none_or(|z| d.centre().is_some_and(|c| z.contains(c)));
            label_ok && conf_ok && zone_ok
        })
    }
}

impl Condition {
    fn build(c: &ConditionConfig) -> Result<Condition, FieldError> {
        check_pointer(&c.path).map_err(|k| ("path".to_owned(), k))?;
        let mut ops = Vec::new();
        if let Some(v) = &c.eq {
            ops.push(Op::Eq(v.clone()));
        }
        if let Some(v) = &c.one_of {
            ops.push(Op::OneOf(v.clone()));
        }
        let bounds = [
            (c.gt, Op::Gt as fn(f64) -> Op),
            (c.ge, Op::Ge),
            (c.lt, Op::Lt),
            (c.le, Op::Le),
        ];
        ops.extend(bounds.into_iter().filter_map(|(v, op)| v.map(op)));
        if let Some(r) = &c.regex {
            let re = Regex::new(r)
                .map_err(|e| ("regex".to_owned(), RuleErrorKind::BadRegex(e.to_string())))?;
            ops.push(Op::Regex(re));
        }
        if ops.is_empty() {
            return Err(("path".into(), RuleErrorKind::NoOperator));
        }
        Ok(Condition {
            path: c.path.clone(),
            ops,
        })
    }

    /// A missing path fails every operator.
    fn matches(&self, root: &Value) -> bool {
        let Some(v) = root.pointer(&self.path) else {
            return false;
        };
        let num = v.as_f64();
        self.ops.iter().all(|op| match op {
            Op::Eq(want) => json_eq(v, want),
            Op::OneOf(wants) => wants.iter().any(|w| json_eq(v, w)),
            Op::Gt(x) => num.is_some_and(|n| n > *x),
            Op::Ge(x) => num.is_some_and(|n| n >= *x),
            Op::Lt(x) => num.is_some_and(|n| n < *x),
            Op::Le(x) => num.is_some_and(|n| n <= *x),
            Op::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        })
    }
}

/// Equality where numbers compare by value, so a config's `1` equals a
/// payload's `1.0` (TOML integers and JSON floats meet here).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is only `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), RuleErrorKind> {
    let bad_tilde = p
        .split('~')
        .skip(1)
        .any(|after| !(after.starts_with('0') || after.starts_with('1')));
    if (p.is_empty() || p.starts_with('/')) && !bad_tilde {
        Ok(())
    } else {
        Err(RuleErrorKind::BadPointer(p.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/a/~0b/~1c").is_ok());
        assert!(check_pointer("a/b").is_err());
        assert!(check_pointer("/a~2").is_err());
        assert!(check_pointer("/a~").is_err());
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&serde_json::json!(1), &serde_json::json!(1.0)));
        assert!(!json_eq(&serde_json::json!("1"), &serde_json::json!(1)));
    }
}
