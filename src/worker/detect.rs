//! The detector: the brightest blob in a luminance frame.
//!
//! This is deliberately the simplest detector that gives a real, checkable
//! answer on GStreamer's `videotestsrc pattern=ball` (a white disc moving on
//! black): threshold the luminance, label the 4-connected bright regions and
//! report the *largest* one. Keeping only the largest region is what makes a
//! burnt-in clock (`timeoverlay`, `clockoverlay`) harmless: its glyphs are
//! thin strokes, each a small region of its own, far smaller than the ball.
//! A real worker replaces this file with a model; everything around it (decode,
//! batching, channels) stays the same.

use serde_json::{Map, Value, json};

/// One decoded analysis frame: 8-bit luminance, row-major.
#[derive(Debug, Clone)]
pub struct LumaFrame {
    pub width: usize,
    pub height: usize,
    /// Bytes per row (GStreamer pads rows to 4 bytes).
    pub stride: usize,
    /// Presentation time in nanoseconds, as the decoder saw it.
    pub pts_ns: Option<u64>,
    pub data: Vec<u8>,
}

impl LumaFrame {
    fn at(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.stride + x]
    }
}

/// Detector settings, read from the stream's `params` on every frame so that
/// an update (HTTP or control channel) applies to the very next frame.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorParams {
    /// Luminance a pixel must reach to count as bright, 0..=255 (`threshold`;
    /// a value in 0..=1 is read as a fraction of full scale).
    pub threshold: u8,
    /// Label put on detections (`label`).
    pub label: String,
    /// Smallest region, in analysis pixels, worth reporting (`min_area`).
    pub min_area: usize,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            threshold: 160,
            label: "ball".into(),
            min_area: 6,
        }
    }
}

impl DetectorParams {
    /// Reads the known keys from a params object; unknown or ill-typed keys
    /// keep their defaults (params are free-form and shared with the pipeline).
    pub fn from_params(params: &Map<String, Value>) -> Self {
        let mut p = Self::default();
        if let Some(t) = params.get("threshold").and_then(Value::as_f64) {
            let t = if t <= 1.0 { t * 255.0 } else { t };
            p.threshold = t.clamp(0.0, 255.0).round() as u8;
        }
        if let Some(l) = params.get("label").and_then(Value::as_str) {
            p.label = l.to_string();
        }
        if let Some(a) = params.get("min_area").and_then(Value::as_u64) {
            p.min_area = a.max(1) as usize;
        }
        p
    }
}

/// A bright region found in one frame, in normalised coordinates (0..1).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub label: String,
    /// How much of its box the region fills, relative to a disc (a disc
    /// scores 1.0, a thin diagonal stroke much less).
    pub confidence: f64,
    /// `[x0, y0, x1, y1]`, top-left origin.
    pub rect: [f64; 4],
    pub pts_ns: Option<u64>,
}

impl Detection {
    /// The JSON item written to the data channel. It carries the box twice:
    /// flat (`label`, `confidence`, `box`) for people reading the stream, and
    /// as a one-element `boxes` list, the shape the agent's rules match by
    /// default (`match.any = "/boxes"`). `frame_pts` is the frame's stream
    /// time in 90 kHz MPEG-TS ticks; `timestamp` is wall-clock milliseconds
    /// since the epoch (`timestamp_ms`), because the agent orders items by
    /// it and stream time starts again at zero whenever a stream restarts.
    pub fn to_json(&self, timestamp_ms: u64) -> Value {
        let r = self.rect.map(round4);
        json!({
            "type": "detection",
            "timestamp": timestamp_ms,
            "frame_pts": self.pts_ns.map(|ns| ns * 9 / 100_000),
            "label": self.label,
            "confidence": self.confidence,
            "box": r,
            "boxes": [{"label": self.label, "confidence": self.confidence, "box": r}],
        })
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Finds the largest bright region of `frame`, if it is at least `min_area`.
pub fn detect(frame: &LumaFrame, params: &DetectorParams) -> Option<Detection> {
    let (w, h) = (frame.width, frame.height);
    if w == 0 || h == 0 || frame.stride < w || frame.data.len() < frame.stride * (h - 1) + w {
        return None;
    }
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    // (area, x0, y0, x1, y1) of the best region so far.
    let mut best: Option<(usize, usize, usize, usize, usize)> = None;
    for start in 0..w * h {
        let (sx, sy) = (start % w, start / w);
        if seen[start] || frame.at(sx, sy) < params.threshold {
            continue;
        }
        // Flood fill with an explicit stack: no recursion depth to worry about.
        seen[start] = true;
        stack.push((sx, sy));
        let (mut area, mut x0, mut y0, mut x1, mut y1) = (0, sx, sy, sx, sy);
        while let Some((x, y)) = stack.pop() {
            area += 1;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            let neighbours = [
                (x.wrapping_sub(1), y),
                (x + 1, y),
                (x, y.wrapping_sub(1)),
                (x, y + 1),
            ];
            for (nx, ny) in neighbours {
                if nx < w && ny < h && !seen[ny * w + nx] && frame.at(nx, ny) >= params.threshold {
                    seen[ny * w + nx] = true;
                    stack.push((nx, ny));
                }
            }
        }
        if best.is_none_or(|b| area > b.0) {
            best = Some((area, x0, y0, x1, y1));
        }
    }
    let (area, x0, y0, x1, y1) = best.filter(|b| b.0 >= params.min_area)?;
    let box_area = ((x1 - x0 + 1) * (y1 - y0 + 1)) as f64;
    let fill = area as f64 / box_area / std::f64::consts::FRAC_PI_4;
    Some(Detection {
        label: params.label.clone(),
        confidence: (fill.min(1.0) * 100.0).round() / 100.0,
        rect: [
            x0 as f64 / w as f64,
            y0 as f64 / h as f64,
            (x1 + 1) as f64 / w as f64,
            (y1 + 1) as f64 / h as f64,
        ],
        pts_ns: frame.pts_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, bright: impl Fn(usize, usize) -> bool) -> LumaFrame {
        let stride = w.div_ceil(4) * 4;
        let mut data = vec![16u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                if bright(x, y) {
                    data[y * stride + x] = 235;
                }
            }
        }
        LumaFrame {
            width: w,
            height: h,
            stride,
            pts_ns: Some(1_000_000_000),
            data,
        }
    }

    #[test]
    fn black_frame_has_no_detection() {
        let f = frame(160, 120, |_, _| false);
        assert_eq!(detect(&f, &DetectorParams::default()), None);
    }

    #[test]
    fn disc_is_found_where_it_is() {
        // A disc of radius 10 centred at (50, 70) in a 160x120 frame.
        let f = frame(162, 120, |x, y| {
            let (dx, dy) = (x as f64 - 50.0, y as f64 - 70.0);
            dx * dx + dy * dy <= 100.0
        });
        let d = detect(&f, &DetectorParams::default()).expect("disc found");
        let [x0, y0, x1, y1] = d.rect;
        assert!(
            (x0 * 162.0 - 40.0).abs() < 1.0 && (x1 * 162.0 - 61.0).abs() < 1.0,
            "{:?}",
            d.rect
        );
        assert!(
            (y0 * 120.0 - 60.0).abs() < 1.0 && (y1 * 120.0 - 81.0).abs() < 1.0,
            "{:?}",
            d.rect
        );
        assert!(
            d.confidence > 0.9,
            "a disc fills its box like a disc: {}",
            d.confidence
        );
        assert_eq!(d.label, "ball");
    }

    #[test]
    fn clock_like_strokes_lose_to_the_ball() {
        // Thin text-like strokes in the top-left corner plus a disc elsewhere.
        let f = frame(160, 120, |x, y| {
            let stroke = y < 12 && x < 60 && x % 4 == 0;
            let (dx, dy) = (x as f64 - 120.0, y as f64 - 80.0);
            stroke || dx * dx + dy * dy <= 64.0
        });
        let d = detect(&f, &DetectorParams::default()).unwrap();
        assert!(d.rect[0] > 0.6 && d.rect[1] > 0.5, "{:?}", d.rect);
    }

    #[test]
    fn params_are_read_leniently() {
        let p: Map<String, Value> = serde_json::from_value(
            json!({"threshold": 0.5, "label": "orb", "min_area": 0, "x": 1}),
        )
        .unwrap();
        let d = DetectorParams::from_params(&p);
        assert_eq!((d.threshold, d.label.as_str(), d.min_area), (128, "orb", 1));
        let bad: Map<String, Value> = serde_json::from_value(json!({"threshold": "hi"})).unwrap();
        assert_eq!(DetectorParams::from_params(&bad), DetectorParams::default());
    }

    #[test]
    fn threshold_above_the_ball_hides_it() {
        let f = frame(160, 120, |x, y| {
            (60..80).contains(&x) && (40..60).contains(&y)
        });
        let p = DetectorParams {
            threshold: 240,
            ..Default::default()
        };
        assert_eq!(detect(&f, &p), None);
    }

    #[test]
    fn json_shape_matches_the_agent_rules() {
        let f = frame(160, 120, |x, y| {
            (60..80).contains(&x) && (40..60).contains(&y)
        });
        let v = detect(&f, &DetectorParams::default())
            .unwrap()
            .to_json(1_764_000_000_000);
        assert_eq!(v["type"], "detection");
        assert_eq!(v["timestamp"], 1_764_000_000_000u64);
        assert_eq!(v["frame_pts"], 90_000);
        assert_eq!(v["box"], json!([0.375, 0.3333, 0.5, 0.5]));
        assert_eq!(v["boxes"][0]["label"], "ball");
    }
}
