//! Calico selector expressions (semantics.md §2.4): `app == 'web' && !has(quarantine)`.
//!
//! A hand-written recursive-descent parser: precedence (match operators, parentheses, `!`,
//! `&&`, `||`), every operator of Calico's tokenizer, and errors that carry the byte offset of
//! the offending token so the loader can point at the column inside the YAML string.

use crate::labels::Labels;
use std::collections::BTreeSet;
use std::fmt;

/// A parsed selector. `Display` prints a canonical form that parses back to the same tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CalicoSelector {
    All,
    Global,
    Has(String),
    Equal(String, String),
    NotEqual(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<CalicoSelector>),
    And(Box<CalicoSelector>, Box<CalicoSelector>),
    Or(Box<CalicoSelector>, Box<CalicoSelector>),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at offset {offset})")]
pub struct SelectorError {
    /// Byte offset into the selector text.
    pub offset: usize,
    pub message: String,
}

impl CalicoSelector {
    /// Parses a selector; the empty string is `all()`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(CalicoSelector::All);
        }
        let mut parser = Parser {
            tokens: &tokens,
            position: 0,
            end: text.len(),
        };
        let expr = parser.or()?;
        if let Some(t) = parser.peek() {
            return Err(SelectorError {
                offset: t.offset,
                message: format!("unexpected {} after a complete expression", t.kind),
            });
        }
        Ok(expr)
    }

    /// Whether the labels match. `global()` never matches an endpoint's labels: it only has a
    /// meaning as a rule namespaceSelector, where the engine handles it before calling this.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            CalicoSelector::All => true,
            CalicoSelector::Global => false,
            CalicoSelector::Has(k) => labels.contains_key(k),
            CalicoSelector::Equal(k, v) => labels.get(k) == Some(v),
            CalicoSelector::NotEqual(k, v) => labels.get(k) != Some(v),
            CalicoSelector::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            CalicoSelector::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            CalicoSelector::Contains(k, s) => labels.get(k).is_some_and(|v| v.contains(s.as_str())),
            CalicoSelector::StartsWith(k, s) => {
                labels.get(k).is_some_and(|v| v.starts_with(s.as_str()))
            }
            CalicoSelector::EndsWith(k, s) => {
                labels.get(k).is_some_and(|v| v.ends_with(s.as_str()))
            }
            CalicoSelector::Not(e) => !e.matches(labels),
            CalicoSelector::And(a, b) => a.matches(labels) && b.matches(labels),
            CalicoSelector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }

    /// True when `global()` appears anywhere in the expression.
    pub fn mentions_global(&self) -> bool {
        match self {
            CalicoSelector::Global => true,
            CalicoSelector::Not(e) => e.mentions_global(),
            CalicoSelector::And(a, b) | CalicoSelector::Or(a, b) => {
                a.mentions_global() || b.mentions_global()
            }
            _ => false,
        }
    }
}

fn quote(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

fn set_text(set: &BTreeSet<String>) -> String {
    let items: Vec<String> = set.iter().map(|s| quote(s)).collect();
    format!("{{{}}}", items.join(", "))
}

impl fmt::Display for CalicoSelector {
    /// Fully parenthesised binary operators, so printing and parsing round-trip exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalicoSelector::All => f.write_str("all()"),
            CalicoSelector::Global => f.write_str("global()"),
            CalicoSelector::Has(k) => write!(f, "has({k})"),
            CalicoSelector::Equal(k, v) => write!(f, "{k} == {}", quote(v)),
            CalicoSelector::NotEqual(k, v) => write!(f, "{k} != {}", quote(v)),
            CalicoSelector::In(k, s) => write!(f, "{k} in {}", set_text(s)),
            CalicoSelector::NotIn(k, s) => write!(f, "{k} not in {}", set_text(s)),
            CalicoSelector::Contains(k, s) => write!(f, "{k} contains {}", quote(s)),
            CalicoSelector::StartsWith(k, s) => write!(f, "{k} starts with {}", quote(s)),
            CalicoSelector::EndsWith(k, s) => write!(f, "{k} ends with {}", quote(s)),
            CalicoSelector::Not(e) => write!(f, "!({e})"),
            CalicoSelector::And(a, b) => write!(f, "({a} && {b})"),
            CalicoSelector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Label(String),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Not,
    And,
    Or,
    Eq,
    Ne,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Label(l) => write!(f, "'{l}'"),
            Kind::Str(s) => write!(f, "string {}", quote(s)),
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
            Kind::LBrace => f.write_str("'{'"),
            Kind::RBrace => f.write_str("'}'"),
            Kind::Comma => f.write_str("','"),
            Kind::Not => f.write_str("'!'"),
            Kind::And => f.write_str("'&&'"),
            Kind::Or => f.write_str("'||'"),
            Kind::Eq => f.write_str("'=='"),
            Kind::Ne => f.write_str("'!='"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    offset: usize,
}

const MAX_LABEL: usize = 512;

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(offset, c)) = chars.peek() {
        let simple = |kind| Token { kind, offset };
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '{' | '}' | ',' => {
                chars.next();
                tokens.push(simple(match c {
                    '(' => Kind::LParen,
                    ')' => Kind::RParen,
                    '{' => Kind::LBrace,
                    '}' => Kind::RBrace,
                    _ => Kind::Comma,
                }));
            }
            '!' => {
                chars.next();
                if chars.peek().is_some_and(|&(_, n)| n == '=') {
                    chars.next();
                    tokens.push(simple(Kind::Ne));
                } else {
                    tokens.push(simple(Kind::Not));
                }
            }
            '&' | '|' | '=' => {
                chars.next();
                match chars.next() {
                    Some((_, n)) if n == c => tokens.push(simple(match c {
                        '&' => Kind::And,
                        '|' => Kind::Or,
                        _ => Kind::Eq,
                    })),
                    _ => {
                        return Err(SelectorError {
                            offset,
                            message: format!("expected '{c}{c}'"),
                        });
                    }
                }
            }
            '\'' | '"' => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                for (_, n) in chars.by_ref() {
                    if n == c {
                        closed = true;
                        break;
                    }
                    value.push(n);
                }
                if !closed {
                    return Err(SelectorError {
                        offset,
                        message: "unterminated string".into(),
                    });
                }
                tokens.push(simple(Kind::Str(value)));
            }
            c if is_label_char(c) => {
                let mut label = String::new();
                while let Some(&(_, n)) = chars.peek() {
                    if !is_label_char(n) {
                        break;
                    }
                    label.push(n);
                    chars.next();
                }
                if label.len() > MAX_LABEL {
                    return Err(SelectorError {
                        offset,
                        message: format!("label longer than {MAX_LABEL} characters"),
                    });
                }
                tokens.push(simple(Kind::Label(label)));
            }
            other => {
                return Err(SelectorError {
                    offset,
                    message: format!("unexpected character {other:?}"),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser<'t> {
    tokens: &'t [Token],
    position: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.position).cloned();
        self.position += 1;
        t
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            offset: self.offset(),
            message: message.into(),
        })
    }

    fn expect(&mut self, kind: Kind) -> Result<(), SelectorError> {
        match self.peek() {
            Some(t) if t.kind == kind => {
                self.position += 1;
                Ok(())
            }
            Some(t) => {
                let found = t.kind.to_string();
                self.error(format!("expected {kind}, found {found}"))
            }
            None => self.error(format!("expected {kind}, found the end of the selector")),
        }
    }

    fn or(&mut self) -> Result<CalicoSelector, SelectorError> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| t.kind == Kind::Or) {
            self.position += 1;
            let right = self.and()?;
            left = CalicoSelector::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<CalicoSelector, SelectorError> {
        let mut left = self.unary()?;
        while self.peek().is_some_and(|t| t.kind == Kind::And) {
            self.position += 1;
            let right = self.unary()?;
            left = CalicoSelector::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<CalicoSelector, SelectorError> {
        if self.peek().is_some_and(|t| t.kind == Kind::Not) {
            self.position += 1;
            return Ok(CalicoSelector::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token {
                kind: Kind::Str(s), ..
            }) => Ok(s),
            _ => {
                self.position -= 1;
                self.error("expected a quoted string")
            }
        }
    }

    fn primary(&mut self) -> Result<CalicoSelector, SelectorError> {
        let Some(token) = self.next() else {
            return self.error("expected an expression, found the end of the selector");
        };
        match token.kind {
            Kind::LParen => {
                let e = self.or()?;
                self.expect(Kind::RParen)?;
                Ok(e)
            }
            Kind::Label(label) => {
                let function = |p: &mut Self| -> Result<(), SelectorError> {
                    p.expect(Kind::LParen)?;
                    Ok(())
                };
                if (label == "all" || label == "global")
                    && self.peek().is_some_and(|t| t.kind == Kind::LParen)
                {
                    function(self)?;
                    self.expect(Kind::RParen)?;
                    return Ok(if label == "all" {
                        CalicoSelector::All
                    } else {
                        CalicoSelector::Global
                    });
                }
                if label == "has" && self.peek().is_some_and(|t| t.kind == Kind::LParen) {
                    function(self)?;
                    let key = match self.next() {
                        Some(Token {
                            kind: Kind::Label(k),
                            ..
                        }) => k,
                        _ => {
                            self.position -= 1;
                            return self.error("expected a label name inside has()");
                        }
                    };
                    self.expect(Kind::RParen)?;
                    return Ok(CalicoSelector::Has(key));
                }
                self.comparison(label, token.offset)
            }
            other => Err(SelectorError {
                offset: token.offset,
                message: format!(
                    "expected a label, '(', '!', all(), has() or global(), found {other}"
                ),
            }),
        }
    }

    fn comparison(
        &mut self,
        key: String,
        key_offset: usize,
    ) -> Result<CalicoSelector, SelectorError> {
        let Some(op) = self.next() else {
            return Err(SelectorError {
                offset: key_offset,
                message: format!(
                    "label '{key}' needs an operator (==, !=, in, not in, contains, starts with, ends with)"
                ),
            });
        };
        match op.kind {
            Kind::Eq => Ok(CalicoSelector::Equal(key, self.string()?)),
            Kind::Ne => Ok(CalicoSelector::NotEqual(key, self.string()?)),
            Kind::Label(word) => match word.as_str() {
                "in" => Ok(CalicoSelector::In(key, self.set()?)),
                "not" => match self.next() {
                    Some(Token {
                        kind: Kind::Label(w),
                        ..
                    }) if w == "in" => Ok(CalicoSelector::NotIn(key, self.set()?)),
                    _ => {
                        self.position -= 1;
                        self.error("expected 'in' after 'not'")
                    }
                },
                "contains" => Ok(CalicoSelector::Contains(key, self.string()?)),
                "starts" | "ends" => {
                    match self.next() {
                        Some(Token {
                            kind: Kind::Label(w),
                            ..
                        }) if w == "with" => {}
                        _ => {
                            self.position -= 1;
                            return self.error(format!("expected 'with' after '{word}'"));
                        }
                    }
                    let value = self.string()?;
                    Ok(if word == "starts" {
                        CalicoSelector::StartsWith(key, value)
                    } else {
                        CalicoSelector::EndsWith(key, value)
                    })
                }
                _ => Err(SelectorError {
                    offset: op.offset,
                    message: format!("unknown operator '{word}'"),
                }),
            },
            other => Err(SelectorError {
                offset: op.offset,
                message: format!("expected an operator after label '{key}', found {other}"),
            }),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.expect(Kind::LBrace)?;
        let mut set = BTreeSet::new();
        if self.peek().is_some_and(|t| t.kind == Kind::RBrace) {
            self.position += 1;
            return Ok(set);
        }
        loop {
            set.insert(self.string()?);
            match self.next() {
                Some(Token {
                    kind: Kind::Comma, ..
                }) => {}
                Some(Token {
                    kind: Kind::RBrace, ..
                }) => return Ok(set),
                _ => {
                    self.position -= 1;
                    return self.error("expected ',' or '}' in a set");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> CalicoSelector {
        CalicoSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(
            parse("!has(a) || b == 'x' && c in {'1','2'}").to_string(),
            "(!(has(a)) || (b == 'x' && c in {'1', '2'}))"
        );
        assert_eq!(
            parse("a == 'x' && (b == 'y' || c == 'z')").to_string(),
            "(a == 'x' && (b == 'y' || c == 'z'))"
        );
        assert_eq!(parse("").to_string(), "all()");
    }

    #[test]
    fn every_operator_matches_as_documented() {
        let l = labels(&[("app", "web-frontend"), ("env", "prod")]);
        let cases = [
            ("app == 'web-frontend'", true),
            ("app != 'web-frontend'", false),
            ("missing != 'x'", true),
            ("env in {'prod', 'dev'}", true),
            ("env not in {'prod'}", false),
            ("missing not in {'prod'}", true),
            ("missing in {'prod'}", false),
            ("has(app)", true),
            ("!has(app)", false),
            ("app contains 'front'", true),
            ("app starts with 'web'", true),
            ("app ends with 'end'", true),
            ("missing contains ''", false),
            ("all()", true),
            ("!all()", false),
            ("global()", false),
            ("env == \"prod\" && has(app)", true),
            ("env == 'dev' || app == 'x'", false),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s).matches(&l), want, "{s}");
        }
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = CalicoSelector::parse("app == 'web' && env = 'x'").expect_err("single =");
        assert_eq!(e.offset, 20);
        let e = CalicoSelector::parse("app in {'a' 'b'}").expect_err("missing comma");
        assert_eq!(e.offset, 12);
        let e = CalicoSelector::parse("app == 'unterminated").expect_err("quote");
        assert_eq!(e.offset, 7);
        assert!(CalicoSelector::parse("(app == 'x'").is_err());
        assert!(CalicoSelector::parse("app").is_err());
        assert!(CalicoSelector::parse("app == 'x' )").is_err());
    }

    fn arb_label() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9./_-]{0,6}".prop_filter("keywords", |s| {
            ![
                "in", "not", "has", "all", "global", "contains", "starts", "ends", "with",
            ]
            .contains(&s.as_str())
        })
    }

    fn arb_value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ._-]{0,6}"
    }

    fn arb_selector() -> impl Strategy<Value = CalicoSelector> {
        let leaf = prop_oneof![
            Just(CalicoSelector::All),
            arb_label().prop_map(CalicoSelector::Has),
            (arb_label(), arb_value()).prop_map(|(k, v)| CalicoSelector::Equal(k, v)),
            (arb_label(), arb_value()).prop_map(|(k, v)| CalicoSelector::NotEqual(k, v)),
            (
                arb_label(),
                proptest::collection::btree_set(arb_value(), 0..3)
            )
                .prop_map(|(k, s)| CalicoSelector::In(k, s)),
            (
                arb_label(),
                proptest::collection::btree_set(arb_value(), 0..3)
            )
                .prop_map(|(k, s)| CalicoSelector::NotIn(k, s)),
            (arb_label(), arb_value()).prop_map(|(k, v)| CalicoSelector::Contains(k, v)),
            (arb_label(), arb_value()).prop_map(|(k, v)| CalicoSelector::StartsWith(k, v)),
            (arb_label(), arb_value()).prop_map(|(k, v)| CalicoSelector::EndsWith(k, v)),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| CalicoSelector::Not(Box::new(e))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| CalicoSelector::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner)
                    .prop_map(|(a, b)| CalicoSelector::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #[test]
        fn printing_and_parsing_again_gives_the_same_tree(selector in arb_selector()) {
            let text = selector.to_string();
            let reparsed = CalicoSelector::parse(&text);
            prop_assert_eq!(reparsed, Ok(selector), "{}", text);
        }
    }
}
