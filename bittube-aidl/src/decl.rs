//! The declarations of a set of `.aidl` files, resolved into the generator's model.

use crate::parse::{Expr, RawDecl, RawFile, RawKind, RawTy, RawVar};
use crate::types::{FullTy, Kind, Ty};
use crate::Error;
use std::collections::HashMap;

/// A field of a parcelable or union.
#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub ty: FullTy,
    /// The Rust expression of its initializer, if the `.aidl` gives one.
    pub init: Option<String>,
    pub doc: Vec<String>,
}

/// A constant.
#[derive(Debug)]
pub struct Const {
    pub name: String,
    pub ty: Ty,
    pub value: String,
    pub doc: Vec<String>,
}

/// A structured parcelable.
#[derive(Debug)]
pub struct Parcelable {
    pub name: String,
    pub doc: Vec<String>,
    pub fields: Vec<Field>,
    pub consts: Vec<Const>,
}

/// An enum.
#[derive(Debug)]
pub struct Enum {
    pub name: String,
    pub doc: Vec<String>,
    pub backing: &'static str,
    pub values: Vec<(String, i64, Vec<String>)>,
}

/// A union.
#[derive(Debug)]
pub struct Union {
    pub name: String,
    pub doc: Vec<String>,
    pub fields: Vec<Field>,
    pub consts: Vec<Const>,
}

/// The direction of an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
    InOut,
}

/// A method argument.
#[derive(Debug)]
pub struct Arg {
    pub name: String,
    pub ty: FullTy,
    pub dir: Dir,
}

/// A method.
#[derive(Debug)]
pub struct Method {
    pub name: String,
    pub code: u32,
    pub oneway: bool,
    pub ret: FullTy,
    pub args: Vec<Arg>,
    pub doc: Vec<String>,
}

/// An interface.
#[derive(Debug)]
pub struct Interface {
    pub name: String,
    pub descriptor: String,
    pub doc: Vec<String>,
    pub methods: Vec<Method>,
    pub consts: Vec<Const>,
}

/// One generated item.
#[derive(Debug)]
pub enum Item {
    Parcelable(Parcelable),
    Enum(Enum),
    Union(Union),
    Interface(Interface),
}

/// Everything the files declare.
#[derive(Debug, Default)]
pub struct Model {
    pub items: Vec<Item>,
}

/// The file being resolved, for errors.
struct Src<'a> {
    file: &'a str,
    kinds: &'a HashMap<String, Kind>,
}

impl Src<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> Error {
        Error {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

fn last_segment(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl Model {
    /// Parses `files` (name, text) and resolves their declarations.
    pub fn parse(files: &[(String, String)]) -> Result<Model, Error> {
        let mut parsed = Vec::new();
        for (file, text) in files {
            let perr = |(line, message)| Error {
                file: file.clone(),
                line,
                message,
            };
            let toks = crate::lex::lex(text).map_err(perr)?;
            parsed.push(crate::parse::parse(toks).map_err(perr)?);
        }
        let mut kinds = HashMap::new();
        for (raw, (file, _)) in parsed.iter().zip(files) {
            for d in &raw.decls {
                collect_kinds(d, &mut kinds).map_err(|(line, message)| Error {
                    file: file.clone(),
                    line,
                    message,
                })?;
            }
        }
        let mut model = Model::default();
        for (raw, (file, _)) in parsed.iter().zip(files) {
            let src = Src {
                file,
                kinds: &kinds,
            };
            resolve_file(&src, raw, &mut model.items)?;
        }
        Ok(model)
    }
}

fn resolve_file(src: &Src, raw: &RawFile, out: &mut Vec<Item>) -> Result<(), Error> {
    let prefix = raw.package.clone().unwrap_or_default();
    for d in &raw.decls {
        resolve(src, d, &prefix, out)?;
    }
    Ok(())
}

fn collect_kinds(d: &RawDecl, kinds: &mut HashMap<String, Kind>) -> Result<(), (usize, String)> {
    let kind = match &d.kind {
        RawKind::Parcelable {
            structured: true, ..
        } => Kind::Parcelable,
        RawKind::Parcelable {
            rust_type: Some(t), ..
        } => Kind::External(t.clone()),
        RawKind::Parcelable { .. } => {
            return Err((
                d.line,
                format!(
                    "parcelable {}: an unstructured parcelable needs `rust_type \"path\"`",
                    d.name
                ),
            ))
        }
        RawKind::Enum { backing, .. } => Kind::Enum(match backing.as_deref() {
            None | Some("byte") => "i8",
            Some("int") => "i32",
            Some("long") => "i64",
            Some(other) => {
                return Err((
                    d.line,
                    format!("@Backing(type={other:?}): byte, int or long"),
                ))
            }
        }),
        RawKind::Union => Kind::Union,
        RawKind::Interface { .. } => Kind::Interface,
    };
    if kinds.insert(d.name.clone(), kind).is_some() {
        return Err((
            d.line,
            format!("{} is declared twice (all types share one module)", d.name),
        ));
    }
    d.nested.iter().try_for_each(|n| collect_kinds(n, kinds))
}

fn resolve(src: &Src, d: &RawDecl, prefix: &str, out: &mut Vec<Item>) -> Result<(), Error> {
    let full = match prefix.is_empty() {
        true => d.name.clone(),
        false => format!("{prefix}.{}", d.name),
    };
    let consts = consts(src, &d.vars)?;
    match &d.kind {
        RawKind::Parcelable {
            structured: false, ..
        } => {}
        RawKind::Parcelable { .. } => out.push(Item::Parcelable(Parcelable {
            name: d.name.clone(),
            doc: d.doc.clone(),
            fields: fields(src, &d.vars)?,
            consts,
        })),
        RawKind::Union => out.push(Item::Union(Union {
            name: d.name.clone(),
            doc: d.doc.clone(),
            fields: fields(src, &d.vars)?,
            consts,
        })),
        RawKind::Enum { values, .. } => out.push(Item::Enum(enumeration(src, d, values)?)),
        RawKind::Interface { oneway, methods } => {
            let mut ms = Vec::new();
            for (i, m) in methods.iter().enumerate() {
                ms.push(method(src, *oneway, m, i)?);
            }
            out.push(Item::Interface(Interface {
                name: d.name.clone(),
                descriptor: d.descriptor.clone().unwrap_or_else(|| full.clone()),
                doc: d.doc.clone(),
                methods: ms,
                consts,
            }))
        }
    }
    d.nested
        .iter()
        .try_for_each(|n| resolve(src, n, &full, out))
}

fn enumeration(
    src: &Src,
    d: &RawDecl,
    values: &[(String, Option<Expr>, Vec<String>)],
) -> Result<Enum, Error> {
    let mut out: Vec<(String, i64, Vec<String>)> = Vec::new();
    let mut next = 0i64;
    for (name, value, doc) in values {
        let v = match value {
            Some(e) => {
                let known = |n: &str| {
                    out.iter()
                        .find(|(m, ..)| m == last_segment(n))
                        .map(|(_, v, _)| *v as i128)
                };
                let v = eval_int(e, &known)
                    .map_err(|m| src.err(d.line, format!("enum {}: {name}: {m}", d.name)))?;
                i64::try_from(v).map_err(|_| {
                    src.err(d.line, format!("enum {}: {name}: {v} out of range", d.name))
                })?
            }
            None => next,
        };
        next = v.wrapping_add(1);
        out.push((name.clone(), v, doc.clone()));
    }
    Ok(Enum {
        name: d.name.clone(),
        doc: d.doc.clone(),
        backing: match src.kinds.get(&d.name) {
            Some(Kind::Enum(b)) => b,
            _ => "i8",
        },
        values: out,
    })
}

fn method(
    src: &Src,
    iface_oneway: bool,
    m: &crate::parse::RawMethod,
    index: usize,
) -> Result<Method, Error> {
    let code = match m.code {
        Some(v) => u32::try_from(v).ok(),
        None => u32::try_from(index + 1).ok(),
    }
    .filter(|c| (1..=0x00ff_ffff).contains(c))
    .ok_or_else(|| src.err(m.line, "transaction code out of 1..=0xffffff"))?;
    let oneway = m.oneway || iface_oneway;
    let ret = full_ty(src, &m.ret)?;
    if oneway && ret.ty != Ty::Void {
        return Err(src.err(m.line, format!("oneway method {} returns a value", m.name)));
    }
    let mut args = Vec::new();
    for a in &m.args {
        let dir = match a.dir.as_str() {
            "out" => Dir::Out,
            "inout" => Dir::InOut,
            _ => Dir::In,
        };
        if oneway && dir != Dir::In {
            return Err(src.err(
                m.line,
                format!("oneway method {}: argument {} is not `in`", m.name, a.name),
            ));
        }
        args.push(Arg {
            name: a.name.clone(),
            ty: full_ty(src, &a.ty)?,
            dir,
        });
    }
    Ok(Method {
        name: m.name.clone(),
        code,
        oneway,
        ret,
        args,
        doc: m.doc.clone(),
    })
}

fn fields(src: &Src, vars: &[RawVar]) -> Result<Vec<Field>, Error> {
    let mut out = Vec::new();
    for v in vars.iter().filter(|v| !v.constant) {
        let ty = full_ty(src, &v.ty)?;
        let init = match &v.value {
            Some(e) => Some(
                const_rust(e, &ty.ty, &|_| None)
                    .map_err(|m| src.err(v.line, format!("{}: {m}", v.name)))?,
            ),
            None => None,
        };
        out.push(Field {
            name: v.name.clone(),
            ty,
            init,
            doc: v.doc.clone(),
        });
    }
    Ok(out)
}

fn consts(src: &Src, vars: &[RawVar]) -> Result<Vec<Const>, Error> {
    let mut out = Vec::new();
    // Integer constants of this declaration, for the ones after them (`ALL = A | B`).
    let mut ints: Vec<(String, i128)> = Vec::new();
    for v in vars.iter().filter(|v| v.constant) {
        let ty = full_ty(src, &v.ty)?.ty;
        let e = v
            .value
            .as_ref()
            .ok_or_else(|| src.err(v.line, format!("constant {} has no value", v.name)))?;
        let known = |n: &str| {
            let n = last_segment(n);
            ints.iter().find(|(m, _)| m == n).map(|(_, v)| *v)
        };
        let value =
            const_rust(e, &ty, &known).map_err(|m| src.err(v.line, format!("{}: {m}", v.name)))?;
        if let Ok(i) = eval_int(e, &known) {
            ints.push((v.name.clone(), i));
        }
        out.push(Const {
            name: v.name.clone(),
            ty,
            value,
            doc: v.doc.clone(),
        });
    }
    Ok(out)
}

/// Evaluates an integer expression (`known` names other constants).
fn eval_int(e: &Expr, known: &dyn Fn(&str) -> Option<i128>) -> Result<i128, String> {
    let b = |x: bool| x as i128;
    Ok(match e {
        Expr::Int(v) => *v,
        Expr::Bool(x) => b(*x),
        Expr::Char(c) => *c as i128,
        Expr::Name(n) => known(n).ok_or_else(|| format!("unknown constant {n}"))?,
        Expr::Unary(op, x) => {
            let x = eval_int(x, known)?;
            match *op {
                "-" => x.checked_neg().ok_or("overflow")?,
                "~" => !x,
                "!" => b(x == 0),
                _ => x,
            }
        }
        Expr::Binary(op, l, r) => {
            let (l, r) = (eval_int(l, known)?, eval_int(r, known)?);
            let shift = || u32::try_from(r).ok().filter(|&s| s < 64).ok_or("bad shift");
            match *op {
                "|" => l | r,
                "&" => l & r,
                "^" => l ^ r,
                "+" => l.checked_add(r).ok_or("overflow")?,
                "-" => l.checked_sub(r).ok_or("overflow")?,
                "*" => l.checked_mul(r).ok_or("overflow")?,
                "/" => l.checked_div(r).ok_or("division by zero")?,
                "%" => l.checked_rem(r).ok_or("division by zero")?,
                "<<" => l.checked_shl(shift()?).ok_or("overflow")?,
                ">>" => l >> shift()?,
                "==" => b(l == r),
                "!=" => b(l != r),
                "<" => b(l < r),
                ">" => b(l > r),
                "<=" => b(l <= r),
                ">=" => b(l >= r),
                "&&" => b(l != 0 && r != 0),
                "||" => b(l != 0 || r != 0),
                _ => return Err(format!("operator {op}")),
            }
        }
        Expr::Float(_) | Expr::Str(_) => return Err("not an integer".into()),
    })
}

/// A constant expression as a Rust expression of type `ty` (`none` names the earlier
/// integer constants it may use).
fn const_rust(e: &Expr, ty: &Ty, none: &dyn Fn(&str) -> Option<i128>) -> Result<String, String> {
    if let (Expr::Name(n), Ty::User(_, Kind::Enum(_))) = (e, ty) {
        let (owner, member) = n
            .rsplit_once('.')
            .ok_or(format!("{n}: name an enumerator as Enum.MEMBER"))?;
        return Ok(format!("{}::{member}", last_segment(owner)));
    }
    Ok(match (ty, e) {
        (Ty::String, Expr::Str(s)) => format!("{s:?}"),
        (Ty::Float, Expr::Float(f)) => format!("{:?}f32", *f as f32),
        (Ty::Double, Expr::Float(f)) => format!("{f:?}f64"),
        (Ty::Float | Ty::Double, Expr::Unary("-", x)) if matches!(**x, Expr::Float(_)) => {
            format!("-{}", const_rust(x, ty, none)?)
        }
        (Ty::Bool, e) => (eval_int(e, none)? != 0).to_string(),
        (Ty::Byte, e) => format!("{}i8", eval_int(e, none)? as i8),
        (Ty::Char, e) => format!("{}u16", eval_int(e, none)? as u16),
        (Ty::Int, e) => format!("{}i32", eval_int(e, none)? as i32),
        (Ty::Long, e) => format!("{}i64", eval_int(e, none)? as i64),
        (Ty::Float, e) => format!("{}f32", eval_int(e, none)?),
        (Ty::Double, e) => format!("{}f64", eval_int(e, none)?),
        (t, e) => return Err(format!("no constant {e:?} of type {t:?}")),
    })
}

fn full_ty(src: &Src, t: &RawTy) -> Result<FullTy, Error> {
    if t.fixed_array {
        return Err(src.err(t.line, "fixed-size and nested arrays are not supported"));
    }
    let mut ty = base_ty(src, t)?;
    if t.array {
        ty = Ty::Array(Box::new(ty));
    }
    Ok(FullTy {
        ty,
        nullable: t.nullable,
    })
}

fn base_ty(src: &Src, t: &RawTy) -> Result<Ty, Error> {
    if t.name == "List" {
        let [arg] = t.args.as_slice() else {
            return Err(src.err(t.line, "List needs one type argument"));
        };
        return Ok(Ty::Array(Box::new(full_ty(src, arg)?.ty)));
    }
    let named = match t.name.as_str() {
        "void" => Some(Ty::Void),
        "boolean" => Some(Ty::Bool),
        "byte" => Some(Ty::Byte),
        "char" => Some(Ty::Char),
        "int" => Some(Ty::Int),
        "long" => Some(Ty::Long),
        "float" => Some(Ty::Float),
        "double" => Some(Ty::Double),
        "String" => Some(Ty::String),
        "IBinder" => Some(Ty::Binder),
        "ParcelFileDescriptor" => Some(Ty::Pfd),
        _ => None,
    };
    if let Some(ty) = named {
        return Ok(ty);
    }
    let name = last_segment(&t.name);
    match src.kinds.get(name) {
        Some(kind) => Ok(Ty::User(name.to_owned(), kind.clone())),
        None => Err(src.err(
            t.line,
            format!(
                "unknown type {} (not declared in the files given to the builder)",
                t.name
            ),
        )),
    }
}
