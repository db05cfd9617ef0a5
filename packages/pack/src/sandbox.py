#!/usr/bin/env python3
# Formation pack: run one build command inside the image root, sandboxed (see README, "Sandbox").
#
#   python3 sandbox.py ROOT ID_BASE ID_COUNT NPROC HOSTNAME -- ARGV...
#
# Started as real root by the builder. What runs ARGV:
#   - a new user namespace: uid/gid 0..ID_COUNT-1 inside are ID_BASE.. on the host (unprivileged there);
#   - ROOT seen through an idmapped mount (on-disk uid N appears as ID_BASE+N), so files keep their
#     image ownership on disk (mkfs.ext4 -d copies it) while the sandbox has no host identity;
#   - new mount, PID, network (only lo), IPC, UTS and cgroup namespaces; pivot_root into ROOT and the
#     old root detached: no path leads back to the host filesystem (chroot tricks stay inside ROOT);
#   - RLIMIT_NPROC; a seccomp deny list (kernel modules, kexec, keyrings, bpf, perf, userfaultfd,
#     io_uring, new user namespaces...); every process dies with the sandbox (PID namespace,
#     parent-death signals).
# Exit status: ARGV's (128+signal when killed); 91 = the sandbox could not be set up (reason on stderr).
import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 0x4000, 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_IDMAP = 0x00100000
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR, SYS_PIVOT_ROOT = 428, 429, 442, 155
PR_SET_PDEATHSIG = 1


# seccomp: a deny list in front of the kernel's most exploited interfaces (x86_64 only).
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, ENOSYS = 1, 38
CLONE_NEWUSER_FLAG = 0x10000000
SYS_CLONE, SYS_UNSHARE, SYS_CLONE3 = 56, 272, 435
DENIED = {
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "open_by_handle_at": 304, "keyctl": 250, "add_key": 248, "request_key": 249,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "acct": 163, "swapon": 167, "swapoff": 168, "iopl": 172, "ioperm": 173,
    "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "uselib": 134, "_sysctl": 156,
    "syslog": 103, "quotactl": 179, "lookup_dcookie": 212,
}


def seccomp_filter():
    """BPF: other ABIs killed; DENIED -> EPERM; new user namespaces (clone/unshare) -> EPERM; clone3 -> ENOSYS."""
    LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ins = []

    def op(code, k, jt=0, jf=0):
        ins.append((code, jt, jf, k))

    op(LD_ABS, 4)  # seccomp_data.arch
    op(JEQ, AUDIT_ARCH_X86_64, 1, 0)
    op(RET, SECCOMP_RET_KILL_PROCESS)
    op(LD_ABS, 0)  # seccomp_data.nr
    op(JGE, 0x40000000, 0, 1)  # the x32 ABI
    op(RET, SECCOMP_RET_ERRNO | EPERM)
    for nr in sorted(DENIED.values()):
        op(JEQ, nr, 0, 1)
        op(RET, SECCOMP_RET_ERRNO | EPERM)
    op(JEQ, SYS_CLONE3, 0, 1)  # its flags are behind a pointer: make libc fall back to clone
    op(RET, SECCOMP_RET_ERRNO | ENOSYS)
    op(JEQ, SYS_CLONE, 1, 0)
    op(JEQ, SYS_UNSHARE, 0, 3)
    op(LD_ABS, 16)  # low 32 bits of args[0]: the flags of clone and unshare
    op(JSET, CLONE_NEWUSER_FLAG, 0, 1)
    op(RET, SECCOMP_RET_ERRNO | EPERM)
    op(RET, SECCOMP_RET_ALLOW)
    return b"".join(struct.pack("HBBI", *i) for i in ins), len(ins)


def install_seccomp():
    if os.uname().machine != "x86_64":
        return
    prog, n = seccomp_filter()
    buf = ctypes.create_string_buffer(prog, len(prog))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(n, ctypes.addressof(buf))
    # Root of its user namespace (CAP_SYS_ADMIN there): no need for no_new_privs, so setuid tools still work.
    check(libc.prctl(22, 2, ctypes.byref(fprog), 0, 0), "install the seccomp filter")  # PR_SET_SECCOMP, FILTER


def fail(what):
    err = ctypes.get_errno()
    sys.stderr.write(f"FORM-SANDBOX-FAILED: {what}: {os.strerror(err) if err else 'failed'}\n")
    sys.stderr.flush()
    os._exit(91)


def check(rc, what):
    if rc < 0:
        fail(what)
    return rc


def unshare(flags, what):
    check(libc.unshare(flags), what)


def mount(src, target, fstype, flags, data, what):
    check(
        libc.mount(
            src.encode() if src else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        what,
    )


def die_with_parent(parent=None):
    """SIGKILL this process when its parent dies (`parent`: its pid, to catch a parent already gone)."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(137)


def status_code(st):
    if os.WIFEXITED(st):
        return os.WEXITSTATUS(st)
    return 128 + (os.WTERMSIG(st) if os.WIFSIGNALED(st) else 1)


def wait_for(pid):
    """Reap every child; return the status of `pid` (pid 1 of a namespace must reap orphans too)."""
    while True:
        try:
            got, st = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if got == pid:
            return status_code(st)


def lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))
    finally:
        s.close()


def inside(nproc, hostname, argv):
    """PID 1 of the new PID namespace: mounts, pivot_root, limits; runs argv as PID 2 and reaps."""
    die_with_parent()
    mount(None, "/", None, MS_REC | MS_PRIVATE, None, "make mounts private")
    mount("r", "r", None, MS_BIND | MS_REC, None, "bind the image")
    os.chdir("r")
    mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")
    mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777", "mount /dev/shm")
    try:
        lo_up()
    except OSError as e:
        sys.stderr.write(f"FORM-SANDBOX-FAILED: bring up lo: {e}\n")
        os._exit(91)
    name = hostname.encode()
    check(libc.sethostname(name, len(name)), "set the hostname")
    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root into the image")
    check(libc.umount2(b".", MNT_DETACH), "detach the host root")
    os.chdir("/")
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    install_seccomp()
    pid = os.fork()
    if pid == 0:
        die_with_parent()
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(s, signal.SIG_DFL)
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"Cannot run {argv[0]} in the image: {e.strerror}\n")
            os._exit(127)
    os._exit(wait_for(pid))


def main():
    if len(sys.argv) < 8 or sys.argv[6] != "--":
        sys.stderr.write("usage: sandbox.py ROOT ID_BASE ID_COUNT NPROC HOSTNAME -- ARGV...\n")
        sys.exit(2)
    root = os.path.realpath(sys.argv[1])
    base, count, nproc, hostname = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    argv = sys.argv[7:]

    # Host side (real root): a private mount namespace for the idmapped view of ROOT.
    unshare(CLONE_NEWNS, "create a mount namespace")
    mount(None, "/", None, MS_REC | MS_PRIVATE, None, "make mounts private")

    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    me = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(go_w)
        die_with_parent(me)
        unshare(CLONE_NEWUSER, "create a user namespace")
        os.write(ready_w, b"u")
        if os.read(go_r, 1) != b"g":
            os._exit(91)
        # Still the host's uid 0 as file owner here: enter ROOT (the staging tmpfs) while the
        # directories above it (0700, root's) can be traversed; the sandbox works relative to it.
        os.chdir(root)
        # Become root of the new user namespace (an unprivileged uid on the host).
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        die_with_parent(me)  # credential changes clear the parent-death signal
        unshare(
            CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP,
            "create the sandbox namespaces",
        )
        init = os.fork()
        if init == 0:
            inside(nproc, hostname, argv)
        os._exit(wait_for(init))

    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) != b"u":
        os._exit(wait_for(child) or 91)
    for f in ("uid_map", "gid_map"):
        with open(f"/proc/{child}/{f}", "w") as m:
            m.write(f"0 {base} {count}\n")
    userns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    tree = check(
        libc.syscall(SYS_OPEN_TREE, AT_FDCWD, root.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        f"open_tree {root}",
    )
    attr = struct.pack("QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns)
    buf = ctypes.create_string_buffer(attr, len(attr))
    check(
        libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, buf, len(attr)),
        "make an idmapped mount of the image (needs Linux >= 5.12 and ext4, xfs or btrfs under the data dir)",
    )
    # A small tmpfs over ROOT (in this private namespace only) holds the idmapped image at ROOT/r: the
    # sandbox can then bind it onto itself (copied mounts are locked, and pivot_root needs an unlocked one).
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711", "mount the staging tmpfs")
    os.mkdir(root + "/r")
    check(
        libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, (root + "/r").encode(), MOVE_MOUNT_F_EMPTY_PATH),
        "mount the idmapped image",
    )
    os.close(tree)
    os.close(userns)
    os.write(go_w, b"g")
    os.close(go_w)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    os._exit(wait_for(child))


main()
