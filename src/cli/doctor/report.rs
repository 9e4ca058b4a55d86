//! The outcome of each check, printed as it happens (text) or all at once (`--json`).

use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not run: an earlier failure makes it meaningless, or it does not apply here.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Short machine-readable name: `address`, `dns`, `connect`, `protocol`, `certificate`,
    /// `trust.docker`, `api`, `credentials`, ...
    pub step: String,
    pub status: Status,
    /// One line: what was found, with the error text clients print where there is one.
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// What to do about it (may span lines).
    pub fix: Option<String>,
}

impl Step {
    pub fn new(step: &str, status: Status, message: impl Into<String>) -> Step {
        Step {
            step: step.to_string(),
            status,
            message: message.into(),
            details: Vec::new(),
            fix: None,
        }
    }

    pub fn ok(step: &str, message: impl Into<String>) -> Step {
        Step::new(step, Status::Ok, message)
    }

    pub fn warn(step: &str, message: impl Into<String>) -> Step {
        Step::new(step, Status::Warn, message)
    }

    pub fn fail(step: &str, message: impl Into<String>) -> Step {
        Step::new(step, Status::Fail, message)
    }

    pub fn skip(step: &str, message: impl Into<String>) -> Step {
        Step::new(step, Status::Skip, message)
    }

    pub fn detail(mut self, d: impl Into<String>) -> Step {
        self.details.push(d.into());
        self
    }

    pub fn details(mut self, d: impl IntoIterator<Item = String>) -> Step {
        self.details.extend(d);
        self
    }

    pub fn fix(mut self, f: impl Into<String>) -> Step {
        self.fix = Some(f.into());
        self
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    registry: &'a str,
    ok: bool,
    failed: usize,
    warnings: usize,
    steps: &'a [Step],
}

/// Collects steps; in text mode prints each one as soon as it is known, so a slow timeout
/// does not hide what was already found.
pub struct Reporter {
    json: bool,
    registry: String,
    steps: Vec<Step>,
}

const NAME_WIDTH: usize = 20;

impl Reporter {
    pub fn new(registry: &str, json: bool) -> Reporter {
        if !json {
            println!("Checking the registry {registry} the way container clients reach it\n");
        }
        Reporter {
            json,
            registry: registry.to_string(),
            steps: Vec::new(),
        }
    }

    pub fn push(&mut self, step: Step) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(render(&step).as_bytes());
            let _ = out.flush();
        }
        self.steps.push(step);
    }

    pub fn failed(&self) -> usize {
        self.steps.iter().filter(|s| s.status == Status::Fail).count()
    }

    fn warnings(&self) -> usize {
        self.steps.iter().filter(|s| s.status == Status::Warn).count()
    }

    /// Prints the summary (or the whole JSON document); returns the number of failed steps.
    pub fn finish(self) -> usize {
        let (failed, warnings) = (self.failed(), self.warnings());
        if self.json {
            let doc = JsonReport {
                registry: &self.registry,
                ok: failed == 0,
                failed,
                warnings,
                steps: &self.steps,
            };
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else if failed == 0 && warnings == 0 {
            println!("\nNo problems found.");
        } else if failed == 0 {
            println!("\nNo failures; {warnings} warning(s) above.");
        } else {
            println!("\n{failed} failed, {warnings} warning(s). Each FAIL above comes with its fix.");
        }
        failed
    }
}

/// `FAIL  connect             dial tcp ...` then indented details and the fix.
pub fn render(step: &Step) -> String {
    let indent = " ".repeat(6 + NAME_WIDTH);
    let mut s = format!(
        "{:<6}{:<width$}{}\n",
        step.status.label(),
        step.step,
        step.message,
        width = NAME_WIDTH
    );
    for d in &step.details {
        s.push_str(&format!("{indent}{d}\n"));
    }
    if let Some(fix) = &step.fix {
        let mut lines = fix.lines();
        s.push_str(&format!(
            "{}fix: {}\n",
            " ".repeat(6 + NAME_WIDTH - 5),
            lines.next().unwrap_or_default()
        ));
        for l in lines {
            s.push_str(&format!("{indent}{l}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_details_and_fix_lines() {
        let s = Step::fail("connect", "refused")
            .detail("nothing listens")
            .fix("start it\nor check the port");
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("FAIL  connect") && lines[0].ends_with("refused"), "{text}");
        assert_eq!(lines[1].trim(), "nothing listens");
        assert_eq!(lines[2].trim(), "fix: start it");
        assert_eq!(lines[3].trim(), "or check the port");
        assert_eq!(lines[2].find("start"), lines[3].find("or"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["status"], "fail");
        assert_eq!(json["fix"], "start it\nor check the port");
    }
}
