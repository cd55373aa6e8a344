//! Tokens of the text format.
//!
//! Invariant: lexing never fails as a whole; characters that form no token become
//! [`Token::Error`] (one per run of them) and unterminated strings [`Token::UnterminatedStr`], so
//! the parser reports them with their spans and carries on.

use logos::Logos;

#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
pub enum Token {
    /// A bare name or keyword: `[A-Za-z_][A-Za-z0-9_.]*`.
    #[regex(r"[A-Za-z_][A-Za-z0-9_.]*")]
    Ident,
    #[regex(r"-?[0-9]+", priority = 3)]
    Int,
    #[regex(r"-?[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?")]
    #[regex(r"-?[0-9]+[eE][+-]?[0-9]+")]
    #[regex(r"-?\.[0-9]+([eE][+-]?[0-9]+)?")]
    #[token("-inf")]
    Float,
    /// A complete string literal; escapes are checked by the parser.
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    Str,
    /// A string literal with no closing quote on its line.
    #[regex(r#""([^"\\\n]|\\[^\n])*"#)]
    UnterminatedStr,
    #[token("@")]
    At,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token("=")]
    Eq,
    #[token(":")]
    Colon,
    /// Anything else.
    Error,
}

impl Token {
    /// How the token is described in "expected ..., found ..." messages.
    pub fn describe(self) -> &'static str {
        match self {
            Token::Ident => "a name",
            Token::Int => "an integer",
            Token::Float => "a number",
            Token::Str | Token::UnterminatedStr => "a string",
            Token::At => "`@`",
            Token::LParen => "`(`",
            Token::RParen => "`)`",
            Token::LBracket => "`[`",
            Token::RBracket => "`]`",
            Token::Comma => "`,`",
            Token::Eq => "`=`",
            Token::Colon => "`:`",
            Token::Error => "an unexpected character",
        }
    }
}

/// A token and its byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lexeme {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

/// Splits `source` into tokens; runs of unknown characters become one [`Token::Error`] each.
pub fn lex(source: &str) -> Vec<Lexeme> {
    let mut out: Vec<Lexeme> = Vec::new();
    let mut lexer = Token::lexer(source);
    while let Some(result) = lexer.next() {
        let span = lexer.span();
        let token = result.unwrap_or(Token::Error);
        if token == Token::Error
            && let Some(last) = out.last_mut()
            && last.token == Token::Error
            && last.end == span.start
        {
            last.end = span.end;
            continue;
        }
        out.push(Lexeme {
            token,
            start: span.start,
            end: span.end,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Token> {
        lex(s).into_iter().map(|l| l.token).collect()
    }

    #[test]
    fn numbers_names_and_strings() {
        use Token::*;
        assert_eq!(
            kinds(r#"let h1 = dense(x, @ip1.weight) # comment"#),
            vec![
                Ident, Ident, Eq, Ident, LParen, Ident, Comma, At, Ident, RParen
            ]
        );
        assert_eq!(
            kinds("1 -2 3.5 -0.5e-3 1e9 .5 -inf"),
            vec![Int, Int, Float, Float, Float, Float, Float]
        );
        assert_eq!(kinds(r#""a\"b" "open"#), vec![Str, UnterminatedStr]);
        assert_eq!(kinds("x $$ y"), vec![Ident, Error, Ident]);
    }
}
