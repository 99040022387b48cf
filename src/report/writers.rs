//! Lay a [`Grid`] out as text, Markdown, LaTeX or CSV.

use super::table::Grid;

fn widths(g: &Grid) -> Vec<usize> {
    let mut w: Vec<usize> = g.header.iter().map(|h| h.chars().count()).collect();
    for s in &g.sections {
        for row in s {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    w
}

fn pad(s: &str, w: usize, left: bool) -> String {
    let n = s.chars().count();
    let fill = " ".repeat(w.saturating_sub(n));
    if left {
        format!("{s}{fill}")
    } else {
        format!("{fill}{s}")
    }
}

/// Plain text with aligned columns and rules between sections.
pub fn text(g: &Grid) -> String {
    let w = widths(g);
    let line_len = w.iter().sum::<usize>() + 2 * (w.len() - 1);
    let rule = "-".repeat(line_len);
    let fmt_row = |row: &Vec<String>| -> String {
        row.iter()
            .enumerate()
            .map(|(i, c)| pad(c, w[i], i == 0))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec!["=".repeat(line_len), fmt_row(&g.header), rule.clone()];
    for (k, s) in g.sections.iter().enumerate() {
        if k > 0 {
            out.push(rule.clone());
        }
        out.extend(s.iter().map(fmt_row));
    }
    out.push("=".repeat(line_len));
    out.extend(g.notes.iter().cloned());
    out.join("\n") + "\n"
}

/// GitHub-flavoured Markdown.
pub fn markdown(g: &Grid) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('*', "\\*");
    let mut out = Vec::new();
    out.push(format!(
        "| {} |",
        g.header.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
    ));
    out.push(format!(
        "|{}",
        g.header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { ":---|" } else { "---:|" })
            .collect::<String>()
    ));
    for s in &g.sections {
        for row in s {
            out.push(format!(
                "| {} |",
                row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    out.push(String::new());
    out.extend(g.notes.iter().map(|n| esc(n)));
    out.join("\n") + "\n"
}

fn latex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                o.push('\\');
                o.push(c);
            }
            '^' => o.push_str("\\textasciicircum{}"),
            '~' => o.push_str("\\textasciitilde{}"),
            '\\' => o.push_str("\\textbackslash{}"),
            // the replication report's "interval misses the truth" flag (pdflatex has no glyph)
            '⚑' => o.push_str("\\textbf{!}"),
            _ => o.push(c),
        }
    }
    o
}

fn latex_cell(s: &str) -> String {
    // estimates carry stars: typeset them as superscripts
    let stars = s.chars().rev().take_while(|&c| c == '*').count();
    if stars > 0 && s.len() > stars {
        format!("{}$^{{{}}}$", latex_escape(&s[..s.len() - stars]), "*".repeat(stars))
    } else {
        latex_escape(s)
    }
}

/// LaTeX `tabular` with booktabs rules.
pub fn latex(g: &Grid) -> String {
    let cols = format!("l{}", "c".repeat(g.header.len() - 1));
    let mut out = vec![format!("\\begin{{tabular}}{{{cols}}}"), "\\toprule".to_string()];
    let row = |r: &Vec<String>| {
        format!(
            "{} \\\\",
            r.iter().map(|c| latex_cell(c)).collect::<Vec<_>>().join(" & ")
        )
    };
    out.push(row(&g.header));
    for s in &g.sections {
        out.push("\\midrule".into());
        out.extend(s.iter().map(row));
    }
    out.push("\\bottomrule".into());
    out.push("\\end{tabular}".into());
    for n in &g.notes {
        out.push(format!("% {}", n));
    }
    out.join("\n") + "\n"
}

/// CSV, RFC 4180 quoting; notes as trailing one-cell rows.
pub fn csv(g: &Grid) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = vec![g.header.iter().map(|c| q(c)).collect::<Vec<_>>().join(",")];
    for s in &g.sections {
        for r in s {
            out.push(r.iter().map(|c| q(c)).collect::<Vec<_>>().join(","));
        }
    }
    for n in &g.notes {
        out.push(q(n));
    }
    out.join("\n") + "\n"
}

/// An HTML `<table>` (for the replication report); significance stars stay as text.
pub fn html(g: &Grid) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut out = String::from("<table class=\"results\">\n<thead><tr>");
    for h in &g.header {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead>\n");
    for s in &g.sections {
        out.push_str("<tbody>\n");
        for row in s {
            out.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                let flag = if c.contains('⚑') { " class=\"flag\"" } else { "" };
                if i == 0 {
                    out.push_str(&format!("<th{flag}>{}</th>", esc(c)));
                } else {
                    out.push_str(&format!("<td{flag}>{}</td>", esc(c)));
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table>\n");
    for n in &g.notes {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", esc(n)));
    }
    out
}
