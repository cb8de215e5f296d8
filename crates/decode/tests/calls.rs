//! Whole calls, decoded over realistic memory images, checked against the
//! exact text a trace line would show for their arguments.

mod common;

use common::*;
use winstrace_core::memory::MemoryImage;
use winstrace_decode::{decode_call, DecodeOptions};

const NAME_NOT_FOUND: Option<u64> = Some(0xc000_0034);

fn create_file_image() -> MemoryImage {
    let path = w("\\??\\C:\\users\\x.txt");
    MemoryImage::new()
        .with(0x1000, oa(0, 0x1100, 0x40))
        .with(0x1100, ustr(path.len() as u16, path.len() as u16 + 2, 0x1200))
        .with(0x1200, path)
        .with(0x1300, 0x24u64.to_le_bytes())
        .with(0x1400, iosb(0, 2))
}

const CREATE_FILE_ARGS: [u64; 11] = [0x1300, 0x4010_0080, 0x1000, 0x1400, 0, 0x80, 1, 5, 0x60, 0, 0];

#[test]
fn nt_create_file_success() {
    assert_eq!(
        call("NtCreateFile", &CREATE_FILE_ARGS, OK, &create_file_image()),
        r#"FileHandle=[0x24], DesiredAccess=FILE_READ_ATTRIBUTES|SYNCHRONIZE|GENERIC_WRITE, ObjectAttributes={Name="\\??\\C:\\users\\x.txt", Attributes=OBJ_CASE_INSENSITIVE}, IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=FILE_CREATED}, AllocationSize=NULL, FileAttributes=FILE_ATTRIBUTE_NORMAL, ShareAccess=FILE_SHARE_READ, CreateDisposition=FILE_OVERWRITE_IF, CreateOptions=FILE_SYNCHRONOUS_IO_NONALERT|FILE_NON_DIRECTORY_FILE, EaBuffer=NULL, EaLength=0"#
    );
}

#[test]
fn nt_create_file_failure_shows_out_params_raw() {
    assert_eq!(
        call("NtCreateFile", &CREATE_FILE_ARGS, NAME_NOT_FOUND, &create_file_image()),
        r#"FileHandle=0x1300, DesiredAccess=FILE_READ_ATTRIBUTES|SYNCHRONIZE|GENERIC_WRITE, ObjectAttributes={Name="\\??\\C:\\users\\x.txt", Attributes=OBJ_CASE_INSENSITIVE}, IoStatusBlock=0x1400, AllocationSize=NULL, FileAttributes=FILE_ATTRIBUTE_NORMAL, ShareAccess=FILE_SHARE_READ, CreateDisposition=FILE_OVERWRITE_IF, CreateOptions=FILE_SYNCHRONOUS_IO_NONALERT|FILE_NON_DIRECTORY_FILE, EaBuffer=NULL, EaLength=0"#
    );
    // A call that did not return, or is still pending, has no out data either.
    let image = create_file_image();
    assert_eq!(arg("NtCreateFile", &CREATE_FILE_ARGS, None, &image, "FileHandle"), "0x1300");
    assert_eq!(arg("NtCreateFile", &CREATE_FILE_ARGS, Some(0x103), &image, "IoStatusBlock"), "0x1400");
}

#[test]
fn nt_create_file_ignores_garbage_in_the_upper_half_of_ulong_registers() {
    let mut args = CREATE_FILE_ARGS;
    args[7] |= 0xdead_beef_0000_0000;
    args[1] |= 0x1234_5678_0000_0000;
    let text = call("NtCreateFile", &args, OK, &create_file_image());
    assert!(text.contains("CreateDisposition=FILE_OVERWRITE_IF,"), "{text}");
    assert!(text.contains("DesiredAccess=FILE_READ_ATTRIBUTES|SYNCHRONIZE|GENERIC_WRITE,"), "{text}");
}

#[test]
fn nt_create_file_of_a_directory_uses_directory_rights() {
    let mut args = CREATE_FILE_ARGS;
    args[1] = 0x0010_0001; // FILE_LIST_DIRECTORY | SYNCHRONIZE
    args[8] = 0x21; // FILE_DIRECTORY_FILE | FILE_SYNCHRONOUS_IO_NONALERT
    let image = create_file_image();
    assert_eq!(arg("NtCreateFile", &args, OK, &image, "DesiredAccess"), "FILE_LIST_DIRECTORY|SYNCHRONIZE");
    assert_eq!(
        arg("NtCreateFile", &args, OK, &image, "CreateOptions"),
        "FILE_DIRECTORY_FILE|FILE_SYNCHRONOUS_IO_NONALERT"
    );
    args[8] = 0x20;
    assert_eq!(arg("NtCreateFile", &args, OK, &image, "DesiredAccess"), "FILE_READ_DATA|SYNCHRONIZE");
}

#[test]
fn nt_write_file_hello() {
    let mem = MemoryImage::new().with(0x1400, iosb(0, 5)).with(0x2000, b"hello".to_vec());
    assert_eq!(
        call("NtWriteFile", &[0x24, 0, 0, 0, 0x1400, 0x2000, 5, 0, 0], OK, &mem),
        r#"FileHandle=0x24, Event=NULL, ApcRoutine=NULL, ApcContext=NULL, IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=5}, Buffer="hello", Length=5, ByteOffset=NULL, Key=NULL"#
    );
}

fn value_name_image() -> MemoryImage {
    MemoryImage::new().with(0x1100, ustr(6, 8, 0x1200)).with(0x1200, w("Foo"))
}

#[test]
fn nt_set_value_key_reg_sz() {
    let mem = value_name_image().with(0x2000, wz("hello"));
    assert_eq!(
        call("NtSetValueKey", &[0x30, 0x1100, 0, 1, 0x2000, 12], OK, &mem),
        r#"KeyHandle=0x30, ValueName="Foo", TitleIndex=0, Type=REG_SZ, Data="hello", DataSize=12"#
    );
}

#[test]
fn nt_create_key_path() {
    let path = w("\\Registry\\Machine\\Software\\X");
    let mem = MemoryImage::new()
        .with(0x1000, oa(0x10, 0x1100, 0x40))
        .with(0x1100, ustr(path.len() as u16, path.len() as u16, 0x1200))
        .with(0x1200, path)
        .with(0x1300, 0x38u64.to_le_bytes())
        .with(0x1500, 1u32.to_le_bytes());
    assert_eq!(
        call("NtCreateKey", &[0x1300, 0x2_0019, 0x1000, 0, 0, 0, 0x1500], OK, &mem),
        r#"KeyHandle=[0x38], DesiredAccess=KEY_READ, ObjectAttributes={Root=0x10, Name="\\Registry\\Machine\\Software\\X", Attributes=OBJ_CASE_INSENSITIVE}, TitleIndex=0, Class=NULL, CreateOptions=REG_OPTION_NON_VOLATILE, Disposition=[REG_CREATED_NEW_KEY]"#
    );
}

#[test]
fn nt_query_information_file_basic() {
    // 2024-02-29T12:34:56.789Z as a FILETIME.
    const T: u64 = 133_536_836_967_890_000;
    let info =
        le(&[Le::U64(T), Le::U64(T + 10_000_000), Le::U64(T + 1), Le::U64(0), Le::U32(0x20), Le::Pad(4)]);
    let mem = MemoryImage::new().with(0x1400, iosb(0, 40)).with(0x3000, info);
    assert_eq!(
        call("NtQueryInformationFile", &[0x24, 0x1400, 0x3000, 40, 4], OK, &mem),
        "FileHandle=0x24, IoStatusBlock={Status=0x0 STATUS_SUCCESS, Information=40}, \
         FileInformation={CreationTime=2024-02-29T12:34:56.789000Z, LastAccessTime=2024-02-29T12:34:57.789000Z, \
         LastWriteTime=2024-02-29T12:34:56.7890001Z, ChangeTime=0, FileAttributes=FILE_ATTRIBUTE_ARCHIVE}, \
         Length=40, FileInformationClass=FileBasicInformation"
    );
}

fn partial_dword_image() -> MemoryImage {
    value_name_image()
        .with(0x3000, le(&[Le::U32(0), Le::U32(4), Le::U32(4), Le::U32(42)]))
        .with(0x1500, 16u32.to_le_bytes())
}

#[test]
fn nt_query_value_key_partial_dword() {
    assert_eq!(
        call("NtQueryValueKey", &[0x30, 0x1100, 2, 0x3000, 64, 0x1500], OK, &partial_dword_image()),
        r#"KeyHandle=0x30, ValueName="Foo", KeyValueInformationClass=KeyValuePartialInformation, KeyValueInformation={TitleIndex=0, Type=REG_DWORD, DataLength=4, Data=42}, Length=64, ResultLength=[16]"#
    );
    assert_eq!(
        call(
            "NtQueryValueKey",
            &[0x30, 0x1100, 2, 0x3000, 64, 0x1500],
            NAME_NOT_FOUND,
            &partial_dword_image()
        ),
        r#"KeyHandle=0x30, ValueName="Foo", KeyValueInformationClass=KeyValuePartialInformation, KeyValueInformation=0x3000, Length=64, ResultLength=0x1500"#
    );
}

#[test]
fn unknown_function_gives_register_args_only() {
    let mem = MemoryImage::new();
    let (args, complete) =
        decode_call("NtNoSuchCall", &[1, 2, 3, 4, 5, 6], OK, &mem, &DecodeOptions::default());
    assert!(!complete);
    assert_eq!(winstrace_decode::args_text(&args), "0x1, 0x2, 0x3, 0x4");
    let (args, complete) = decode_call("NtNoSuchCall", &[1], OK, &mem, &DecodeOptions::default());
    assert!(!complete);
    assert_eq!(args.len(), 1);
}

#[test]
fn too_few_raw_args_stop_early() {
    let (args, complete) = decode_call("NtClose", &[], OK, &MemoryImage::new(), &DecodeOptions::default());
    assert!(!complete);
    assert!(args.is_empty());
}

#[test]
fn raw_mode_keeps_names_and_shows_numbers() {
    let opts = DecodeOptions { raw: true, ..DecodeOptions::default() };
    assert_eq!(
        call_with("NtCreateFile", &CREATE_FILE_ARGS, OK, &create_file_image(), &opts),
        "FileHandle=0x1300, DesiredAccess=0x40100080, ObjectAttributes=0x1000, IoStatusBlock=0x1400, \
         AllocationSize=0x0, FileAttributes=0x80, ShareAccess=0x1, CreateDisposition=0x5, CreateOptions=0x60, \
         EaBuffer=0x0, EaLength=0x0"
    );
}

#[test]
fn zw_names_decode_as_nt() {
    assert_eq!(call("ZwClose", &[0x24], OK, &MemoryImage::new()), "Handle=0x24");
}

#[test]
fn arg_metadata_is_filled_in() {
    let (args, _) =
        decode_call("NtCreateFile", &CREATE_FILE_ARGS, OK, &create_file_image(), &DecodeOptions::default());
    assert_eq!(args.len(), 11);
    assert_eq!(
        (args[0].name, args[0].ty, args[0].out, args[0].raw),
        (Some("FileHandle"), Some("PHANDLE"), true, 0x1300)
    );
    assert_eq!((args[1].name, args[1].ty, args[1].out), (Some("DesiredAccess"), Some("ACCESS_MASK"), false));
    assert!(args[3].out);
}

#[test]
fn nt_create_user_process_decodes_each_mask_with_its_own_objects_rights() {
    let mem = MemoryImage::new();
    let args = [0x1000, 0x1008, 0x1f_ffff, 0x1f_ffff, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(arg("NtCreateUserProcess", &args, OK, &mem, "ProcessDesiredAccess"), "PROCESS_ALL_ACCESS");
    assert_eq!(arg("NtCreateUserProcess", &args, OK, &mem, "ThreadDesiredAccess"), "THREAD_ALL_ACCESS");
    let args = [0x1000, 0x1008, 0x10_0410, 0x10_0002, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        arg("NtCreateUserProcess", &args, OK, &mem, "ProcessDesiredAccess"),
        "PROCESS_VM_READ|PROCESS_QUERY_INFORMATION|SYNCHRONIZE"
    );
    assert_eq!(
        arg("NtCreateUserProcess", &args, OK, &mem, "ThreadDesiredAccess"),
        "THREAD_SUSPEND_RESUME|SYNCHRONIZE"
    );
}
