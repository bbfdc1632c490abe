#!/usr/bin/env python3
"""Guest side of bench/vm: makes a thin pool and a zpool on the scratch
disks, a base container on each, and times snapshot clones and snapshots
with strata and with LXC (where LXC can do the operation), alternating,
both run from copies in the guest's memory."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

out, strata, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Only the operations whose name holds this (bench/vm's STRATA_VM_BENCH_OPS).
only = sys.argv[4] if len(sys.argv) > 4 else ""
table = open(os.path.join(out, "table"), "w")
log = open(os.path.join(out, "bench.log"), "w")
os.environ["LVM_SUPPRESS_FD_WARNINGS"] = "1"
# Fresh names: the guest's /tmp is an overlay on the host's, where fixed
# names may hold anything an earlier run left.
scratch = tempfile.mkdtemp(prefix="strata-vmbench.")
os.environ["LVM_SYSTEM_DIR"] = os.path.join(scratch, "lvm")
os.makedirs(os.environ["LVM_SYSTEM_DIR"])
open(os.path.join(scratch, "lvm", "lvm.conf"), "w").write("activation {\n  monitoring = 0\n}\n")


def sh(*argv, check=True):
    r = subprocess.run(argv, stdout=log, stderr=subprocess.PIPE)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.decode(errors="replace").strip()[-300:]))
    return r.returncode


def out_line(s):
    print(s, flush=True)
    table.write(s + "\n")
    table.flush()


sh("modprobe", "-a", "dm-thin-pool", "zfs", "ext4")
sh("pvcreate", "-ff", "-y", "/dev/vda")
sh("vgcreate", "lxc", "/dev/vda")
sh("lvcreate", "-y", "-L", "3G", "-T", "lxc/lxc")
sh("zpool", "create", "-f", "-m", "none", "tank", "/dev/vdb")
sh("zfs", "create", "tank/lxc")
os.makedirs("/etc/lxc", exist_ok=True)
open("/etc/lxc/lxc.conf", "w").write("lxc.bdev.zfs.root = tank/lxc\n")

# Both tools run from the guest's memory (/tmp is a tmpfs): its root is the
# host's, shared over 9p without a cache, where every exec would read the
# binary (and LXC's shared libraries) from the host again.
TOOLS = ["lxc-create", "lxc-copy", "lxc-snapshot", "lxc-destroy"]
sbin = os.path.join(scratch, "strata-bin")
os.makedirs(sbin)
shutil.copy(strata, os.path.join(sbin, "strata"))
for t in TOOLS:
    os.symlink("strata", os.path.join(sbin, t))
tools = [("strata", sbin, None)]


def local_lxc():
    """LXC's tools, their shared libraries and the dynamic loader copied to
    a tmpfs; the tools are started through that loader with that library
    path, so nothing of theirs is read over 9p either."""
    lbin, llib = os.path.join(scratch, "lxc-bin"), os.path.join(scratch, "lxc-lib")
    os.makedirs(lbin)
    os.makedirs(llib)
    loader = None
    for t in TOOLS:
        shutil.copy(os.path.join("/usr/bin", t), lbin)
        ldd = subprocess.run(["ldd", os.path.join("/usr/bin", t)], stdout=subprocess.PIPE, check=True)
        for line in ldd.stdout.decode().splitlines():
            f = line.split()
            path = f[2] if len(f) > 2 and f[1] == "=>" else f[0] if f and f[0].startswith("/") else None
            if path and os.path.exists(path):
                dst = os.path.join(llib, os.path.basename(path))
                if not os.path.exists(dst):
                    shutil.copy(path, dst)
                if "ld-linux" in path:
                    loader = dst
    return lbin, [loader, "--library-path", llib] if loader else None


if os.path.exists("/usr/bin/lxc-copy"):
    lbin, prefix = local_lxc()
    tools.insert(0, ("lxc", lbin, prefix))
lp = os.path.join(scratch, "lxc")
os.makedirs(lp)
src = os.path.join(scratch, "src")
sh(sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen_tree.py"), src, "0.1")
P = ["-P", lp]
sh(os.path.join(sbin, "lxc-create"), *P, "-n", "lb", "-B", "lvm", "--fssize", "512M", "--rootfs-from", src)
sh(os.path.join(sbin, "lxc-create"), *P, "-n", "zb", "-B", "zfs", "--rootfs-from", src)


class NotApplicable(Exception):
    pass


def run(tool, *args):
    sh(*(tool[2] or []), os.path.join(tool[1], args[0]), *args[1:])


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


ops = []


def op(name):
    def deco(f):
        ops.append((name, f))
        return f
    return deco


for kind, base in (("lvm thin", "lb"), ("zfs", "zb")):
    @op("snapshot clone (%s)" % kind)
    def _(t, base=base):
        d = timed(lambda: run(t, "lxc-copy", *P, "-n", base, "-N", base + "c", "-s"))
        run(t, "lxc-destroy", *P, "-n", base + "c")
        return d

    @op("snapshot create (%s)" % kind)
    def _(t, base=base):
        d = timed(lambda: run(t, "lxc-snapshot", *P, "-n", base))
        run(t, "lxc-snapshot", *P, "-n", base, "-d", "ALL")
        return d

    @op("snapshot restore (%s)" % kind)
    def _(t, base=base):
        run(t, "lxc-snapshot", *P, "-n", base)
        d = timed(lambda: run(t, "lxc-snapshot", *P, "-n", base, "-r", "snap0"))
        run(t, "lxc-snapshot", *P, "-n", base, "-d", "ALL")
        return d

# The floor of a zfs snapshot clone: the two zfs commands both tools run
# (LXC's and strata's plan), alone, in the strata column.
@op("zfs snapshot + zfs clone alone")
def _(t):
    if t[0] != "strata":
        raise NotApplicable()
    ds = [l.split("=", 1)[1].strip() for l in open(os.path.join(lp, "zb", "config"))
          if l.split("=", 1)[0].strip() == "lxc.rootfs.path"][-1]
    ds = ds[len("zfs:"):] if ds.startswith("zfs:") else ds
    d = timed(lambda: (sh("zfs", "snapshot", ds + "@floor"),
                       sh("zfs", "clone", "-o", "canmount=noauto", ds + "@floor", "tank/lxc/zbfloor")))
    sh("zfs", "destroy", "tank/lxc/zbfloor")
    sh("zfs", "destroy", ds + "@floor")
    return d


out_line("%-28s %10s %10s %8s" % ("operation (in the guest)", "lxc ms", "strata ms", "ratio"))
for name, f in ops:
    if only not in name:
        continue
    times, failed = {t[0]: [] for t in tools}, {}
    for i in range(n):
        for t in (tools if i % 2 == 0 else tools[::-1]):
            if t[0] in failed:
                continue
            try:
                times[t[0]].append(f(t))
            except NotApplicable:
                continue
            except Exception as e:
                failed[t[0]] = str(e)
                log.write("%s %s: %s\n" % (name, t[0], e))
    med = {k: statistics.median(v) * 1000 for k, v in times.items() if v}
    fmt = lambda k: "%10.0f" % med[k] if k in med else "%10s" % ("failed" if k in failed else "-")
    ratio = "%.2fx" % (med["lxc"] / med["strata"]) if "lxc" in med and "strata" in med else "-"
    out_line("%-28s %s %s %8s" % (name, fmt("lxc"), fmt("strata"), ratio))
    for k, v in failed.items():
        out_line("    %s failed: %s" % (k, v.splitlines()[-1][:200] if v else ""))
# Where a zfs snapshot clone's time goes: one more of each tool's under
# strace (slower, so only its shape counts): each program it ran, and each
# system call that took 20 ms or more, with the time since the start.
for t in tools:
    logf = os.path.join(out, "%s-clone.strace" % t[0])
    start = time.perf_counter()
    try:
        sh("strace", "-f", "-tt", "-T", "-o", logf, *(t[2] or []), os.path.join(t[1], "lxc-copy"),
           *P, "-n", "zb", "-N", "zbc", "-s")
        took = (time.perf_counter() - start) * 1000
        run(t, "lxc-destroy", *P, "-n", "zbc")
    except Exception as e:
        out_line("%s clone under strace failed: %s" % (t[0], str(e)[:200]))
        continue
    out_line("%s zfs snapshot clone under strace: %.0f ms" % (t[0], took))
    t0, shown = None, 0
    for line in open(logf, errors="replace"):
        f = line.split(None, 2)
        if len(f) < 3:
            continue
        hms = f[1].split(":")
        try:
            at = int(hms[0]) * 3600 + int(hms[1]) * 60 + float(hms[2])
        except (ValueError, IndexError):
            continue
        t0 = at if t0 is None else t0
        dur = line.rsplit("<", 1)[-1].rstrip(">\n") if line.rstrip().endswith(">") else ""
        slow = dur.replace(".", "", 1).isdigit() and float(dur) >= 0.02
        if (f[2].startswith("execve(") or slow or "+++ exited" in f[2]) and shown < 80:
            shown += 1
            out_line("    %7.0f ms pid %s %s" % ((at - t0) * 1000, f[0], f[2].strip()[:160]))
table.close()
sh("sync")
