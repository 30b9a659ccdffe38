//! The generic layer of the policy parser: text (HCL or JSON) → a tree of values that remember
//! where they were written.
//!
//! One hand-written lexer and parser reads both syntaxes Vault accepts: HCL's
//! `path "x" { key = value }` blocks and JSON's `{"path": {"x": {"key": value}}}`. A labelled
//! block `path "x" { .. }` becomes the same tree as `path = { "x" = { .. } }`, so the decoder in
//! `decode.rs` sees one shape. Comments are kept (for the formatter); nothing here knows what a
//! policy is.

use crate::ParseError;

/// Where something was written: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// A value and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Number(serde_json::Number),
    Bool(bool),
    List(Vec<Node>),
    Object(Object),
}

/// An object or a block body: its items in order (keys may repeat, as `path` blocks do).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Object {
    pub(crate) items: Vec<Item>,
    /// Comments after the last item, before the closing brace (or the end of the file).
    pub(crate) trailing_comments: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub(crate) key: String,
    pub(crate) key_pos: Pos,
    pub(crate) value: Node,
    /// Comments written before the item.
    pub(crate) comments: Vec<String>,
}

/// How deep lists and objects may nest: a policy needs four levels; the bound keeps hostile
/// input from exhausting the stack.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(serde_json::Number),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Assign,
    Comma,
    Comment(String),
    Eof,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.chars.next()?;
        if next == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(next)
    }

    fn error(&self, pos: Pos, message: impl Into<String>) -> ParseError {
        ParseError::at(pos.line, Some(pos.column), message)
    }

    fn next_token(&mut self) -> Result<(Pos, Token), ParseError> {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.bump();
        }
        let pos = self.pos();
        let Some(first) = self.bump() else {
            return Ok((pos, Token::Eof));
        };
        let token = match first {
            '{' => Token::LBrace,
            '}' => Token::RBrace,
            '[' => Token::LBracket,
            ']' => Token::RBracket,
            '=' | ':' => Token::Assign,
            ',' => Token::Comma,
            '#' => Token::Comment(format!("#{}", self.rest_of_line())),
            '/' => match self.bump() {
                Some('/') => Token::Comment(format!("//{}", self.rest_of_line())),
                Some('*') => Token::Comment(self.block_comment(pos)?),
                _ => return Err(self.error(pos, "unexpected \"/\"")),
            },
            '"' => Token::Str(self.string(pos)?),
            '<' => {
                return Err(self.error(
                    pos,
                    "heredoc strings are not supported; use a quoted string",
                ));
            }
            c if c == '-' || c == '+' || c.is_ascii_digit() => self.number(pos, c)?,
            c if c.is_alphabetic() || c == '_' => {
                let mut ident = String::from(c);
                while let Some(&c) = self.chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                        ident.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                Token::Ident(ident)
            }
            other => return Err(self.error(pos, format!("unexpected character {other:?}"))),
        };
        Ok((pos, token))
    }

    fn rest_of_line(&mut self) -> String {
        let mut text = String::new();
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                break;
            }
            text.push(c);
            self.bump();
        }
        text.trim_end().to_owned()
    }

    fn block_comment(&mut self, start: Pos) -> Result<String, ParseError> {
        let mut text = String::from("/*");
        loop {
            match self.bump() {
                None => return Err(self.error(start, "comment is not closed (missing \"*/\")")),
                Some('*') if self.chars.peek() == Some(&'/') => {
                    self.bump();
                    text.push_str("*/");
                    return Ok(text);
                }
                Some(c) => text.push(c),
            }
        }
    }

    fn string(&mut self, start: Pos) -> Result<String, ParseError> {
        let mut text = String::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.error(start, "string is not closed (missing '\"')"));
                }
                Some('"') => return Ok(text),
                Some('\\') => match self.bump() {
                    Some('"') => text.push('"'),
                    Some('\\') => text.push('\\'),
                    Some('/') => text.push('/'),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('b') => text.push('\u{8}'),
                    Some('f') => text.push('\u{c}'),
                    Some('u') => text.push(self.unicode_escape(pos)?),
                    _ => return Err(self.error(pos, "invalid escape sequence in string")),
                },
                Some(c) => text.push(c),
            }
        }
    }

    fn hex4(&mut self, pos: Pos) -> Result<u32, ParseError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error(pos, "invalid \\u escape: four hex digits expected"))?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    fn unicode_escape(&mut self, pos: Pos) -> Result<char, ParseError> {
        let high = self.hex4(pos)?;
        let code = if (0xD800..0xDC00).contains(&high) {
            // A UTF-16 surrogate pair, as JSON writes characters outside the BMP.
            if self.bump() != Some('\\') || self.bump() != Some('u') {
                return Err(self.error(pos, "invalid \\u escape: unpaired surrogate"));
            }
            let low = self.hex4(pos)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error(pos, "invalid \\u escape: unpaired surrogate"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error(pos, "invalid \\u escape"))
    }

    fn number(&mut self, pos: Pos, first: char) -> Result<Token, ParseError> {
        let mut text = String::from(first);
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || c == '.' || c == '+' || c == '-' {
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let text = text.strip_prefix('+').unwrap_or(&text);
        let number = text
            .parse::<i64>()
            .ok()
            .map(serde_json::Number::from)
            .or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
            })
            .ok_or_else(|| self.error(pos, format!("invalid number {text:?}")))?;
        Ok(Token::Number(number))
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Pos, Token)>,
    comments: Vec<String>,
}

impl Parser<'_> {
    /// The next token that is not a comment; comments are collected for the next item.
    fn peek(&mut self) -> Result<&(Pos, Token), ParseError> {
        loop {
            let token = match self.peeked.take() {
                Some(token) => token,
                None => self.lexer.next_token()?,
            };
            if let Token::Comment(text) = token.1 {
                self.comments.push(text);
                continue;
            }
            return Ok(self.peeked.insert(token));
        }
    }

    fn next(&mut self) -> Result<(Pos, Token), ParseError> {
        self.peek()?;
        self.peeked
            .take()
            .ok_or_else(|| ParseError::at(self.lexer.line, None, "unexpected end of input"))
    }

    fn unexpected(pos: Pos, token: &Token, wanted: &str) -> ParseError {
        let found = match token {
            Token::Ident(ident) => format!("{ident:?}"),
            Token::Str(text) => format!("string {text:?}"),
            Token::Number(number) => format!("number {number}"),
            Token::LBrace => "\"{\"".into(),
            Token::RBrace => "\"}\"".into(),
            Token::LBracket => "\"[\"".into(),
            Token::RBracket => "\"]\"".into(),
            Token::Assign => "\"=\"".into(),
            Token::Comma => "\",\"".into(),
            Token::Comment(_) => "a comment".into(),
            Token::Eof => "end of input".into(),
        };
        ParseError::at(
            pos.line,
            Some(pos.column),
            format!("expected {wanted}, found {found}"),
        )
    }

    /// Items up to `end` (a closing brace, or the end of input at the top level).
    fn body(&mut self, end: &Token, depth: usize) -> Result<Object, ParseError> {
        let mut object = Object::default();
        loop {
            let (pos, token) = self.peek()?.clone();
            if &token == end {
                self.next()?;
                object.trailing_comments = std::mem::take(&mut self.comments);
                return Ok(object);
            }
            let comments = std::mem::take(&mut self.comments);
            let key = match token {
                Token::Ident(key) | Token::Str(key) => key,
                other => {
                    return Err(Self::unexpected(
                        pos,
                        &other,
                        if end == &Token::Eof {
                            "a key such as \"path\""
                        } else {
                            "a key or \"}\""
                        },
                    ));
                }
            };
            self.next()?;
            let value = self.item_value(depth)?;
            object.items.push(Item {
                key,
                key_pos: pos,
                value,
                comments,
            });
            if matches!(self.peek()?.1, Token::Comma) {
                self.next()?;
            }
        }
    }

    /// What follows a key: `= value`, `{ body }`, or labels and then a body.
    fn item_value(&mut self, depth: usize) -> Result<Node, ParseError> {
        let (pos, token) = self.next()?;
        match token {
            Token::Assign => self.value(depth),
            Token::LBrace => Ok(Node {
                pos,
                value: Value::Object(self.body(&Token::RBrace, depth + 1)?),
            }),
            Token::Str(label) | Token::Ident(label) => {
                if depth >= MAX_DEPTH {
                    return Err(ParseError::at(
                        pos.line,
                        Some(pos.column),
                        "nested too deeply",
                    ));
                }
                // `path "x" { .. }` is `path = { "x" = { .. } }`.
                let inner = self.item_value(depth + 1)?;
                Ok(Node {
                    pos,
                    value: Value::Object(Object {
                        items: vec![Item {
                            key: label,
                            key_pos: pos,
                            value: inner,
                            comments: Vec::new(),
                        }],
                        trailing_comments: Vec::new(),
                    }),
                })
            }
            other => Err(Self::unexpected(pos, &other, "\"=\" or \"{\"")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ParseError> {
        if depth >= MAX_DEPTH {
            let pos = self.peek()?.0;
            return Err(ParseError::at(
                pos.line,
                Some(pos.column),
                "nested too deeply",
            ));
        }
        let (pos, token) = self.next()?;
        let value = match token {
            Token::Str(text) => Value::Str(text),
            Token::Number(number) => Value::Number(number),
            Token::Ident(ident) if ident == "true" => Value::Bool(true),
            Token::Ident(ident) if ident == "false" => Value::Bool(false),
            Token::LBrace => Value::Object(self.body(&Token::RBrace, depth + 1)?),
            Token::LBracket => {
                let mut values = Vec::new();
                loop {
                    if matches!(self.peek()?.1, Token::RBracket) {
                        self.next()?;
                        break;
                    }
                    values.push(self.value(depth + 1)?);
                    let (pos, token) = self.peek()?.clone();
                    match token {
                        Token::Comma => {
                            self.next()?;
                        }
                        Token::RBracket => {}
                        other => return Err(Self::unexpected(pos, &other, "\",\" or \"]\"")),
                    }
                }
                // Comments inside a list are not kept.
                self.comments.clear();
                Value::List(values)
            }
            other => return Err(Self::unexpected(pos, &other, "a value")),
        };
        Ok(Node { pos, value })
    }
}

/// Parses policy text into its top-level object. Text that starts with `{` is JSON (an object
/// whose items are the top-level items); anything else is HCL.
pub(crate) fn parse(text: &str) -> Result<Object, ParseError> {
    let mut parser = Parser {
        lexer: Lexer {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
        },
        peeked: None,
        comments: Vec::new(),
    };
    if matches!(parser.peek()?.1, Token::LBrace) {
        let node = parser.value(0)?;
        let (pos, token) = parser.next()?;
        if token != Token::Eof {
            return Err(Parser::unexpected(pos, &token, "end of input"));
        }
        return match node.value {
            Value::Object(mut object) => {
                object
                    .trailing_comments
                    .extend(std::mem::take(&mut parser.comments));
                Ok(object)
            }
            _ => Err(ParseError::at(1, Some(1), "expected an object")),
        };
    }
    parser.body(&Token::Eof, 0)
}
