//! How a failure reads: one line, whatever the text it quotes holds.

/// Control characters (newlines included) escaped so the message stays on one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim_end().chars() {
        match c {
            '\n' => out.push_str("; "),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out
}
