//! Structures behind information classes and typed pointers.

mod common;

use common::*;
use winstrace_core::memory::MemoryImage;

const OVERFLOW: Option<u64> = Some(0x8000_0005);

/// NtQueryInformationFile's FileInformation with `info` returned.
fn query_file(class: u64, info: Vec<u8>, result: Option<u64>, returned: u64, length: u64) -> String {
    let mem = MemoryImage::new().with(0x1400, iosb(result.unwrap_or(0) as u32, returned)).with(0x3000, info);
    arg("NtQueryInformationFile", &[0x24, 0x1400, 0x3000, length, class], result, &mem, "FileInformation")
}

fn set_file(class: u64, info: Vec<u8>) -> String {
    let len = info.len() as u64;
    let mem = MemoryImage::new().with(0x1400, iosb(0, 0)).with(0x3000, info);
    arg("NtSetInformationFile", &[0x24, 0x1400, 0x3000, len, class], OK, &mem, "FileInformation")
}

#[test]
fn file_standard_information() {
    let info = le(&[Le::U64(4096), Le::U64(5), Le::U32(1), Le::U8(0), Le::U8(1), Le::Pad(2)]);
    assert_eq!(
        query_file(5, info, OK, 24, 24),
        "{AllocationSize=4096, EndOfFile=5, NumberOfLinks=1, DeletePending=FALSE, Directory=TRUE}"
    );
}

#[test]
fn file_name_information_whole_and_partial() {
    let name = w("\\users\\x.txt");
    let mut info = le(&[Le::U32(name.len() as u32)]);
    info.extend(name.clone());
    let n = info.len() as u64;
    assert_eq!(query_file(9, info.clone(), OK, n, 256), r#"{FileNameLength=24, FileName="\\users\\x.txt"}"#);
    // STATUS_BUFFER_OVERFLOW: the buffer (10 bytes) holds the first 3 characters.
    assert_eq!(query_file(9, info, OVERFLOW, 10, 10), r#"{FileNameLength=24, FileName="\\us"...}"#);
}

#[test]
fn short_and_unknown_classes_are_bytes() {
    // FileBasicInformation needs 40 bytes; 8 came back.
    assert_eq!(
        query_file(4, vec![1, 0, 0, 0, 0, 0, 0, 0], OK, 8, 40),
        r#""\x01\x00\x00\x00\x00\x00\x00\x00""#
    );
    // FileAllInformation has no layout here.
    assert_eq!(query_file(18, b"abc".to_vec(), OK, 3, 100), r#""abc""#);
    assert_eq!(query_file(0x99, b"abc".to_vec(), OK, 3, 100), r#""abc""#);
    // The buffer is gone.
    assert_eq!(query_file(5, vec![], OK, 24, 24), "0x3000 (unreadable)");
}

#[test]
fn set_information_file_structures() {
    assert_eq!(set_file(14, 1024u64.to_le_bytes().to_vec()), "{CurrentByteOffset=1024}");
    assert_eq!(set_file(13, vec![1]), "{DeleteFile=TRUE}");
    assert_eq!(set_file(20, 7u64.to_le_bytes().to_vec()), "{EndOfFile=7}");
    let name = w("\\??\\C:\\y.txt");
    let mut info = le(&[Le::U8(1), Le::Pad(7), Le::U64(0), Le::U32(name.len() as u32)]);
    info.extend(name);
    assert_eq!(
        set_file(10, info),
        r#"{ReplaceIfExists=TRUE, RootDirectory=NULL, FileNameLength=24, FileName="\\??\\C:\\y.txt"}"#
    );
    // A FileNameLength beyond the buffer: only the buffer is read.
    let mut info = le(&[Le::U8(0), Le::Pad(7), Le::U64(0x40), Le::U32(0xffff_fff0)]);
    info.extend(w("ab"));
    assert_eq!(
        set_file(10, info),
        r#"{ReplaceIfExists=FALSE, RootDirectory=0x40, FileNameLength=4294967280, FileName="ab"...}"#
    );
}

#[test]
fn typed_file_information_pointers() {
    const T: u64 = 116_444_736_000_000_000; // 1970-01-01
    let mut basic = le(&[Le::U64(T), Le::U64(T), Le::U64(T), Le::U64(T), Le::U32(0x10), Le::Pad(4)]);
    let mem = MemoryImage::new().with(0x1000, oa(0, 0, 0)).with(0x3000, basic.clone());
    assert_eq!(
        arg("NtQueryAttributesFile", &[0x1000, 0x3000], OK, &mem, "FileInformation"),
        "{CreationTime=1970-01-01T00:00:00.000000Z, LastAccessTime=1970-01-01T00:00:00.000000Z, \
         LastWriteTime=1970-01-01T00:00:00.000000Z, ChangeTime=1970-01-01T00:00:00.000000Z, \
         FileAttributes=FILE_ATTRIBUTE_DIRECTORY}"
    );
    basic.truncate(32);
    basic.extend(le(&[Le::U64(8192), Le::U64(100), Le::U32(0x80), Le::Pad(4)]));
    let mem = MemoryImage::new().with(0x1000, oa(0, 0, 0)).with(0x3000, basic);
    assert_eq!(
        arg("NtQueryFullAttributesFile", &[0x1000, 0x3000], OK, &mem, "FileInformation"),
        "{CreationTime=1970-01-01T00:00:00.000000Z, LastAccessTime=1970-01-01T00:00:00.000000Z, \
         LastWriteTime=1970-01-01T00:00:00.000000Z, ChangeTime=1970-01-01T00:00:00.000000Z, \
         AllocationSize=8192, EndOfFile=100, FileAttributes=FILE_ATTRIBUTE_NORMAL}"
    );
}

fn query_value(class: u64, info: Vec<u8>, result: Option<u64>, length: u64) -> String {
    let returned = info.len() as u32;
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, returned.to_le_bytes());
    arg("NtQueryValueKey", &[0x30, 0, class, 0x3000, length, 0x1500], result, &mem, "KeyValueInformation")
}

#[test]
fn key_value_information() {
    let data = wz("hello");
    let mut info = le(&[Le::U32(0), Le::U32(1), Le::U32(data.len() as u32)]);
    info.extend(data);
    assert_eq!(
        query_value(2, info.clone(), OK, 64),
        r#"{TitleIndex=0, Type=REG_SZ, DataLength=12, Data="hello"}"#
    );
    // Partial data after STATUS_BUFFER_OVERFLOW: Length (16) cuts Data to 4 bytes.
    assert_eq!(
        query_value(2, info, OVERFLOW, 16),
        r#"{TitleIndex=0, Type=REG_SZ, DataLength=12, Data="he"...}"#
    );
    let name = w("Value");
    let mut basic = le(&[Le::U32(0), Le::U32(4), Le::U32(name.len() as u32)]);
    basic.extend(name);
    assert_eq!(
        query_value(0, basic, OK, 64),
        r#"{TitleIndex=0, Type=REG_DWORD, NameLength=10, Name="Value"}"#
    );
    // KeyValueFullInformation: no layout here, raw bytes.
    assert_eq!(query_value(1, vec![0; 4], OK, 64), r#""\x00\x00\x00\x00""#);
}

#[test]
fn key_basic_and_name_information() {
    let name = w("Software");
    let mut info = le(&[Le::U64(0), Le::U32(0), Le::U32(name.len() as u32)]);
    info.extend(name.clone());
    let n = info.len() as u32;
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, n.to_le_bytes());
    assert_eq!(
        arg("NtQueryKey", &[0x30, 0, 0x3000, 256, 0x1500], OK, &mem, "KeyInformation"),
        r#"{LastWriteTime=0, TitleIndex=0, NameLength=16, Name="Software"}"#
    );
    let mut info = le(&[Le::U32(name.len() as u32)]);
    info.extend(name);
    let n = info.len() as u32;
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, n.to_le_bytes());
    assert_eq!(
        arg("NtEnumerateKey", &[0x30, 0, 3, 0x3000, 256, 0x1500], OK, &mem, "KeyInformation"),
        r#"{NameLength=16, Name="Software"}"#
    );
}

#[test]
fn process_basic_information_and_image_name() {
    let info = le(&[
        Le::U32(0x103),
        Le::Pad(4),
        Le::U64(0x7ff6_0000_0000),
        Le::U64(0xff),
        Le::U32(8),
        Le::Pad(4),
        Le::U64(4321),
        Le::U64(1000),
    ]);
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, 48u32.to_le_bytes());
    assert_eq!(
        call("NtQueryInformationProcess", &[u64::MAX, 0, 0x3000, 48, 0x1500], OK, &mem),
        "ProcessHandle=NtCurrentProcess(), ProcessInformationClass=ProcessBasicInformation, \
         ProcessInformation={ExitStatus=0x103 STATUS_PENDING, PebBaseAddress=0x7ff600000000, AffinityMask=0xff, \
         BasePriority=8, UniqueProcessId=4321, InheritedFromUniqueProcessId=1000}, ProcessInformationLength=48, \
         ReturnLength=[48]"
    );
    // ProcessImageFileName: a UNICODE_STRING whose buffer follows it.
    let name = w("\\Device\\HarddiskVolume3\\a.exe");
    let mut info = ustr(name.len() as u16, name.len() as u16 + 2, 0x3010);
    info.extend(name);
    let mem = MemoryImage::new().with(0x3000, info);
    assert_eq!(
        arg("NtQueryInformationProcess", &[u64::MAX, 27, 0x3000, 200, 0], OK, &mem, "ProcessInformation"),
        r#""\\Device\\HarddiskVolume3\\a.exe""#
    );
}

#[test]
fn thread_basic_information() {
    let info = le(&[
        Le::U32(0),
        Le::Pad(4),
        Le::U64(0x1000),
        Le::U64(10),
        Le::U64(20),
        Le::U64(1),
        Le::U32(9),
        Le::U32(8),
    ]);
    let mem = MemoryImage::new().with(0x3000, info);
    assert_eq!(
        arg("NtQueryInformationThread", &[u64::MAX - 1, 0, 0x3000, 48, 0], OK, &mem, "ThreadInformation"),
        "{ExitStatus=0x0 STATUS_SUCCESS, TebBaseAddress=0x1000, ClientId={UniqueProcess=10, UniqueThread=20}, \
         AffinityMask=0x1, Priority=9, BasePriority=8}"
    );
}

#[test]
fn memory_basic_information() {
    let info = le(&[
        Le::U64(0x7ff0_0000),
        Le::U64(0x7ff0_0000),
        Le::U32(4),
        Le::Pad(4),
        Le::U64(0x2000),
        Le::U32(0x1000),
        Le::U32(0x20),
        Le::U32(0x20000),
        Le::Pad(4),
    ]);
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, 48u64.to_le_bytes());
    assert_eq!(
        arg("NtQueryVirtualMemory", &[u64::MAX, 0x7ff0_0000, 0, 0x3000, 48, 0x1500], OK, &mem, "MemoryInformation"),
        "{BaseAddress=0x7ff00000, AllocationBase=0x7ff00000, AllocationProtect=PAGE_READWRITE, RegionSize=0x2000, \
         State=MEM_COMMIT, Protect=PAGE_EXECUTE_READ, Type=0x20000}"
    );
}

#[test]
fn system_basic_information() {
    let info = le(&[
        Le::U32(0),
        Le::U32(156_250),
        Le::U32(4096),
        Le::U32(0x3f_0000),
        Le::U32(1),
        Le::U32(0x40_0000),
        Le::U32(0x1_0000),
        Le::Pad(4),
        Le::U64(0x1_0000),
        Le::U64(0x7fff_fffe_ffff),
        Le::U64(0xff),
        Le::U8(8),
        Le::Pad(7),
    ]);
    let mem = MemoryImage::new().with(0x3000, info).with(0x1500, 64u32.to_le_bytes());
    assert_eq!(
        arg("NtQuerySystemInformation", &[0, 0x3000, 64, 0x1500], OK, &mem, "SystemInformation"),
        "{TimerResolution=156250, PageSize=4096, NumberOfPhysicalPages=4128768, LowestPhysicalPageNumber=1, \
         HighestPhysicalPageNumber=4194304, AllocationGranularity=65536, MinimumUserModeAddress=0x10000, \
         MaximumUserModeAddress=0x7ffffffeffff, ActiveProcessorsAffinityMask=0xff, NumberOfProcessors=8}"
    );
}
