// Interfaces: a module per interface (included by emit.rs).

/// The proxy's parameter type for an argument.
fn proxy_param(arg: &Arg, k: &str) -> String {
    let t = arg.ty.rust(k);
    match arg.dir {
        Dir::Out | Dir::InOut => format!("&mut {t}"),
        Dir::In => match borrowed(&arg.ty.ty, k) {
            Some(b) if arg.ty.nullable => format!("Option<{b}>"),
            Some(b) => b,
            None if arg.ty.nullable => format!("Option<&{}>", arg.ty.ty.rust(k)),
            None if arg.ty.ty.is_copy() => t,
            None => format!("&{t}"),
        },
    }
}

/// The borrowed form of a String or array argument (`&str`, `&[T]`).
fn borrowed(ty: &Ty, k: &str) -> Option<String> {
    match ty {
        Ty::String => Some("&str".into()),
        Ty::Array(e) if **e == Ty::Byte => Some("&[u8]".into()),
        Ty::Array(e) => Some(format!("&[{}]", e.rust(k))),
        _ => None,
    }
}

/// The statement that writes an `in` argument `r#name` of the proxy into `_aidl_data`.
fn write_in_arg(x: &Arg, k: &str) -> String {
    let a = format!("{k}::binder_ipc::aidl");
    let (n, ps) = (format!("r#{}", x.name), "&mut _aidl_data, &self.process");
    let elem = |e: &Ty| if *e == Ty::Byte { "u8".to_owned() } else { e.rust(k) };
    match (&x.ty.ty, x.ty.nullable) {
        (Ty::String, false) => format!("_aidl_data.write_utf8_as_utf16({n})?;"),
        (Ty::String, true) => format!("_aidl_data.write_nullable_string16({n})?;"),
        (Ty::Array(e), false) => format!("<{} as {a}::AidlValue>::write_array({n}, {ps})?;", elem(e)),
        (Ty::Array(e), true) => format!("{a}::write_nullable_slice::<{}>({n}, {ps})?;", elem(e)),
        (t, true) => format!("<{} as {a}::AidlNullable>::write_nullable({n}, {ps})?;", t.rust(k)),
        (t, false) if t.is_copy() => format!("{a}::AidlValue::write_aidl(&{n}, {ps})?;"),
        _ => format!("{a}::AidlValue::write_aidl({n}, {ps})?;"),
    }
}

/// The name of the call-context parameter in trait declarations: `call`, unless an argument
/// has that name.
fn context_name(m: &Method) -> &'static str {
    match m.args.iter().any(|x| x.name == "call") {
        true => "_call",
        false => "call",
    }
}

fn ret_ty(m: &Method, k: &str) -> String {
    format!("::std::result::Result<{}, {k}::binder_ipc::runtime::BinderError>", m.ret.rust(k))
}

fn proxy_method(out: &mut String, m: &Method, k: &str) {
    let a = format!("{k}::binder_ipc::aidl");
    doc(out, &m.doc);
    let params: Vec<String> = m.args.iter().map(|x| format!("r#{}: {}", x.name, proxy_param(x, k))).collect();
    let _ = writeln!(out, "#[allow(non_snake_case)]\npub fn r#{}(&self, {}) -> {} {{", m.name, params.join(", "), ret_ty(m, k));
    let _ = writeln!(out, "let mut _aidl_data = {k}::binder_ipc::parcel::Parcel::new();\n_aidl_data.write_interface_token(DESCRIPTOR)?;");
    for x in &m.args {
        match x.dir {
            Dir::In => {
                let _ = writeln!(out, "{}", write_in_arg(x, k));
            }
            Dir::InOut => {
                let _ = writeln!(out, "{a}::AidlValue::write_aidl(r#{}, &mut _aidl_data, &self.process)?;", x.name);
            }
            Dir::Out if matches!(x.ty.ty, Ty::Array(_)) => {
                let v = if x.ty.nullable { format!("r#{}.as_ref()", x.name) } else { format!("Some(&*r#{})", x.name) };
                let _ = writeln!(out, "{a}::write_out_array_len(&mut _aidl_data, {v})?;");
            }
            Dir::Out => {}
        }
    }
    if m.oneway {
        let _ = writeln!(out, "{a}::transact(&self.binder, &self.process, {}, _aidl_data, true).map(drop)\n}}", m.code);
        return;
    }
    let _ = writeln!(out, "let mut _aidl_reply = {a}::transact(&self.binder, &self.process, {}, _aidl_data, false)?
        .ok_or_else(|| {k}::binder_ipc::runtime::BinderError::BadValue(\"no reply to a two-way call\".into()))?;
        _aidl_reply.read_exception().map_err({k}::binder_ipc::interface::from_reply_error)?;", m.code);
    let void = m.ret.ty == Ty::Void;
    if !void {
        let _ = writeln!(out, "let _aidl_result = <{} as {a}::AidlValue>::read_aidl(&mut _aidl_reply, &self.process)?;", m.ret.rust(k));
    }
    for x in m.args.iter().filter(|x| x.dir != Dir::In) {
        let _ = writeln!(out, "*r#{} = {a}::AidlValue::read_aidl(&mut _aidl_reply, &self.process)?;", x.name);
    }
    let _ = writeln!(out, "{}\n}}", if void { "Ok(())" } else { "Ok(_aidl_result)" });
}

fn trait_method(out: &mut String, m: &Method, k: &str) {
    doc(out, &m.doc);
    let params: Vec<String> = m.args.iter().map(|x| match x.dir {
        Dir::In => format!("r#{}: {}", x.name, x.ty.rust(k)),
        _ => format!("r#{}: &mut {}", x.name, x.ty.rust(k)),
    }).collect();
    let _ = writeln!(out, "fn r#{}(&self, {}: &{k}::binder_ipc::runtime::CallContext, {}) -> {};", m.name, context_name(m), params.join(", "), ret_ty(m, k));
}

/// Reads the arguments of `m` on the service side into locals.
fn read_args(out: &mut String, m: &Method, k: &str, mutable: bool) {
    let a = format!("{k}::binder_ipc::aidl");
    let mut text = String::new();
    let out_final = out;
    let out = &mut text;
    for x in &m.args {
        let t = x.ty.rust(k);
        match x.dir {
            Dir::In => { let _ = writeln!(out, "let r#{} = <{t} as {a}::AidlValue>::read_aidl(_aidl_data, &_aidl_call.process)?;", x.name); }
            Dir::InOut => { let _ = writeln!(out, "let mut r#{} = <{t} as {a}::AidlValue>::read_aidl(_aidl_data, &_aidl_call.process)?;", x.name); }
            Dir::Out => match (&x.ty.ty, x.ty.nullable) {
                (Ty::Array(_), true) => { let _ = writeln!(out, "let mut r#{}: {t} = {a}::read_out_array(_aidl_data)?;", x.name); }
                (Ty::Array(_), false) => { let _ = writeln!(out, "let mut r#{}: {t} = {a}::read_out_array(_aidl_data)?.unwrap_or_default();", x.name); }
                _ => { let _ = writeln!(out, "let mut r#{}: {t} = ::std::default::Default::default();", x.name); }
            },
        }
    }
    match mutable {
        true => out_final.push_str(&text),
        false => out_final.push_str(&text.replace("let mut r#", "let r#")),
    }
}

/// Writes the result of `m` (in `_aidl_result`) and its out arguments into the reply.
fn write_result(out: &mut String, m: &Method, k: &str) {
    let a = format!("{k}::binder_ipc::aidl");
    if m.oneway {
        let _ = writeln!(out, "_aidl_result.map(drop)\n}}");
        return;
    }
    match m.ret.ty == Ty::Void {
        true => { let _ = writeln!(out, "match _aidl_result {{ Ok(()) => {{ _aidl_reply.write_no_exception()?;"); }
        false => { let _ = writeln!(out, "match _aidl_result {{ Ok(_aidl_value) => {{ _aidl_reply.write_no_exception()?;
        {a}::AidlValue::write_aidl(&_aidl_value, _aidl_reply, &_aidl_call.process)?;"); }
    }
    for x in m.args.iter().filter(|x| x.dir != Dir::In) {
        let _ = writeln!(out, "{a}::AidlValue::write_aidl(&r#{}, _aidl_reply, &_aidl_call.process)?;", x.name);
    }
    let _ = writeln!(out, "Ok(()) }}\nErr(e) => {k}::binder_ipc::interface::reply_error(_aidl_reply, e),\n}}\n}}");
}

fn call_args(m: &Method) -> String {
    m.args.iter().map(|x| match x.dir {
        Dir::In => format!("r#{}", x.name),
        _ => format!("&mut r#{}", x.name),
    }).collect::<Vec<_>>().join(", ")
}

fn server(out: &mut String, i: &Interface, k: &str) {
    let p = format!("{k}::binder_ipc");
    let sig = format!("_aidl_data: &mut {p}::parcel::Parcel, _aidl_reply: &mut {p}::parcel::Parcel, _aidl_call: &{p}::runtime::CallContext) -> ::std::result::Result<(), {p}::runtime::BinderError>");
    for m in &i.methods {
        let _ = writeln!(out, "#[allow(non_snake_case)]\nfn on_{}<T: Interface + ?Sized>(_aidl_service: &T, {sig} {{", m.name);
        let _ = writeln!(out, "let _ = (&_aidl_data, &_aidl_reply);");
        read_args(out, m, k, true);
        let _ = writeln!(out, "let _aidl_result = _aidl_service.r#{}(_aidl_call, {});", m.name, call_args(m));
        write_result(out, m, k);
    }
    let (lo, hi) = code_range(i);
    let _ = writeln!(out, "
/// Decodes call `code` for `service` and encodes its reply: what [`Server`] runs, for a
/// service that keeps its own state (e.g. behind an `Arc`) or maps codes before dispatching.
/// A code outside the interface is `UNKNOWN_TRANSACTION`; a wrong interface token is
/// `BAD_TYPE` naming both descriptors, as AIDL stubs answer it.
pub fn dispatch<T: Interface + ?Sized>(_aidl_service: &T, code: u32, {sig} {{
    if ({lo}..={hi}).contains(&code) {{ _aidl_data.enforce_interface(DESCRIPTOR)?; }}
    match code {{");
    for m in &i.methods {
        let _ = writeln!(out, "{} => on_{}(_aidl_service, _aidl_data, _aidl_reply, _aidl_call),", m.code, m.name);
    }
    let _ = writeln!(out, "other => Err({p}::runtime::BinderError::UnknownTransaction(other)),\n}}\n}}

/// The service side: dispatches calls to `T`.
pub struct Server<T: Interface>(pub T);

impl<T: Interface> {p}::runtime::Service for Server<T> {{
    fn descriptor(&self) -> &str {{ DESCRIPTOR }}
    fn on_transact(&self, code: u32, {sig} {{
        dispatch(&self.0, code, _aidl_data, _aidl_reply, _aidl_call)
    }}
}}");
}

/// The lowest and highest transaction code of `i` (`1..=0`, empty, without methods).
fn code_range(i: &Interface) -> (u32, u32) {
    let codes = i.methods.iter().map(|m| m.code);
    (codes.clone().min().unwrap_or(1), codes.max().unwrap_or(0))
}

fn interface(out: &mut String, i: &Interface, o: &Options) {
    let k = &o.krate;
    let a = format!("{k}::binder_ipc::aidl");
    doc(out, &i.doc);
    let _ = writeln!(out, "// Method signatures are the .aidl's: as many arguments as it declares.\n#[allow(non_snake_case, clippy::too_many_arguments)]\npub mod {} {{\n#[allow(unused_imports)]\nuse super::*;\n
/// The interface descriptor.\npub const DESCRIPTOR: &str = {:?};", i.name, i.descriptor);
    consts(out, &i.consts, k);
    let _ = writeln!(out, "\n/// What the service implements.\npub trait Interface: Send + Sync + 'static {{");
    for m in &i.methods {
        trait_method(out, m, k);
    }
    let _ = writeln!(out, "}}\n");
    server(out, i, k);
    let _ = writeln!(out, "
/// The client side: typed calls, through the driver for a remote binder, directly for a
/// local service (e.g. a callback this process hands out).
#[derive(Clone, Debug)]
pub struct Proxy {{ binder: {k}::binder_ipc::runtime::Binder, process: {k}::binder_ipc::runtime::ProcessState }}

impl Proxy {{
    /// Wraps `binder` (received by, or served from, `process`).
    pub fn new(binder: {k}::binder_ipc::runtime::Binder, process: &{k}::binder_ipc::runtime::ProcessState) -> Proxy {{ Proxy {{ binder, process: process.clone() }} }}
    /// A local service of `process`, to pass as an argument (e.g. a callback).
    pub fn local(service: impl Interface, process: &{k}::binder_ipc::runtime::ProcessState) -> Proxy {{ Proxy::new({k}::binder_ipc::runtime::Binder::new(Server(service)), process) }}
    /// The binder behind this proxy.
    pub fn binder(&self) -> &{k}::binder_ipc::runtime::Binder {{ &self.binder }}");
    for m in &i.methods {
        proxy_method(out, m, k);
    }
    let _ = writeln!(out, "}}

impl {a}::AidlValue for Proxy {{
    fn write_aidl(&self, parcel: &mut {k}::binder_ipc::parcel::Parcel, _: &{k}::binder_ipc::runtime::ProcessState) -> ::std::result::Result<(), {k}::binder_ipc::runtime::BinderError> {{
        self.process.write_binder(parcel, &self.binder)
    }}
    fn read_aidl(parcel: &mut {k}::binder_ipc::parcel::Parcel, process: &{k}::binder_ipc::runtime::ProcessState) -> ::std::result::Result<Self, {k}::binder_ipc::runtime::BinderError> {{
        Ok(Proxy::new(<{k}::binder_ipc::runtime::Binder as {a}::AidlValue>::read_aidl(parcel, process)?, process))
    }}
}}

impl {a}::AidlNullable for Proxy {{
    fn write_nullable(value: ::std::option::Option<&Self>, parcel: &mut {k}::binder_ipc::parcel::Parcel, process: &{k}::binder_ipc::runtime::ProcessState) -> ::std::result::Result<(), {k}::binder_ipc::runtime::BinderError> {{
        match value {{ Some(v) => {a}::AidlValue::write_aidl(v, parcel, process), None => Ok(parcel.write_null_binder()?) }}
    }}
    fn read_nullable(parcel: &mut {k}::binder_ipc::parcel::Parcel, process: &{k}::binder_ipc::runtime::ProcessState) -> ::std::result::Result<::std::option::Option<Self>, {k}::binder_ipc::runtime::BinderError> {{
        Ok(process.read_binder(parcel)?.map(|b| Proxy::new(b, process)))
    }}
}}");
    if o.tokio {
        async_proxy(out, i, k);
        async_server(out, i, k);
    }
    let _ = writeln!(out, "}}\n");
}

/// The async proxy: each call runs on tokio's blocking pool.
fn async_proxy(out: &mut String, i: &Interface, k: &str) {
    let _ = writeln!(out, "
/// The async client side: each call runs on tokio's blocking pool, never on a worker thread
/// (methods whose out/inout arguments have no default value are only on [`Proxy`]).
#[derive(Clone, Debug)]
pub struct AsyncProxy(pub Proxy);

impl AsyncProxy {{");
    let takeable = |x: &Arg| x.dir == Dir::In || x.ty.nullable || !x.ty.ty.no_default();
    for m in i.methods.iter().filter(|m| m.args.iter().all(takeable)) {
        doc(out, &m.doc);
        let params: Vec<String> = m.args.iter().map(|x| match x.dir {
            Dir::In => format!("r#{}: {}", x.name, x.ty.rust(k)),
            _ => format!("r#{}: &mut {}", x.name, x.ty.rust(k)),
        }).collect();
        let pass: Vec<String> = m.args.iter().map(|x| match x.dir {
            Dir::In if x.ty.nullable && borrowed(&x.ty.ty, k).is_some() => format!("r#{}.as_deref()", x.name),
            Dir::In if x.ty.nullable => format!("r#{}.as_ref()", x.name),
            Dir::In if x.ty.ty.is_copy() => format!("r#{}", x.name),
            Dir::In => format!("&r#{}", x.name),
            _ => format!("&mut _aidl_out_{}", x.name),
        }).collect();
        let outs: Vec<&Arg> = m.args.iter().filter(|x| x.dir != Dir::In).collect();
        let _ = writeln!(out, "#[allow(non_snake_case)]\npub async fn r#{}(&self, {}) -> {} {{\nlet _aidl_proxy = self.0.clone();", m.name, params.join(", "), ret_ty(m, k));
        if outs.is_empty() {
            let _ = writeln!(out, "{k}::binder_ipc::aidl::blocking(move || _aidl_proxy.r#{}({})).await\n}}", m.name, pass.join(", "));
            continue;
        }
        let names: Vec<String> = outs.iter().map(|x| format!("_aidl_out_{}", x.name)).collect();
        for x in &outs {
            let _ = writeln!(out, "let mut _aidl_out_{0} = ::std::mem::take(r#{0});", x.name);
        }
        let _ = writeln!(out, "let (_aidl_result, {n}) = {k}::binder_ipc::aidl::blocking(move || {{ let _aidl_result = _aidl_proxy.r#{}({}); Ok((_aidl_result, {n})) }}).await?;", m.name, pass.join(", "), n = names.join(", "));
        for x in &outs {
            let _ = writeln!(out, "*r#{0} = _aidl_out_{0};", x.name);
        }
        let _ = writeln!(out, "_aidl_result\n}}");
    }
    let _ = writeln!(out, "}}");
}

/// The Rust type an async method resolves to: the result, then its out/inout arguments.
fn async_output(m: &Method, k: &str) -> String {
    let outs: Vec<String> = m.args.iter().filter(|x| x.dir != Dir::In).map(|x| x.ty.rust(k)).collect();
    match outs.is_empty() {
        true => m.ret.rust(k),
        false => format!("({}, {})", m.ret.rust(k), outs.join(", ")),
    }
}

/// The async service trait and its server (methods run on the user's tokio runtime).
fn async_server(out: &mut String, i: &Interface, k: &str) {
    let p = format!("{k}::binder_ipc");
    let (lo, hi) = code_range(i);
    let _ = writeln!(out, "
/// What an async service implements: each method returns a future run on the server's tokio
/// runtime (out and inout arguments come in by value and go back after the result).
pub trait AsyncInterface: Send + Sync + 'static {{");
    for m in &i.methods {
        doc(out, &m.doc);
        let params: Vec<String> = m.args.iter().map(|x| format!("r#{}: {}", x.name, x.ty.rust(k))).collect();
        let _ = writeln!(out, "#[allow(non_snake_case)]\nfn r#{}(self: ::std::sync::Arc<Self>, {}: {p}::runtime::CallContext, {}) -> impl ::std::future::Future<Output = ::std::result::Result<{}, {p}::runtime::BinderError>> + Send;",
            m.name, context_name(m), params.join(", "), async_output(m, k));
    }
    let _ = writeln!(out, "}}

/// The service side of an [`AsyncInterface`]: the binder thread that receives a two-way call
/// hands the method's future to the tokio runtime and waits for its result (the reply must
/// leave from that thread), counted in [`AsyncServer::stats`]; a oneway call's future is
/// spawned and the binder thread is free at once.
pub struct AsyncServer<T: AsyncInterface> {{
    inner: ::std::sync::Arc<T>,
    runtime: {p}::aidl::RuntimeHandle,
    stats: ::std::sync::Arc<{p}::aidl::AsyncServerStats>,
}}

impl<T: AsyncInterface> AsyncServer<T> {{
    /// Serves `inner` with its methods run on `runtime`.
    pub fn new(inner: T, runtime: {p}::aidl::RuntimeHandle) -> Self {{
        AsyncServer {{ inner: ::std::sync::Arc::new(inner), runtime, stats: ::std::default::Default::default() }}
    }}
    /// The binder threads' counters (calls, threads waiting now and at most).
    pub fn stats(&self) -> ::std::sync::Arc<{p}::aidl::AsyncServerStats> {{ self.stats.clone() }}");
    for m in &i.methods {
        let _ = writeln!(out, "#[allow(non_snake_case)]\nfn on_{}(&self, _aidl_data: &mut {p}::parcel::Parcel, _aidl_reply: &mut {p}::parcel::Parcel, _aidl_call: &{p}::runtime::CallContext) -> ::std::result::Result<(), {p}::runtime::BinderError> {{", m.name);
        let _ = writeln!(out, "let _ = (&_aidl_data, &_aidl_reply);");
        read_args(out, m, k, false);
        let args: Vec<String> = m.args.iter().map(|x| format!("r#{}", x.name)).collect();
        let fut = format!("T::r#{}(self.inner.clone(), _aidl_call.clone(), {})", m.name, args.join(", "));
        let outs: Vec<&Arg> = m.args.iter().filter(|x| x.dir != Dir::In).collect();
        let run = format!("{p}::aidl::run_on(&self.runtime, &self.stats, {fut})");
        if m.oneway {
            let _ = writeln!(out, "{p}::aidl::spawn_oneway(&self.runtime, &self.stats, {fut});\nOk(())\n}}");
        } else if outs.is_empty() {
            let _ = writeln!(out, "let _aidl_result = {run};");
            write_result(out, m, k);
        } else {
            let names: Vec<String> = outs.iter().map(|x| format!("_aidl_out_{}", x.name)).collect();
            let first = if m.ret.ty == Ty::Void { "()" } else { "_aidl_value" };
            let _ = writeln!(out, "match {run} {{ Ok(({first}, {})) => {{ _aidl_reply.write_no_exception()?;", names.join(", "));
            let value = (m.ret.ty != Ty::Void).then(|| "_aidl_value".to_owned());
            for n in value.into_iter().chain(names) {
                let _ = writeln!(out, "{p}::aidl::AidlValue::write_aidl(&{n}, _aidl_reply, &_aidl_call.process)?;");
            }
            let _ = writeln!(out, "Ok(()) }}\nErr(e) => {k}::binder_ipc::interface::reply_error(_aidl_reply, e),\n}}\n}}");
        }
    }
    let _ = writeln!(out, "}}

impl<T: AsyncInterface> {p}::runtime::Service for AsyncServer<T> {{
    fn descriptor(&self) -> &str {{ DESCRIPTOR }}
    fn on_transact(&self, code: u32, _aidl_data: &mut {p}::parcel::Parcel, _aidl_reply: &mut {p}::parcel::Parcel, _aidl_call: &{p}::runtime::CallContext) -> ::std::result::Result<(), {p}::runtime::BinderError> {{
        if ({lo}..={hi}).contains(&code) {{ _aidl_data.enforce_interface(DESCRIPTOR)?; }}
        match code {{");
    for m in &i.methods {
        let _ = writeln!(out, "{} => self.on_{}(_aidl_data, _aidl_reply, _aidl_call),", m.code, m.name);
    }
    let _ = writeln!(out, "other => Err({p}::runtime::BinderError::UnknownTransaction(other)),\n}}\n}}\n}}");
}
