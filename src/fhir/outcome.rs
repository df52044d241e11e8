//! OperationOutcome builders.

use serde_json::{Value, json};

/// Issue severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One OperationOutcome issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    /// FHIR `issue-type` code: `invalid`, `structure`, `required`, `value`, `security`, ...
    pub code: &'static str,
    /// Stable gateway code, such as `GW-INTAKE-03`.
    pub gateway_code: Option<&'static str>,
    pub diagnostics: String,
    /// FHIRPath of the element concerned.
    pub expression: Option<String>,
}

impl Issue {
    pub fn new(severity: Severity, code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity,
            code,
            gateway_code: None,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue::new(Severity::Error, code, diagnostics)
    }

    pub fn information(diagnostics: impl Into<String>) -> Issue {
        Issue::new(Severity::Information, "informational", diagnostics)
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }

    pub fn with_code(mut self, gateway_code: &'static str) -> Issue {
        self.gateway_code = Some(gateway_code);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut issue = serde_json::Map::new();
        issue.insert("severity".into(), json!(self.severity.as_str()));
        issue.insert("code".into(), json!(self.code));
        if let Some(code) = self.gateway_code {
            issue.insert(
                "details".into(),
                json!({"coding": [{
                    "system": crate::codes::SYSTEM,
                    "code": code
                }]}),
            );
        }
        issue.insert("diagnostics".into(), json!(self.diagnostics));
        if let Some(expr) = &self.expression {
            issue.insert("expression".into(), json!([expr]));
        }
        Value::Object(issue)
    }
}

/// The most issues an OperationOutcome lists; the rest are counted in a last issue.
pub const MAX_ISSUES: usize = 200;

/// Renders issues as an OperationOutcome resource: the first [`MAX_ISSUES`], then one issue
/// counting the rest.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let mut out: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().take(MAX_ISSUES).map(Issue::to_json).collect()
    };
    if issues.len() > MAX_ISSUES {
        out.push(
            Issue::new(
                Severity::Information,
                "too-costly",
                format!(
                    "{} more issues are not listed; the first {MAX_ISSUES} are.",
                    issues.len() - MAX_ISSUES
                ),
            )
            .to_json(),
        );
    }
    json!({"resourceType": "OperationOutcome", "issue": out})
}
