//! Each decoder, through the calls that use it, including hostile data:
//! unreadable pointers, malformed UNICODE_STRINGs, lengths that lie, unknown
//! enum values and flag bits nobody named.

mod common;

use common::*;
use winstrace_core::memory::MemoryImage;
use winstrace_decode::DecodeOptions;

fn limit(n: usize) -> DecodeOptions {
    DecodeOptions { string_limit: n, raw: false }
}

// ---- UNICODE_STRING (NtDeleteValueKey's ValueName) ----

fn value_name(mem: &MemoryImage, opts: &DecodeOptions) -> String {
    arg_with("NtDeleteValueKey", &[0x30, 0x1100], OK, mem, "ValueName", opts)
}

fn us(len: u16, max: u16, buffer: u64, text: Vec<u8>) -> String {
    value_name(&MemoryImage::new().with(0x1100, ustr(len, max, buffer)).with(0x1200, text), &limit(32))
}

#[test]
fn unicode_string_plain_and_escaped() {
    assert_eq!(us(6, 8, 0x1200, w("Foo")), r#""Foo""#);
    assert_eq!(us(8, 8, 0x1200, w("a\"\n\\")), r#""a\"\n\\""#);
    assert_eq!(us(0, 0, 0, vec![]), r#""""#);
    assert_eq!(us(0, 10, 0x1200, w("Foo")), r#""""#);
    assert_eq!(us(8, 8, 0x1200, w("h\u{e9}\u{1F600}")), "\"h\u{e9}\u{1F600}\"");
}

#[test]
fn unicode_string_odd_length_reads_whole_chars_and_says_so() {
    assert_eq!(us(7, 8, 0x1200, w("Foo!")), r#""Foo" (odd length)"#);
    assert_eq!(us(1, 2, 0x1200, w("F")), r#""" (odd length)"#);
}

#[test]
fn unicode_string_length_above_maximum_is_read_and_marked() {
    assert_eq!(us(6, 4, 0x1200, w("Foo")), r#""Foo" (length > maximum)"#);
    assert_eq!(us(7, 4, 0x1200, w("Foo!")), r#""Foo" (odd length) (length > maximum)"#);
}

#[test]
fn unicode_string_unreadable_parts() {
    // The buffer pointer leads nowhere.
    assert_eq!(us(6, 8, 0xdead_0000, w("Foo")), "0xdead0000 (unreadable)");
    // NULL buffer with a length.
    assert_eq!(us(6, 8, 0, vec![]), r#""" (NULL buffer)"#);
    // The UNICODE_STRING itself is unreadable, or NULL.
    let mem = MemoryImage::new();
    assert_eq!(arg("NtDeleteValueKey", &[0x30, 0xbad000], OK, &mem, "ValueName"), "0xbad000 (unreadable)");
    assert_eq!(arg("NtDeleteValueKey", &[0x30, 0], OK, &mem, "ValueName"), "NULL");
    // Only half of the header is there.
    let mem = MemoryImage::new().with(0x1100, vec![6, 0, 8, 0]);
    assert_eq!(arg("NtDeleteValueKey", &[0x30, 0x1100], OK, &mem, "ValueName"), "0x1108 (unreadable)");
}

#[test]
fn unicode_string_oversized_reads_what_there_is() {
    // Length claims 64 KiB - 2; the text ends where the page (and the
    // readable memory) ends, after three characters.
    let mut page = vec![0u8; 0x1000 - 6];
    page.extend(w("Foo"));
    let mem = MemoryImage::new().with(0x1100, ustr(0xfffe, 0xfffe, 0x4ffa)).with(0x4000, page);
    assert_eq!(value_name(&mem, &limit(32)), r#""Foo" (partly unreadable)"#);
    // All of it readable: names are shown whole, whatever -s says.
    let mem =
        MemoryImage::new().with(0x1100, ustr(0xfffe, 0xfffe, 0x4000)).with(0x4000, w(&"x".repeat(0x7fff)));
    assert_eq!(value_name(&mem, &limit(4)), format!("\"{}\"", "x".repeat(0x7fff)));
}

#[test]
fn unicode_string_names_are_not_cut_by_the_string_limit() {
    // As strace prints file names whole, names and paths ignore -s.
    let mem = MemoryImage::new().with(0x1100, ustr(20, 20, 0x1200)).with(0x1200, w("abcdefghij"));
    assert_eq!(value_name(&mem, &limit(4)), r#""abcdefghij""#);
    assert_eq!(value_name(&mem, &limit(0)), r#""abcdefghij""#);
}

// ---- OBJECT_ATTRIBUTES (NtOpenKey) ----

fn open_key_oa(mem: MemoryImage) -> String {
    arg("NtOpenKey", &[0x1300, 0x2_0019, 0x1000], Some(0xc000_0034), &mem, "ObjectAttributes")
}

fn name_image() -> MemoryImage {
    MemoryImage::new().with(0x1100, ustr(6, 6, 0x1200)).with(0x1200, w("Foo"))
}

#[test]
fn object_attributes_compact_form() {
    assert_eq!(
        open_key_oa(name_image().with(0x1000, oa(0, 0x1100, 0x40))),
        r#"{Name="Foo", Attributes=OBJ_CASE_INSENSITIVE}"#
    );
    assert_eq!(open_key_oa(name_image().with(0x1000, oa(0x10, 0x1100, 0))), r#"{Root=0x10, Name="Foo"}"#);
    assert_eq!(open_key_oa(MemoryImage::new().with(0x1000, oa(0x10, 0, 0))), "{Root=0x10, Name=NULL}");
    assert_eq!(
        open_key_oa(name_image().with(0x1000, oa(0, 0x1100, 0x8042))),
        r#"{Name="Foo", Attributes=OBJ_INHERIT|OBJ_CASE_INSENSITIVE|0x8000}"#
    );
}

#[test]
fn object_attributes_odd_fields_show() {
    let mut bytes = oa(0, 0x1100, 0x40);
    bytes[0] = 24; // Length
    bytes[0x20] = 0x50; // SecurityDescriptor
    bytes[0x21] = 0x70;
    assert_eq!(
        open_key_oa(name_image().with(0x1000, bytes)),
        r#"{Length=24, Name="Foo", Attributes=OBJ_CASE_INSENSITIVE, SecurityDescriptor=0x7050}"#
    );
}

#[test]
fn object_attributes_unreadable() {
    assert_eq!(open_key_oa(MemoryImage::new()), "0x1000 (unreadable)");
    assert_eq!(open_key_oa(MemoryImage::new().with(0x1000, oa(0, 0x5000, 0))), "{Name=0x5000 (unreadable)}");
    // Only the first 16 bytes are readable.
    assert_eq!(
        open_key_oa(name_image().with(0x1000, oa(0, 0x1100, 0x40)[..16].to_vec())),
        r#"{Name=0x1010 (unreadable), Attributes=0x1018 (unreadable), SecurityDescriptor=0x1020 (unreadable), SecurityQualityOfService=0x1028 (unreadable)}"#
    );
}

// ---- handles and out-pointers ----

#[test]
fn handles_and_pseudo_handles() {
    let mem = MemoryImage::new();
    assert_eq!(call("NtClose", &[0x24], OK, &mem), "Handle=0x24");
    assert_eq!(call("NtClose", &[u64::MAX], OK, &mem), "Handle=NtCurrentProcess()");
    assert_eq!(call("NtClose", &[u64::MAX - 1], OK, &mem), "Handle=NtCurrentThread()");
    assert_eq!(call("NtClose", &[0], OK, &mem), "Handle=NULL");
}

#[test]
fn out_handle_success_failure_unreadable() {
    let mem = MemoryImage::new().with(0x1300, 0x44u64.to_le_bytes());
    let args = [u64::MAX, 0x24, u64::MAX, 0x1300, 0, 0, 2];
    assert_eq!(
        call("NtDuplicateObject", &args, OK, &mem),
        "SourceProcessHandle=NtCurrentProcess(), SourceHandle=0x24, TargetProcessHandle=NtCurrentProcess(), \
         TargetHandle=[0x44], DesiredAccess=0, HandleAttributes=0, Options=DUPLICATE_SAME_ACCESS"
    );
    assert_eq!(arg("NtDuplicateObject", &args, Some(0xc000_0008), &mem, "TargetHandle"), "0x1300");
    let mut args0 = args;
    args0[3] = 0;
    assert_eq!(arg("NtDuplicateObject", &args0, Some(0xc000_0008), &mem, "TargetHandle"), "NULL");
    assert_eq!(arg("NtDuplicateObject", &args0, OK, &mem, "TargetHandle"), "NULL");
    assert_eq!(
        arg("NtDuplicateObject", &args, OK, &MemoryImage::new(), "TargetHandle"),
        "0x1300 (unreadable)"
    );
}

#[test]
fn pointed_numbers_in_and_out() {
    let mem =
        MemoryImage::new().with(0x1000, 0x7ff0_0000u64.to_le_bytes()).with(0x1100, 0x1000u64.to_le_bytes());
    let args = [u64::MAX, 0x1000, 0, 0x1100, 0x3000, 4];
    assert_eq!(
        call("NtAllocateVirtualMemory", &args, OK, &mem),
        "ProcessHandle=NtCurrentProcess(), BaseAddress=[0x7ff00000], ZeroBits=0, RegionSize=[4096], \
         AllocationType=MEM_COMMIT|MEM_RESERVE, Protect=PAGE_READWRITE"
    );
    assert_eq!(
        call("NtAllocateVirtualMemory", &args, Some(0xc000_0017), &mem),
        "ProcessHandle=NtCurrentProcess(), BaseAddress=0x1000, ZeroBits=0, RegionSize=0x1100, \
         AllocationType=MEM_COMMIT|MEM_RESERVE, Protect=PAGE_READWRITE"
    );
    let mem = MemoryImage::new().with(0x1200, 2u32.to_le_bytes());
    assert_eq!(
        arg("NtProtectVirtualMemory", &[u64::MAX, 0x1000, 0x1100, 0x40, 0x1200], OK, &mem, "OldProtection"),
        "[PAGE_READONLY]"
    );
}

#[test]
fn times_relative_and_null() {
    let mem = MemoryImage::new().with(0x1000, (-100_000i64).to_le_bytes());
    assert_eq!(
        call("NtDelayExecution", &[0, 0x1000], OK, &mem),
        "Alertable=FALSE, DelayInterval=[-0.010000s]"
    );
    assert_eq!(
        call("NtWaitForSingleObject", &[0x24, 1, 0], Some(0x102), &mem),
        "Handle=0x24, Alertable=TRUE, Timeout=NULL"
    );
    // A timeout is an in-parameter even though the metadata says in-out:
    // shown after a failure too.
    assert_eq!(
        call("NtWaitForSingleObject", &[0x24, 0, 0x1000], Some(0xc000_0008), &mem),
        "Handle=0x24, Alertable=FALSE, Timeout=[-0.010000s]"
    );
    assert_eq!(arg("NtDelayExecution", &[0, 0x2000], OK, &mem, "DelayInterval"), "0x2000 (unreadable)");
}

#[test]
fn client_id() {
    let mem = MemoryImage::new()
        .with(0x1000, oa(0, 0, 0))
        .with(0x1100, le(&[Le::U64(1234), Le::U64(0)]))
        .with(0x1300, 0x50u64.to_le_bytes());
    assert_eq!(
        call("NtOpenProcess", &[0x1300, 0x1000, 0x1000, 0x1100], OK, &mem),
        "ProcessHandle=[0x50], DesiredAccess=PROCESS_QUERY_LIMITED_INFORMATION, ObjectAttributes={Name=NULL}, \
         ClientId={UniqueProcess=1234, UniqueThread=0}"
    );
}

// ---- access masks, enums, flags ----

#[test]
fn access_masks_per_object_type() {
    let mem = MemoryImage::new();
    let access = |f: &str, n: usize, v: u64| {
        let mut args = vec![0u64; n];
        args[1] = v;
        arg(f, &args, Some(0xc000_0022), &mem, "DesiredAccess")
    };
    assert_eq!(access("NtOpenProcess", 4, 0x0200_0000), "MAXIMUM_ALLOWED");
    assert_eq!(
        access("NtOpenProcess", 4, 0x0010_0410),
        "PROCESS_VM_READ|PROCESS_QUERY_INFORMATION|SYNCHRONIZE"
    );
    assert_eq!(access("NtOpenThread", 4, 0x0040), "THREAD_QUERY_INFORMATION");
    assert_eq!(access("NtOpenProcessToken", 3, 0x0008), "TOKEN_QUERY");
    assert_eq!(access("NtOpenSection", 3, 0x0004), "SECTION_MAP_READ");
    assert_eq!(access("NtOpenEvent", 3, 0x0010_0002), "EVENT_MODIFY_STATE|SYNCHRONIZE");
    assert_eq!(access("NtOpenKey", 3, 0x0002_0019), "KEY_READ");
    assert_eq!(access("NtOpenFile", 6, 0x0012_0089), "FILE_GENERIC_READ");
    // No object type: standard and generic rights, the rest in hex.
    assert_eq!(access("NtOpenMutant", 3, 0x0010_0001), "MUTANT_QUERY_STATE|SYNCHRONIZE");
    assert_eq!(
        arg("NtDuplicateObject", &[0, 0, 0, 0, 0x8010_0003, 0, 0], OK, &mem, "DesiredAccess"),
        "SYNCHRONIZE|GENERIC_READ|0x3"
    );
    // Bits no table names (bit 26 is reserved) stay in hex.
    assert_eq!(access("NtOpenProcess", 4, 0x0400_1000), "PROCESS_QUERY_LIMITED_INFORMATION|0x4000000");
    assert_eq!(access("NtOpenProcess", 4, 0), "0");
}

#[test]
fn enums_known_unknown_and_garbage_bits() {
    let mem = MemoryImage::new();
    let class = |v: u64| {
        arg(
            "NtQueryInformationFile",
            &[0x24, 0x1400, 0x3000, 40, v],
            Some(0xc000_0003),
            &mem,
            "FileInformationClass",
        )
    };
    assert_eq!(class(4), "FileBasicInformation");
    assert_eq!(class(0xffff_ffff_0000_0005), "FileStandardInformation");
    assert_eq!(class(0x99), "0x99");
    let disposition = |v: u64| {
        arg("NtCreateFile", &[0, 0, 0, 0, 0, 0, 0, v, 0, 0, 0], Some(0xc000_0022), &mem, "CreateDisposition")
    };
    assert_eq!(disposition(2), "FILE_CREATE");
    assert_eq!(disposition(77), "0x4d");
}

#[test]
fn flags_with_leftover_bits_and_zero() {
    let mem = MemoryImage::new();
    let share = |v: u64| arg("NtOpenFile", &[0, 0, 0, 0, v, 0], Some(0xc000_0022), &mem, "ShareAccess");
    assert_eq!(share(7), "FILE_SHARE_READ|FILE_SHARE_WRITE|FILE_SHARE_DELETE");
    assert_eq!(share(0x11), "FILE_SHARE_READ|0x10");
    assert_eq!(share(0), "FILE_SHARE_NONE");
    let free = |v: u64| arg("NtFreeVirtualMemory", &[u64::MAX, 0, 0, v], Some(0xc000_0022), &mem, "FreeType");
    assert_eq!(free(0x8000), "MEM_RELEASE");
    assert_eq!(free(0x8100), "MEM_RELEASE|0x100");
}

// ---- buffers ----

fn write_buffer(mem: MemoryImage, len: u64, opts: &DecodeOptions) -> String {
    arg_with(
        "NtWriteFile",
        &[0x24, 0, 0, 0, 0x1400, 0x2000, len, 0, 0],
        OK,
        &mem.with(0x1400, iosb(0, len)),
        "Buffer",
        opts,
    )
}

#[test]
fn in_buffers_text_hex_cut_and_unreadable() {
    let hello = || MemoryImage::new().with(0x2000, b"hello, world\n".to_vec());
    assert_eq!(write_buffer(hello(), 13, &limit(32)), r#""hello, world\n""#);
    assert_eq!(write_buffer(hello(), 13, &limit(4)), r#""hell"..."#);
    assert_eq!(write_buffer(hello(), 0, &limit(4)), r#""""#);
    let bin = MemoryImage::new().with(0x2000, vec![1, 2, 3, 0xff]);
    assert_eq!(write_buffer(bin, 4, &limit(32)), r#""\x01\x02\x03\xff""#);
    assert_eq!(write_buffer(MemoryImage::new(), 5, &limit(32)), "0x2000 (unreadable)");
    // A length far beyond what is readable: what can be read, marked cut.
    let mut page = vec![0u8; 0x1000 - 2];
    page.extend_from_slice(b"hi");
    let edge = MemoryImage::new().with(0x1000, page);
    assert_eq!(
        arg("NtWriteFile", &[0x24, 0, 0, 0, 0x1400, 0x1ffe, 0xffff_ffff, 0, 0], OK, &edge, "Buffer"),
        r#""hi"..."#
    );
    let mem = MemoryImage::new();
    assert_eq!(arg("NtWriteFile", &[0x24, 0, 0, 0, 0x1400, 0, 5, 0, 0], OK, &mem, "Buffer"), "NULL");
}

#[test]
fn out_buffers_use_the_returned_length() {
    let mem = MemoryImage::new().with(0x1400, iosb(0, 3)).with(0x2000, b"abcdefghij".to_vec());
    let args = [0x24, 0, 0, 0, 0x1400, 0x2000, 10, 0, 0];
    assert_eq!(arg("NtReadFile", &args, OK, &mem, "Buffer"), r#""abc""#);
    assert_eq!(arg("NtReadFile", &args, Some(0xc000_0011), &mem, "Buffer"), "0x2000");
    // An IO_STATUS_BLOCK claiming more than the buffer holds is capped by Length.
    let lying = MemoryImage::new().with(0x1400, iosb(0, 1 << 40)).with(0x2000, b"abcdefghij".to_vec());
    assert_eq!(arg("NtReadFile", &args, OK, &lying, "Buffer"), r#""abcdefghij""#);
    // No readable IO_STATUS_BLOCK: Length is all we know.
    let no_iosb = MemoryImage::new().with(0x2000, b"abcdefghij".to_vec());
    assert_eq!(arg("NtReadFile", &args, OK, &no_iosb, "IoStatusBlock"), "0x1400 (unreadable)");
    assert_eq!(arg("NtReadFile", &args, OK, &no_iosb, "Buffer"), r#""abcdefghij""#);
}

#[test]
fn ioctl_buffers() {
    let mem = MemoryImage::new()
        .with(0x1400, iosb(0, 2))
        .with(0x2000, vec![0xde, 0xad, 0xbe, 0xef])
        .with(0x3000, vec![0x01, 0x02, 0x03]);
    assert_eq!(
        call("NtDeviceIoControlFile", &[0x24, 0, 0, 0, 0x1400, 0x22_0000, 0x2000, 4, 0x3000, 3], OK, &mem),
        r#"FileHandle=0x24, Event=NULL, ApcRoutine=NULL, ApcContext=NULL, IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=2}, IoControlCode=2228224, InputBuffer="\xde\xad\xbe\xef", InputBufferLength=4, OutputBuffer="\x01\x02", OutputBufferLength=3"#
    );
}

// ---- registry data (NtSetValueKey Data) ----

fn reg(ty: u64, data: Vec<u8>, opts: &DecodeOptions) -> String {
    let len = data.len() as u64;
    let mem = MemoryImage::new().with(0x2000, data);
    arg_with("NtSetValueKey", &[0x30, 0, 0, ty, 0x2000, len], OK, &mem, "Data", opts)
}

#[test]
fn registry_strings() {
    let l = limit(32);
    assert_eq!(reg(1, wz("hello"), &l), r#""hello""#);
    assert_eq!(reg(2, wz("%SystemRoot%\\x"), &l), r#""%SystemRoot%\\x""#);
    assert_eq!(reg(1, w("no terminator"), &l), r#""no terminator""#);
    assert_eq!(reg(1, wz("hello"), &limit(3)), r#""hel"..."#);
    assert_eq!(reg(1, wz("abc"), &limit(3)), r#""abc""#);
    let mut odd = wz("hi");
    odd.push(b'!');
    assert_eq!(reg(1, odd, &l), r#""hi" (odd length)"#);
    assert_eq!(reg(1, vec![], &l), r#""""#);
}

#[test]
fn registry_multi_sz() {
    let mut data = wz("a");
    data.extend(wz("bc"));
    data.extend([0, 0]);
    assert_eq!(reg(7, data.clone(), &limit(32)), r#"["a", "bc"]"#);
    assert_eq!(reg(7, data, &limit(1)), r#"["a", ...]"#);
    assert_eq!(reg(7, vec![0, 0], &limit(32)), "[]");
    // Missing final terminators are tolerated.
    assert_eq!(reg(7, w("x"), &limit(32)), r#"["x"]"#);
}

#[test]
fn registry_numbers_and_binary() {
    let l = limit(32);
    assert_eq!(reg(4, 42u32.to_le_bytes().to_vec(), &l), "42");
    assert_eq!(reg(5, 42u32.to_be_bytes().to_vec(), &l), "42");
    assert_eq!(reg(11, (1u64 << 40).to_le_bytes().to_vec(), &l), "1099511627776");
    // A REG_DWORD of the wrong size is shown as the bytes it is.
    assert_eq!(reg(4, vec![1, 2, 3], &l), r#""\x01\x02\x03""#);
    assert_eq!(reg(3, vec![0, 1, 0xfe], &l), r#""\x00\x01\xfe""#);
    assert_eq!(reg(3, vec![0; 40], &limit(2)), r#""\x00\x00"..."#);
    assert_eq!(reg(0x1234, b"text".to_vec(), &l), r#""text""#);
    let mem = MemoryImage::new();
    assert_eq!(arg("NtSetValueKey", &[0x30, 0, 0, 4, 0x2000, 4], OK, &mem, "Data"), "0x2000 (unreadable)");
    assert_eq!(arg("NtSetValueKey", &[0x30, 0, 0, 4, 0, 0], OK, &mem, "Data"), "NULL");
    assert_eq!(arg("NtSetValueKey", &[0x30, 0, 0, 99, 0, 0], OK, &mem, "Type"), "0x63");
}
