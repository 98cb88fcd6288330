//! A strict parser for RFC 8941 Structured Field dictionaries, as
//! `CDN-Cache-Control` (RFC 9213) is defined. Any syntax error fails the whole
//! field: the caller then ignores it, as RFC 8941 §4.2 requires.

/// A bare item (RFC 8941 §3.3). Decimals keep their text; nothing here needs
/// their value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bare {
    Integer(i64),
    Decimal(String),
    String(String),
    Token(String),
    /// The base64 text between the colons.
    Binary(String),
    Boolean(bool),
}

/// A member value: an item or an inner list, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Item(Bare, Vec<(String, Bare)>),
    InnerList(Vec<(Bare, Vec<(String, Bare)>)>, Vec<(String, Bare)>),
}

impl Value {
    /// The bare item, unless this is an inner list.
    pub fn bare(&self) -> Option<&Bare> {
        match self {
            Value::Item(b, _) => Some(b),
            Value::InnerList(..) => None,
        }
    }
}

/// Why a field did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid(pub usize);

/// Parses every line of a field (joined with `,`) as one dictionary. Keys keep
/// their first position; a later duplicate replaces the value (RFC 8941 §3.2).
pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Value)>, Invalid> {
    let mut p = Parser { s: input.as_bytes(), i: 0 };
    p.skip_sp();
    let mut out: Vec<(String, Value)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let value =
            if p.eat(b'=') { p.item_or_inner_list()? } else { Value::Item(Bare::Boolean(true), p.parameters()?) };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key, value)),
        }
        p.skip_ows();
        if p.done() {
            return Ok(out);
        }
        if !p.eat(b',') {
            return Err(Invalid(p.i));
        }
        p.skip_ows();
        if p.done() {
            // A trailing comma.
            return Err(Invalid(p.i));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn err<T>(&self) -> Result<T, Invalid> {
        Err(Invalid(self.i))
    }

    fn key(&mut self) -> Result<String, Invalid> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return self.err(),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.' | b'*') {
                self.i += 1;
            } else {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn parameters(&mut self) -> Result<Vec<(String, Bare)>, Invalid> {
        let mut out: Vec<(String, Bare)> = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') { self.bare()? } else { Bare::Boolean(true) };
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
        }
        Ok(out)
    }

    fn item_or_inner_list(&mut self) -> Result<Value, Invalid> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    return Ok(Value::InnerList(items, self.parameters()?));
                }
                let item = self.bare()?;
                items.push((item, self.parameters()?));
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return self.err();
                }
            }
        }
        let bare = self.bare()?;
        Ok(Value::Item(bare, self.parameters()?))
    }

    fn bare(&mut self) -> Result<Bare, Invalid> {
        match self.peek() {
            Some(b'-') => self.number(),
            Some(c) if c.is_ascii_digit() => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.binary(),
            Some(b'?') => self.boolean(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(self.token()),
            _ => self.err(),
        }
    }

    fn number(&mut self) -> Result<Bare, Invalid> {
        let start = self.i;
        let negative = self.eat(b'-');
        let digits_start = self.i;
        let mut dot: Option<usize> = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.i += 1;
            } else if c == b'.' && dot.is_none() {
                if self.i - digits_start > 12 {
                    return self.err();
                }
                dot = Some(self.i);
                self.i += 1;
            } else {
                break;
            }
            let len = self.i - digits_start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return self.err();
            }
        }
        let text = std::str::from_utf8(&self.s[digits_start..self.i]).map_err(|_| Invalid(start))?;
        if text.is_empty() || text.starts_with('.') {
            return Err(Invalid(start));
        }
        match dot {
            None => {
                let n: i64 = text.parse().map_err(|_| Invalid(start))?;
                Ok(Bare::Integer(if negative { -n } else { n }))
            }
            Some(d) => {
                let frac = self.i - d - 1;
                if !(1..=3).contains(&frac) {
                    return Err(Invalid(self.i));
                }
                let sign = if negative { "-" } else { "" };
                Ok(Bare::Decimal(format!("{sign}{text}")))
            }
        }
    }

    fn string(&mut self) -> Result<Bare, Invalid> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.err(),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Bare::String(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c as char);
                            self.i += 1;
                        }
                        _ => return self.err(),
                    }
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(c as char);
                    self.i += 1;
                }
                Some(_) => return self.err(),
            }
        }
    }

    fn token(&mut self) -> Bare {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
            if tchar || c == b':' || c == b'/' {
                self.i += 1;
            } else {
                break;
            }
        }
        Bare::Token(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn binary(&mut self) -> Result<Bare, Invalid> {
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b':' {
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(Bare::Binary(text));
            }
            if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
                return self.err();
            }
            self.i += 1;
        }
        self.err()
    }

    fn boolean(&mut self) -> Result<Bare, Invalid> {
        self.i += 1;
        let b = match self.peek() {
            Some(b'0') => false,
            Some(b'1') => true,
            _ => return self.err(),
        };
        self.i += 1;
        Ok(Bare::Boolean(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> Vec<String> {
        parse_dictionary(s).unwrap().into_iter().map(|(k, _)| k).collect()
    }

    fn value(s: &str, key: &str) -> Bare {
        let d = parse_dictionary(s).unwrap();
        d.into_iter().find(|(k, _)| k == key).and_then(|(_, v)| v.bare().cloned()).unwrap()
    }

    #[test]
    fn valid_dictionaries() {
        assert_eq!(keys(""), Vec::<String>::new());
        assert_eq!(keys("max-age=60"), ["max-age"]);
        assert_eq!(keys("foobar, max-age=3600"), ["foobar", "max-age"]);
        assert_eq!(keys("  a=1 ,\tb ,c=?0  "), ["a", "b", "c"]);
        assert_eq!(value("max-age=99999999999", "max-age"), Bare::Integer(99_999_999_999));
        assert_eq!(value("a=-5", "a"), Bare::Integer(-5));
        assert_eq!(value("no-store", "no-store"), Bare::Boolean(true));
        assert_eq!(value("no-store=?0", "no-store"), Bare::Boolean(false));
        assert_eq!(value("private=\"x, y\"", "private"), Bare::String("x, y".into()));
        assert_eq!(value("a=\"q\\\"b\\\\\"", "a"), Bare::String("q\"b\\".into()));
        assert_eq!(value("a=tok/en:x", "a"), Bare::Token("tok/en:x".into()));
        assert_eq!(value("a=1.5", "a"), Bare::Decimal("1.5".into()));
        assert_eq!(value("a=:aGk=:", "a"), Bare::Binary("aGk=".into()));
        assert_eq!(value("a=1;p=2;q", "a"), Bare::Integer(1));
        // A later duplicate wins, in the first one's place.
        assert_eq!(value("max-age=1, b, max-age=2", "max-age"), Bare::Integer(2));
        assert_eq!(keys("max-age=1, b, max-age=2"), ["max-age", "b"]);
        let d = parse_dictionary("l=(1 \"a\" b);x").unwrap();
        assert!(matches!(&d[0].1, Value::InnerList(items, params) if items.len() == 3 && params.len() == 1));
    }

    #[test]
    fn invalid_dictionaries() {
        for bad in [
            "max-age=10000, &&&&&",
            "max-age =100",
            "max-age= 100",
            "MaX-aGe=3600",
            "max-age=100,",
            ",max-age=100",
            "max-age=100,,b",
            "a=\"unterminated",
            "a=\"bad\\escape\"",
            "a=1234567890123456",
            "a=1.2345",
            "a=1.",
            "a=-",
            "a=?2",
            "a=:not base64!:",
            "a=(1 2",
            "a=(1,2)",
            "a b",
            "1a=2",
            "a=1;P=2",
            "a=\u{e9}",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
    }
}
