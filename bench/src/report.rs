//! Collects figures per registry and round, and prints medians with the wharf/distribution ratio
//! (the median of the rounds' own ratios).

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

/// The median of `wharf[i] / distribution[i]`: round `i` ran both registries back to back, so
/// each pair saw the same state of the machine, and a slow round moves both figures of its
/// pair instead of one side of a ratio of medians. Rounds without both figures (or with a zero
/// one) are left out.
pub fn paired_ratio(wharf: &[f64], distribution: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = wharf
        .iter()
        .zip(distribution)
        .filter(|(_, d)| **d != 0.0)
        .map(|(w, d)| w / d)
        .collect();
    median(&ratios)
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

    /// wharf/distribution: the median of the per-round ratios (see [`paired_ratio`]).
    pub fn ratio(&self, name: &str, unit: &str) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.name == name && r.unit == unit)?;
        paired_ratio(&row.wharf, &row.distribution)
    }

    /// A Markdown table of medians.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| workload | unit | wharf | distribution | wharf/distribution |\n|---|---|---:|---:|---:|\n");
        for r in &self.rows {
            let (w, d) = (median(&r.wharf), median(&r.distribution));
            let ratio = match paired_ratio(&r.wharf, &r.distribution) {
                Some(ratio) => format!("{ratio:.2}×"),
                None => "–".into(),
            };
            s.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.name, r.unit, fmt(w), fmt(d), ratio));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_each_rounds_own_ratio() {
        // A slow second round halves both figures: each round's ratio is 2.
        assert_eq!(paired_ratio(&[200.0, 100.0, 210.0], &[100.0, 50.0, 105.0]), Some(2.0));
        // Rounds' ratios 1/3, 2 and 1.5: their median is 1.5, where the ratio of the medians
        // (200 / 200) would pair figures from different rounds.
        let (w, d) = ([100.0, 200.0, 300.0], [300.0, 100.0, 200.0]);
        assert_eq!(paired_ratio(&w, &d), Some(1.5));
        assert_eq!(median(&w).zip(median(&d)).map(|(a, b)| a / b), Some(1.0));
        assert_eq!(paired_ratio(&[1.0, 4.0], &[2.0]), Some(0.5), "only rounds with both figures");
        assert_eq!(paired_ratio(&[], &[1.0]), None);
    }
}
