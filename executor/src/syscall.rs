//! Every kernel call that shapes a sandbox (mounts, namespaces, identity) goes through
//! [`Syscall`], so the mount plan and user switching can be unit-tested with
//! [`Recording`] without root. [`Real`] is the one implementation that touches the
//! kernel.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// An overlayfs mount: `lowerdirs` topmost first, an optional upper/work pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overlay {
    pub lowerdirs: Vec<PathBuf>,
    pub upper: Option<(PathBuf, PathBuf)>,
    pub readonly: bool,
    /// Device nodes on it cannot be opened (a sandbox rootfs or mount).
    pub nodev: bool,
    /// Mounted in a user namespace: overlayfs keeps its own xattrs (opaque, origin...)
    /// as `user.overlay.*`, since `trusted.*` needs CAP_SYS_ADMIN on the host.
    pub userxattr: bool,
    /// Mounted by this fuse-overlayfs program instead of the kernel's overlayfs.
    pub fuse: Option<PathBuf>,
}

impl Overlay {
    /// The options that keep the upperdir a plain diff (no redirects, no index, no
    /// metacopy), as (key, value) pairs; a flag has no value. In a user namespace
    /// redirects are `nofollow` (`off` would still follow them, which needs
    /// `trusted.*` xattrs).
    pub fn plain_diff_options(&self) -> Vec<(&'static str, Option<&'static str>)> {
        let mut options = Vec::new();
        if self.userxattr {
            options.push(("userxattr", None));
        }
        let redirect = if self.userxattr { "nofollow" } else { "off" };
        options.extend([("redirect_dir", Some(redirect)), ("index", Some("off")), ("metacopy", Some("off"))]);
        options
    }

    /// The classic `mount(2)` data string.
    pub fn legacy_options(&self) -> String {
        let lower: Vec<String> = self.lowerdirs.iter().map(|p| escape_option(p)).collect();
        let mut data = format!("lowerdir={}", lower.join(":"));
        if let Some((upper, work)) = &self.upper {
            data.push_str(&format!(",upperdir={},workdir={}", escape_option(upper), escape_option(work)));
        }
        for (key, value) in self.plain_diff_options() {
            match value {
                Some(value) => data.push_str(&format!(",{key}={value}")),
                None => data.push_str(&format!(",{key}")),
            }
        }
        data
    }
}

/// overlayfs option values escape `,`, `:` and `\` with a backslash.
fn escape_option(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A process identity to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Whether to set `groups` at all: not where `setgroups(2)` is denied (a user
    /// namespace whose gid map was written without privilege).
    pub setgroups: bool,
}

pub(crate) trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> io::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    /// The per-mount flags of the mount at `target` that the kernel may lock in a user
    /// namespace: read-only, nosuid, nodev, noexec (from `statvfs`).
    fn mount_flags(&self, target: &Path) -> io::Result<MsFlags>;
    /// Makes `new_root` the root of this mount namespace and detaches the old root.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Brings `lo` up in the current network namespace.
    fn loopback_up(&self) -> io::Result<()>;
    /// setgroups, setresgid, setresuid, in that order.
    fn set_identity(&self, id: &Identity) -> io::Result<()>;
}

/// The kernel.
pub(crate) struct Real;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The fs_context API's string values are capped at 256 bytes; longer lowerdir paths go
/// through an `O_PATH` descriptor and its short `/proc/self/fd/N` name.
const FSCONFIG_MAX: usize = 255;

impl Real {
    /// The fd-based mount API with `lowerdir+`: no limit on the number of layers.
    fn mount_overlay_fd(&self, target: &Path, overlay: &Overlay) -> io::Result<()> {
        let fstype = cstr("overlay")?;
        // SAFETY: fsopen takes a NUL-terminated name and flags; it returns a new fd or -1.
        let fs = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
        if fs < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fs` is a fresh descriptor we own.
        let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
        let mut keep = Vec::new();
        let mut set = |key: &str, value: &Path| -> io::Result<()> {
            let value = if value.as_os_str().len() > FSCONFIG_MAX {
                let fd = open_path(value)?;
                let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                keep.push(fd);
                short
            } else {
                value.to_path_buf()
            };
            fsconfig_string(&fs, key, &cpath(&value)?).map_err(|e| with_fs_log(&fs, e))
        };
        for (i, lower) in overlay.lowerdirs.iter().enumerate() {
            match set("lowerdir+", lower) {
                // Before Linux 6.8 overlayfs has no `lowerdir+`.
                Err(e) if i == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(io::Error::from_raw_os_error(libc::ENOSYS));
                }
                other => other?,
            }
        }
        if let Some((upper, work)) = &overlay.upper {
            set("upperdir", upper)?;
            set("workdir", work)?;
        }
        for (key, value) in overlay.plain_diff_options() {
            match value {
                Some(value) => fsconfig_string(&fs, key, &cstr(value)?),
                None => fsconfig_flag(&fs, key),
            }
            .map_err(|e| with_fs_log(&fs, e))?;
        }
        // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        if rc < 0 {
            return Err(with_fs_log(&fs, io::Error::last_os_error()));
        }
        let mut attrs = if overlay.readonly { libc::MOUNT_ATTR_RDONLY } else { 0 };
        if overlay.nodev {
            attrs |= libc::MOUNT_ATTR_NODEV;
        }
        // SAFETY: fsmount on a created fs_context returns a detached mount fd or -1.
        let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs) };
        if mnt < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `mnt` is a fresh descriptor we own.
        let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
        let empty = cstr("")?;
        let target = cpath(target)?;
        // SAFETY: both paths are NUL-terminated; the fds are valid for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: open with a NUL-terminated path; returns a new fd or -1.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &CString) -> io::Result<()> {
    let key = cstr(key)?;
    // SAFETY: key and value are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), libc::FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0)
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn fsconfig_flag(fs: &OwnedFd, key: &str) -> io::Result<()> {
    let key = cstr(key)?;
    // SAFETY: a NUL-terminated key that outlives the call; a flag takes no value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Appends the filesystem's own explanation (read from the fs_context) to `err`.
fn with_fs_log(fs: &OwnedFd, err: io::Error) -> io::Error {
    let mut buf = [0u8; 512];
    // SAFETY: reading into a local buffer of the given length.
    let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        let msg = String::from_utf8_lossy(&buf[..n as usize]).trim().to_string();
        io::Error::new(err.kind(), format!("{err} ({msg})"))
    } else {
        err
    }
}

impl Syscall for Real {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> io::Result<()> {
        match self.mount_overlay_fd(target, overlay) {
            // No fd-based mount API, or no `lowerdir+`: the classic call, which works
            // while the options fit in a page.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let data = overlay.legacy_options();
                if data.len() >= 4096 {
                    return Err(io::Error::new(e.kind(), format!("{e}; too many layers for one mount call")));
                }
                let mut flags = if overlay.readonly { MsFlags::MS_RDONLY } else { MsFlags::empty() };
                if overlay.nodev {
                    flags |= MsFlags::MS_NODEV;
                }
                self.mount(Some(Path::new("overlay")), target, Some("overlay"), flags, Some(&data))
            }
            other => other,
        }
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(io::Error::from)
    }

    fn mount_flags(&self, target: &Path) -> io::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let flags = nix::sys::statvfs::statvfs(target)?.flags();
        Ok([
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ]
        .into_iter()
        .filter(|(st, _)| flags.contains(*st))
        .fold(MsFlags::empty(), |all, (_, ms)| all | ms))
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // The old root is stacked under the new one, then detached.
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }

    fn loopback_up(&self) -> io::Result<()> {
        // SAFETY: plain socket(2); the result is checked.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `sock` is a fresh descriptor we own.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into `req`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: after SIOCGIFFLAGS the union holds the flags.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS sets the flags of the named interface from `req`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_identity(&self, id: &Identity) -> io::Result<()> {
        use nix::unistd::{Gid, Uid};
        if id.setgroups {
            let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            nix::unistd::setgroups(&groups)?;
        }
        let gid = Gid::from_raw(id.gid);
        nix::unistd::setresgid(gid, gid, gid)?;
        let uid = Uid::from_raw(id.uid);
        nix::unistd::setresuid(uid, uid, uid)?;
        Ok(())
    }
}

/// One recorded call, paths as given.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Mount { source: Option<PathBuf>, target: PathBuf, fstype: Option<String>, flags: MsFlags, data: Option<String> },
    Overlay { target: PathBuf, overlay: Overlay },
    Umount { target: PathBuf },
    PivotRoot { new_root: PathBuf },
    Hostname(String),
    LoopbackUp,
    Identity(Identity),
}

/// A fake that records every call and succeeds (or fails the calls `fail` matches).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recording {
    pub calls: std::cell::RefCell<Vec<Call>>,
    /// Calls for which this returns `Some(errno)` fail with that errno.
    pub fail: Option<fn(&Call) -> Option<i32>>,
    /// What [`Syscall::mount_flags`] says of a path (nothing locked, by default).
    pub mount_flags: Option<fn(&Path) -> MsFlags>,
}

#[cfg(test)]
impl Recording {
    fn record(&self, call: Call) -> io::Result<()> {
        let failed = self.fail.and_then(|f| f(&call));
        self.calls.borrow_mut().push(call);
        match failed {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

#[cfg(test)]
impl Syscall for Recording {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> io::Result<()> {
        self.record(Call::Overlay { target: target.to_path_buf(), overlay: overlay.clone() })
    }

    fn umount(&self, target: &Path, _flags: MntFlags) -> io::Result<()> {
        self.record(Call::Umount { target: target.to_path_buf() })
    }

    fn mount_flags(&self, target: &Path) -> io::Result<MsFlags> {
        Ok(self.mount_flags.map_or(MsFlags::empty(), |f| f(target)))
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot { new_root: new_root.to_path_buf() })
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Hostname(name.to_string()))
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.record(Call::LoopbackUp)
    }

    fn set_identity(&self, id: &Identity) -> io::Result<()> {
        self.record(Call::Identity(id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_options_escape_separators_and_keep_the_diff_plain() {
        let o = Overlay {
            lowerdirs: vec!["/l/a".into(), "/l/b:c".into()],
            upper: Some(("/u,1".into(), "/w".into())),
            readonly: false,
            nodev: false,
            userxattr: false,
            fuse: None,
        };
        assert_eq!(
            o.legacy_options(),
            "lowerdir=/l/a:/l/b\\:c,upperdir=/u\\,1,workdir=/w,redirect_dir=off,index=off,metacopy=off"
        );
    }

    #[test]
    fn in_a_user_namespace_overlay_xattrs_are_user_xattrs_and_redirects_are_not_followed() {
        let o = Overlay {
            lowerdirs: vec!["/l".into()],
            upper: Some(("/u".into(), "/w".into())),
            readonly: false,
            nodev: true,
            userxattr: true,
            fuse: None,
        };
        assert_eq!(
            o.legacy_options(),
            "lowerdir=/l,upperdir=/u,workdir=/w,userxattr,redirect_dir=nofollow,index=off,metacopy=off"
        );
    }
}
