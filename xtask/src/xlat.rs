//! `gen-xlat`: symbolic names for enum values and flag bits ("xlat" tables),
//! read from Windows.Wdk.winmd and Windows.Win32.winmd and written one table
//! per file to crates/decode/data/xlat/NAME.tsv, which crates/decode/build.rs
//! compiles into static sorted slices.
//!
//! `cargo run -p xtask -- gen-xlat --find WORD` instead prints the enum types
//! whose name contains WORD and the loose constants whose name starts with
//! it, which is how the sources below were chosen.
//!
//! How a table is assembled (the per-table choices are in [`specs`]):
//! - Table names: a table that holds (a selection of) one metadata enum type
//!   carries that type's name, e.g. `FILE_INFORMATION_CLASS`, so a decoder
//!   can go from the signature database's `meta` column to the table. Tables
//!   that the metadata has no single type for have lower-case names we chose:
//!   the access-mask tables `<object>_access` (an access mask is decoded as
//!   object-specific rights + `standard_access` + `generic_access`, and the
//!   metadata files those three parts under one type or none) and a few sets
//!   of loose constants (`section_attributes`, `file_create_result`). An
//!   access table made from one metadata type lists that type as an alias.
//! - Sources: members of metadata enum types, optionally picked by name
//!   prefix or name list, and loose constants (fields of a namespace's `Apis`
//!   class) for values the metadata has no enum for. The metadata does not
//!   say which loose constants belong together, so they are named one by one
//!   here, never collected by a prefix scan (a prefix such as `MEM_` also
//!   catches unrelated `MEM_EXTENDED_PARAMETER_*` constants). Every listed
//!   name must exist, so a metadata update that drops one fails loudly.
//! - Object-specific access tables keep only names with a bit inside the
//!   specific-rights range 0x0000FFFF: the metadata repeats the standard
//!   rights under prefixed names (PROCESS_DELETE, TOKEN_READ_CONTROL...),
//!   and those bits are named by `standard_access` instead.
//! - Marks: when several names share a value, the first one (in metadata
//!   order, or the table's `prefer` list) names it and the others are marked
//!   `alias`: kept for reference and grepping, never printed. In access
//!   tables every multi-bit name (FILE_ALL_ACCESS, KEY_READ...) is marked
//!   `composite`: an exact-value name, left out of the bit decomposition. In
//!   other flag tables a multi-bit name is decomposed as a unit (printed when
//!   all of its bits are set) unless the table lists it as composite, because
//!   there such names are usually distinct values (SEC_IMAGE_NO_EXECUTE)
//!   rather than shorthands; validity masks are listed as composite.
//! - Values are written as the 32-bit pattern a ULONG argument carries
//!   (signed enum constants are reinterpreted, not sign-extended).

use std::collections::{BTreeMap, BTreeSet};

use windows_metadata::reader::{HasAttributes, Index, TypeCategory};
use windows_metadata::Value;

const OUT_DIR: &str = "crates/decode/data/xlat";
const WDK: &str = "Windows.Wdk.winmd";
const WIN32: &str = "Windows.Win32.winmd";

// Namespaces the tables come from.
const WDK_FOUNDATION: &str = "Windows.Wdk.Foundation";
const WDK_FS: &str = "Windows.Wdk.Storage.FileSystem";
const WDK_MEMORY: &str = "Windows.Wdk.System.Memory";
const WDK_REGISTRY: &str = "Windows.Wdk.System.Registry";
const WDK_SYSINFO: &str = "Windows.Wdk.System.SystemInformation";
const WDK_SYSSERVICES: &str = "Windows.Wdk.System.SystemServices";
const WDK_THREADING: &str = "Windows.Wdk.System.Threading";
const FOUNDATION: &str = "Windows.Win32.Foundation";
const FILESYSTEM: &str = "Windows.Win32.Storage.FileSystem";
const KERNEL: &str = "Windows.Win32.System.Kernel";
const MEMORY: &str = "Windows.Win32.System.Memory";
const POWER: &str = "Windows.Win32.System.Power";
const REGISTRY: &str = "Windows.Win32.System.Registry";
const SECURITY: &str = "Windows.Win32.Security";
const SYSSERVICES: &str = "Windows.Win32.System.SystemServices";
const THREADING: &str = "Windows.Win32.System.Threading";
const WINPROG: &str = "Windows.Win32.System.WindowsProgramming";

/// Access rights below this mask are object-specific; above it are the
/// standard, ACCESS_SYSTEM_SECURITY, MAXIMUM_ALLOWED and generic rights.
const SPECIFIC_RIGHTS: u64 = 0xFFFF;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Enum,
    Flags,
}

/// Which members of an enum type go into a table.
enum Pick {
    All,
    Prefix(&'static str),
    Only(&'static [&'static str]),
    Except(&'static [&'static str]),
}

enum Source {
    /// Members of the enum type `namespace.name`.
    Type(&'static str, &'static str, Pick),
    /// Loose constants, fields of the `namespace.Apis` class.
    Consts(&'static str, &'static [&'static str]),
}

enum Composite {
    /// Only these names are composite (validity masks and the like).
    Listed(&'static [&'static str]),
    /// Every name with more than one bit set is composite (access masks).
    MultiBit,
}

struct Spec {
    name: &'static str,
    kind: Kind,
    what: &'static str,
    sources: Vec<Source>,
    alias: Option<&'static str>,
    prefer: &'static [&'static str],
    composite: Composite,
    /// Drop names with no object-specific bit (see the module doc).
    specific_only: bool,
}

impl Spec {
    fn new(name: &'static str, kind: Kind, what: &'static str, sources: Vec<Source>) -> Spec {
        Spec {
            name,
            kind,
            what,
            sources,
            alias: None,
            prefer: &[],
            composite: Composite::Listed(&[]),
            specific_only: false,
        }
    }
    /// A table holding members of one metadata enum type, named after it.
    fn of_type(kind: Kind, namespace: &'static str, name: &'static str, what: &'static str) -> Spec {
        Spec::new(name, kind, what, vec![Source::Type(namespace, name, Pick::All)])
    }
    /// An object-specific access-rights table.
    fn access(name: &'static str, what: &'static str, sources: Vec<Source>) -> Spec {
        Spec {
            composite: Composite::MultiBit,
            specific_only: true,
            ..Spec::new(name, Kind::Flags, what, sources)
        }
    }
    /// An access-rights table shared by all object types (standard, generic).
    fn shared_access(name: &'static str, what: &'static str, sources: Vec<Source>) -> Spec {
        Spec { specific_only: false, ..Spec::access(name, what, sources) }
    }
    fn alias(self, alias: &'static str) -> Spec {
        Spec { alias: Some(alias), ..self }
    }
    fn prefer(self, prefer: &'static [&'static str]) -> Spec {
        Spec { prefer, ..self }
    }
    fn composite(self, names: &'static [&'static str]) -> Spec {
        Spec { composite: Composite::Listed(names), ..self }
    }
}

/// Enum types taken whole, each in a table named after it:
/// (namespace, type, what its values select).
const WHOLE_ENUMS: &[(&str, &str, &str)] = &[
    (
        WDK_FS,
        "FILE_INFORMATION_CLASS",
        "NtQuery/SetInformationFile, NtQueryDirectoryFile FileInformationClass",
    ),
    (WDK_FS, "FS_INFORMATION_CLASS", "NtQuery/SetVolumeInformationFile FsInformationClass"),
    (WDK_THREADING, "PROCESSINFOCLASS", "NtQuery/SetInformationProcess ProcessInformationClass"),
    (WDK_THREADING, "THREADINFOCLASS", "NtQuery/SetInformationThread ThreadInformationClass"),
    (WDK_REGISTRY, "KEY_INFORMATION_CLASS", "NtQueryKey, NtEnumerateKey KeyInformationClass"),
    (
        WDK_REGISTRY,
        "KEY_VALUE_INFORMATION_CLASS",
        "NtQueryValueKey, NtEnumerateValueKey KeyValueInformationClass",
    ),
    (WDK_REGISTRY, "KEY_SET_INFORMATION_CLASS", "NtSetInformationKey KeySetInformationClass"),
    (
        WDK_SYSINFO,
        "SYSTEM_INFORMATION_CLASS",
        "NtQuery/SetSystemInformation SystemInformationClass \
             (the metadata lists only the documented classes)",
    ),
    (
        WDK_FS,
        "MEMORY_INFORMATION_CLASS",
        "NtQueryVirtualMemory MemoryInformationClass \
             (the metadata lists only MemoryBasicInformation)",
    ),
    (WDK_FS, "VIRTUAL_MEMORY_INFORMATION_CLASS", "NtSetInformationVirtualMemory VmInformationClass"),
    (
        WDK_FOUNDATION,
        "OBJECT_INFORMATION_CLASS",
        "NtQueryObject ObjectInformationClass \
             (the metadata lists only the documented classes)",
    ),
    (KERNEL, "EVENT_TYPE", "NtCreateEvent EventType"),
    (WDK_MEMORY, "SECTION_INHERIT", "NtMapViewOfSection InheritDisposition"),
    (KERNEL, "TIMER_TYPE", "NtCreateTimer TimerType"),
    (KERNEL, "WAIT_TYPE", "NtWaitForMultipleObjects WaitType"),
    (WDK_THREADING, "TIMER_SET_INFORMATION_CLASS", "NtSetTimerEx TimerSetInformationClass"),
    (SECURITY, "TOKEN_INFORMATION_CLASS", "NtQuery/SetInformationToken TokenInformationClass"),
    (SECURITY, "TOKEN_TYPE", "NtDuplicateToken, NtCreateToken TokenType"),
    (SECURITY, "SECURITY_IMPERSONATION_LEVEL", "SECURITY_QUALITY_OF_SERVICE ImpersonationLevel"),
    (SECURITY, "AUDIT_EVENT_TYPE", "NtAccessCheckByType*AndAuditAlarm AuditType"),
    (WDK_SYSSERVICES, "PARTITION_INFORMATION_CLASS", "NtManagePartition PartitionInformationClass"),
    (SYSSERVICES, "TRANSACTION_INFORMATION_CLASS", "NtQuery/SetInformationTransaction"),
    (SYSSERVICES, "TRANSACTIONMANAGER_INFORMATION_CLASS", "NtQuery/SetInformationTransactionManager"),
    (SYSSERVICES, "RESOURCEMANAGER_INFORMATION_CLASS", "NtQuery/SetInformationResourceManager"),
    (SYSSERVICES, "ENLISTMENT_INFORMATION_CLASS", "NtQuery/SetInformationEnlistment"),
    (SYSSERVICES, "KTMOBJECT_TYPE", "NtEnumerateTransactionObject QueryType"),
    (POWER, "POWER_INFORMATION_LEVEL", "NtPowerInformation InformationLevel"),
    (WDK_FS, "NTCREATEFILE_CREATE_DISPOSITION", "NtCreateFile CreateDisposition"),
    (REGISTRY, "REG_VALUE_TYPE", "registry value Type (REG_SZ, REG_DWORD...)"),
    (REGISTRY, "REG_CREATE_KEY_DISPOSITION", "NtCreateKey Disposition"),
];

/// Every table, in the order they are reported.
fn specs() -> Vec<Spec> {
    use Kind::{Enum, Flags};
    use Source::{Consts, Type};
    const STANDARD: &[&str] = &[
        "DELETE",
        "READ_CONTROL",
        "WRITE_DAC",
        "WRITE_OWNER",
        "SYNCHRONIZE",
        "STANDARD_RIGHTS_REQUIRED",
        "STANDARD_RIGHTS_READ",
        "STANDARD_RIGHTS_WRITE",
        "STANDARD_RIGHTS_EXECUTE",
        "STANDARD_RIGHTS_ALL",
    ];
    // FILE_ACCESS_RIGHTS spells some bits differently for directories,
    // files and named pipes; each table leaves out the other spellings (and
    // SPECIFIC_RIGHTS_ALL, which is no file right).
    const NOT_FILE: &[&str] = &[
        "FILE_LIST_DIRECTORY",
        "FILE_ADD_FILE",
        "FILE_ADD_SUBDIRECTORY",
        "FILE_TRAVERSE",
        "FILE_CREATE_PIPE_INSTANCE",
        "SPECIFIC_RIGHTS_ALL",
    ];
    const NOT_DIRECTORY: &[&str] = &[
        "FILE_READ_DATA",
        "FILE_WRITE_DATA",
        "FILE_APPEND_DATA",
        "FILE_EXECUTE",
        "FILE_CREATE_PIPE_INSTANCE",
        "SPECIFIC_RIGHTS_ALL",
    ];

    // Where two page-protection names share a bit, the one that applies to
    // NtAllocate/ProtectVirtualMemory rather than to enclave loading.
    const PAGE_PREFER: &[&str] = &["PAGE_REVERT_TO_FILE_MAP", "PAGE_ENCLAVE_DECOMMIT"];

    let mut specs: Vec<Spec> = WHOLE_ENUMS
        .iter()
        .map(|&(namespace, name, what)| Spec::of_type(Enum, namespace, name, what))
        .collect();
    specs.extend([
        Spec::new(
            "file_create_result",
            Enum,
            "NtCreateFile/NtOpenFile IoStatusBlock.Information on success \
             (FILE_SUPERSEDED..FILE_DOES_NOT_EXIST)",
            vec![Consts(
                WINPROG,
                &[
                    "FILE_SUPERSEDED",
                    "FILE_OPENED",
                    "FILE_CREATED",
                    "FILE_OVERWRITTEN",
                    "FILE_EXISTS",
                    "FILE_DOES_NOT_EXIST",
                ],
            )],
        ),
        // Flag sets.
        Spec::new(
            "NTCREATEFILE_CREATE_OPTIONS",
            Flags,
            "NtCreateFile/NtOpenFile CreateOptions/OpenOptions",
            vec![
                Type(WDK_FS, "NTCREATEFILE_CREATE_OPTIONS", Pick::All),
                Consts(WINPROG, &["FILE_OPEN_REMOTE_INSTANCE"]),
            ],
        ),
        Spec::of_type(Flags, FILESYSTEM, "FILE_SHARE_MODE", "NtCreateFile/NtOpenFile ShareAccess"),
        Spec::new(
            "FILE_FLAGS_AND_ATTRIBUTES",
            Flags,
            "NtCreateFile FileAttributes and FILE_*_INFORMATION FileAttributes (only the FILE_ATTRIBUTE_* \
             members: FILE_FLAG_*, PIPE_ACCESS_* and SECURITY_* belong to Win32 CreateFile)",
            vec![
                Type(FILESYSTEM, "FILE_FLAGS_AND_ATTRIBUTES", Pick::Prefix("FILE_ATTRIBUTE_")),
                Consts(SYSSERVICES, &["FILE_ATTRIBUTE_STRICTLY_SEQUENTIAL"]),
            ],
        ),
        Spec::new(
            "PAGE_PROTECTION_FLAGS",
            Flags,
            "page protection (Protect, NewProtect, Win32Protect...; only the PAGE_* members, the SEC_* ones \
             are in section_attributes)",
            vec![Type(MEMORY, "PAGE_PROTECTION_FLAGS", Pick::Prefix("PAGE_"))],
        )
        .prefer(PAGE_PREFER),
        Spec::new(
            "section_attributes",
            Flags,
            "NtCreateSection AllocationAttributes \
             (the SEC_* members of the metadata's PAGE_PROTECTION_FLAGS)",
            vec![
                Type(MEMORY, "PAGE_PROTECTION_FLAGS", Pick::Prefix("SEC_")),
                Consts(SYSSERVICES, &["SEC_HUGE_PAGES"]),
            ],
        ),
        Spec::new(
            "VIRTUAL_ALLOCATION_TYPE",
            Flags,
            "NtAllocateVirtualMemory AllocationType",
            vec![
                Type(MEMORY, "VIRTUAL_ALLOCATION_TYPE", Pick::All),
                Consts(
                    SYSSERVICES,
                    &[
                        "MEM_TOP_DOWN",
                        "MEM_WRITE_WATCH",
                        "MEM_PHYSICAL",
                        "MEM_ROTATE",
                        "MEM_DIFFERENT_IMAGE_BASE_OK",
                        "MEM_4MB_PAGES",
                    ],
                ),
            ],
        ),
        Spec::new(
            "VIRTUAL_FREE_TYPE",
            Flags,
            "NtFreeVirtualMemory FreeType \
             (a flag set, although the metadata does not mark the type [Flags])",
            vec![
                Type(MEMORY, "VIRTUAL_FREE_TYPE", Pick::All),
                Consts(SYSSERVICES, &["MEM_COALESCE_PLACEHOLDERS"]),
            ],
        ),
        Spec::of_type(
            Flags,
            REGISTRY,
            "REG_OPEN_CREATE_OPTIONS",
            "NtCreateKey CreateOptions, NtOpenKeyEx OpenOptions",
        )
        .prefer(&["REG_OPTION_NON_VOLATILE"]),
        Spec::of_type(Flags, REGISTRY, "REG_NOTIFY_FILTER", "NtNotifyChangeKey CompletionFilter"),
        Spec::of_type(Flags, FOUNDATION, "OBJECT_ATTRIBUTE_FLAGS", "OBJECT_ATTRIBUTES.Attributes (OBJ_*)")
            .composite(&["OBJ_VALID_ATTRIBUTES"]),
        Spec::of_type(
            Flags,
            SECURITY,
            "OBJECT_SECURITY_INFORMATION",
            "NtQuery/SetSecurityObject SecurityInformation",
        ),
        Spec::of_type(
            Flags,
            FILESYSTEM,
            "FILE_NOTIFY_CHANGE",
            "NtNotifyChangeDirectoryFile CompletionFilter",
        ),
        Spec::new(
            "DUPLICATE_HANDLE_OPTIONS",
            Flags,
            "NtDuplicateObject Options",
            vec![
                Type(FOUNDATION, "DUPLICATE_HANDLE_OPTIONS", Pick::All),
                Consts(WDK_SYSSERVICES, &["DUPLICATE_SAME_ATTRIBUTES"]),
            ],
        ),
        // Access masks: object-specific rights, then the shared parts.
        Spec::access(
            "file_access",
            "access rights of a file \
             (FILE_ACCESS_RIGHTS with the file spellings of shared bits)",
            vec![Type(FILESYSTEM, "FILE_ACCESS_RIGHTS", Pick::Except(NOT_FILE))],
        )
        .alias("FILE_ACCESS_RIGHTS"),
        Spec::access(
            "directory_access",
            "access rights of a directory \
             (FILE_ACCESS_RIGHTS with the directory spellings of shared bits)",
            vec![Type(FILESYSTEM, "FILE_ACCESS_RIGHTS", Pick::Except(NOT_DIRECTORY))],
        ),
        Spec::access(
            "key_access",
            "access rights of a registry key",
            vec![Type(REGISTRY, "REG_SAM_FLAGS", Pick::All)],
        )
        .alias("REG_SAM_FLAGS"),
        Spec::access(
            "process_access",
            "access rights of a process",
            vec![Type(THREADING, "PROCESS_ACCESS_RIGHTS", Pick::All)],
        )
        .alias("PROCESS_ACCESS_RIGHTS"),
        Spec::access(
            "thread_access",
            "access rights of a thread",
            vec![
                Type(THREADING, "THREAD_ACCESS_RIGHTS", Pick::All),
                Consts(WDK_SYSSERVICES, &["THREAD_ALERT"]),
            ],
        )
        .alias("THREAD_ACCESS_RIGHTS"),
        Spec::access(
            "token_access",
            "access rights of an access token",
            vec![Type(SECURITY, "TOKEN_ACCESS_MASK", Pick::All)],
        )
        .alias("TOKEN_ACCESS_MASK")
        .prefer(&["TOKEN_ACCESS_PSEUDO_HANDLE"]),
        Spec::access(
            "section_access",
            "access rights of a section (the metadata calls the type SECTION_FLAGS)",
            vec![Type(MEMORY, "SECTION_FLAGS", Pick::All)],
        )
        .alias("SECTION_FLAGS"),
        Spec::access(
            "event_access",
            "access rights of an event",
            vec![
                Consts(WDK_SYSSERVICES, &["EVENT_QUERY_STATE"]),
                Type(THREADING, "SYNCHRONIZATION_ACCESS_RIGHTS", Pick::Prefix("EVENT_")),
            ],
        ),
        Spec::access(
            "mutant_access",
            "access rights of a mutant (mutex); \
             MUTEX_MODIFY_STATE is the Win32 name of MUTANT_QUERY_STATE's bit",
            vec![
                Consts(SYSSERVICES, &["MUTANT_QUERY_STATE"]),
                Type(THREADING, "SYNCHRONIZATION_ACCESS_RIGHTS", Pick::Prefix("MUTEX_")),
            ],
        ),
        Spec::access(
            "semaphore_access",
            "access rights of a semaphore",
            vec![
                Consts(WDK_SYSSERVICES, &["SEMAPHORE_QUERY_STATE"]),
                Type(THREADING, "SYNCHRONIZATION_ACCESS_RIGHTS", Pick::Prefix("SEMAPHORE_")),
            ],
        ),
        Spec::access(
            "timer_access",
            "access rights of a timer",
            vec![Type(THREADING, "SYNCHRONIZATION_ACCESS_RIGHTS", Pick::Prefix("TIMER_"))],
        ),
        Spec::access(
            "object_directory_access",
            "access rights of an object-manager directory (NtOpenDirectoryObject)",
            vec![Consts(
                WDK_SYSSERVICES,
                &[
                    "DIRECTORY_QUERY",
                    "DIRECTORY_TRAVERSE",
                    "DIRECTORY_CREATE_OBJECT",
                    "DIRECTORY_CREATE_SUBDIRECTORY",
                ],
            )],
        ),
        Spec::access(
            "symbolic_link_access",
            "access rights of an object-manager symbolic link",
            vec![Consts(WDK_SYSSERVICES, &["SYMBOLIC_LINK_QUERY", "SYMBOLIC_LINK_SET"])],
        ),
        Spec::shared_access(
            "standard_access",
            "standard rights shared by all object types, plus ACCESS_SYSTEM_SECURITY and \
             MAXIMUM_ALLOWED (the metadata files the unprefixed standard rights under FILE_ACCESS_RIGHTS)",
            vec![
                Type(FILESYSTEM, "FILE_ACCESS_RIGHTS", Pick::Only(STANDARD)),
                Consts(SYSSERVICES, &["ACCESS_SYSTEM_SECURITY", "MAXIMUM_ALLOWED"]),
            ],
        ),
        Spec::shared_access(
            "generic_access",
            "generic rights, mapped to specific rights by each object type",
            vec![Type(FOUNDATION, "GENERIC_ACCESS_RIGHTS", Pick::All)],
        )
        .alias("GENERIC_ACCESS_RIGHTS"),
    ]);
    specs
}

/// One name in a table, as written to the file.
struct Entry {
    value: u64,
    name: String,
    mark: &'static str,
}

/// Both metadata files; a namespace's prefix says which file holds it.
struct Metadata {
    wdk: Index,
    win32: Index,
}

impl Metadata {
    fn open() -> Result<Metadata, String> {
        Ok(Metadata { wdk: crate::winmd::open(WDK)?, win32: crate::winmd::open(WIN32)? })
    }

    fn file_of(namespace: &str) -> &'static str {
        if namespace.starts_with("Windows.Wdk.") {
            WDK
        } else {
            WIN32
        }
    }

    fn index(&self, namespace: &str) -> &Index {
        if Self::file_of(namespace) == WDK {
            &self.wdk
        } else {
            &self.win32
        }
    }

    /// The members of enum `namespace.name`, in declaration order.
    fn enum_members(&self, namespace: &str, name: &str) -> Result<Vec<(String, u64)>, String> {
        let mut defs =
            self.index(namespace).get(namespace, name).filter(|d| d.category() == TypeCategory::Enum);
        let def = defs.next().ok_or_else(|| format!("no enum {namespace}.{name}"))?;
        if defs.next().is_some() {
            return Err(format!("{namespace}.{name} is defined twice"));
        }
        let mut members = Vec::new();
        for field in def.fields() {
            // The enum's backing field (value__) has no constant.
            if let Some(constant) = field.constant() {
                let value = as_u64(&constant.value())
                    .ok_or_else(|| format!("{namespace}.{name}.{}", field.name()))?;
                members.push((field.name().to_string(), value));
            }
        }
        Ok(members)
    }

    /// The loose constant `name` in `namespace.Apis`.
    fn constant(&self, namespace: &str, name: &str) -> Result<u64, String> {
        for def in self.index(namespace).get(namespace, "Apis") {
            for field in def.fields() {
                if field.name() == name {
                    let constant =
                        field.constant().ok_or_else(|| format!("{namespace}.Apis.{name} is no constant"))?;
                    return as_u64(&constant.value())
                        .ok_or_else(|| format!("{namespace}.Apis.{name}: not an integer"));
                }
            }
        }
        Err(format!("no constant {name} in {namespace}.Apis"))
    }
}

/// The bits of an integer constant as a ULONG argument carries them.
fn as_u64(value: &Value) -> Option<u64> {
    Some(match *value {
        Value::U8(v) => v.into(),
        Value::I8(v) => (v as u8).into(),
        Value::U16(v) => v.into(),
        Value::I16(v) => (v as u16).into(),
        Value::U32(v) => v.into(),
        Value::I32(v) => (v as u32).into(),
        Value::U64(v) | Value::USize(v) => v,
        Value::I64(v) | Value::ISize(v) => v as u64,
        _ => return None,
    })
}

/// Builds one table: its entries (sorted by value, naming entry first) and
/// the header's description of where they came from.
fn build(meta: &Metadata, spec: &Spec) -> Result<(Vec<Entry>, Vec<String>), String> {
    let err = |e: String| format!("table {}: {e}", spec.name);
    let mut raw: Vec<(String, u64)> = Vec::new();
    let mut origins = Vec::new();
    for source in &spec.sources {
        match source {
            Source::Type(namespace, name, pick) => {
                let members = meta.enum_members(namespace, name).map_err(err)?;
                let total = members.len();
                let keep = |n: &str| match pick {
                    Pick::All => true,
                    Pick::Prefix(p) => n.starts_with(p),
                    Pick::Only(list) => list.contains(&n),
                    Pick::Except(list) => !list.contains(&n),
                };
                if let Pick::Only(list) | Pick::Except(list) = pick {
                    if let Some(missing) = list.iter().find(|n| !members.iter().any(|(m, _)| m == *n)) {
                        return Err(err(format!("{namespace}.{name} has no member {missing}")));
                    }
                }
                let picked: Vec<_> = members.into_iter().filter(|(n, _)| keep(n)).collect();
                let how = match pick {
                    Pick::All => format!("all {total} members"),
                    Pick::Prefix(p) => format!("the {} {p}* members of {total}", picked.len()),
                    Pick::Only(_) => format!("{} of {total} members: {}", picked.len(), names(&picked)),
                    Pick::Except(list) => {
                        format!("{} of {total} members, all but {}", picked.len(), list.join(", "))
                    }
                };
                origins.push(format!("source: {} {namespace}.{name}: {how}", Metadata::file_of(namespace)));
                raw.extend(picked);
            }
            Source::Consts(namespace, list) => {
                for name in *list {
                    raw.push((name.to_string(), meta.constant(namespace, name).map_err(err)?));
                }
                origins.push(format!(
                    "source: {} {namespace}.Apis constants: {}",
                    Metadata::file_of(namespace),
                    list.join(", ")
                ));
            }
        }
    }

    // A name can come from two sources (an enum member repeated as a loose
    // constant); keep it once, and refuse if the two disagree.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut named: Vec<(String, u64)> = Vec::new();
    for (name, value) in raw {
        match seen.get(&name) {
            Some(&v) if v == value => continue,
            Some(&v) => return Err(err(format!("{name} is both 0x{v:X} and 0x{value:X}"))),
            None => {
                seen.insert(name.clone(), value);
                named.push((name, value));
            }
        }
    }
    if spec.specific_only {
        let before = named.len();
        let dropped: Vec<_> = named.iter().filter(|(_, v)| v & SPECIFIC_RIGHTS == 0).cloned().collect();
        named.retain(|(_, v)| v & SPECIFIC_RIGHTS != 0);
        if named.len() != before {
            origins.push(format!(
                "dropped (no object-specific bit; standard_access names these bits): {}",
                names(&dropped)
            ));
        }
    }
    for name in spec.prefer.iter().chain(match &spec.composite {
        Composite::Listed(list) => list.iter(),
        Composite::MultiBit => [].iter(),
    }) {
        if !named.iter().any(|(n, _)| n == name) {
            return Err(err(format!("{name} is listed in the spec but not in the table")));
        }
    }

    // Group by value: the preferred (else first) name names the value.
    let mut by_value: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (name, value) in named {
        by_value.entry(value).or_default().push(name);
    }
    let mut entries = Vec::new();
    for (value, mut group) in by_value {
        if let Some(i) = group.iter().position(|n| spec.prefer.contains(&n.as_str())) {
            let preferred = group.remove(i);
            group.insert(0, preferred);
        }
        for (i, name) in group.into_iter().enumerate() {
            let composite = spec.kind == Kind::Flags
                && match &spec.composite {
                    Composite::Listed(list) => list.contains(&name.as_str()),
                    Composite::MultiBit => value.count_ones() > 1,
                };
            let mark = if i > 0 {
                "alias"
            } else if composite {
                "composite"
            } else {
                ""
            };
            entries.push(Entry { value, name, mark });
        }
    }
    if entries.is_empty() {
        return Err(err("no entries".into()));
    }
    Ok((entries, origins))
}

fn names(list: &[(String, u64)]) -> String {
    list.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
}

fn render(spec: &Spec, entries: &[Entry], origins: &[String]) -> String {
    let kind = match spec.kind {
        Kind::Enum => "enum",
        Kind::Flags => "flags",
    };
    let distinct: BTreeSet<u64> = entries.iter().map(|e| e.value).collect();
    let mut out = format!("# xlat table {}: {}\n", spec.name, spec.what);
    out.push_str(&format!("# kind: {kind}\n"));
    if let Some(alias) = spec.alias {
        out.push_str(&format!("# alias: {alias}\n"));
    }
    for origin in origins {
        out.push_str(&format!("# {origin}\n"));
    }
    out.push_str("# Microsoft's metadata as shipped in the windows-bindgen 0.65.0 crate (`default/`).\n");
    out.push_str(&format!(
        "# {} names, {} distinct values. Format: value<TAB>name[<TAB>mark], sorted by value.\n",
        entries.len(),
        distinct.len()
    ));
    out.push_str(
        "# mark `alias`: another name for the value named on the line above, never printed;\n\
         # mark `composite`: a name for that exact value, left out of the bit decomposition.\n",
    );
    out.push_str("# Generated; do not edit. Regenerate with: cargo run -p xtask -- gen-xlat\n");
    for e in entries {
        out.push_str(&format!("0x{:08X}\t{}", e.value, e.name));
        if !e.mark.is_empty() {
            out.push('\t');
            out.push_str(e.mark);
        }
        out.push('\n');
    }
    out
}

pub fn run(args: &[String]) -> Result<(), String> {
    match args {
        [] => generate(),
        [flag, word] if flag == "--find" => find(word),
        _ => Err("usage: gen-xlat [--find WORD]".into()),
    }
}

fn generate() -> Result<(), String> {
    let meta = Metadata::open()?;
    let specs = specs();
    let mut written = BTreeSet::new();
    for spec in &specs {
        let (entries, origins) = build(&meta, spec)?;
        let file = format!("{}.tsv", spec.name);
        crate::write_output(&format!("{OUT_DIR}/{file}"), &render(spec, &entries, &origins))?;
        let primary = entries.iter().filter(|e| e.mark != "alias").count();
        eprintln!(
            "xtask:   {:<38} {:<5} {:>3} names ({} distinct values)",
            spec.name,
            if spec.kind == Kind::Enum { "enum" } else { "flags" },
            entries.len(),
            primary
        );
        for origin in &origins {
            eprintln!("xtask:       {origin}");
        }
        written.insert(file);
    }
    // Remove tables that are no longer generated, so renames leave no strays.
    let dir = crate::workspace_root().join(OUT_DIR);
    for item in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = item.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.ends_with(".tsv") && !written.contains(&name) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("xtask: removed stale {}", path.display());
        }
    }
    eprintln!("xtask: {} xlat tables", specs.len());
    Ok(())
}

/// Prints candidate sources for a table: enum types whose name contains
/// `word`, and loose constants whose name starts with it.
fn find(word: &str) -> Result<(), String> {
    let meta = Metadata::open()?;
    for (file, index) in [(WDK, &meta.wdk), (WIN32, &meta.win32)] {
        for def in index.types() {
            if def.category() == TypeCategory::Enum {
                if def.name().contains(word) {
                    let members = def.fields().filter(|f| f.constant().is_some()).count();
                    let flags = if def.has_attribute("FlagsAttribute") { " [Flags]" } else { "" };
                    println!("enum  {file} {}.{}{flags}: {members} members", def.namespace(), def.name());
                }
            } else if def.name() == "Apis" {
                for field in def.fields() {
                    if let (true, Some(c)) = (field.name().starts_with(word), field.constant()) {
                        println!("const {file} {}.Apis.{} = {:?}", def.namespace(), field.name(), c.value());
                    }
                }
            }
        }
    }
    Ok(())
}
