//! Who may do what: sets of uids ([`UidSet`], the permissions services check against the
//! caller's uid from the driver) and the service manager's policy file ([`ServicePolicy`]).
//!
//! Android decides by uid (`Binder.getCallingUid`) and, in servicemanager, by SELinux
//! `service_contexts`. Here a service holds a [`UidSet`] per permission, and the service
//! manager a list of rules read from a file:
//!
//! ```text
//! # rule      action  names        uids
//! vendor-b    add     vendor.b.*   10002
//! apps        add     app.*        10000-19999
//! secrets     find    secret.*     root,self
//! secrets     list    secret.*     root,self
//! ```
//!
//! One rule a line: a name for messages and logs, an action (`add`, `find` or `list`), a
//! name pattern (`*` any run of characters, `?` one character) and a uid set (see
//! [`UidSet::parse`]). `#` starts a comment. For an action and a name, the **first** rule of
//! that action whose pattern matches decides: the caller is allowed when its uid is in the
//! rule's set. When no rule matches, the default holds: root and the daemon's own uid may
//! add any name (they always may), everyone may find and list any name. A refusal names the
//! rule and its line; `find` refusals are `SecurityException`s (`EX_SECURITY`), names a
//! caller may not list are left out of its list, as Android's `listServices` does.
//!
//! ```
//! use bittube::binder_ipc::policy::{ServicePolicy, UidSet};
//! use bittube::binder_ipc::service_manager::Access;
//!
//! let p = ServicePolicy::parse("vendor-b add vendor.b.* 10002\n").unwrap();
//! assert!(p.check(Access::Add, "vendor.b.camera", 10002).is_ok());
//! let why = p.check(Access::Add, "vendor.b.camera", 10001).unwrap_err();
//! assert!(why.contains("rule 'vendor-b'"));
//! assert!(p.check(Access::Find, "vendor.b.camera", 10001).is_ok());
//! assert!(UidSet::parse("0,10000-19999").unwrap().contains(12345));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::service_manager::{Access, AccessPolicy, AccessRequest};

/// The most rules a policy file may hold, and the longest line (a file is configuration,
/// but a bound keeps a mistake from costing the daemon its memory).
pub const MAX_RULES: usize = 4096;
/// The longest line of a policy file, in bytes.
pub const MAX_LINE: usize = 1024;

/// This process's effective uid (the daemon's own uid in policies).
pub fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A set of uids: any uid, or a list of uids and ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UidSet {
    any: bool,
    ranges: Vec<RangeInclusive<u32>>,
}

impl UidSet {
    /// Every uid.
    pub fn any() -> UidSet {
        UidSet {
            any: true,
            ranges: Vec::new(),
        }
    }

    /// No uid.
    pub fn none() -> UidSet {
        UidSet::default()
    }

    /// Root and this process's effective uid: the default holders of every permission.
    pub fn privileged() -> UidSet {
        UidSet::none().with(0).with(own_uid())
    }

    /// This set and `uid`.
    pub fn with(mut self, uid: u32) -> UidSet {
        self.ranges.push(uid..=uid);
        self
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: u32) -> bool {
        self.any || self.ranges.iter().any(|r| r.contains(&uid))
    }

    /// Parses a comma-separated list of `any`, `root` (0), `self` (this process's euid), a
    /// uid `N`, a range `N-M`, `user:NAME` (its uid from the user database) or `group:NAME`
    /// (the uids of the group's listed members and of the users whose primary group it is).
    pub fn parse(text: &str) -> Result<UidSet, String> {
        let mut set = UidSet::none();
        for item in text.split(',').map(str::trim) {
            match item {
                "" => return Err(format!("empty item in uid list '{text}'")),
                "any" | "*" => set.any = true,
                "root" => set.ranges.push(0..=0),
                "self" => set.ranges.push(own_uid()..=own_uid()),
                _ => set.parse_item(item)?,
            }
        }
        Ok(set)
    }

    fn parse_item(&mut self, item: &str) -> Result<(), String> {
        let num = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                format!(
                    "'{s}' is not a uid (a number, N-M, any, root, self, user:NAME, group:NAME)"
                )
            })
        };
        if let Some(name) = item.strip_prefix("user:") {
            let user = nix::unistd::User::from_name(name)
                .map_err(|e| format!("user '{name}': {e}"))?
                .ok_or_else(|| format!("no user '{name}'"))?;
            self.ranges.push(user.uid.as_raw()..=user.uid.as_raw());
        } else if let Some(name) = item.strip_prefix("group:") {
            self.ranges
                .extend(group_uids(name)?.into_iter().map(|u| u..=u));
        } else if let Some((lo, hi)) = item.split_once('-') {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!("empty uid range {item}"));
            }
            self.ranges.push(lo..=hi);
        } else {
            let uid = num(item)?;
            self.ranges.push(uid..=uid);
        }
        Ok(())
    }
}

/// The uids of group `name`: its listed members and the users whose primary group it is.
fn group_uids(name: &str) -> Result<Vec<u32>, String> {
    let group = nix::unistd::Group::from_name(name)
        .map_err(|e| format!("group '{name}': {e}"))?
        .ok_or_else(|| format!("no group '{name}'"))?;
    let mut uids = Vec::new();
    for member in &group.mem {
        if let Ok(Some(u)) = nix::unistd::User::from_name(member) {
            uids.push(u.uid.as_raw());
        }
    }
    // Primary groups are only in the user database's own file.
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let (Some(uid), Some(gid)) = (f.get(2), f.get(3)) {
                if gid.parse::<u32>().ok() == Some(group.gid.as_raw()) {
                    uids.extend(uid.parse::<u32>().ok());
                }
            }
        }
    }
    Ok(uids)
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("any uid");
        }
        if self.ranges.is_empty() {
            return f.write_str("no uid");
        }
        for (i, r) in self.ranges.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if r.start() == r.end() {
                write!(f, "{sep}{}", r.start())?;
            } else {
                write!(f, "{sep}{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern` (`*` any run of characters, `?` one character).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it was tried at: backtrack there on mismatch.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Refusals logged per uid per second; past it they are counted and the count is logged
/// when the next second starts for that uid (a hostile uid cannot flood the log).
pub const LOGGED_REFUSALS_PER_SECOND: u32 = 20;

/// Rate-limits the refusal log per uid, counting what it leaves out.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// uid → (start of its current second, refusals logged in it, refusals left out).
    by_uid: Mutex<HashMap<u32, (Instant, u32, u64)>>,
}

/// At most this many uids are tracked; past it the table is cleared (its counts logged).
const MAX_TRACKED_UIDS: usize = 4096;

impl RefusalLog {
    /// Logs `why` (warn, target `bittube::policy`) unless `uid` used up its second; then
    /// counts it. A new second first logs how many were left out.
    pub fn refused(&self, pid: i32, uid: u32, why: &str) {
        let mut map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED_UIDS && !map.contains_key(&uid) {
            for (u, (_, _, left_out)) in map.drain().filter(|(_, v)| v.2 > 0) {
                tracing::warn!(target: "bittube::policy", uid = u, "{left_out} more refusals not logged");
            }
        }
        let now = Instant::now();
        let e = map.entry(uid).or_insert((now, 0, 0));
        if now.duration_since(e.0) >= Duration::from_secs(1) {
            if e.2 > 0 {
                tracing::warn!(target: "bittube::policy", uid, "{} more refusals not logged", e.2);
            }
            *e = (now, 0, 0);
        }
        if e.1 < LOGGED_REFUSALS_PER_SECOND {
            e.1 += 1;
            tracing::warn!(target: "bittube::policy", pid, uid, "refused: {why}");
        } else {
            e.2 += 1;
        }
    }

    /// Refusals left out of the log so far (not yet reported), all uids together.
    pub fn left_out(&self) -> u64 {
        let map = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|v| v.2).sum()
    }
}

/// One line of a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, quoted in refusals and logs.
    pub name: String,
    /// The line it came from (1-based; 0 for rules made in code).
    pub line: usize,
    /// What it governs.
    pub action: Access,
    /// The service names it covers.
    pub pattern: String,
    /// Who it allows.
    pub uids: UidSet,
}

/// The service manager's policy: rules, and the default for names no rule covers.
#[derive(Debug, Clone)]
pub struct ServicePolicy {
    rules: Vec<Rule>,
    /// May always add (root and the daemon's own uid).
    privileged: UidSet,
}

impl Default for ServicePolicy {
    fn default() -> Self {
        ServicePolicy {
            rules: Vec::new(),
            privileged: UidSet::privileged(),
        }
    }
}

fn parse_action(word: &str) -> Result<Access, String> {
    match word {
        "add" => Ok(Access::Add),
        "find" => Ok(Access::Find),
        "list" => Ok(Access::List),
        _ => Err(format!("unknown action '{word}' (add, find or list)")),
    }
}

fn action_name(a: Access) -> &'static str {
    match a {
        Access::Add => "add",
        Access::Find => "find",
        Access::List => "list",
    }
}

impl ServicePolicy {
    /// Parses a policy file's text (format in the module documentation).
    pub fn parse(text: &str) -> Result<ServicePolicy, String> {
        let mut policy = ServicePolicy::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.len() > MAX_LINE {
                return Err(format!("line {line}: longer than {MAX_LINE} bytes"));
            }
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let f: Vec<&str> = body.split_whitespace().collect();
            let [name, action, pattern, uids] = f[..] else {
                return Err(format!(
                    "line {line}: expected 'RULE ACTION PATTERN UIDS', got '{body}'"
                ));
            };
            if policy.rules.len() >= MAX_RULES {
                return Err(format!("line {line}: more than {MAX_RULES} rules"));
            }
            let at = |e: String| format!("line {line}: {e}");
            policy.rules.push(Rule {
                name: name.to_owned(),
                line,
                action: parse_action(action).map_err(at)?,
                pattern: pattern.to_owned(),
                uids: UidSet::parse(uids).map_err(at)?,
            });
        }
        Ok(policy)
    }

    /// Reads and parses the policy file at `path`.
    pub fn load(path: &Path) -> Result<ServicePolicy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read policy {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("policy {}: {e}", path.display()))
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `uid` may do `action` on `name`; the refusal names the deciding rule.
    pub fn check(&self, action: Access, name: &str, uid: u32) -> Result<(), String> {
        if action == Access::Add && self.privileged.contains(uid) {
            return Ok(());
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.action == action && pattern_matches(&r.pattern, name));
        let verb = action_name(action);
        match rule {
            Some(r) if r.uids.contains(uid) => Ok(()),
            Some(r) => Err(format!(
                "uid {uid} may not {verb} '{name}': rule '{}' (line {}: {verb} {}) allows {} only",
                r.name, r.line, r.pattern, r.uids
            )),
            None if action != Access::Add => Ok(()),
            None => Err(format!(
                "uid {uid} may not add '{name}': no rule allows it, and by default only {} may add",
                self.privileged
            )),
        }
    }

    /// The hook for the service manager: [`ServicePolicy::check`], with every refusal logged
    /// (`warn`, target `bittube::policy`, at most [`LOGGED_REFUSALS_PER_SECOND`] per uid, the
    /// rest counted and the count logged) and every grant logged at `debug`.
    pub fn into_access_policy(self) -> AccessPolicy {
        let policy = Arc::new(self);
        let log = RefusalLog::default();
        Arc::new(move |req: &AccessRequest<'_>| {
            let r = policy.check(req.action, req.name, req.uid);
            match &r {
                // A name left out of a list is routine: debug, not a warning.
                Err(why) if req.action == Access::List => {
                    tracing::debug!(target: "bittube::policy", pid = req.pid, uid = req.uid, "list filtered: {why}")
                }
                Err(why) => log.refused(req.pid, req.uid, why),
                Ok(()) => tracing::debug!(
                    target: "bittube::policy",
                    pid = req.pid,
                    uid = req.uid,
                    "{} '{}' allowed",
                    action_name(req.action),
                    req.name
                ),
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("vendor.b.*", "vendor.b.cam"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(pattern_matches("a?c", "abc"));
        assert!(!pattern_matches("a?c", "ac"));
        assert!(!pattern_matches("vendor.b.*", "vendor.a.cam"));
        assert!(!pattern_matches("abc", "abcd"));
        assert!(pattern_matches("*x*x*x*", "axbxcxd"));
    }

    #[test]
    fn uid_sets() {
        let s = UidSet::parse("0, 10000-19999,42").unwrap();
        assert!(s.contains(0) && s.contains(42) && s.contains(19999));
        assert!(!s.contains(20000) && !s.contains(1));
        assert_eq!(s.to_string(), "0,10000-19999,42");
        assert!(UidSet::parse("any").unwrap().contains(7));
        assert!(UidSet::parse("5-4").is_err());
        assert!(UidSet::parse("x").is_err());
        assert!(UidSet::parse("1,,2").is_err());
        assert!(UidSet::parse("user:root").unwrap().contains(0));
    }

    #[test]
    fn first_matching_rule_decides_and_is_named() {
        let p = ServicePolicy::parse(
            "# comment\nb add vendor.b.* 10002\napps add * 10000-19999 # trailing\nhide find secret.* root\nhide-list list secret.* root\n",
        )
        .unwrap();
        assert_eq!(p.rules().len(), 4);
        let why = p.check(Access::Add, "vendor.b.x", 10001).unwrap_err();
        assert!(why.contains("rule 'b' (line 2"), "{why}");
        assert!(p.check(Access::Add, "vendor.b.x", 10002).is_ok());
        assert!(p.check(Access::Add, "app.a", 10001).is_ok());
        assert!(p.check(Access::Add, "app.a", 20001).is_err());
        assert!(
            p.check(Access::Add, "anything", 0).is_ok(),
            "root always adds"
        );
        assert!(p.check(Access::Find, "secret.k", 10001).is_err());
        assert!(p.check(Access::Find, "secret.k", 0).is_ok());
        assert!(p.check(Access::List, "secret.k", 10001).is_err());
        assert!(p.check(Access::Find, "other", 10001).is_ok());
    }

    #[test]
    fn refusal_log_counts_what_it_leaves_out() {
        let log = RefusalLog::default();
        for _ in 0..LOGGED_REFUSALS_PER_SECOND + 5 {
            log.refused(1, 10001, "x");
        }
        log.refused(2, 10002, "y");
        assert_eq!(log.left_out(), 5, "uid 10002 has its own share");
    }

    #[test]
    fn default_policy_and_errors() {
        let p = ServicePolicy::default();
        let why = p.check(Access::Add, "x", 10001).unwrap_err();
        assert!(why.contains("by default only"), "{why}");
        assert!(p.check(Access::Find, "x", 10001).is_ok());
        assert!(ServicePolicy::parse("r add x")
            .unwrap_err()
            .contains("line 1"));
        assert!(ServicePolicy::parse("r take x 1")
            .unwrap_err()
            .contains("unknown action"));
        assert!(ServicePolicy::parse(&"x".repeat(MAX_LINE + 1)).is_err());
    }
}
