//! The one place where diagnostics become text: ariadne reports with labelled spans.

use super::{Diagnostic, Severity, SourceMap};
use ariadne::{Color, Config, IndexType, Label, Report, ReportKind};

/// Renders one diagnostic. `color` is off for files, pipes and golden tests.
pub fn render(diag: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let label_color = match diag.severity {
        Severity::Error => Color::Red,
        Severity::Warning => Color::Yellow,
    };
    let Some(primary) = diag.primary_span() else {
        // A diagnostic without a place (an unreadable file, say): one line, plus hints.
        let mut out = format!("{}: {}\n", severity_word(diag.severity), diag.message);
        if let Some(h) = &diag.help {
            out.push_str(&format!("  help: {h}\n"));
        }
        if let Some(n) = &diag.note {
            out.push_str(&format!("  note: {n}\n"));
        }
        return out;
    };
    let name = |s: &super::Span| sources.name(s.context).to_string();
    let clamp = |s: &super::Span| {
        let len = sources.text(s.context).len();
        s.start.min(len)..s.end.min(len).max(s.start.min(len))
    };
    let mut report = Report::build(kind, (name(&primary), clamp(&primary)))
        .with_config(Config::default().with_color(color).with_index_type(IndexType::Byte))
        .with_message(&diag.message);
    for (i, label) in diag.labels.iter().enumerate() {
        let mut l = Label::new((name(&label.span), clamp(&label.span))).with_message(&label.message);
        if color {
            l = l.with_color(if i == 0 { label_color } else { Color::Cyan });
        }
        report = report.with_label(l.with_order(i as i32));
    }
    if let Some(h) = &diag.help {
        report = report.with_help(h);
    }
    if let Some(n) = &diag.note {
        report = report.with_note(n);
    }
    let cache = ariadne::sources(sources.files().map(|(n, t)| (n.to_string(), t.to_string())));
    let mut buf = Vec::new();
    if report.finish().write(cache, &mut buf).is_err() {
        return format!("{}: {}\n", severity_word(diag.severity), diag.message);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Renders all diagnostics in source order, errors and warnings interleaved.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| d.primary_span().map(|s| (s.context.0, s.start)).unwrap_or((u32::MAX, 0)));
    sorted.iter().map(|d| render(d, sources, color)).collect()
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}
