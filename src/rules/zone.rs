//! Detection boxes and zones.
//!
//! A box is *in* a zone when its centre is inside the zone (edges count as
//! inside). The centre is used rather than overlap because it is what a
//! person would point at ("the person is at the door"), it is stable as a
//! box grows or shrinks, and it needs no area maths.

use serde_json::Value;

/// A zone, validated: rect corners ordered, polygon with >= 3 points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Zone {
    Rect([f64; 4]),
    Polygon(Vec<[f64; 2]>),
}

impl Zone {
    pub(crate) fn contains(&self, [x, y]: [f64; 2]) -> bool {
        match self {
            Zone::Rect([x0, y0, x1, y1]) => (*x0..=*x1).contains(&x) && (*y0..=*y1).contains(&y),
            Zone::Polygon(points) => point_in_polygon(points, x, y),
        }
    }
}

/// Even-odd ray casting: count crossings of a ray going right from (x, y).
fn point_in_polygon(points: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = points.len() - 1;
    for (i, &[xi, yi]) in points.iter().enumerate() {
        let [xj, yj] = points[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// One detection, read leniently from the shapes detectors commonly emit:
/// `label`; `confidence` or `score`; and either `box`/`bbox` as
/// `[x0, y0, x1, y1]` or `x, y, w, h` with `x, y` the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Detection<'a> {
    pub label: Option<&'a str>,
    pub confidence: Option<f64>,
    /// `[x0, y0, x1, y1]`.
    pub rect: Option<[f64; 4]>,
}

impl<'a> Detection<'a> {
    pub(crate) fn read(v: &'a Value) -> Detection<'a> {
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        let corners = v.get("box").or_else(|| v.get("bbox")).and_then(|b| {
            let b = b.as_array().filter(|b| b.len() == 4)?;
            let mut out = [0.0; 4];
            for (o, n) in out.iter_mut().zip(b) {
                *o = n.as_f64()?;
            }
            Some(out)
        });
        let xywh = || {
            Some([
                num("x")?,
                num("y")?,
                num("x")? + num("w")?,
                num("y")? + num("h")?,
            ])
        };
        Detection {
            label: v.get("label").and_then(Value::as_str),
            confidence: num("confidence").or_else(|| num("score")),
            rect: corners.or_else(xywh),
        }
    }

    pub(crate) fn centre(&self) -> Option<[f64; 2]> {
        self.rect
            .map(|[x0, y0, x1, y1]| [(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_common_box_shapes() {
        let a =
            json!({"label": "person", "confidence": 0.9, "x": 0.1, "y": 0.2, "w": 0.2, "h": 0.4});
        let d = Detection::read(&a);
        assert_eq!((d.label, d.confidence), (Some("person"), Some(0.9)));
        let c = d.centre().unwrap();
        assert!((c[0] - 0.2).abs() < 1e-9 && (c[1] - 0.4).abs() < 1e-9);
        let b = json!({"label": "car", "score": 0.5, "bbox": [10, 20, 30, 40]});
        let d = Detection::read(&b);
        assert_eq!((d.confidence, d.centre()), (Some(0.5), Some([20.0, 30.0])));
        let short = json!({"box": [1, 2, 3]});
        let d = Detection::read(&short);
        assert_eq!(d.rect, None);
    }

    #[test]
    fn polygon_contains() {
        let tri = Zone::Polygon(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(tri.contains([0.2, 0.2]));
        assert!(!tri.contains([0.8, 0.8]));
        let rect = Zone::Rect([0.0, 0.0, 0.5, 0.5]);
        assert!(rect.contains([0.5, 0.5]) && !rect.contains([0.51, 0.1]));
    }
}
