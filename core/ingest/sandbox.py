"""The jailed child's launcher: `python -m core.ingest.sandbox`, started by core/ingest/jail.py in
a session of its own. Standard library only until the jail is shut: it reads its task (one JSON
line on stdin), then, before any work,

1. sets its resource limits (`RLIMIT_AS`, `RLIMIT_CPU`, `RLIMIT_FSIZE`, `RLIMIT_NOFILE`, no core
   files), which every program it starts (ffmpeg, ffprobe) inherits;
2. enters an empty network namespace (as root, or in a user namespace of its own where the
   kernel allows one) with only its loopback up, and opens there the one port its downloader
   may use: the forwarder to the bot's guarding proxy (core/ingest/child.py);
3. restricts the file system with Landlock: it may read the system's libraries and programs,
   Python and vidrag's code, and the one local file it is given; it may write only inside its
   job folder (and /dev/null), and execute nothing from there; where Landlock's network rules
   exist, it may connect to no TCP port but the forwarder's, and (ABI 6) may signal no process
   and reach no abstract socket outside its own tree;
4. drops every capability (bounding set included, so the programs it starts get none either),
   with `no_new_privs` set; and it dies with the bot (`PR_SET_PDEATHSIG`), so a bot killed
   without time to clean up leaves no child (the programs it was running end with their limits,
   or when the next bot sweeps the dead one's cgroup);

and only then imports the work (core/ingest/child.py). Each step that the platform does not
allow is skipped and named in the `jail` event, so the parent can log what held; the limits of
step 1 always apply, and the proxy settings are then the only way out (docs/threat-model.md).

Events go to the parent as JSON lines on the original stdout; the child's fd 1 is pointed at
stderr, so nothing else the child or its programs print can be taken for an event."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any, TextIO

TASK_MAX = 1 << 20  # bytes of the task line

_libc = ctypes.CDLL(None, use_errno=True)


def set_limits(limits: dict[str, int]) -> None:
    """Hard limits as given: address space, CPU seconds (SIGXCPU at the limit, SIGKILL 5 s
    later), bytes of any one file written, open files; no core dumps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("as"):
        resource.setrlimit(resource.RLIMIT_AS, (limits["as"], limits["as"]))
    if limits.get("cpu"):
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 5))
    if limits.get("fsize"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
    if limits.get("nofile"):
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))


# -- the network namespace -----------------------------------------------------------------------

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def enter_empty_network() -> str:
    """Move into a new network namespace with loopback up: "root" (as root), "user" (in a new
    user namespace, mapped to our own ids), or "" when neither is allowed."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        if uid == 0:
            _unshare(CLONE_NEWNET)
            how = "root"
        else:
            _unshare(CLONE_NEWUSER | CLONE_NEWNET)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
            how = "user"
    except OSError:
        return ""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    return how


# -- Landlock -------------------------------------------------------------------------------------

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_VERSION = 1
_PATH_BENEATH, _NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS = 38

# file-system rights by ABI version (1: bits 0-12; 2: REFER; 3: TRUNCATE; 5: IOCTL_DEV)
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
TRUNCATE, IOCTL_DEV = 1 << 14, 1 << 15
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def landlock_abi() -> int:
    abi = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    return max(0, int(abi))


def system_readable() -> list[str]:
    """What any program here needs to read: libraries, programs, Python and its packages, a few
    files of /etc (not /etc itself: the child runs as root without capabilities, and root owns
    /etc/shadow), /proc and /sys (another process's /proc entries stay out of reach: Landlock
    denies ptrace-like access outside the domain), and vidrag's own code."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt", "/proc", "/sys",
             "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/ssl",
             "/etc/ca-certificates", "/etc/mime.types", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf",
             "/etc/gai.conf", "/etc/resolv.conf", "/etc/alternatives", "/etc/fonts",
             "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
             sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             str(Path(__file__).resolve().parents[1])]  # core/
    paths += [p for p in sys.path if p and os.path.isdir(p) and "site-packages" in p or p.endswith(".zip")]
    return paths


def restrict_files(readable: list[str], writable: list[str], connect_port: int = 0) -> int:
    """Landlock: read (and execute) only beneath `readable`, read and write (no execute) only
    beneath `writable`; with ABI ≥ 4 and `connect_port`, connect over TCP to that port only and
    bind none; with ABI ≥ 6, no signal or abstract socket outside this process tree. Returns the
    ABI used, 0 when Landlock is unavailable (nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    handled_fs = _FS_BY_ABI.get(abi, (1 << 16) - 1)
    attr = _RulesetAttr(handled_fs, (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 and connect_port else 0,
                        (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    try:
        read = (EXECUTE | READ_FILE | READ_DIR) & handled_fs
        write = handled_fs & ~EXECUTE
        for rights, paths in ((read, readable), (write, writable)):
            for p in dict.fromkeys(paths):
                _allow(ruleset, p, rights)
        _allow(ruleset, "/dev/null", (READ_FILE | WRITE_FILE | TRUNCATE) & handled_fs)
        if attr.handled_access_net:
            rule = _NetPort(NET_CONNECT_TCP, connect_port)
            if _libc.syscall(_ADD_RULE, ruleset, _NET_PORT, ctypes.byref(rule), 0) != 0:
                raise OSError(ctypes.get_errno(), "landlock_add_rule (port)")
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "no_new_privs")
        if _libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this system
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        if _libc.syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            e = ctypes.get_errno()
            if e != errno.EINVAL:  # a right this path cannot carry: leave it out
                raise OSError(e, f"landlock_add_rule {path}")
    finally:
        os.close(fd)


# -- capabilities ---------------------------------------------------------------------------------

_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_PR_SET_PDEATHSIG = 1


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> bool:
    """No capability left, none regained by exec (the bounding set emptied first). True when
    this process had some and they are gone, or had none."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 40
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(last + 1):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM without CAP_SETPCAP: nothing to drop then
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    return _libc.capset(ctypes.byref(header), ctypes.byref(data)) == 0


# -- the launcher ---------------------------------------------------------------------------------

def shut(task: dict[str, Any]) -> tuple[dict[str, Any], socket.socket | None]:
    """Apply the jail to this process (the steps of the module's docstring); what held, and the
    listening socket of the forwarder when the task has a proxy."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the bot (a SIGKILLed bot too)
    if os.getppid() != task.get("parent", os.getppid()):
        os._exit(1)  # the bot died before that was set
    set_limits(task["limits"])
    netns = enter_empty_network()
    listener = None
    if task.get("proxy"):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
    port = listener.getsockname()[1] if listener is not None else 0
    landlock = restrict_files(system_readable() + task.get("readable", []), task["writable"], port)
    caps = drop_capabilities()
    return {"netns": netns, "landlock": landlock, "capabilities_dropped": caps}, listener


def main() -> int:
    events: TextIO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    line = sys.stdin.readline(TASK_MAX)
    task = json.loads(line)
    jail, listener = shut(task)
    events.write(json.dumps({"event": "jail", **jail}) + "\n")
    from core.ingest import child  # the work, imported inside the jail

    return child.main(task, events, listener)


if __name__ == "__main__":
    sys.exit(main())
