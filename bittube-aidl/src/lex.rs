//! The tokens of an `.aidl` file, each with its line and the `/** */` comment before it.

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or a dotted name.
    Ident(String),
    /// An integer literal's value.
    Int(i128),
    /// A floating-point literal.
    Float(f64),
    /// A string literal's contents.
    Str(String),
    /// A character literal.
    Char(char),
    /// Punctuation (`<<` and `>>` are one token each).
    Punct(&'static str),
}

/// A token with where it is.
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub doc: Vec<String>,
}

const PUNCTS: &[&str] = &[
    "<<", ">>", "==", "!=", "<=", ">=", "&&", "||", "{", "}", "(", ")", "[", "]", "<", ">", ";",
    ",", "=", "@", "-", "+", "*", "/", "%", "|", "&", "^", "~", "!", "?", ":",
];

fn doc_lines(body: &str) -> Vec<String> {
    let lines: Vec<String> = body
        .lines()
        .map(|l| {
            let l = l.trim();
            let l = l.strip_prefix('*').unwrap_or(l);
            l.strip_prefix(' ').unwrap_or(l).trim_end().to_owned()
        })
        .collect();
    let first = lines
        .iter()
        .position(|l| !l.is_empty())
        .unwrap_or(lines.len());
    let last = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(first, |n| n + 1);
    lines[first..last].to_vec()
}

/// Splits `text` into tokens; an error is (line, message).
pub fn lex(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let b = text.as_bytes();
    let (mut i, mut line) = (0usize, 1usize);
    let mut doc = Vec::new();
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if text[i..].starts_with("/*") {
            let end = text[i + 2..]
                .find("*/")
                .map(|n| i + 2 + n)
                .ok_or((line, "unterminated comment".to_owned()))?;
            let body = &text[i + 2..end];
            if let Some(d) = body.strip_prefix('*') {
                doc = doc_lines(d);
            }
            line += body.matches('\n').count();
            i = end + 2;
        } else {
            let (tok, len) = token(&text[i..]).map_err(|m| (line, m))?;
            out.push(Token {
                tok,
                line,
                doc: std::mem::take(&mut doc),
            });
            i += len;
        }
    }
    Ok(out)
}

fn token(s: &str) -> Result<(Tok, usize), String> {
    let c = s.as_bytes()[0];
    if c.is_ascii_alphabetic() || c == b'_' {
        let len = s
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
            .unwrap_or(s.len());
        return Ok((Tok::Ident(s[..len].to_owned()), len));
    }
    if c.is_ascii_digit() {
        return number(s);
    }
    if c == b'"' {
        let end = s[1..].find('"').ok_or("unterminated string")? + 1;
        return Ok((Tok::Str(s[1..end].to_owned()), end + 1));
    }
    if c == b'\'' {
        let mut chars = s[1..].chars();
        let ch = chars.next().ok_or("unterminated character")?;
        if chars.next() != Some('\'') {
            return Err("character literals are one character".into());
        }
        return Ok((Tok::Char(ch), 2 + ch.len_utf8()));
    }
    PUNCTS
        .iter()
        .find(|p| s.starts_with(**p))
        .map(|p| (Tok::Punct(p), p.len()))
        .ok_or_else(|| format!("unexpected character {:?}", s.chars().next().unwrap_or(' ')))
}

fn number(s: &str) -> Result<(Tok, usize), String> {
    let len = s
        .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.'))
        .unwrap_or(s.len());
    let raw = &s[..len];
    let bad = || format!("bad number {raw}");
    if let Some(hex) = raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        let hex = hex.trim_end_matches(['l', 'L']).trim_end_matches("u8");
        let v = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
        // AIDL hex literals are two's-complement bit patterns of int (or long).
        let v = match v <= u32::MAX as u64 && !raw.ends_with(['l', 'L']) {
            true => v as u32 as i32 as i128,
            false => v as i64 as i128,
        };
        return Ok((Tok::Int(v), len));
    }
    if raw.contains('.') || raw.ends_with(['f', 'F']) && !raw.starts_with("0x") {
        let f = raw.trim_end_matches(['f', 'F', 'd', 'D']);
        return Ok((Tok::Float(f.parse().map_err(|_| bad())?), len));
    }
    let digits = raw.trim_end_matches(['l', 'L']).trim_end_matches("u8");
    Ok((Tok::Int(digits.parse().map_err(|_| bad())?), len))
}
