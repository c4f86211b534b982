//! AIDL types as the generator sees them, and their Rust spellings.

/// What a user-defined name declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A structured parcelable.
    Parcelable,
    /// An enum with its backing Rust type.
    Enum(&'static str),
    /// A union.
    Union,
    /// An interface.
    Interface,
    /// An unstructured parcelable with `rust_type "path"`.
    External(String),
}

/// An AIDL type.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// `void`.
    Void,
    /// `boolean`.
    Bool,
    /// `byte`.
    Byte,
    /// `char`.
    Char,
    /// `int`.
    Int,
    /// `long`.
    Long,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `String` (also `@utf8InCpp`: the wire is the same).
    String,
    /// `IBinder`.
    Binder,
    /// `ParcelFileDescriptor`.
    Pfd,
    /// `T[]` or `List<T>`.
    Array(Box<Ty>),
    /// A declared type.
    User(String, Kind),
}

/// A type with its nullability.
#[derive(Clone, Debug, PartialEq)]
pub struct FullTy {
    /// The type.
    pub ty: Ty,
    /// `@nullable`.
    pub nullable: bool,
}

impl Ty {
    /// Passed by value in proxies (Copy types).
    pub fn is_copy(&self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Byte | Ty::Char | Ty::Int | Ty::Long | Ty::Float | Ty::Double
        ) || matches!(self, Ty::User(_, Kind::Enum(_)))
    }

    /// Has no default value (AOSP's Rust backend holds such fields as `Option`).
    pub fn no_default(&self) -> bool {
        matches!(
            self,
            Ty::Binder | Ty::Pfd | Ty::User(_, Kind::Interface) | Ty::User(_, Kind::External(_))
        )
    }

    /// The Rust type, with `k` the path of the bittube crate.
    pub fn rust(&self, k: &str) -> String {
        match self {
            Ty::Void => "()".into(),
            Ty::Bool => "bool".into(),
            Ty::Byte => "i8".into(),
            Ty::Char => "u16".into(),
            Ty::Int => "i32".into(),
            Ty::Long => "i64".into(),
            Ty::Float => "f32".into(),
            Ty::Double => "f64".into(),
            Ty::String => "::std::string::String".into(),
            Ty::Binder => format!("{k}::binder_ipc::runtime::Binder"),
            Ty::Pfd => format!("{k}::binder_ipc::aidl::ParcelFileDescriptor"),
            Ty::Array(e) if **e == Ty::Byte => "::std::vec::Vec<u8>".into(),
            Ty::Array(e) => format!("::std::vec::Vec<{}>", e.rust(k)),
            Ty::User(n, Kind::Interface) => format!("{n}::Proxy"),
            Ty::User(_, Kind::External(path)) => path.clone(),
            Ty::User(n, _) => n.clone(),
        }
    }

    /// Clone, PartialEq and Default hold for values of this type (given `plain` for
    /// declared parcelables and unions).
    pub fn is_plain(&self, plain: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Ty::Binder | Ty::Pfd => false,
            Ty::Array(e) => e.is_plain(plain),
            Ty::User(_, Kind::Interface | Kind::External(_)) => false,
            Ty::User(n, Kind::Parcelable | Kind::Union) => plain(n),
            _ => true,
        }
    }
}

impl FullTy {
    /// The Rust type (`Option` when nullable).
    pub fn rust(&self, k: &str) -> String {
        match self.nullable {
            true => format!("::std::option::Option<{}>", self.ty.rust(k)),
            false => self.ty.rust(k),
        }
    }
}
