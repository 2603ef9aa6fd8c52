//! Charts drawn on the server as inline SVG: no script, no library, nothing fetched.
//! The outer SVG is laid out in CSS pixels (labels keep their size at any width); the
//! data sits in a nested SVG stretched to the full width with non-scaling strokes.

use std::fmt::Write;

/// What a chart draws.
pub(super) enum Layer {
    /// The blue area (requests).
    Area(Vec<f64>),
    /// A line; `class` picks its colour (`p95`, `p50`, `budget`).
    Line(Vec<f64>, &'static str),
    /// A dashed line (even burn).
    Dashed(Vec<f64>),
    /// Red bars (errors).
    Bars(Vec<f64>),
}

/// A horizontal threshold: a dashed line and its label; `band` tints what lies beyond.
pub(super) struct Threshold {
    pub(super) value: f64,
    pub(super) label: String,
    /// `target` (amber) or `alert` (red) or `low` (amber band below).
    pub(super) class: &'static str,
    /// Tint above (`Some(true)`) or below (`Some(false)`) the line.
    pub(super) band: Option<bool>,
}

/// An event on the time axis (deployment, flag change, incident, 429 burst).
#[derive(Clone)]
pub(super) struct Marker {
    /// Bucket index.
    pub(super) at: usize,
    /// A few words on the chart.
    pub(super) label: String,
    /// The whole story, as the marker's tooltip.
    pub(super) title: String,
    /// Its colour class: `deployment`, `flag`, `incident`, `maintenance`, `rate_limit`.
    pub(super) kind: &'static str,
}

pub(super) struct Chart {
    /// The accessible name: what the chart shows, in words.
    pub(super) label: String,
    pub(super) height: u32,
    pub(super) y_max: f64,
    pub(super) y_ticks: Vec<(f64, String)>,
    /// Fractions of the width (0..1) and their labels.
    pub(super) x_ticks: Vec<(f64, String)>,
    pub(super) layers: Vec<Layer>,
    pub(super) thresholds: Vec<Threshold>,
    pub(super) markers: Vec<Marker>,
    /// Label for the latest value of the first layer.
    pub(super) latest: Option<String>,
}

/// A round maximum and ticks for values up to `max` (at least `floor`).
pub(super) fn axis(max: f64, floor: f64, fmt: impl Fn(f64) -> String) -> (f64, Vec<(f64, String)>) {
    let max = if max.is_finite() {
        max.max(floor)
    } else {
        floor
    };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    let ticks = (0..=n)
        .map(|i| i as f64 * step)
        .map(|v| (v, fmt(v)))
        .collect();
    (top, ticks)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TOP: f64 = 10.0;
const BOTTOM: f64 = 20.0;

impl Chart {
    fn n(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Area(v) | Layer::Line(v, _) | Layer::Dashed(v) | Layer::Bars(v) => v.len(),
            })
            .max()
            .unwrap_or(0)
            .max(1)
    }

    fn plot_h(&self) -> f64 {
        f64::from(self.height) - TOP - BOTTOM
    }

    /// Pixel row of a value.
    fn y(&self, v: f64) -> f64 {
        let f = if self.y_max > 0.0 {
            (v / self.y_max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        TOP + self.plot_h() * (1.0 - f)
    }

    pub(super) fn svg(&self) -> String {
        let n = self.n();
        let h = self.height;
        let ph = self.plot_h();
        let ymax = if self.y_max > 0.0 { self.y_max } else { 1.0 };
        let mut s = String::with_capacity(8 * 1024);
        let _ = write!(
            s,
            r#"<svg class="chart" width="100%" height="{h}" role="img" aria-label="{}"><title>{}</title>"#,
            esc(&self.label),
            esc(&self.label)
        );
        for t in &self.thresholds {
            let y = self.y(t.value);
            match t.band {
                Some(true) => {
                    let _ = write!(
                        s,
                        r#"<rect class="band band-{}" x="0" y="{TOP}" width="100%" height="{:.1}"/>"#,
                        t.class,
                        (y - TOP).max(0.0)
                    );
                }
                Some(false) => {
                    let _ = write!(
                        s,
                        r#"<rect class="band band-{}" x="0" y="{y:.1}" width="100%" height="{:.1}"/>"#,
                        t.class,
                        (TOP + ph - y).max(0.0)
                    );
                }
                None => {}
            }
        }
        for (v, label) in &self.y_ticks {
            let y = self.y(*v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="0" x2="100%" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="2" y="{:.1}">{}</text>"#,
                y - 3.0,
                esc(label)
            );
        }
        let _ = write!(
            s,
            r#"<svg x="0" y="{TOP}" width="100%" height="{ph:.1}" viewBox="0 0 {n} {ymax}" preserveAspectRatio="none">"#
        );
        for layer in &self.layers {
            match layer {
                Layer::Area(v) => {
                    let _ = write!(s, r#"<path class="area" d="M0.5,{ymax}"#);
                    for (i, x) in v.iter().enumerate() {
                        let _ = write!(s, " L{}.5,{:.3}", i, ymax - x.clamp(0.0, ymax));
                    }
                    let _ = write!(s, r#" L{}.5,{ymax} Z"/>"#, v.len().saturating_sub(1));
                    line_path(&mut s, v, ymax, "area-line");
                }
                Layer::Line(v, class) => line_path(&mut s, v, ymax, class),
                Layer::Dashed(v) => line_path(&mut s, v, ymax, "even"),
                Layer::Bars(v) => {
                    for (i, x) in v.iter().enumerate() {
                        if *x > 0.0 {
                            let x = x.min(ymax);
                            let _ = write!(
                                s,
                                r#"<rect class="bar" x="{i}.1" y="{:.3}" width="0.8" height="{x:.3}"/>"#,
                                ymax - x
                            );
                        }
                    }
                }
            }
        }
        s.push_str("</svg>");
        for t in &self.thresholds {
            let y = self.y(t.value);
            let _ = write!(
                s,
                r#"<line class="thr thr-{c}" x1="0" x2="100%" y1="{y:.1}" y2="{y:.1}"/><text class="thr-label thr-{c}" x="40" y="{:.1}">{}</text>"#,
                y - 3.0,
                esc(&t.label),
                c = t.class
            );
        }
        // Labels take three rows in turn so that markers close together stay legible;
        // past two thirds of the width a label reads leftwards from its line, and skips
        // the row of the latest value's label there.
        let latest_y = match (&self.latest, self.first_last()) {
            (Some(_), Some(v)) => Some((self.y(v) - 6.0).max(TOP + 10.0)),
            _ => None,
        };
        for (k, m) in self.markers.iter().enumerate() {
            let p = (m.at as f64 + 0.5) / n as f64 * 100.0;
            let (dx, anchor) = if p > 66.0 { (-4, "end") } else { (4, "start") };
            let row = 12.0 * (k % 3) as f64;
            let y = match latest_y {
                // Right-hand labels start below the latest value's label when they
                // would meet it.
                Some(ly) if p > 66.0 && ly < TOP + 10.0 + 36.0 => ly + 14.0 + row,
                _ => TOP + 10.0 + row,
            };
            let _ = write!(
                s,
                r#"<g class="mk mk-{}"><title>{}</title><line class="marker" x1="{p:.2}%" x2="{p:.2}%" y1="{TOP}" y2="{:.1}"/><text class="marker-label" x="{p:.2}%" dx="{dx}" y="{y:.1}" text-anchor="{anchor}">{}</text></g>"#,
                m.kind,
                esc(&m.title),
                TOP + ph,
                esc(&m.label)
            );
        }
        if let (Some(label), Some(v)) = (&self.latest, self.first_last()) {
            let y = self.y(v);
            let _ = write!(
                s,
                r#"<circle class="latest-dot" cx="100%" cy="{y:.1}" r="4"/><text class="latest" x="100%" dx="-8" y="{:.1}" text-anchor="end">{}</text>"#,
                (y - 6.0).max(TOP + 10.0),
                esc(label)
            );
        }
        for (f, label) in &self.x_ticks {
            let _ = write!(
                s,
                r#"<text class="tick" x="{:.2}%" y="{}" text-anchor="middle">{}</text>"#,
                (f * 100.0).clamp(3.0, 97.0),
                h - 5,
                esc(label)
            );
        }
        s.push_str("</svg>");
        s
    }

    fn first_last(&self) -> Option<f64> {
        match self.layers.first()? {
            Layer::Area(v) | Layer::Line(v, _) | Layer::Dashed(v) | Layer::Bars(v) => {
                v.last().copied()
            }
        }
    }
}

/// A line through `v`, written onto the chart's text.
fn line_path(s: &mut String, v: &[f64], ymax: f64, class: &str) {
    let _ = write!(s, r#"<path class="{class}" d=""#);
    for (i, x) in v.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}.5,{:.3}",
            if i == 0 { "M" } else { " L" },
            i,
            ymax - x.clamp(0.0, ymax)
        );
    }
    s.push_str(r#"" fill="none"/>"#);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        let (top, ticks) = axis(5300.0, 1.0, |v| format!("{v}"));
        assert_eq!(top, 6000.0);
        assert_eq!(
            ticks.iter().map(|t| t.0).collect::<Vec<_>>(),
            [0.0, 2000.0, 4000.0, 6000.0]
        );
        let (top, _) = axis(0.0, 4.0, |v| format!("{v}"));
        assert_eq!(top, 4.0);
    }

    #[test]
    fn labels_are_escaped_and_lines_drawn() {
        let c = Chart {
            label: "P95 <latency>".into(),
            height: 200,
            y_max: 600.0,
            y_ticks: vec![(0.0, "0".into()), (600.0, "600 ms".into())],
            x_ticks: vec![(0.5, "12:00".into())],
            layers: vec![Layer::Line(vec![100.0, 200.0, 512.0], "p95")],
            thresholds: vec![Threshold {
                value: 500.0,
                label: "Alert 500".into(),
                class: "alert",
                band: Some(true),
            }],
            markers: vec![Marker {
                at: 1,
                label: "INC<1>".into(),
                title: "P1 incident opened: <b>".into(),
                kind: "incident",
            }],
            latest: Some("512 ms".into()),
        };
        let s = c.svg();
        assert!(s.contains("P95 &lt;latency&gt;"));
        assert!(s.contains("INC&lt;1&gt;"));
        assert!(
            s.contains(r#"<g class="mk mk-incident"><title>P1 incident opened: &lt;b&gt;</title>"#)
        );
        assert!(
            s.contains(r#"class="p95" d="M0.5,500.000 L1.5,400.000 L2.5,88.000""#),
            "{s}"
        );
        assert!(s.contains("Alert 500") && s.contains("512 ms"));
    }
}
