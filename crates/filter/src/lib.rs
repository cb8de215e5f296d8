//! strace's filters for winstrace.
//!
//! - [`TraceSet`]: `-e trace=SET`, the functions to trace. `SET` is a
//!   comma-separated list of names (`NtCreateFile`), regular expressions
//!   (`/^NtQuery`) and classes (`%file`), or `all` / `none`; a leading `!`
//!   negates the whole set. A function outside the set is not trapped at all.
//! - [`classes`]: the classes, from `data/classes.tsv`.
//! - [`StatusFilter`]: `-Z` (only failed calls) and `-z` (only successful).

use std::fmt;

use regex::Regex;

/// A class of functions for `%CLASS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: &'static str,
    pub description: &'static str,
    include: Vec<&'static str>,
    exclude: Vec<&'static str>,
}

impl Class {
    /// Whether `function` belongs to the class.
    pub fn contains(&self, function: &str) -> bool {
        self.include.iter().any(|s| function.contains(s))
            && !self.exclude.iter().any(|s| function.contains(s))
    }
}

/// Every class, in the data file's order.
pub fn classes() -> &'static [Class] {
    static CLASSES: std::sync::OnceLock<Vec<Class>> = std::sync::OnceLock::new();
    CLASSES.get_or_init(|| {
        include_str!("../data/classes.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let mut cols = line.split('\t');
                let mut next = || cols.next().unwrap_or("");
                let list = |s: &'static str| s.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>();
                let (name, description, include, exclude) = (next(), next(), next(), next());
                Class { name, description, include: list(include), exclude: list(exclude) }
            })
            .collect()
    })
}

/// One item of a trace set.
#[derive(Debug, Clone)]
enum Item {
    Name(String),
    Pattern(Regex),
    Class(&'static Class),
}

/// The functions to trace: `-e trace=SET`.
#[derive(Debug, Clone)]
pub struct TraceSet {
    items: Vec<Item>,
    /// `all`: every function.
    all: bool,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

impl Default for TraceSet {
    fn default() -> TraceSet {
        TraceSet { items: Vec::new(), all: true, negated: false }
    }
}

impl TraceSet {
    /// Parses the value of `trace=`.
    pub fn parse(spec: &str) -> Result<TraceSet, FilterError> {
        let (negated, body) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let mut set = TraceSet { items: Vec::new(), all: false, negated };
        for word in body.split(',').map(str::trim) {
            match word {
                "" => return Err(FilterError(format!("empty item in trace set '{spec}'"))),
                "all" => set.all = true,
                "none" => {}
                _ if word.starts_with('/') => {
                    let re = Regex::new(&word[1..])
                        .map_err(|e| FilterError(format!("bad regular expression '{}': {e}", &word[1..])))?;
                    set.items.push(Item::Pattern(re));
                }
                _ if word.starts_with('%') => {
                    let class = classes().iter().find(|c| c.name == &word[1..]).ok_or_else(|| {
                        let known: Vec<String> = classes().iter().map(|c| format!("%{}", c.name)).collect();
                        FilterError(format!("unknown class '{word}' (classes: {})", known.join(", ")))
                    })?;
                    set.items.push(Item::Class(class));
                }
                name => {
                    // Zw* names are the same system calls as Nt*.
                    let name = match name.strip_prefix("Zw") {
                        Some(rest) => format!("Nt{rest}"),
                        None => name.to_string(),
                    };
                    if !name.starts_with("Nt") {
                        return Err(FilterError(format!(
                            "'{word}' is not an Nt* function name; use /REGEX for patterns or %CLASS for classes"
                        )));
                    }
                    set.items.push(Item::Name(name));
                }
            }
        }
        Ok(set)
    }

    /// Parses an `-e` argument: `trace=SET`, or a bare `SET` as strace allows.
    pub fn parse_expression(expr: &str) -> Result<TraceSet, FilterError> {
        match expr.split_once('=') {
            Some(("trace", set)) => TraceSet::parse(set),
            Some((qualifier, _)) => Err(FilterError(format!(
                "unsupported qualifier '{qualifier}=' (winstrace supports -e trace=SET)"
            ))),
            None => TraceSet::parse(expr),
        }
    }

    /// Whether `function` is to be traced.
    pub fn matches(&self, function: &str) -> bool {
        let in_set = self.all
            || self.items.iter().any(|item| match item {
                Item::Name(name) => name == function,
                Item::Pattern(re) => re.is_match(function),
                Item::Class(class) => class.contains(function),
            });
        in_set != self.negated
    }

    /// True when every function is traced (nothing to filter).
    pub fn is_everything(&self) -> bool {
        self.all && !self.negated
    }
}

/// `-Z` / `-z`: which calls to show by their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    /// `-Z`: only calls whose NTSTATUS has warning or error severity.
    FailedOnly,
    /// `-z`: only calls that returned a success or informational status.
    SuccessfulOnly,
}

impl StatusFilter {
    /// Whether a call with this result is shown. `None` is a call that did
    /// not return (`= ?`): it is neither failed nor successful, so either
    /// filter hides it.
    pub fn shows(self, result: Option<u64>) -> bool {
        match (self, result) {
            (StatusFilter::All, _) => true,
            (_, None) => false,
            // An NTSTATUS (32 bits) with the top bit set: severity warning or error.
            (StatusFilter::FailedOnly, Some(status)) => status as u32 & 0x8000_0000 != 0,
            (StatusFilter::SuccessfulOnly, Some(status)) => status as u32 & 0x8000_0000 == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_regexes_classes_and_negation() {
        let set = TraceSet::parse("NtCreateFile,NtOpenFile").unwrap();
        assert!(set.matches("NtCreateFile") && set.matches("NtOpenFile"));
        assert!(!set.matches("NtClose"));
        let set = TraceSet::parse("ZwClose").unwrap();
        assert!(set.matches("NtClose"));
        let set = TraceSet::parse("/^NtQuery.*File$").unwrap();
        assert!(set.matches("NtQueryAttributesFile") && set.matches("NtQueryInformationFile"));
        assert!(!set.matches("NtQueryKey"));
        let set = TraceSet::parse("%registry").unwrap();
        assert!(set.matches("NtCreateKey") && set.matches("NtSetValueKey") && set.matches("NtOpenKeyEx"));
        assert!(!set.matches("NtCreateKeyedEvent") && !set.matches("NtCreateFile"));
        let set = TraceSet::parse("!%file,NtClose").unwrap();
        assert!(!set.matches("NtCreateFile") && !set.matches("NtClose"));
        assert!(set.matches("NtCreateKey"));
        assert!(TraceSet::parse("all").unwrap().is_everything());
        assert!(!TraceSet::parse("none").unwrap().matches("NtClose"));
        assert!(TraceSet::parse("!none").unwrap().matches("NtClose"));
        assert!(TraceSet::default().matches("NtAnything"));
    }

    #[test]
    fn expressions_and_errors() {
        assert!(TraceSet::parse_expression("trace=NtClose").unwrap().matches("NtClose"));
        assert!(TraceSet::parse_expression("NtClose").unwrap().matches("NtClose"));
        assert_eq!(
            TraceSet::parse_expression("signal=all").unwrap_err().to_string(),
            "unsupported qualifier 'signal=' (winstrace supports -e trace=SET)"
        );
        assert!(TraceSet::parse("%nope")
            .unwrap_err()
            .to_string()
            .starts_with("unknown class '%nope' (classes: %file, %registry"));
        assert!(TraceSet::parse("/(").unwrap_err().to_string().starts_with("bad regular expression '('"));
        assert!(TraceSet::parse("open").unwrap_err().to_string().contains("not an Nt* function name"));
        assert!(TraceSet::parse("NtClose,,NtOpenFile").is_err());
    }

    #[test]
    fn classes_cover_the_usual_suspects() {
        let all: Vec<&str> = winstrace_signatures::all().iter().map(|s| s.name).collect();
        let class = |name: &str| classes().iter().find(|c| c.name == name).unwrap();
        let members = |name: &str| all.iter().filter(|f| class(name).contains(f)).count();
        for (name, expected) in [
            ("file", "NtReadFile"),
            ("file", "NtQueryDirectoryFile"),
            ("process", "NtCreateUserProcess"),
            ("thread", "NtCreateThreadEx"),
            ("memory", "NtAllocateVirtualMemory"),
            ("section", "NtMapViewOfSection"),
            ("sync", "NtWaitForSingleObject"),
            ("sync", "NtDelayExecution"),
            ("token", "NtOpenProcessToken"),
            ("system", "NtQuerySystemInformation"),
            ("object", "NtClose"),
            ("port", "NtAlpcSendWaitReceivePort"),
        ] {
            assert!(class(name).contains(expected), "%{name} should contain {expected}");
            assert!(all.contains(&expected), "{expected} has a signature");
        }
        assert!(!class("system").contains("NtSetTimer"));
        assert!(!class("file").contains("NtOpenDirectoryObject"));
        // Every class is populated by real functions.
        for c in classes() {
            assert!(members(c.name) >= 3, "%{} has {} members", c.name, members(c.name));
        }
    }

    #[test]
    fn status_filters() {
        use StatusFilter::*;
        for (filter, ok, warn, err, none) in [
            (All, true, true, true, true),
            (FailedOnly, false, true, true, false),
            (SuccessfulOnly, true, false, false, false),
        ] {
            assert_eq!(filter.shows(Some(0)), ok);
            assert_eq!(filter.shows(Some(0x103)), ok, "STATUS_PENDING is informational");
            assert_eq!(filter.shows(Some(0x8000_0005)), warn);
            assert_eq!(filter.shows(Some(0xc000_0034)), err);
            assert_eq!(filter.shows(None), none);
        }
    }
}
