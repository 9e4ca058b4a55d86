//! Collects figures per registry and round, and prints medians with the wharf/distribution ratio.

use crate::servers::Kind;

pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub wharf: Vec<f64>,
    pub distribution: Vec<f64>,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Table {
    pub fn record(&mut self, kind: Kind, name: &str, unit: &'static str, value: f64) {
        let row = match self.rows.iter_mut().position(|r| r.name == name && r.unit == unit) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    name: name.to_string(),
                    unit,
                    wharf: Vec::new(),
                    distribution: Vec::new(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        match kind {
            Kind::Wharf => row.wharf.push(value),
            Kind::Distribution => row.distribution.push(value),
        }
    }

    pub fn get(&self, name: &str, unit: &str, kind: Kind) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.name == name && r.unit == unit)?;
        median(match kind {
            Kind::Wharf => &row.wharf,
            Kind::Distribution => &row.distribution,
        })
    }

    pub fn ratio(&self, name: &str, unit: &str) -> Option<f64> {
        Some(self.get(name, unit, Kind::Wharf)? / self.get(name, unit, Kind::Distribution)?)
    }

    /// A Markdown table of medians.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| workload | unit | wharf | distribution | wharf/distribution |\n|---|---|---:|---:|---:|\n");
        for r in &self.rows {
            let (w, d) = (median(&r.wharf), median(&r.distribution));
            let ratio = match (w, d) {
                (Some(w), Some(d)) if d != 0.0 => format!("{:.2}×", w / d),
                _ => "–".into(),
            };
            s.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.name, r.unit, fmt(w), fmt(d), ratio));
        }
        s
    }
}
