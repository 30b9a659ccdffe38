//! Permissions of API keys: names (`docs.read`, `billing:write`), grants with `*` wildcards,
//! and permission queries (`docs.read AND (billing.read OR admin)`) evaluated against grants.
//!
//! A key holds grants; a verification asks a [`Query`] of concrete permissions. A grant may
//! contain `*`, which matches any run of characters, dots included: `docs.*` grants `docs.read`
//! and `docs.a.b`, `*.read` grants `docs.read`, and `*` grants everything.
//!
//! Queries come from callers, so everything here is bounded: names are at most
//! [`MAX_PERMISSION_LEN`] bytes, query strings [`MAX_QUERY_LEN`] bytes, with at most
//! [`MAX_QUERY_TERMS`] permissions nested at most [`MAX_QUERY_DEPTH`] deep. The parser's
//! recursion is bounded by the depth limit before it recurses, so no input can overflow the
//! stack, and wildcard matching is an iterative glob that takes at most
//! `pattern length × name length` steps.

use std::collections::HashSet;
use std::fmt;

/// Longest permission or grant name, in bytes.
pub const MAX_PERMISSION_LEN: usize = 128;
/// Longest query string, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Deepest nesting of `AND`/`OR` in a query (and of parentheses in its string form).
pub const MAX_QUERY_DEPTH: usize = 16;
/// Most permissions one query may name.
pub const MAX_QUERY_TERMS: usize = 64;

/// The words that are operators in a query's string form, and therefore not permission names.
const OPERATORS: [&str; 4] = ["AND", "and", "OR", "or"];

/// Why a permission name, grant or query is refused.
///
/// Positions are byte offsets into the text that was checked: the name for
/// [`validate_permission`], [`validate_grant`] and [`Query::check`], the whole query for
/// [`Query::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermissionError {
    /// A name is empty.
    Empty,
    /// The name starting at `position` is `length` bytes long, more than [`MAX_PERMISSION_LEN`].
    TooLong { position: usize, length: usize },
    /// A character outside `[A-Za-z0-9_.:-]` (and `*` for grants).
    InvalidCharacter { position: usize, character: char },
    /// A `*` in a permission that is asked for: only grants may hold wildcards.
    Wildcard { position: usize },
    /// `AND`, `and`, `OR` or `or` used as a permission name: they are the query operators.
    Reserved { position: usize },
    /// The query string is `length` bytes long, more than [`MAX_QUERY_LEN`].
    QueryTooLong { length: usize },
    /// `AND`/`OR` or parentheses nest more than [`MAX_QUERY_DEPTH`] deep.
    TooDeep,
    /// The query names more than [`MAX_QUERY_TERMS`] permissions.
    TooManyTerms,
    /// An `and`/`or` without operands.
    EmptyGroup,
    /// The query string does not follow the grammar; `expected` says what would have fit.
    Syntax {
        position: usize,
        expected: &'static str,
    },
}

impl fmt::Display for PermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("permission name is empty"),
            Self::TooLong { position, length } => write!(
                f,
                "permission name at byte {position} is {length} bytes long, more than {MAX_PERMISSION_LEN}"
            ),
            Self::InvalidCharacter {
                position,
                character,
            } => write!(
                f,
                "invalid character {character:?} at byte {position}: permissions use letters, digits, `_`, `.`, `:` and `-`"
            ),
            Self::Wildcard { position } => write!(
                f,
                "`*` at byte {position}: only grants may hold wildcards, a query asks for concrete permissions"
            ),
            Self::Reserved { position } => write!(
                f,
                "the word at byte {position} is a query operator (`AND`, `OR`), not a permission name"
            ),
            Self::QueryTooLong { length } => write!(
                f,
                "permission query is {length} bytes long, more than {MAX_QUERY_LEN}"
            ),
            Self::TooDeep => write!(
                f,
                "permission query nests `AND`/`OR` or parentheses more than {MAX_QUERY_DEPTH} deep"
            ),
            Self::TooManyTerms => write!(
                f,
                "permission query names more than {MAX_QUERY_TERMS} permissions"
            ),
            Self::EmptyGroup => f.write_str("`and`/`or` in a permission query needs an operand"),
            Self::Syntax { position, expected } => write!(
                f,
                "syntax error in permission query at byte {position}: expected {expected}"
            ),
        }
    }
}

impl std::error::Error for PermissionError {}

/// Checks a concrete permission name: 1 to [`MAX_PERMISSION_LEN`] bytes of
/// `[A-Za-z0-9_.:-]`, and not one of the query operators `AND`, `and`, `OR`, `or`.
///
/// # Errors
/// [`PermissionError`] names the first problem.
pub fn validate_permission(name: &str) -> Result<(), PermissionError> {
    validate_name(name, 0, false)
}

/// Checks a grant: like [`validate_permission`], with `*` allowed anywhere.
///
/// # Errors
/// [`PermissionError`] names the first problem.
pub fn validate_grant(name: &str) -> Result<(), PermissionError> {
    validate_name(name, 0, true)
}

/// Validates `name`, found at byte `offset` of the text being checked.
fn validate_name(name: &str, offset: usize, wildcard_allowed: bool) -> Result<(), PermissionError> {
    if name.is_empty() {
        return Err(PermissionError::Empty);
    }
    if let Some((index, character)) = name
        .char_indices()
        .find(|&(_, character)| !is_name_char(character) && character != '*')
    {
        return Err(PermissionError::InvalidCharacter {
            position: offset + index,
            character,
        });
    }
    if !wildcard_allowed && let Some(index) = name.find('*') {
        return Err(PermissionError::Wildcard {
            position: offset + index,
        });
    }
    if name.len() > MAX_PERMISSION_LEN {
        return Err(PermissionError::TooLong {
            position: offset,
            length: name.len(),
        });
    }
    if OPERATORS.contains(&name) {
        return Err(PermissionError::Reserved { position: offset });
    }
    Ok(())
}

fn is_name_char(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | ':' | '-')
}

/// The grants of one key, compiled once: exact names in a set, wildcard patterns in a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    exact: HashSet<String>,
    /// Patterns holding `*`, each with runs of `*` collapsed to one, without duplicates.
    patterns: Vec<String>,
    /// Whether a grant is made only of `*`, which grants everything.
    everything: bool,
}

impl Grants {
    /// Compiles grants. Names are taken as they are: the caller validates them with
    /// [`validate_grant`] when they are stored, and a name that is not valid simply never
    /// matches a valid permission.
    pub fn new<I, S>(grants: I) -> Grants
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut compiled = Grants::default();
        for grant in grants {
            let grant = grant.as_ref();
            if !grant.contains('*') {
                compiled.exact.insert(grant.to_owned());
                continue;
            }
            let mut pattern = String::with_capacity(grant.len());
            for character in grant.chars() {
                if !(character == '*' && pattern.ends_with('*')) {
                    pattern.push(character);
                }
            }
            if pattern == "*" {
                compiled.everything = true;
            } else if !compiled.patterns.contains(&pattern) {
                compiled.patterns.push(pattern);
            }
        }
        compiled
    }

    /// Whether the grants cover `permission`: an exact grant in one lookup, else the first
    /// wildcard pattern that matches it.
    #[must_use]
    pub fn allows(&self, permission: &str) -> bool {
        self.everything
            || self.exact.contains(permission)
            || self
                .patterns
                .iter()
                .any(|pattern| glob_matches(pattern.as_bytes(), permission.as_bytes()))
    }

    /// Whether there is no grant at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.everything && self.exact.is_empty() && self.patterns.is_empty()
    }
}

/// Whether `pattern`, in which `*` matches any run of bytes, matches all of `text`.
///
/// Iterative, remembering only the last `*`: when a later literal part fails, it is enough to
/// let that last `*` swallow one more byte, because any match an earlier `*` could find by
/// swallowing more, the last one finds too. So this takes at most
/// `pattern.len() × text.len()` steps, never the exponential time of naive backtracking.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let mut pattern_index = 0;
    let mut text_index = 0;
    // The position just after the last `*` seen, and the text position it is matched up to.
    let mut last_star: Option<(usize, usize)> = None;
    while text_index < text.len() {
        match pattern.get(pattern_index) {
            Some(b'*') => {
                pattern_index += 1;
                last_star = Some((pattern_index, text_index));
            }
            Some(&byte) if byte == text[text_index] => {
                pattern_index += 1;
                text_index += 1;
            }
            _ => match last_star {
                Some((after_star, swallowed_up_to)) => {
                    pattern_index = after_star;
                    text_index = swallowed_up_to + 1;
                    last_star = Some((after_star, text_index));
                }
                None => return false,
            },
        }
    }
    pattern[pattern_index..].iter().all(|&byte| byte == b'*')
}

/// A permission query: the permissions a verification asks a key to hold.
///
/// The string form is `docs.read AND (billing.read OR admin)`: `AND` binds tighter than `OR`,
/// parentheses group, and the operators may also be written `and` and `or`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Holds when the grants allow this permission.
    Permission(String),
    /// Holds when every operand holds.
    And(Vec<Query>),
    /// Holds when at least one operand holds.
    Or(Vec<Query>),
}

impl Query {
    /// Parses the string form: `docs.read AND (billing.read OR admin)`.
    ///
    /// `a AND b AND c` is one `And` of three operands; parentheses keep their group, so
    /// `(a AND b) AND c` is an `And` inside an `And` (this is what lets [`Display`](fmt::Display)
    /// print a query back exactly). The result passes [`Query::check`].
    ///
    /// # Errors
    /// [`PermissionError::Syntax`] with the byte position of the first token that does not fit,
    /// a name error at the name's position, or a limit error.
    pub fn parse(text: &str) -> Result<Query, PermissionError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(PermissionError::QueryTooLong { length: text.len() });
        }
        let mut parser = Parser {
            tokens: tokenize(text)?,
            next: 0,
            end: text.len(),
            terms: 0,
        };
        let query = parser.disjunction(0)?;
        if let Some(token) = parser.tokens.get(parser.next) {
            return Err(PermissionError::Syntax {
                position: token.position,
                expected: "`AND`, `OR` or the end of the query",
            });
        }
        // Parentheses are bounded, but each level may hold an `OR` of `AND`s: check the tree.
        query.check()?;
        Ok(query)
    }

    /// Checks a query built elsewhere (the engine builds it from JSON): every name is a valid
    /// permission without `*`, `and`/`or` have operands, nesting is at most
    /// [`MAX_QUERY_DEPTH`] deep and there are at most [`MAX_QUERY_TERMS`] permissions.
    ///
    /// It walks the query without recursion, so even a very deep query is refused safely.
    ///
    /// # Errors
    /// The first problem found; name errors give positions within the name.
    pub fn check(&self) -> Result<(), PermissionError> {
        let mut terms = 0;
        let mut pending = vec![(self, 0)];
        while let Some((query, depth)) = pending.pop() {
            match query {
                Query::Permission(name) => {
                    terms += 1;
                    if terms > MAX_QUERY_TERMS {
                        return Err(PermissionError::TooManyTerms);
                    }
                    validate_permission(name)?;
                }
                Query::And(operands) | Query::Or(operands) => {
                    if depth == MAX_QUERY_DEPTH {
                        return Err(PermissionError::TooDeep);
                    }
                    if operands.is_empty() {
                        return Err(PermissionError::EmptyGroup);
                    }
                    pending.extend(operands.iter().rev().map(|operand| (operand, depth + 1)));
                }
            }
        }
        Ok(())
    }

    /// Whether `grants` satisfy the query. An empty `And` holds and an empty `Or` does not
    /// (as for `all` and `any`); [`Query::check`] refuses both anyway.
    ///
    /// It recurses once per level, so it expects a query that passed [`Query::check`].
    #[must_use]
    pub fn evaluate(&self, grants: &Grants) -> bool {
        match self {
            Query::Permission(name) => grants.allows(name),
            Query::And(operands) => operands.iter().all(|operand| operand.evaluate(grants)),
            Query::Or(operands) => operands.iter().any(|operand| operand.evaluate(grants)),
        }
    }

    /// The query with every one-operand `And`/`Or` replaced by its operand: what the string
    /// form can express, as `Display` writes it.
    fn collapsed(&self) -> &Query {
        let mut query = self;
        while let Query::And(operands) | Query::Or(operands) = query
            && let [only] = operands.as_slice()
        {
            query = only;
        }
        query
    }
}

/// Writes the canonical string form, `a AND (b OR c)`: operators in upper case, one space
/// around them, and parentheses only where needed to keep the query's shape.
///
/// The string form has no one-operand `and`/`or`, so those print as their operand. For any
/// query [`Query::parse`] returns, and any query that passes [`Query::check`] without
/// one-operand groups, the text parses back to an equal query when it fits in
/// [`MAX_QUERY_LEN`] (it may be a little longer than the text it was parsed from, as it puts
/// spaces around parentheses).
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.collapsed() {
            Query::Permission(name) => f.write_str(name),
            Query::And(operands) => write_operands(f, operands, " AND ", |operand| {
                matches!(operand, Query::And(_) | Query::Or(_))
            }),
            Query::Or(operands) => write_operands(f, operands, " OR ", |operand| {
                matches!(operand, Query::Or(_))
            }),
        }
    }
}

/// Writes `operands` joined by `separator`, in parentheses those for which `grouped` says so.
fn write_operands(
    f: &mut fmt::Formatter<'_>,
    operands: &[Query],
    separator: &str,
    grouped: impl Fn(&Query) -> bool,
) -> fmt::Result {
    for (index, operand) in operands.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        if grouped(operand.collapsed()) {
            write!(f, "({operand})")?;
        } else {
            write!(f, "{operand}")?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind<'a> {
    Open,
    Close,
    And,
    Or,
    Name(&'a str),
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: TokenKind<'a>,
    position: usize,
}

/// Splits a query into parentheses and words; words are operators or valid permission names.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, PermissionError> {
    let mut tokens = Vec::new();
    let mut characters = text.char_indices().peekable();
    while let Some((position, character)) = characters.next() {
        let kind = match character {
            '(' => TokenKind::Open,
            ')' => TokenKind::Close,
            _ if character.is_whitespace() => continue,
            _ => {
                let mut end = position + character.len_utf8();
                while let Some(&(next, character)) = characters.peek() {
                    if character.is_whitespace() || character == '(' || character == ')' {
                        break;
                    }
                    end = next + character.len_utf8();
                    characters.next();
                }
                match &text[position..end] {
                    "AND" | "and" => TokenKind::And,
                    "OR" | "or" => TokenKind::Or,
                    name => {
                        validate_name(name, position, false)?;
                        TokenKind::Name(name)
                    }
                }
            }
        };
        tokens.push(Token { kind, position });
    }
    Ok(tokens)
}

/// Recursive descent over the tokens. Recursion happens only at `(`, which is refused past
/// [`MAX_QUERY_DEPTH`] levels before recursing, so the stack stays small for any input.
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    /// The length of the text, the position reported for "the end".
    end: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<TokenKind<'a>> {
        self.tokens.get(self.next).map(|token| token.kind)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.end, |token| token.position)
    }

    /// `conjunction (OR conjunction)*`
    fn disjunction(&mut self, depth: usize) -> Result<Query, PermissionError> {
        let mut operands = vec![self.conjunction(depth)?];
        while self.peek() == Some(TokenKind::Or) {
            self.next += 1;
            operands.push(self.conjunction(depth)?);
        }
        Ok(single_or(operands, Query::Or))
    }

    /// `operand (AND operand)*`
    fn conjunction(&mut self, depth: usize) -> Result<Query, PermissionError> {
        let mut operands = vec![self.operand(depth)?];
        while self.peek() == Some(TokenKind::And) {
            self.next += 1;
            operands.push(self.operand(depth)?);
        }
        Ok(single_or(operands, Query::And))
    }

    /// `name | ( disjunction )`
    fn operand(&mut self, depth: usize) -> Result<Query, PermissionError> {
        let position = self.position();
        match self.peek() {
            Some(TokenKind::Name(name)) => {
                self.next += 1;
                self.terms += 1;
                if self.terms > MAX_QUERY_TERMS {
                    return Err(PermissionError::TooManyTerms);
                }
                Ok(Query::Permission(name.to_owned()))
            }
            Some(TokenKind::Open) => {
                if depth == MAX_QUERY_DEPTH {
                    return Err(PermissionError::TooDeep);
                }
                self.next += 1;
                let inner = self.disjunction(depth + 1)?;
                if self.peek() != Some(TokenKind::Close) {
                    return Err(PermissionError::Syntax {
                        position: self.position(),
                        expected: "`AND`, `OR` or `)`",
                    });
                }
                self.next += 1;
                Ok(inner)
            }
            _ => Err(PermissionError::Syntax {
                position,
                expected: "a permission or `(`",
            }),
        }
    }
}

/// The only operand itself, or all of them under `group`.
fn single_or(mut operands: Vec<Query>, group: fn(Vec<Query>) -> Query) -> Query {
    if operands.len() == 1
        && let Some(only) = operands.pop()
    {
        return only;
    }
    group(operands)
}

#[cfg(test)]
mod tests;
