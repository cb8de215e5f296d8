//! Symbolic names for enum values and flag bits ("xlat" tables, as strace
//! calls them), generated from Microsoft's metadata into `data/xlat/`.
//!
//! INTERFACE (agreed between the decoders and the table generator):
//! - `enum_name(table, value)`: the name of `value` in enum `table`.
//! - `flag_names(table, value)`: the flag names whose bits make up `value`,
//!   largest masks first, plus the bits no name covers.
//!
//! Table names are the metadata's type names, e.g. `FILE_INFORMATION_CLASS`,
//! `FILE_SHARE_MODE`, `PAGE_PROTECTION_FLAGS`, `REG_VALUE_TYPE`.
//!
//! Tables the metadata has no single type for have lower-case names: the
//! access-mask tables `<object>_access` and a few sets of loose constants
//! (`section_attributes`, `file_create_result`). The constants below name
//! every table; an access table built from one metadata type also answers
//! to that type's name (`FILE_ACCESS_RIGHTS` is `file_access`), so a
//! decoder can look a table up by the signature database's `meta` column.
//! An access mask is decoded by [`access_names`]: object-specific rights
//! from the object's table, then [`STANDARD_ACCESS`], then [`GENERIC_ACCESS`].
//!
//! Each data file's header says where its names came from (xtask/src/xlat.rs
//! has the rules); regenerate with `cargo run -p xtask -- gen-xlat`.
//! build.rs turns the files into the sorted static slices searched here.

/// One table as build.rs emits it.
struct Table {
    name: &'static str,
    /// A flag set (decomposed into bits) rather than an enum.
    flags: bool,
    /// The name for value 0 in a flag table, printed only for 0 itself.
    zero: Option<&'static str>,
    /// One name per value (no aliases), sorted by value.
    names: &'static [(u64, &'static str)],
    /// Flag tables: the names that take part in decomposition (no composites,
    /// no 0), most bits first, then ascending value.
    decompose: &'static [(u64, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/xlat_tables.rs"));

// Table names. Enums first, then flag sets, then access masks.

/// NtQuery/SetInformationFile, NtQueryDirectoryFile FileInformationClass.
pub const FILE_INFORMATION_CLASS: &str = "FILE_INFORMATION_CLASS";
/// NtQuery/SetVolumeInformationFile FsInformationClass.
pub const FS_INFORMATION_CLASS: &str = "FS_INFORMATION_CLASS";
/// NtQuery/SetInformationProcess ProcessInformationClass.
pub const PROCESSINFOCLASS: &str = "PROCESSINFOCLASS";
/// NtQuery/SetInformationThread ThreadInformationClass.
pub const THREADINFOCLASS: &str = "THREADINFOCLASS";
/// NtQueryKey, NtEnumerateKey KeyInformationClass.
pub const KEY_INFORMATION_CLASS: &str = "KEY_INFORMATION_CLASS";
/// NtQueryValueKey, NtEnumerateValueKey KeyValueInformationClass.
pub const KEY_VALUE_INFORMATION_CLASS: &str = "KEY_VALUE_INFORMATION_CLASS";
/// NtSetInformationKey KeySetInformationClass.
pub const KEY_SET_INFORMATION_CLASS: &str = "KEY_SET_INFORMATION_CLASS";
/// NtQuery/SetSystemInformation SystemInformationClass (documented classes only).
pub const SYSTEM_INFORMATION_CLASS: &str = "SYSTEM_INFORMATION_CLASS";
/// NtQueryVirtualMemory MemoryInformationClass (MemoryBasicInformation only).
pub const MEMORY_INFORMATION_CLASS: &str = "MEMORY_INFORMATION_CLASS";
/// NtSetInformationVirtualMemory VmInformationClass.
pub const VIRTUAL_MEMORY_INFORMATION_CLASS: &str = "VIRTUAL_MEMORY_INFORMATION_CLASS";
/// NtQueryObject ObjectInformationClass (documented classes only).
pub const OBJECT_INFORMATION_CLASS: &str = "OBJECT_INFORMATION_CLASS";
/// NtCreateEvent EventType.
pub const EVENT_TYPE: &str = "EVENT_TYPE";
/// NtMapViewOfSection InheritDisposition.
pub const SECTION_INHERIT: &str = "SECTION_INHERIT";
/// NtCreateTimer TimerType.
pub const TIMER_TYPE: &str = "TIMER_TYPE";
/// NtWaitForMultipleObjects WaitType.
pub const WAIT_TYPE: &str = "WAIT_TYPE";
/// NtSetTimerEx TimerSetInformationClass.
pub const TIMER_SET_INFORMATION_CLASS: &str = "TIMER_SET_INFORMATION_CLASS";
/// NtQuery/SetInformationToken TokenInformationClass.
pub const TOKEN_INFORMATION_CLASS: &str = "TOKEN_INFORMATION_CLASS";
/// NtDuplicateToken, NtCreateToken TokenType.
pub const TOKEN_TYPE: &str = "TOKEN_TYPE";
/// SECURITY_QUALITY_OF_SERVICE ImpersonationLevel.
pub const SECURITY_IMPERSONATION_LEVEL: &str = "SECURITY_IMPERSONATION_LEVEL";
/// NtAccessCheck*AndAuditAlarm AuditType.
pub const AUDIT_EVENT_TYPE: &str = "AUDIT_EVENT_TYPE";
/// NtManagePartition PartitionInformationClass.
pub const PARTITION_INFORMATION_CLASS: &str = "PARTITION_INFORMATION_CLASS";
/// NtQuery/SetInformationTransaction.
pub const TRANSACTION_INFORMATION_CLASS: &str = "TRANSACTION_INFORMATION_CLASS";
/// NtQuery/SetInformationTransactionManager.
pub const TRANSACTIONMANAGER_INFORMATION_CLASS: &str = "TRANSACTIONMANAGER_INFORMATION_CLASS";
/// NtQuery/SetInformationResourceManager.
pub const RESOURCEMANAGER_INFORMATION_CLASS: &str = "RESOURCEMANAGER_INFORMATION_CLASS";
/// NtQuery/SetInformationEnlistment.
pub const ENLISTMENT_INFORMATION_CLASS: &str = "ENLISTMENT_INFORMATION_CLASS";
/// NtEnumerateTransactionObject QueryType.
pub const KTMOBJECT_TYPE: &str = "KTMOBJECT_TYPE";
/// NtPowerInformation InformationLevel.
pub const POWER_INFORMATION_LEVEL: &str = "POWER_INFORMATION_LEVEL";
/// NtCreateFile CreateDisposition (FILE_SUPERSEDE..FILE_OVERWRITE_IF).
pub const NTCREATEFILE_CREATE_DISPOSITION: &str = "NTCREATEFILE_CREATE_DISPOSITION";
/// NtCreateFile/NtOpenFile IoStatusBlock.Information on success
/// (FILE_SUPERSEDED, FILE_OPENED, FILE_CREATED...).
pub const FILE_CREATE_RESULT: &str = "file_create_result";
/// Registry value types (REG_SZ, REG_DWORD...).
pub const REG_VALUE_TYPE: &str = "REG_VALUE_TYPE";
/// NtCreateKey Disposition.
pub const REG_CREATE_KEY_DISPOSITION: &str = "REG_CREATE_KEY_DISPOSITION";

/// NtCreateFile/NtOpenFile CreateOptions/OpenOptions (flags).
pub const NTCREATEFILE_CREATE_OPTIONS: &str = "NTCREATEFILE_CREATE_OPTIONS";
/// NtCreateFile/NtOpenFile ShareAccess (flags; 0 is FILE_SHARE_NONE).
pub const FILE_SHARE_MODE: &str = "FILE_SHARE_MODE";
/// File attributes, FILE_ATTRIBUTE_* only (flags).
pub const FILE_FLAGS_AND_ATTRIBUTES: &str = "FILE_FLAGS_AND_ATTRIBUTES";
/// Page protection, PAGE_* only (flags).
pub const PAGE_PROTECTION_FLAGS: &str = "PAGE_PROTECTION_FLAGS";
/// NtCreateSection AllocationAttributes, SEC_* (flags).
pub const SECTION_ATTRIBUTES: &str = "section_attributes";
/// NtAllocateVirtualMemory AllocationType, MEM_* (flags).
pub const VIRTUAL_ALLOCATION_TYPE: &str = "VIRTUAL_ALLOCATION_TYPE";
/// NtFreeVirtualMemory FreeType, MEM_* (flags).
pub const VIRTUAL_FREE_TYPE: &str = "VIRTUAL_FREE_TYPE";
/// NtCreateKey CreateOptions, NtOpenKeyEx OpenOptions (flags; 0 is
/// REG_OPTION_NON_VOLATILE).
pub const REG_OPEN_CREATE_OPTIONS: &str = "REG_OPEN_CREATE_OPTIONS";
/// NtNotifyChangeKey CompletionFilter (flags).
pub const REG_NOTIFY_FILTER: &str = "REG_NOTIFY_FILTER";
/// OBJECT_ATTRIBUTES.Attributes, OBJ_* (flags).
pub const OBJECT_ATTRIBUTE_FLAGS: &str = "OBJECT_ATTRIBUTE_FLAGS";
/// NtQuery/SetSecurityObject SecurityInformation (flags).
pub const OBJECT_SECURITY_INFORMATION: &str = "OBJECT_SECURITY_INFORMATION";
/// NtNotifyChangeDirectoryFile CompletionFilter (flags).
pub const FILE_NOTIFY_CHANGE: &str = "FILE_NOTIFY_CHANGE";
/// NtDuplicateObject Options (flags).
pub const DUPLICATE_HANDLE_OPTIONS: &str = "DUPLICATE_HANDLE_OPTIONS";

/// Specific rights of a file (alias `FILE_ACCESS_RIGHTS`).
pub const FILE_ACCESS: &str = "file_access";
/// Specific rights of a directory: the file rights' directory spellings
/// (FILE_LIST_DIRECTORY for FILE_READ_DATA's bit...).
pub const DIRECTORY_ACCESS: &str = "directory_access";
/// Specific rights of a registry key (alias `REG_SAM_FLAGS`).
pub const KEY_ACCESS: &str = "key_access";
/// Specific rights of a process (alias `PROCESS_ACCESS_RIGHTS`).
pub const PROCESS_ACCESS: &str = "process_access";
/// Specific rights of a thread (alias `THREAD_ACCESS_RIGHTS`).
pub const THREAD_ACCESS: &str = "thread_access";
/// Specific rights of an access token (alias `TOKEN_ACCESS_MASK`).
pub const TOKEN_ACCESS: &str = "token_access";
/// Specific rights of a section (alias `SECTION_FLAGS`).
pub const SECTION_ACCESS: &str = "section_access";
/// Specific rights of an event.
pub const EVENT_ACCESS: &str = "event_access";
/// Specific rights of a mutant.
pub const MUTANT_ACCESS: &str = "mutant_access";
/// Specific rights of a semaphore.
pub const SEMAPHORE_ACCESS: &str = "semaphore_access";
/// Specific rights of a timer.
pub const TIMER_ACCESS: &str = "timer_access";
/// Specific rights of an object-manager directory.
pub const OBJECT_DIRECTORY_ACCESS: &str = "object_directory_access";
/// Specific rights of an object-manager symbolic link.
pub const SYMBOLIC_LINK_ACCESS: &str = "symbolic_link_access";
/// Standard rights (DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER,
/// SYNCHRONIZE) plus ACCESS_SYSTEM_SECURITY and MAXIMUM_ALLOWED.
pub const STANDARD_ACCESS: &str = "standard_access";
/// Generic rights GENERIC_READ/WRITE/EXECUTE/ALL (alias `GENERIC_ACCESS_RIGHTS`).
pub const GENERIC_ACCESS: &str = "generic_access";

/// The table called `name`, or the table `name` is an alias of.
///
/// Decoders ask by the same few `&'static str` names (from the data files
/// and signatures) over and over, so a small cache keyed by the name's
/// address and length answers most lookups without comparing strings.
fn table(name: &str) -> Option<&'static Table> {
    use std::cell::Cell;
    const WAYS: usize = 32;
    thread_local! {
        static CACHE: [Cell<(usize, usize, usize)>; WAYS] = const { [const { Cell::new((0, 0, 0)) }; WAYS] };
    }
    let key = (name.as_ptr() as usize, name.len());
    let slot = ((key.0 >> 3) ^ key.1) % WAYS;
    let hit = CACHE.with(|c| {
        let (ptr, len, index) = c[slot].get();
        (ptr == key.0 && len == key.1).then_some(index)
    });
    if let Some(index) = hit {
        return TABLES.get(index);
    }
    let found = table_by_name(name)?;
    let index = TABLES.iter().position(|t| std::ptr::eq(t, found))?;
    CACHE.with(|c| c[slot].set((key.0, key.1, index)));
    Some(found)
}

fn table_by_name(name: &str) -> Option<&'static Table> {
    let find = |n: &str| TABLES.binary_search_by(|t| t.name.cmp(n)).ok().map(|i| &TABLES[i]);
    find(name).or_else(|| {
        let i = ALIASES.binary_search_by(|(alias, _)| (*alias).cmp(name)).ok()?;
        find(ALIASES[i].1)
    })
}

/// Every table's name (not the aliases), sorted.
pub fn tables() -> &'static [&'static str] {
    TABLE_NAMES
}

/// Whether `table` names a table or an alias of one.
pub fn has_table(table: &str) -> bool {
    self::table(table).is_some()
}

/// Whether `table` is a flag set (decode with [`flag_names`]) rather than an
/// enum; false for an unknown table.
pub fn is_flags(table: &str) -> bool {
    self::table(table).is_some_and(|t| t.flags)
}

/// The name of `value` in the enum `table`, if the table has one.
///
/// On a flag table this is the name for exactly that value, composites
/// included (`FILE_ALL_ACCESS` for 0x1F01FF in `file_access`).
pub fn enum_name(table: &str, value: u64) -> Option<&'static str> {
    let names = self::table(table)?.names;
    let i = names.binary_search_by_key(&value, |&(v, _)| v).ok()?;
    Some(names[i].1)
}

/// Decomposes `value` into the flag names of `table`; returns the names and
/// the leftover bits that no name covers.
///
/// Greedy, most bits first: a name is taken when all of its bits are set and
/// none of them was taken by an earlier name; names with equally many bits
/// come in ascending value order. A table's name for 0 (`FILE_SHARE_NONE`)
/// is returned only for 0 itself. On an enum table the whole value either
/// has a name or is left over; an unknown table leaves everything over.
pub fn flag_names(table: &str, value: u64) -> (Vec<&'static str>, u64) {
    let Some(t) = self::table(table) else {
        return (Vec::new(), value);
    };
    if value == 0 {
        let zero = if t.flags { t.zero } else { enum_name(t.name, 0) };
        return (zero.into_iter().collect(), 0);
    }
    if !t.flags {
        return match enum_name(t.name, value) {
            Some(name) => (vec![name], 0),
            None => (Vec::new(), value),
        };
    }
    let mut names = Vec::new();
    let mut rest = value;
    for &(mask, name) in t.decompose {
        if rest & mask == mask {
            names.push(name);
            rest &= !mask;
            if rest == 0 {
                break;
            }
        }
    }
    (names, rest)
}

/// Decomposes an access mask: the object-specific rights of `table` (e.g.
/// [`FILE_ACCESS`]), then [`STANDARD_ACCESS`], then [`GENERIC_ACCESS`], in
/// that order; returns the names and the bits none of them covers.
///
/// With an unknown `table` only the standard and generic rights are named.
pub fn access_names(table: &str, value: u64) -> (Vec<&'static str>, u64) {
    let mut names = Vec::new();
    let mut rest = value;
    for t in [table, STANDARD_ACCESS, GENERIC_ACCESS] {
        // A part with no bits left has nothing to add (and no table's name
        // for 0 belongs in the middle of a mask).
        if rest == 0 {
            break;
        }
        let (part, left) = flag_names(t, rest);
        names.extend(part);
        rest = left;
    }
    (names, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constant above, to check that each names a table and that each
    /// table has a constant.
    const ALL: &[&str] = &[
        FILE_INFORMATION_CLASS,
        FS_INFORMATION_CLASS,
        PROCESSINFOCLASS,
        THREADINFOCLASS,
        KEY_INFORMATION_CLASS,
        KEY_VALUE_INFORMATION_CLASS,
        KEY_SET_INFORMATION_CLASS,
        SYSTEM_INFORMATION_CLASS,
        MEMORY_INFORMATION_CLASS,
        VIRTUAL_MEMORY_INFORMATION_CLASS,
        OBJECT_INFORMATION_CLASS,
        EVENT_TYPE,
        SECTION_INHERIT,
        TIMER_TYPE,
        WAIT_TYPE,
        TIMER_SET_INFORMATION_CLASS,
        TOKEN_INFORMATION_CLASS,
        TOKEN_TYPE,
        SECURITY_IMPERSONATION_LEVEL,
        AUDIT_EVENT_TYPE,
        PARTITION_INFORMATION_CLASS,
        TRANSACTION_INFORMATION_CLASS,
        TRANSACTIONMANAGER_INFORMATION_CLASS,
        RESOURCEMANAGER_INFORMATION_CLASS,
        ENLISTMENT_INFORMATION_CLASS,
        KTMOBJECT_TYPE,
        POWER_INFORMATION_LEVEL,
        NTCREATEFILE_CREATE_DISPOSITION,
        FILE_CREATE_RESULT,
        REG_VALUE_TYPE,
        REG_CREATE_KEY_DISPOSITION,
        NTCREATEFILE_CREATE_OPTIONS,
        FILE_SHARE_MODE,
        FILE_FLAGS_AND_ATTRIBUTES,
        PAGE_PROTECTION_FLAGS,
        SECTION_ATTRIBUTES,
        VIRTUAL_ALLOCATION_TYPE,
        VIRTUAL_FREE_TYPE,
        REG_OPEN_CREATE_OPTIONS,
        REG_NOTIFY_FILTER,
        OBJECT_ATTRIBUTE_FLAGS,
        OBJECT_SECURITY_INFORMATION,
        FILE_NOTIFY_CHANGE,
        DUPLICATE_HANDLE_OPTIONS,
        FILE_ACCESS,
        DIRECTORY_ACCESS,
        KEY_ACCESS,
        PROCESS_ACCESS,
        THREAD_ACCESS,
        TOKEN_ACCESS,
        SECTION_ACCESS,
        EVENT_ACCESS,
        MUTANT_ACCESS,
        SEMAPHORE_ACCESS,
        TIMER_ACCESS,
        OBJECT_DIRECTORY_ACCESS,
        SYMBOLIC_LINK_ACCESS,
        STANDARD_ACCESS,
        GENERIC_ACCESS,
    ];

    fn flags(table: &str, value: u64) -> (String, u64) {
        let (names, rest) = flag_names(table, value);
        (names.join("|"), rest)
    }

    fn access(table: &str, value: u64) -> (String, u64) {
        let (names, rest) = access_names(table, value);
        (names.join("|"), rest)
    }

    #[test]
    fn constants_and_tables_match() {
        for name in ALL {
            assert!(has_table(name), "{name} has no data file");
        }
        let mut constants: Vec<&str> = ALL.to_vec();
        constants.sort_unstable();
        assert_eq!(constants, tables(), "every table needs a constant");
        assert!(!has_table("NO_SUCH_TABLE"));
    }

    #[test]
    fn generated_slices_are_sorted() {
        assert!(TABLES.windows(2).all(|w| w[0].name < w[1].name));
        assert!(ALIASES.windows(2).all(|w| w[0].0 < w[1].0));
        for t in TABLES {
            assert!(t.names.windows(2).all(|w| w[0].0 < w[1].0), "{}", t.name);
            let bits = |v: u64| v.count_ones();
            assert!(
                t.decompose.windows(2).all(|w| (bits(w[1].0), w[0].0) < (bits(w[0].0), w[1].0)),
                "{}: decomposition order",
                t.name
            );
        }
    }

    #[test]
    fn information_classes() {
        let fic = FILE_INFORMATION_CLASS;
        assert_eq!(enum_name(fic, 4), Some("FileBasicInformation"));
        assert_eq!(enum_name(fic, 5), Some("FileStandardInformation"));
        assert_eq!(enum_name(fic, 9), Some("FileNameInformation"));
        assert_eq!(enum_name(fic, 10), Some("FileRenameInformation"));
        assert_eq!(enum_name(fic, 13), Some("FileDispositionInformation"));
        assert_eq!(enum_name(fic, 14), Some("FilePositionInformation"));
        assert_eq!(enum_name(fic, 34), Some("FileNetworkOpenInformation"));
        assert_eq!(enum_name(fic, 0), None, "classes start at 1");
        assert_eq!(enum_name(KEY_VALUE_INFORMATION_CLASS, 2), Some("KeyValuePartialInformation"));
        assert_eq!(enum_name(KEY_INFORMATION_CLASS, 0), Some("KeyBasicInformation"));
        assert_eq!(enum_name(PROCESSINFOCLASS, 0), Some("ProcessBasicInformation"));
        assert_eq!(enum_name(SYSTEM_INFORMATION_CLASS, 0), Some("SystemBasicInformation"));
        assert_eq!(enum_name(MEMORY_INFORMATION_CLASS, 0), Some("MemoryBasicInformation"));
        assert_eq!(enum_name(FS_INFORMATION_CLASS, 1), Some("FileFsVolumeInformation"));
        assert_eq!(enum_name(EVENT_TYPE, 1), Some("SynchronizationEvent"));
        assert_eq!(enum_name(SECTION_INHERIT, 1), Some("ViewShare"));
        assert_eq!(enum_name("no such table", 0), None);
    }

    #[test]
    fn registry_value_types() {
        assert_eq!(enum_name(REG_VALUE_TYPE, 1), Some("REG_SZ"));
        // REG_DWORD_LITTLE_ENDIAN and REG_QWORD_LITTLE_ENDIAN are aliases.
        assert_eq!(enum_name(REG_VALUE_TYPE, 4), Some("REG_DWORD"));
        assert_eq!(enum_name(REG_VALUE_TYPE, 7), Some("REG_MULTI_SZ"));
        assert_eq!(enum_name(REG_VALUE_TYPE, 11), Some("REG_QWORD"));
        assert_eq!(enum_name(REG_VALUE_TYPE, 0x1234), None);
    }

    #[test]
    fn file_create_arguments() {
        assert_eq!(enum_name(NTCREATEFILE_CREATE_DISPOSITION, 0), Some("FILE_SUPERSEDE"));
        assert_eq!(enum_name(NTCREATEFILE_CREATE_DISPOSITION, 1), Some("FILE_OPEN"));
        assert_eq!(enum_name(NTCREATEFILE_CREATE_DISPOSITION, 5), Some("FILE_OVERWRITE_IF"));
        assert_eq!(enum_name(FILE_CREATE_RESULT, 1), Some("FILE_OPENED"));
        assert_eq!(
            flags(NTCREATEFILE_CREATE_OPTIONS, 0x60),
            ("FILE_SYNCHRONOUS_IO_NONALERT|FILE_NON_DIRECTORY_FILE".into(), 0)
        );
        assert_eq!(
            flags(NTCREATEFILE_CREATE_OPTIONS, 0x0020_4021),
            ("FILE_DIRECTORY_FILE|FILE_SYNCHRONOUS_IO_NONALERT|FILE_OPEN_FOR_BACKUP_INTENT|FILE_OPEN_REPARSE_POINT"
                .into(), 0)
        );
        assert_eq!(flags(FILE_SHARE_MODE, 3), ("FILE_SHARE_READ|FILE_SHARE_WRITE".into(), 0));
        assert_eq!(
            flags(FILE_SHARE_MODE, 7),
            ("FILE_SHARE_READ|FILE_SHARE_WRITE|FILE_SHARE_DELETE".into(), 0)
        );
        assert_eq!(flags(FILE_FLAGS_AND_ATTRIBUTES, 0x80), ("FILE_ATTRIBUTE_NORMAL".into(), 0));
        assert_eq!(flags(FILE_FLAGS_AND_ATTRIBUTES, 0x0), (String::new(), 0));
    }

    #[test]
    fn memory_flags() {
        assert_eq!(flags(PAGE_PROTECTION_FLAGS, 0x40), ("PAGE_EXECUTE_READWRITE".into(), 0));
        assert_eq!(flags(PAGE_PROTECTION_FLAGS, 0x104), ("PAGE_READWRITE|PAGE_GUARD".into(), 0));
        // PAGE_NOACCESS is bit 0, so 0 has no name.
        assert_eq!(flags(PAGE_PROTECTION_FLAGS, 0), (String::new(), 0));
        assert_eq!(flags(VIRTUAL_ALLOCATION_TYPE, 0x3000), ("MEM_COMMIT|MEM_RESERVE".into(), 0));
        assert_eq!(flags(VIRTUAL_ALLOCATION_TYPE, 0x10_2000), ("MEM_RESERVE|MEM_TOP_DOWN".into(), 0));
        assert_eq!(flags(VIRTUAL_FREE_TYPE, 0x8000), ("MEM_RELEASE".into(), 0));
        // A multi-bit name that is a value of its own is taken whole.
        assert_eq!(flags(SECTION_ATTRIBUTES, 0x1100_0000), ("SEC_IMAGE_NO_EXECUTE".into(), 0));
        assert_eq!(flags(SECTION_ATTRIBUTES, 0x0800_0000), ("SEC_COMMIT".into(), 0));
    }

    #[test]
    fn zero_names_only_for_zero() {
        assert_eq!(flags(FILE_SHARE_MODE, 0), ("FILE_SHARE_NONE".into(), 0));
        assert_eq!(flags(FILE_SHARE_MODE, 1), ("FILE_SHARE_READ".into(), 0));
        assert_eq!(flags(REG_OPEN_CREATE_OPTIONS, 0), ("REG_OPTION_NON_VOLATILE".into(), 0));
        assert_eq!(flags(REG_OPEN_CREATE_OPTIONS, 1), ("REG_OPTION_VOLATILE".into(), 0));
        assert_eq!(enum_name(FILE_SHARE_MODE, 0), Some("FILE_SHARE_NONE"));
    }

    #[test]
    fn object_attributes() {
        assert_eq!(flags(OBJECT_ATTRIBUTE_FLAGS, 0x40), ("OBJ_CASE_INSENSITIVE".into(), 0));
        assert_eq!(
            flags(OBJECT_ATTRIBUTE_FLAGS, 0x242),
            ("OBJ_INHERIT|OBJ_CASE_INSENSITIVE|OBJ_KERNEL_HANDLE".into(), 0)
        );
        // OBJ_VALID_ATTRIBUTES is a mask, not printed for a value that
        // happens to have all its bits.
        let (names, rest) = flag_names(OBJECT_ATTRIBUTE_FLAGS, 0x1FF2);
        assert_eq!((names.len(), rest), (10, 0));
        assert!(!names.contains(&"OBJ_VALID_ATTRIBUTES"));
    }

    #[test]
    fn leftover_bits() {
        assert_eq!(flags(FILE_SHARE_MODE, 0x19), ("FILE_SHARE_READ".into(), 0x18));
        assert_eq!(flags(PAGE_PROTECTION_FLAGS, 0x0800_0004), ("PAGE_READWRITE".into(), 0x0800_0000));
        assert_eq!(flags("no such table", 0x5), (String::new(), 0x5));
        assert_eq!(flags(REG_VALUE_TYPE, 4), ("REG_DWORD".into(), 0));
        assert_eq!(flags(REG_VALUE_TYPE, 0x99), (String::new(), 0x99));
        assert_eq!(access(FILE_ACCESS, 0x0800_0001), ("FILE_READ_DATA".into(), 0x0800_0000));
    }

    #[test]
    fn access_masks() {
        // FILE_GENERIC_READ, decomposed into single rights.
        assert_eq!(
            access(FILE_ACCESS, 0x12_0089),
            ("FILE_READ_DATA|FILE_READ_EA|FILE_READ_ATTRIBUTES|READ_CONTROL|SYNCHRONIZE".into(), 0)
        );
        assert_eq!(access(DIRECTORY_ACCESS, 0x10_0001), ("FILE_LIST_DIRECTORY|SYNCHRONIZE".into(), 0));
        // The metadata's type name finds the same table.
        assert_eq!(access("FILE_ACCESS_RIGHTS", 0x1_0000), ("DELETE".into(), 0));
        // KEY_READ, decomposed.
        assert_eq!(
            access(KEY_ACCESS, 0x2_0019),
            ("KEY_QUERY_VALUE|KEY_ENUMERATE_SUB_KEYS|KEY_NOTIFY|READ_CONTROL".into(), 0)
        );
        assert_eq!(access(KEY_ACCESS, 0x0200_0000), ("MAXIMUM_ALLOWED".into(), 0));
        assert_eq!(
            access(PROCESS_ACCESS, 0x1410),
            ("PROCESS_VM_READ|PROCESS_QUERY_INFORMATION|PROCESS_QUERY_LIMITED_INFORMATION".into(), 0)
        );
        assert_eq!(access(THREAD_ACCESS, 0x8000_0000), ("GENERIC_READ".into(), 0));
        assert_eq!(access(TOKEN_ACCESS, 0x8), ("TOKEN_QUERY".into(), 0));
        assert_eq!(access(SECTION_ACCESS, 0x6), ("SECTION_MAP_WRITE|SECTION_MAP_READ".into(), 0));
        assert_eq!(
            access(EVENT_ACCESS, 0x10_0003),
            ("EVENT_QUERY_STATE|EVENT_MODIFY_STATE|SYNCHRONIZE".into(), 0)
        );
        // Ascending bit order, as everywhere: GENERIC_WRITE is the lower bit.
        assert_eq!(access(FILE_ACCESS, 0xC000_0000), ("GENERIC_WRITE|GENERIC_READ".into(), 0));
        assert_eq!(access(FILE_ACCESS, 0), (String::new(), 0));
        // Composite names exist for exact values but never decompose.
        assert_eq!(enum_name(FILE_ACCESS, 0x1F_01FF), Some("FILE_ALL_ACCESS"));
        let (names, rest) = access_names(FILE_ACCESS, 0x1F_01FF);
        assert_eq!((names.len(), rest), (14, 0));
        assert!(!names.iter().any(|n| n.contains("ALL_ACCESS")));
        // The standard table splits STANDARD_RIGHTS_REQUIRED into rights.
        assert_eq!(access(PROCESS_ACCESS, 0xF_0000), ("DELETE|READ_CONTROL|WRITE_DAC|WRITE_OWNER".into(), 0));
    }
}
