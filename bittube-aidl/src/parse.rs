//! A recursive-descent parser for the AIDL this generator supports: package, imports,
//! interfaces (methods, constants), structured and `rust_type` parcelables, enums, unions,
//! nested declarations, annotations, and integer/float/string/bool constant expressions.

use crate::lex::{Tok, Token};

/// A type as written.
#[derive(Debug, Clone)]
pub struct RawTy {
    pub name: String,
    pub args: Vec<RawTy>,
    pub array: bool,
    pub fixed_array: bool,
    pub nullable: bool,
    pub line: usize,
}

/// A constant expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Char(char),
    Name(String),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
}

/// A field or constant.
#[derive(Debug, Clone)]
pub struct RawVar {
    pub constant: bool,
    pub ty: RawTy,
    pub name: String,
    pub value: Option<Expr>,
    pub doc: Vec<String>,
    pub line: usize,
}

/// A method argument.
#[derive(Debug, Clone)]
pub struct RawArg {
    pub dir: String,
    pub ty: RawTy,
    pub name: String,
}

/// A method.
#[derive(Debug, Clone)]
pub struct RawMethod {
    pub oneway: bool,
    pub ret: RawTy,
    pub name: String,
    pub args: Vec<RawArg>,
    pub code: Option<i128>,
    pub doc: Vec<String>,
    pub line: usize,
}

/// What a declaration is.
#[derive(Debug, Clone)]
pub enum RawKind {
    Interface {
        oneway: bool,
        methods: Vec<RawMethod>,
    },
    Parcelable {
        rust_type: Option<String>,
        structured: bool,
    },
    Enum {
        backing: Option<String>,
        values: Vec<(String, Option<Expr>, Vec<String>)>,
    },
    Union,
}

/// A declaration.
#[derive(Debug, Clone)]
pub struct RawDecl {
    pub kind: RawKind,
    pub name: String,
    pub descriptor: Option<String>,
    pub vars: Vec<RawVar>,
    pub nested: Vec<RawDecl>,
    pub doc: Vec<String>,
    pub line: usize,
}

/// A parsed file.
#[derive(Debug, Clone, Default)]
pub struct RawFile {
    pub package: Option<String>,
    pub decls: Vec<RawDecl>,
}

/// An annotation: its name and arguments (name, value).
struct Annotation {
    name: String,
    args: Vec<(String, Expr)>,
}

/// A parse error: line and message.
pub type PErr = (usize, String);

struct P {
    toks: Vec<Token>,
    pos: usize,
}

/// Parses the tokens of one file.
pub fn parse(toks: Vec<Token>) -> Result<RawFile, PErr> {
    let mut p = P { toks, pos: 0 };
    let mut file = RawFile::default();
    if p.eat_word("package") {
        file.package = Some(p.ident()?);
        p.expect(";")?;
    }
    while p.eat_word("import") {
        p.ident()?;
        p.expect(";")?;
    }
    while p.peek().is_some() {
        file.decls.push(p.decl()?);
    }
    Ok(file)
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.line)
    }
    fn doc(&self) -> Vec<String> {
        self.toks
            .get(self.pos)
            .map(|t| t.doc.clone())
            .unwrap_or_default()
    }
    fn err<T>(&self, what: &str) -> Result<T, PErr> {
        let found = self
            .peek()
            .map_or("the end of the file".to_owned(), |t| format!("{t:?}"));
        Err((self.line(), format!("expected {what}, found {found}")))
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.peek().cloned();
        self.pos += 1;
        t
    }
    fn is(&self, punct: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(p)) if *p == punct)
    }
    fn eat(&mut self, punct: &str) -> bool {
        let yes = self.is(punct);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn expect(&mut self, punct: &str) -> Result<(), PErr> {
        match self.eat(punct) {
            true => Ok(()),
            false => self.err(&format!("`{punct}`")),
        }
    }
    fn eat_word(&mut self, word: &str) -> bool {
        let yes = matches!(self.peek(), Some(Tok::Ident(w)) if w == word);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn ident(&mut self) -> Result<String, PErr> {
        match self.peek() {
            Some(Tok::Ident(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => self.err("a name"),
        }
    }

    fn annotations(&mut self) -> Result<Vec<Annotation>, PErr> {
        let mut out = Vec::new();
        while self.eat("@") {
            let name = self.ident()?;
            let mut args = Vec::new();
            if self.eat("(") {
                while !self.eat(")") {
                    match self.toks.get(self.pos + 1).map(|t| &t.tok) {
                        Some(Tok::Punct("=")) => {
                            let key = self.ident()?;
                            self.expect("=")?;
                            args.push((key, self.expr()?));
                        }
                        _ => args.push(("value".into(), self.expr()?)),
                    }
                    self.eat(",");
                }
            }
            out.push(Annotation { name, args });
        }
        Ok(out)
    }

    fn ty(&mut self, ann: &[Annotation]) -> Result<RawTy, PErr> {
        let mut nullable = ann.iter().any(|a| a.name == "nullable");
        nullable |= self.annotations()?.iter().any(|a| a.name == "nullable");
        let line = self.line();
        let name = self.ident()?;
        let mut args = Vec::new();
        if self.eat("<") {
            loop {
                args.push(self.ty(&[])?);
                if !self.eat(",") {
                    break;
                }
            }
            self.expect(">")?;
        }
        let (mut array, mut fixed_array) = (false, false);
        while self.eat("[") {
            if !self.is("]") {
                self.expr()?;
                fixed_array = true;
            }
            self.expect("]")?;
            fixed_array |= array;
            array = true;
        }
        Ok(RawTy {
            name,
            args,
            array,
            fixed_array,
            nullable,
            line,
        })
    }

    fn decl(&mut self) -> Result<RawDecl, PErr> {
        let doc = self.doc();
        let ann = self.annotations()?;
        let doc = if doc.is_empty() { self.doc() } else { doc };
        let oneway = self.eat_word("oneway");
        let line = self.line();
        let descriptor =
            ann.iter()
                .find(|a| a.name == "Descriptor")
                .and_then(|a| match a.args.first() {
                    Some((_, Expr::Str(s))) => Some(s.clone()),
                    _ => None,
                });
        let keyword = self.ident()?;
        let name = self.ident()?;
        let mut d = RawDecl {
            kind: RawKind::Union,
            name,
            descriptor,
            vars: Vec::new(),
            nested: Vec::new(),
            doc,
            line,
        };
        match keyword.as_str() {
            "interface" => {
                let mut methods = Vec::new();
                self.body(&mut d, Some(&mut methods))?;
                d.kind = RawKind::Interface { oneway, methods };
            }
            "parcelable" => d.kind = self.parcelable(&mut d)?,
            "union" => self.body(&mut d, None)?,
            "enum" => d.kind = self.enumeration(&ann)?,
            _ => {
                return Err((
                    line,
                    format!("expected interface, parcelable, enum or union, found {keyword}"),
                ))
            }
        }
        Ok(d)
    }

    fn parcelable(&mut self, d: &mut RawDecl) -> Result<RawKind, PErr> {
        if self.is("{") {
            self.body(d, None)?;
            return Ok(RawKind::Parcelable {
                rust_type: None,
                structured: true,
            });
        }
        let mut rust_type = None;
        while !self.eat(";") {
            match self.next() {
                Some(Tok::Ident(k)) if k == "rust_type" => match self.next() {
                    Some(Tok::Str(s)) => rust_type = Some(s),
                    _ => return Err((self.line(), "rust_type needs a string".into())),
                },
                Some(Tok::Ident(_)) | Some(Tok::Str(_)) => {}
                _ => return self.err("`;`"),
            }
        }
        Ok(RawKind::Parcelable {
            rust_type,
            structured: false,
        })
    }

    fn enumeration(&mut self, ann: &[Annotation]) -> Result<RawKind, PErr> {
        let backing = ann
            .iter()
            .find(|a| a.name == "Backing")
            .and_then(|a| match a.args.first() {
                Some((_, Expr::Str(s))) => Some(s.clone()),
                _ => None,
            });
        self.expect("{")?;
        let mut values = Vec::new();
        while !self.eat("}") {
            let doc = self.doc();
            self.annotations()?;
            let name = self.ident()?;
            let value = match self.eat("=") {
                true => Some(self.expr()?),
                false => None,
            };
            values.push((name, value, doc));
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        self.eat(";");
        Ok(RawKind::Enum { backing, values })
    }

    /// `{ members }` of an interface (methods go to `methods`), parcelable or union.
    fn body(
        &mut self,
        d: &mut RawDecl,
        mut methods: Option<&mut Vec<RawMethod>>,
    ) -> Result<(), PErr> {
        self.expect("{")?;
        while !self.eat("}") {
            let start = self.pos;
            let doc = self.doc();
            let ann = self.annotations()?;
            let word = match self.peek() {
                Some(Tok::Ident(w)) => w.clone(),
                _ => return self.err("a member"),
            };
            if ["interface", "parcelable", "enum", "union"].contains(&word.as_str())
                || (word == "oneway" && methods.is_none())
            {
                self.pos = start;
                d.nested.push(self.decl()?);
                continue;
            }
            let constant = self.eat_word("const");
            let oneway = self.eat_word("oneway");
            let line = self.line();
            let ty = self.ty(&ann)?;
            let name = self.ident()?;
            match (&mut methods, self.is("(")) {
                (Some(m), true) => m.push(self.method(oneway, ty, name, doc, line)?),
                _ => {
                    let value = match self.eat("=") {
                        true => Some(self.expr()?),
                        false => None,
                    };
                    self.expect(";")?;
                    d.vars.push(RawVar {
                        constant,
                        ty,
                        name,
                        value,
                        doc,
                        line,
                    });
                }
            }
        }
        self.eat(";");
        Ok(())
    }

    fn method(
        &mut self,
        oneway: bool,
        ret: RawTy,
        name: String,
        doc: Vec<String>,
        line: usize,
    ) -> Result<RawMethod, PErr> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.eat(")") {
            let ann = self.annotations()?;
            let mut dir = "in".to_owned();
            for d in ["in", "out", "inout"] {
                if self.eat_word(d) {
                    dir = d.into();
                }
            }
            let ty = self.ty(&ann)?;
            args.push(RawArg {
                dir,
                ty,
                name: self.ident()?,
            });
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        let code = match self.eat("=") {
            true => match self.next() {
                Some(Tok::Int(v)) => Some(v),
                _ => return Err((line, "a transaction code is an integer".into())),
            },
            false => None,
        };
        self.expect(";")?;
        Ok(RawMethod {
            oneway,
            ret,
            name,
            args,
            code,
            doc,
            line,
        })
    }

    /// A constant expression (C precedence for the binary operators).
    fn expr(&mut self) -> Result<Expr, PErr> {
        self.binary(0)
    }

    fn binary(&mut self, min: u8) -> Result<Expr, PErr> {
        const OPS: &[(&str, u8)] = &[
            ("||", 1),
            ("&&", 2),
            ("|", 3),
            ("^", 4),
            ("&", 5),
            ("==", 6),
            ("!=", 6),
            ("<", 7),
            (">", 7),
            ("<=", 7),
            (">=", 7),
            ("<<", 8),
            (">>", 8),
            ("+", 9),
            ("-", 9),
            ("*", 10),
            ("/", 10),
            ("%", 10),
        ];
        let mut lhs = self.unary()?;
        loop {
            let op = OPS.iter().find(|(o, p)| *p > min && self.is(o)).copied();
            let Some((op, prec)) = op else { return Ok(lhs) };
            self.pos += 1;
            let rhs = self.binary(prec)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self) -> Result<Expr, PErr> {
        for op in ["-", "~", "!", "+"] {
            if self.eat(op) {
                return Ok(Expr::Unary(op, Box::new(self.unary()?)));
            }
        }
        if self.eat("(") {
            let e = self.expr()?;
            self.expect(")")?;
            return Ok(e);
        }
        if self.is("{") {
            return self.err("a scalar constant (array constants are not supported)");
        }
        Ok(match self.next() {
            Some(Tok::Int(v)) => Expr::Int(v),
            Some(Tok::Float(v)) => Expr::Float(v),
            Some(Tok::Str(s)) => Expr::Str(s),
            Some(Tok::Char(c)) => Expr::Char(c),
            Some(Tok::Ident(w)) if w == "true" => Expr::Bool(true),
            Some(Tok::Ident(w)) if w == "false" => Expr::Bool(false),
            Some(Tok::Ident(w)) => Expr::Name(w),
            _ => {
                self.pos -= 1;
                return self.err("a constant");
            }
        })
    }
}
