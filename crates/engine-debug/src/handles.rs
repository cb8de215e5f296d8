//! `-y`: what a handle in the target refers to.
//!
//! The handle is duplicated into the tracer and asked: its object type
//! (NtQueryObject), then, by type, its DOS path (files), its NT name (keys
//! and other named objects) or its id (processes, threads).
//! [`crate::handle_display_name`] turns that into what is shown. Names are
//! cached per process and handle value; a handle that is closed or handed
//! out anew by a create/open call is forgotten.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::mpsc;
use std::time::Duration;

use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectTypeInformation};
use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, LocalFree, DUPLICATE_SAME_ACCESS, HANDLE, UNICODE_STRING,
};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessId, GetThreadId, OpenProcessToken};

use crate::handle_display_name;

/// How long one lookup may take. Some queries block for as long as another
/// thread holds the object (a synchronous pipe in a pending read); the
/// trace must not wait on the target.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// OBJECT_INFORMATION_CLASS 1, ObjectNameInformation: in ntdef.h but not
/// in Microsoft's metadata, so windows-sys lacks it.
#[allow(non_upper_case_globals)]
const ObjectNameInformation: i32 = 1;

pub struct HandleNamer {
    user_sid: Option<String>,
    cache: HashMap<(u32, u64), Option<String>>,
}

impl Default for HandleNamer {
    fn default() -> HandleNamer {
        HandleNamer::new()
    }
}

impl HandleNamer {
    pub fn new() -> HandleNamer {
        HandleNamer { user_sid: current_user_sid(), cache: HashMap::new() }
    }

    /// The display name of `handle` in process `pid`, if it has one.
    pub fn name(&mut self, process: HANDLE, pid: u32, handle: u64) -> Option<String> {
        if let Some(known) = self.cache.get(&(pid, handle)) {
            return known.clone();
        }
        let name = lookup(process, handle, self.user_sid.clone());
        self.cache.insert((pid, handle), name.clone());
        name
    }

    /// The tracer's user SID (its hive is shown as HKCU).
    pub fn user_sid(&self) -> Option<&str> {
        self.user_sid.as_deref()
    }

    /// Drops what is known of a handle value (closed, or reused).
    pub fn forget(&mut self, pid: u32, handle: u64) {
        self.cache.remove(&(pid, handle));
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.cache.retain(|(p, _), _| *p != pid);
    }
}

/// Runs the queries on a helper thread and gives up after [`LOOKUP_TIMEOUT`].
fn lookup(process: HANDLE, handle: u64, user_sid: Option<String>) -> Option<String> {
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle of the (stopped) target into this process;
    // `dup` is a valid out-pointer and is closed by the helper thread.
    let ok = unsafe {
        DuplicateHandle(process, handle as HANDLE, GetCurrentProcess(), &mut dup, 0, 0, DUPLICATE_SAME_ACCESS)
    };
    if ok == 0 {
        return None;
    }
    let dup = dup as usize; // a HANDLE is a pointer, which threads may not share
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let dup = dup as HANDLE;
        let name = describe(dup, user_sid.as_deref());
        // SAFETY: closes our own duplicate.
        unsafe { CloseHandle(dup) };
        let _ = tx.send(name);
    });
    rx.recv_timeout(LOOKUP_TIMEOUT).ok().flatten()
}

fn describe(handle: HANDLE, user_sid: Option<&str>) -> Option<String> {
    let object_type = query_unicode(handle, ObjectTypeInformation)?;
    let (nt_name, dos_path, id) = match object_type.as_str() {
        "File" => (String::new(), crate::windows::file_path(handle), None),
        // SAFETY: plain queries on a handle we own.
        "Process" => (String::new(), None, Some(unsafe { GetProcessId(handle) })),
        // SAFETY: as above.
        "Thread" => (String::new(), None, Some(unsafe { GetThreadId(handle) })),
        _ => (query_unicode(handle, ObjectNameInformation).unwrap_or_default(), None, None),
    };
    let id = id.filter(|&id| id != 0);
    handle_display_name(&object_type, &nt_name, dos_path.as_deref(), id, user_sid)
}

/// NtQueryObject for a class whose result starts with a UNICODE_STRING
/// (OBJECT_NAME_INFORMATION, OBJECT_TYPE_INFORMATION).
fn query_unicode(handle: HANDLE, class: i32) -> Option<String> {
    // u64 elements keep the buffer aligned for the structure.
    let mut buf = vec![0u64; 1024];
    let mut len = 0u32;
    // SAFETY: the buffer is writable for the length passed.
    let status = unsafe {
        NtQueryObject(handle, class, buf.as_mut_ptr().cast::<c_void>(), (buf.len() * 8) as u32, &mut len)
    };
    if status < 0 {
        return None;
    }
    // SAFETY: on success the buffer starts with a UNICODE_STRING whose
    // Buffer points into the same buffer (or is null).
    let text = unsafe {
        let us = &*(buf.as_ptr() as *const UNICODE_STRING);
        if us.Buffer.is_null() || us.Length == 0 {
            return Some(String::new());
        }
        let start = us.Buffer as usize;
        let end = start + usize::from(us.Length);
        let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len() * 8);
        if start < lo || end > hi {
            return None;
        }
        std::slice::from_raw_parts(us.Buffer, usize::from(us.Length) / 2)
    };
    Some(String::from_utf16_lossy(text))
}

/// The tracer's own user SID, as `S-1-5-...`, whose hive is HKCU.
pub fn current_user_sid() -> Option<String> {
    // SAFETY: standard token query; every buffer is sized by the call and
    // the string from ConvertSidToStringSidW is freed with LocalFree.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return None;
        }
        let mut buf = vec![0u64; 64];
        let mut len = 0u32;
        let ok =
            GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), (buf.len() * 8) as u32, &mut len);
        CloseHandle(token);
        if ok == 0 {
            return None;
        }
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        let mut text: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut text) == 0 || text.is_null() {
            return None;
        }
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        Some(sid)
    }
}
