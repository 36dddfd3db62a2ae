//! Small inline SVG line charts for the HTML report (`report.html`): linear scales, rounded
//! axis maxima, polyline points, and the chart with its grid, threshold lines and legend.
//! Pure functions of their input: no I/O, no scripts, nothing fetched.

use super::markup::escape;

/// The chart's drawing size in SVG units; the `viewBox` makes it scale to any width.
pub(crate) const WIDTH: f64 = 480.0;
/// See [`WIDTH`].
pub(crate) const HEIGHT: f64 = 200.0;
/// The plot area inside the chart: room for the y labels on the left, x labels below.
pub(crate) const PLOT_LEFT: f64 = 60.0;
pub(crate) const PLOT_RIGHT: f64 = WIDTH - 28.0;
pub(crate) const PLOT_TOP: f64 = 12.0;
pub(crate) const PLOT_BOTTOM: f64 = HEIGHT - 26.0;

/// A linear map from data values (`domain`) to SVG coordinates (`range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    /// A scale taking `domain.0..domain.1` onto `range.0..range.1` (either may be reversed).
    pub(crate) fn new(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }

    /// Maps `v`; an empty domain (one value) maps everything to the middle of the range.
    pub(crate) fn map(&self, v: f64) -> f64 {
        if (self.d1 - self.d0).abs() < f64::EPSILON {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// Rounds `v` up to a round axis maximum: 1, 2, 2.5 or 5 times a power of ten (`0.37` →
/// `0.5`, `812` → `1000`). Zero, negative or non-finite values give 1.
pub(crate) fn nice_ceil(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let pow = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0] {
        if m * pow >= v * (1.0 - 1e-9) {
            return m * pow;
        }
    }
    10.0 * pow
}

/// Formats a coordinate with at most one decimal (`12`, `12.5`).
fn coord(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stroke {
    /// A line through the points, with a marker on each.
    Line,
    /// A dashed line (thresholds), no markers.
    Dashed,
    /// A staircase: each value holds until the next point (alert levels).
    Step,
}

/// One line of a chart: `(x, y)` points, `None` where the value is unknown (the line
/// breaks there).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub label: String,
    /// A CSS class giving the colour (`s-p95`, `s-warn`, ...), from the renderer, not a script.
    pub class: &'static str,
    pub stroke: Stroke,
    pub points: Vec<(f64, Option<f64>)>,
}

/// The `points` attribute of each polyline drawing `points` with these scales: one string
/// per unbroken run of known values. A [`Stroke::Step`] holds each value until the next x.
pub(crate) fn polylines(
    points: &[(f64, Option<f64>)],
    x: &Scale,
    y: &Scale,
    stroke: Stroke,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let mut prev: Option<f64> = None;
    for (px, py) in points {
        match py {
            Some(v) if v.is_finite() => {
                let (sx, sy) = (coord(x.map(*px)), coord(y.map(*v)));
                if let (Stroke::Step, Some(p)) = (stroke, prev) {
                    run.push(format!("{sx},{}", coord(y.map(p))));
                }
                run.push(format!("{sx},{sy}"));
                prev = Some(*v);
            }
            _ => {
                if !run.is_empty() {
                    out.push(run.join(" "));
                    run.clear();
                }
                prev = None;
            }
        }
    }
    if !run.is_empty() {
        out.push(run.join(" "));
    }
    out
}

/// A chart: its title (the SVG's accessible name), series, and axes.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub title: String,
    /// A stable name for the chart (`latency`, `errors`, `levels`, `trend`): the
    /// `data-chart` attribute tests and styles select on.
    pub id: &'static str,
    pub series: Vec<Series>,
    /// Formats y axis labels (`120 ms`, `5 %`).
    pub y_label: fn(f64) -> String,
    /// Formats x axis labels (`12s`, `#3`).
    pub x_label: fn(f64) -> String,
    /// A fixed y maximum; otherwise the rounded-up largest value (thresholds included).
    pub y_max: Option<f64>,
    /// Labelled y values instead of the five evenly spaced ones (alert level names).
    pub y_ticks: Vec<(f64, String)>,
}

impl Chart {
    /// The x scale: the points' x values across the plot's width.
    pub(crate) fn x_scale(&self) -> Scale {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        Scale::new((lo, hi), (PLOT_LEFT, PLOT_RIGHT))
    }

    /// The y maximum: fixed, or the largest known value rounded up by [`nice_ceil`].
    pub(crate) fn y_top(&self) -> f64 {
        self.y_max.unwrap_or_else(|| {
            let top = self
                .series
                .iter()
                .flat_map(|s| s.points.iter().filter_map(|p| p.1))
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            nice_ceil(top)
        })
    }

    /// The y scale: 0 at the bottom of the plot, [`Chart::y_top`] at its top.
    pub(crate) fn y_scale(&self) -> Scale {
        Scale::new((0.0, self.y_top()), (PLOT_BOTTOM, PLOT_TOP))
    }
}

/// Renders the chart as a `<figure>`: the inline SVG (sized by its `viewBox`, so it fits
/// any width) and an HTML legend that wraps on narrow screens.
pub(crate) fn render(chart: &Chart) -> String {
    let x = chart.x_scale();
    let y = chart.y_scale();
    let top = chart.y_top();
    let mut s = String::new();
    s.push_str(&format!(
        "<figure class=\"chart\"><svg data-chart=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMid meet\">",
        chart.id,
        coord(WIDTH),
        coord(HEIGHT),
        escape(&chart.title)
    ));
    s.push_str(&format!("<title>{}</title>", escape(&chart.title)));
    // Grid and y labels.
    let ticks: Vec<(f64, String)> = if chart.y_ticks.is_empty() {
        (0..=4)
            .map(|i| {
                let v = top * f64::from(i) / 4.0;
                (v, (chart.y_label)(v))
            })
            .collect()
    } else {
        chart.y_ticks.clone()
    };
    for (v, label) in &ticks {
        let gy = coord(y.map(*v));
        s.push_str(&format!(
            "<line class=\"grid\" x1=\"{}\" y1=\"{gy}\" x2=\"{}\" y2=\"{gy}\"/><text class=\"ylab\" x=\"{}\" y=\"{gy}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            coord(PLOT_LEFT),
            coord(PLOT_RIGHT),
            coord(PLOT_LEFT - 6.0),
            escape(label)
        ));
    }
    // X labels: the first, middle and last x of the data.
    let xs: Vec<f64> = {
        let mut v: Vec<f64> = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let picks: Vec<f64> = match xs.len() {
        0 => Vec::new(),
        1 | 2 => xs.clone(),
        n => vec![xs[0], xs[n / 2], xs[n - 1]],
    };
    for px in picks {
        s.push_str(&format!(
            "<text class=\"xlab\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord(x.map(px)),
            coord(PLOT_BOTTOM + 18.0),
            escape(&(chart.x_label)(px))
        ));
    }
    s.push_str(&format!(
        "<line class=\"axis\" x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\"/>",
        coord(PLOT_LEFT),
        coord(PLOT_BOTTOM),
        coord(PLOT_RIGHT)
    ));
    // Thresholds first, so the data is drawn over them.
    let mut ordered: Vec<&Series> = chart.series.iter().collect();
    ordered.sort_by_key(|s| s.stroke != Stroke::Dashed);
    for series in ordered {
        let kind = match series.stroke {
            Stroke::Line => "line",
            Stroke::Dashed => "threshold",
            Stroke::Step => "step",
        };
        // A limit known at one x only is drawn across the plot, not as a dot.
        let points = match series.points.as_slice() {
            [(_, Some(v))] if series.stroke == Stroke::Dashed && v.is_finite() => {
                let ly = coord(y.map(*v));
                vec![format!(
                    "{},{ly} {},{ly}",
                    coord(PLOT_LEFT),
                    coord(PLOT_RIGHT)
                )]
            }
            _ => polylines(&series.points, &x, &y, series.stroke),
        };
        for points in points {
            s.push_str(&format!(
                "<polyline class=\"{kind} {}\" data-series=\"{}\" fill=\"none\" points=\"{points}\"/>",
                series.class,
                escape(&series.label)
            ));
        }
        if series.stroke == Stroke::Line && series.points.len() <= 120 {
            for (px, py) in &series.points {
                if let Some(v) = py.filter(|v| v.is_finite()) {
                    s.push_str(&format!(
                        "<circle class=\"dot {}\" cx=\"{}\" cy=\"{}\" r=\"3\"/>",
                        series.class,
                        coord(x.map(*px)),
                        coord(y.map(v))
                    ));
                }
            }
        }
    }
    s.push_str("</svg><figcaption><strong>");
    s.push_str(&escape(&chart.title));
    s.push_str("</strong>");
    for series in &chart.series {
        let dashed = if series.stroke == Stroke::Dashed {
            " dashed"
        } else {
            ""
        };
        s.push_str(&format!(
            " <span class=\"key\"><i class=\"swatch {}{dashed}\"></i>{}</span>",
            series.class,
            escape(&series.label)
        ));
    }
    s.push_str("</figcaption></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_linearly_and_reversed() {
        let s = Scale::new((0.0, 10.0), (100.0, 200.0));
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(5.0), 150.0);
        assert_eq!(s.map(10.0), 200.0);
        let y = Scale::new((0.0, 4.0), (200.0, 0.0));
        assert_eq!(y.map(1.0), 150.0, "y grows upwards");
        let one = Scale::new((3.0, 3.0), (0.0, 10.0));
        assert_eq!(one.map(3.0), 5.0, "one value sits in the middle");
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceil(0.37), 0.5);
        assert_eq!(nice_ceil(812.0), 1000.0);
        assert_eq!(nice_ceil(200.0), 200.0);
        assert_eq!(nice_ceil(21.0), 25.0);
        assert_eq!(nice_ceil(0.05), 0.05);
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(f64::NAN), 1.0);
    }

    #[test]
    fn polylines_break_at_unknown_values() {
        let x = Scale::new((0.0, 4.0), (0.0, 400.0));
        let y = Scale::new((0.0, 10.0), (100.0, 0.0));
        let pts = [
            (0.0, Some(0.0)),
            (1.0, Some(5.0)),
            (2.0, None),
            (3.0, Some(10.0)),
            (4.0, Some(2.5)),
        ];
        assert_eq!(
            polylines(&pts, &x, &y, Stroke::Line),
            ["0,100 100,50", "300,0 400,75"]
        );
        assert!(polylines(&[(0.0, None)], &x, &y, Stroke::Line).is_empty());
    }

    #[test]
    fn steps_hold_each_value_until_the_next_point() {
        let x = Scale::new((0.0, 2.0), (0.0, 200.0));
        let y = Scale::new((0.0, 3.0), (30.0, 0.0));
        let pts = [(0.0, Some(0.0)), (1.0, Some(1.0)), (2.0, Some(3.0))];
        assert_eq!(
            polylines(&pts, &x, &y, Stroke::Step),
            ["0,30 100,30 100,20 200,20 200,0"]
        );
    }

    fn chart(series: Vec<Series>) -> Chart {
        Chart {
            title: "p95 <latency>".into(),
            id: "latency",
            series,
            y_label: |v| format!("{v} ms"),
            x_label: |v| format!("{v}s"),
            y_max: None,
            y_ticks: Vec::new(),
        }
    }

    #[test]
    fn a_chart_plots_known_points_and_its_thresholds() {
        let c = chart(vec![
            Series {
                label: "p95".into(),
                class: "s-p95",
                stroke: Stroke::Line,
                points: vec![(0.0, Some(100.0)), (1.0, Some(300.0)), (2.0, Some(50.0))],
            },
            Series {
                label: "warning p95_ms".into(),
                class: "s-warn",
                stroke: Stroke::Dashed,
                points: vec![(0.0, Some(400.0)), (1.0, Some(400.0)), (2.0, Some(400.0))],
            },
        ]);
        // The top is the threshold's 400 (rounded: 500); x spans the plot width.
        assert_eq!(c.y_top(), 500.0);
        let svg = render(&c);
        let y = |v: f64| coord(PLOT_BOTTOM - v / 500.0 * (PLOT_BOTTOM - PLOT_TOP));
        let mid = coord((PLOT_LEFT + PLOT_RIGHT) / 2.0);
        let (l, r) = (coord(PLOT_LEFT), coord(PLOT_RIGHT));
        let expected = format!(
            "points=\"{l},{} {mid},{} {r},{}\"",
            y(100.0),
            y(300.0),
            y(50.0)
        );
        assert!(svg.contains(&expected), "{expected} not in {svg}");
        assert!(svg.contains(&format!(
            "class=\"threshold s-warn\" data-series=\"warning p95_ms\" fill=\"none\" points=\"{l},{0} {mid},{0} {r},{0}\"",
            y(400.0)
        )));
        assert_eq!(svg.matches("<circle").count(), 3, "markers on data only");
        assert!(svg.contains("p95 &lt;latency&gt;"), "titles are escaped");
        assert!(!svg.contains("<latency>"));
        assert!(svg.contains("viewBox=\"0 0 480 200\""));
        // The threshold is drawn first, under the data.
        assert!(svg.find("s-warn").unwrap_or(0) < svg.find("s-p95").unwrap_or(0));
    }

    #[test]
    fn a_limit_at_one_point_spans_the_plot() {
        let c = chart(vec![Series {
            label: "pass".into(),
            class: "s-pass",
            stroke: Stroke::Dashed,
            points: vec![(0.0, Some(80.0))],
        }]);
        let svg = render(&c);
        let ly = coord(c.y_scale().map(80.0));
        let (l, r) = (coord(PLOT_LEFT), coord(PLOT_RIGHT));
        assert!(
            svg.contains(&format!("points=\"{l},{ly} {r},{ly}\"")),
            "{svg}"
        );
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let svg = render(&chart(Vec::new()));
        assert!(svg.starts_with("<figure"));
        assert!(!svg.contains("<polyline"));
    }
}
