//! The parser: tokens to [`Ast`], reporting every syntax error in the file.
//!
//! Grammar (statements may come in any order; `#` starts a comment):
//! ```text
//! network NAME
//! weights "FILE"                                   # safetensors, relative to the description
//! input NAME : DTYPE[D, ...]
//! weight @NAME : f32[D, ...]                       # the tensor NAME of the weights file
//! weight @NAME : f32[D, ...] = file("KEY")         # the tensor KEY of the weights file
//! weight @NAME : f32[D, ...] = [V, V, ...]         # literal values, row-major
//! weight @NAME : f32[D, ...] = random(normal(MEAN, STD), density = D, seed = S)
//! let NAME = OP(VALUE, ..., @WEIGHT, ..., ATTR = VALUE, ...)
//! output NAME = OP(...)                            # defines a value and marks it an output
//! output NAME                                      # marks an existing value an output
//! ```
//! NAME is `[A-Za-z_][A-Za-z0-9_.]*` or a quoted string.
//!
//! Invariant: after an error the parser skips to the next statement keyword, so one mistake
//! yields one diagnostic and the rest of the file is still checked.

use super::ast::*;
use super::lexer::{Lexeme, Token, lex};
use crate::diag::Diag;
use sprig_ir::{AttrValue, DType};

const STATEMENT_KEYWORDS: &[&str] = &["network", "weights", "weight", "input", "output", "let"];

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Lexeme>,
    pos: usize,
    diags: Vec<Diag>,
}

/// A syntax error, already recorded; the statement is abandoned.
struct Abandon;

type PResult<T> = Result<T, Abandon>;

/// Parses a whole description. The AST holds every statement that parsed.
pub fn parse(source: &str) -> (Ast, Vec<Diag>) {
    let mut p = Parser {
        source,
        tokens: lex(source),
        pos: 0,
        diags: Vec::new(),
    };
    let mut ast = Ast::default();
    while p.pos < p.tokens.len() {
        let start = p.pos;
        if p.statement(&mut ast).is_err() {
            p.recover(start);
        }
    }
    (ast, p.diags)
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Option<Lexeme> {
        self.tokens.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<Lexeme> {
        self.tokens.get(self.pos + k).copied()
    }

    fn text(&self, l: Lexeme) -> &'s str {
        &self.source[l.start..l.end]
    }

    fn end_span(&self) -> Span {
        let end = self.source.len();
        end..end
    }

    fn is_statement_start(&self, l: Lexeme) -> bool {
        l.token == Token::Ident && STATEMENT_KEYWORDS.contains(&self.text(l))
    }

    /// Skips to the next statement keyword after a failed statement that began at `start`.
    fn recover(&mut self, start: usize) {
        self.pos = self.pos.max(start + 1);
        while let Some(l) = self.peek() {
            if self.is_statement_start(l) {
                break;
            }
            self.pos += 1;
        }
    }

    fn error(
        &mut self,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Abandon {
        self.diags.push(Diag::error(message, span, label));
        Abandon
    }

    /// Reports that `expected` was wanted where the next token (or the end) is.
    fn unexpected(&mut self, expected: &str) -> Abandon {
        match self.peek() {
            Some(l) if l.token == Token::UnterminatedStr => self.error(
                l.start..l.end,
                "unterminated string",
                "this string has no closing `\"` on its line",
            ),
            Some(l) if l.token == Token::Error => {
                let text = self.text(l).to_string();
                self.error(
                    l.start..l.end,
                    format!(
                        "unexpected character{} `{text}`",
                        if text.chars().count() > 1 { "s" } else { "" }
                    ),
                    format!("expected {expected}"),
                )
            }
            Some(l) => {
                let found = match l.token {
                    Token::Ident => format!("`{}`", self.text(l)),
                    t => t.describe().to_string(),
                };
                self.error(
                    l.start..l.end,
                    format!("expected {expected}, found {found}"),
                    format!("expected {expected}"),
                )
            }
            None => self.error(
                self.end_span(),
                format!("expected {expected}, found the end of the file"),
                format!("expected {expected}"),
            ),
        }
    }

    fn expect(&mut self, token: Token, expected: &str) -> PResult<Lexeme> {
        match self.peek() {
            Some(l) if l.token == token => {
                self.pos += 1;
                Ok(l)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn eat(&mut self, token: Token) -> bool {
        if self.peek().is_some_and(|l| l.token == token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn statement(&mut self, ast: &mut Ast) -> PResult<()> {
        let Some(l) = self.peek() else {
            return Ok(());
        };
        if l.token != Token::Ident || !self.is_statement_start(l) {
            return Err(self.unexpected(
                "a statement (`network`, `weights`, `input`, `weight`, `let` or `output`)",
            ));
        }
        self.pos += 1;
        match self.text(l) {
            "network" => {
                let name = self.name("a network name")?;
                self.set_once(&mut ast.network, name, "the network is named twice");
            }
            "weights" => {
                let file = self.string("a file name in quotes")?;
                self.set_once(
                    &mut ast.weights_file,
                    file,
                    "only one weights file may be named",
                );
            }
            "input" => {
                let name = self.name("an input name")?;
                let ty = self
                    .expect(Token::Colon, "`:` and the input's type")
                    .and_then(|_| self.ty())
                    .inspect_err(|_| ast.broken_values.push(name.clone()))?;
                ast.inputs.push(InputDecl { name, ty });
            }
            "weight" => {
                let decl = self.weight_decl(l.start, &mut ast.broken_weights)?;
                ast.weights.push(decl);
            }
            "let" => {
                let name = self.name("a value name")?;
                let call = self
                    .expect(Token::Eq, "`=`")
                    .and_then(|_| self.call())
                    .inspect_err(|_| ast.broken_values.push(name.clone()))?;
                ast.lets.push(LetStmt { name, call });
            }
            "output" => {
                let name = self.name("an output name")?;
                if self.eat(Token::Eq) {
                    let call = self.call().inspect_err(|_| {
                        ast.broken_values.push(name.clone());
                        ast.broken_output = true;
                    })?;
                    ast.lets.push(LetStmt {
                        name: name.clone(),
                        call,
                    });
                }
                ast.outputs.push(name);
            }
            _ => unreachable!("statement keywords are matched above"),
        }
        Ok(())
    }

    /// Stores a statement that may appear once, reporting a repeat against the first.
    fn set_once(
        &mut self,
        slot: &mut Option<Spanned<String>>,
        value: Spanned<String>,
        message: &str,
    ) {
        match slot {
            Some(first) => self.diags.push(
                Diag::error(message, value.span, "again here")
                    .with_secondary(first.span.clone(), "first here"),
            ),
            None => *slot = Some(value),
        }
    }

    /// A bare or quoted name.
    fn name(&mut self, expected: &str) -> PResult<Spanned<String>> {
        match self.peek() {
            Some(l) if l.token == Token::Ident && !self.is_statement_start(l) => {
                self.pos += 1;
                Ok(Spanned {
                    value: self.text(l).to_string(),
                    span: l.start..l.end,
                })
            }
            Some(l) if l.token == Token::Str => self.string(expected),
            _ => Err(self.unexpected(expected)),
        }
    }

    /// A string literal with its escapes decoded.
    fn string(&mut self, expected: &str) -> PResult<Spanned<String>> {
        let l = self.expect(Token::Str, expected)?;
        let raw = &self.source[l.start + 1..l.end - 1];
        let mut out = String::new();
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let at = l.start + 1 + i;
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'u')) => {
                    let rest = &raw[i + 2..];
                    let decoded = rest
                        .strip_prefix('{')
                        .and_then(|r| r.split_once('}'))
                        .and_then(|(hex, _)| {
                            u32::from_str_radix(hex, 16).ok().map(|v| (hex.len(), v))
                        })
                        .and_then(|(n, v)| char::from_u32(v).map(|c| (n, c)));
                    let Some((n, c)) = decoded else {
                        return Err(self.error(
                            at..at + 2,
                            "bad escape in string",
                            "`\\u` must be followed by `{HEX}` naming a character",
                        ));
                    };
                    out.push(c);
                    for _ in 0..n + 2 {
                        chars.next();
                    }
                }
                Some((j, other)) => {
                    let end = l.start + 1 + j + other.len_utf8();
                    return Err(self.error(
                        at..end,
                        format!("bad escape `\\{other}` in string"),
                        "known escapes: \\\" \\\\ \\n \\t \\u{HEX}",
                    ));
                }
                None => unreachable!("the lexer ends strings on a quote, never on a backslash"),
            }
        }
        Ok(Spanned {
            value: out,
            span: l.start..l.end,
        })
    }

    fn int(&mut self, expected: &str) -> PResult<Spanned<i64>> {
        let l = self.expect(Token::Int, expected)?;
        let text = self.text(l);
        match text.parse::<i64>() {
            Ok(v) => Ok(Spanned {
                value: v,
                span: l.start..l.end,
            }),
            Err(_) => Err(self.error(
                l.start..l.end,
                format!("integer `{text}` is out of range"),
                "does not fit in 64 bits",
            )),
        }
    }

    /// A number: integer, decimal, `inf`, `-inf` or `nan`.
    fn number(&mut self, expected: &str) -> PResult<Spanned<f64>> {
        let Some(l) = self.peek() else {
            return Err(self.unexpected(expected));
        };
        let text = self.text(l);
        let value = match l.token {
            Token::Int | Token::Float => text.parse::<f64>().ok(),
            Token::Ident if text == "inf" || text == "nan" => text.parse::<f64>().ok(),
            _ => return Err(self.unexpected(expected)),
        };
        self.pos += 1;
        match value {
            Some(v) => Ok(Spanned {
                value: v,
                span: l.start..l.end,
            }),
            None => Err(self.error(
                l.start..l.end,
                format!("bad number `{text}`"),
                "not a number",
            )),
        }
    }

    fn ty(&mut self) -> PResult<TypeExpr> {
        let l = self.expect(Token::Ident, "a type such as `f32[784]`")?;
        let name = self.text(l);
        let Some(dtype) = DType::from_name(name) else {
            let known: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            return Err(self.error(
                l.start..l.end,
                format!("unknown element type `{name}`"),
                format!("sprig knows {}", known.join(" and ")),
            ));
        };
        self.expect(Token::LBracket, "`[` and the dimensions")?;
        let mut dims = Vec::new();
        if !self.eat(Token::RBracket) {
            loop {
                let d = self.int("a dimension")?;
                let Ok(dim) = usize::try_from(d.value) else {
                    return Err(self.error(
                        d.span,
                        "a dimension cannot be negative",
                        "negative dimension",
                    ));
                };
                dims.push(dim);
                if self.eat(Token::RBracket) {
                    break;
                }
                self.expect(Token::Comma, "`,` or `]`")?;
            }
        }
        let end = self.tokens[self.pos - 1].end;
        Ok(TypeExpr {
            dtype,
            dims,
            span: l.start..end,
        })
    }

    /// `@NAME : TYPE [= INIT]`; when it fails after the name, the name goes to `broken`.
    fn weight_decl(
        &mut self,
        start: usize,
        broken: &mut Vec<Spanned<String>>,
    ) -> PResult<WeightDecl> {
        self.expect(Token::At, "`@` and a weight name")?;
        let name = self.name("a weight name")?;
        let decl = self.weight_decl_rest(start, name.clone());
        if decl.is_err() {
            broken.push(name);
        }
        decl
    }

    fn weight_decl_rest(&mut self, start: usize, name: Spanned<String>) -> PResult<WeightDecl> {
        self.expect(Token::Colon, "`:` and the weight's type")?;
        let ty = self.ty()?;
        let mut init_span = ty.span.clone();
        let init = if self.eat(Token::Eq) {
            let init_start = self.peek().map_or(self.source.len(), |l| l.start);
            let init = self.weight_init()?;
            init_span = init_start..self.tokens[self.pos - 1].end;
            init
        } else {
            WeightInitExpr::FromFile
        };
        let end = self.tokens[self.pos - 1].end;
        Ok(WeightDecl {
            name,
            ty,
            init,
            init_span,
            span: start..end,
        })
    }

    fn weight_init(&mut self) -> PResult<WeightInitExpr> {
        if self.eat(Token::LBracket) {
            let mut values = Vec::new();
            if !self.eat(Token::RBracket) {
                loop {
                    let v = self.number("a number")?;
                    values.push(v.value as f32);
                    if self.eat(Token::RBracket) {
                        break;
                    }
                    self.expect(Token::Comma, "`,` or `]`")?;
                }
            }
            return Ok(WeightInitExpr::Literal(values));
        }
        let Some(l) = self.peek().filter(|l| l.token == Token::Ident) else {
            return Err(self.unexpected("`[values]`, `random(...)` or `file(\"KEY\")`"));
        };
        match self.text(l) {
            "file" => {
                self.pos += 1;
                self.expect(Token::LParen, "`(`")?;
                let key = self.string("the tensor's name in the weights file, in quotes")?;
                self.expect(Token::RParen, "`)`")?;
                Ok(WeightInitExpr::FileKey(key))
            }
            "random" => {
                self.pos += 1;
                self.random()
            }
            "computed" => Err(self.error(
                l.start..l.end,
                "the values of this weight were left out of the dump it comes from",
                "dump again with --save-weights FILE or --full to keep them",
            )),
            _ => Err(self.unexpected("`[values]`, `random(...)` or `file(\"KEY\")`")),
        }
    }

    fn random(&mut self) -> PResult<WeightInitExpr> {
        self.expect(Token::LParen, "`(`")?;
        let d = self.expect(
            Token::Ident,
            "a distribution: `normal(MEAN, STD)` or `uniform(LOW, HIGH)`",
        )?;
        let kind = self.text(d);
        if kind != "normal" && kind != "uniform" {
            return Err(self.error(
                d.start..d.end,
                format!("unknown distribution `{kind}`"),
                "expected `normal(MEAN, STD)` or `uniform(LOW, HIGH)`",
            ));
        }
        self.expect(Token::LParen, "`(`")?;
        let a = self.number("a number")?;
        self.expect(Token::Comma, "`,`")?;
        let b = self.number("a number")?;
        self.expect(Token::RParen, "`)`")?;
        let dist = if kind == "normal" {
            if !(b.value.is_finite() && b.value >= 0.0 && a.value.is_finite()) {
                return Err(self.error(
                    a.span.start..b.span.end,
                    "a normal distribution needs a finite mean and a finite, non-negative standard deviation",
                    "bad parameters",
                ));
            }
            DistExpr::Normal(a.value, b.value)
        } else {
            if !(a.value.is_finite() && b.value.is_finite() && a.value <= b.value) {
                return Err(self.error(
                    a.span.start..b.span.end,
                    "a uniform distribution needs finite bounds with LOW <= HIGH",
                    "bad bounds",
                ));
            }
            DistExpr::Uniform(a.value, b.value)
        };
        let mut density = 1.0;
        let mut seed = 0u64;
        while self.eat(Token::Comma) {
            let key = self.expect(Token::Ident, "`density = D` or `seed = S`")?;
            self.expect(Token::Eq, "`=`")?;
            match self.text(key) {
                "density" => {
                    let d = self.number("a density between 0 and 1")?;
                    if !(0.0..=1.0).contains(&d.value) {
                        return Err(self.error(
                            d.span,
                            "density must be between 0 and 1",
                            "out of range",
                        ));
                    }
                    density = d.value;
                }
                "seed" => {
                    let s = self.int("a seed (a non-negative integer)")?;
                    let Ok(v) = u64::try_from(s.value) else {
                        return Err(self.error(
                            s.span,
                            "a seed cannot be negative",
                            "negative seed",
                        ));
                    };
                    seed = v;
                }
                other => {
                    return Err(self.error(
                        key.start..key.end,
                        format!("`random` has no parameter `{other}`"),
                        "expected `density` or `seed`",
                    ));
                }
            }
        }
        self.expect(Token::RParen, "`,` or `)`")?;
        Ok(WeightInitExpr::Random {
            dist,
            density,
            seed,
        })
    }

    fn call(&mut self) -> PResult<Call> {
        let op_lexeme = self.expect(Token::Ident, "an operation such as `dense(x, @w)`")?;
        let op = Spanned {
            value: self.text(op_lexeme).to_string(),
            span: op_lexeme.start..op_lexeme.end,
        };
        self.expect(Token::LParen, "`(` and the operands")?;
        let mut args = Vec::new();
        if !self.eat(Token::RParen) {
            loop {
                args.push(self.arg()?);
                if self.eat(Token::RParen) {
                    break;
                }
                self.expect(Token::Comma, "`,` or `)`")?;
            }
        }
        let end = self.tokens[self.pos - 1].end;
        Ok(Call {
            op,
            args,
            span: op_lexeme.start..end,
        })
    }

    fn arg(&mut self) -> PResult<Arg> {
        if self.eat(Token::At) {
            return Ok(Arg::Weight(self.name("a weight name")?));
        }
        let is_attr = matches!(
            (self.peek(), self.peek_at(1)),
            (Some(a), Some(b)) if a.token == Token::Ident && b.token == Token::Eq
        );
        if !is_attr {
            return Ok(Arg::Value(
                self.name("a value name, `@weight` or `attribute = value`")?,
            ));
        }
        let key = self.expect(Token::Ident, "an attribute name")?;
        self.pos += 1; // `=`
        let key = Spanned {
            value: self.text(key).to_string(),
            span: key.start..key.end,
        };
        let value = self.attr_value()?;
        Ok(Arg::Attr(key, value))
    }

    fn attr_value(&mut self) -> PResult<Spanned<AttrValue>> {
        let Some(l) = self.peek() else {
            return Err(self.unexpected("an attribute value"));
        };
        let text = self.text(l);
        let value = match l.token {
            Token::Int => AttrValue::Int(self.int("an integer")?.value),
            Token::Float => AttrValue::Float(self.number("a number")?.value),
            Token::Ident if text == "true" || text == "false" => {
                self.pos += 1;
                AttrValue::Bool(text == "true")
            }
            Token::Ident if text == "inf" || text == "nan" => {
                AttrValue::Float(self.number("a number")?.value)
            }
            Token::Ident if DType::from_name(text).is_some() => {
                self.pos += 1;
                AttrValue::DType(DType::from_name(text).expect("checked"))
            }
            Token::LBracket => {
                self.pos += 1;
                let mut values = Vec::new();
                if !self.eat(Token::RBracket) {
                    loop {
                        values.push(self.int("an integer")?.value);
                        if self.eat(Token::RBracket) {
                            break;
                        }
                        self.expect(Token::Comma, "`,` or `]`")?;
                    }
                }
                AttrValue::Ints(values)
            }
            _ => {
                return Err(self
                    .unexpected("an attribute value (a number, `true`, `false`, an element type or `[integers]`)"));
            }
        };
        let end = self.tokens[self.pos - 1].end;
        Ok(Spanned {
            value,
            span: l.start..end,
        })
    }
}
