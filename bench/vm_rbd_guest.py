#!/usr/bin/env python3
"""Ceph RBD timings in the QEMU guest, strata and LXC's lxc-* tools side by
side, alternating (software emulation: only ratios mean anything). Run by
tests/vm/guest (part rbdbench) once tests/vm/ceph-up has made pool "lxc",
LXC's default pool, which both use:
    vm_rbd_guest.py OUT_DIR STRATA ITERATIONS [STRATA_BEFORE [cd]]
cd: create and destroy alone. STRATA_BEFORE ("-": none): another strata build (an earlier one) timed beside them on
create and destroy, for a before/after in one guest. After the table, one
create and one destroy of each strata run again with its debug log, which
lists every tool it ran and what it took (rbd-bench.table's last lines).
All run from the guest's tmpfs (strata's binary; LXC's tools with
liblxc): from the 9p share each process start costs seconds. LXC 5 only
creates and destroys rbd containers; strata's snapshot clone, copy,
lxc-snapshot and restore have no LXC figure (they are shown beside
strata's own create)."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

out, strata, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
before = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] not in ("", "-") else None
# "cd": create and destroy alone (what LXC can do too), the short run.
short = len(sys.argv) > 5 and sys.argv[5] == "cd"
table = open(os.path.join(out, "rbd-bench.table"), "w")
log = open(os.path.join(out, "rbd-bench.log"), "w")
tmp = tempfile.mkdtemp(prefix="rbdbench.", dir="/var/tmp")

sbin = os.path.join(tmp, "strata-bin")
os.makedirs(sbin)
shutil.copy(strata, os.path.join(sbin, "strata"))
for t in ["lxc-create", "lxc-copy", "lxc-snapshot", "lxc-destroy"]:
    os.symlink("strata", os.path.join(sbin, t))
tools = [("strata", sbin, {})]
if before:
    bbin = os.path.join(tmp, "before-bin")
    os.makedirs(bbin)
    shutil.copy(before, os.path.join(bbin, "strata"))
    for t in ["lxc-create", "lxc-copy", "lxc-snapshot", "lxc-destroy"]:
        os.symlink("strata", os.path.join(bbin, t))
    tools.insert(0, ("before", bbin, {}))
if os.path.exists("/usr/bin/lxc-create"):
    lbin = os.path.join(tmp, "lxc-bin")
    os.makedirs(lbin)
    for t in ["lxc-create", "lxc-copy", "lxc-snapshot", "lxc-destroy"]:
        shutil.copy("/usr/bin/" + t, lbin)
    for lib in ["/usr/lib/x86_64-linux-gnu/liblxc.so.1"]:
        shutil.copy(lib, lbin)
    tools.insert(0, ("lxc", lbin, {"LD_LIBRARY_PATH": lbin}))

lp = os.path.join(tmp, "lxc")
os.makedirs(lp)
P = ["-P", lp]
# Both make the image, map it and put ext4 on it; LXC 5 makes no rootfs at
# all with -t none, so both run a template that does nothing.
CREATE = ["-B", "rbd", "--fssize", "64M", "-t", "/bin/true"]


def sh(tool, *args, check=True):
    env = dict(os.environ, **tool[2])
    log.write("+ %s %s\n" % (tool[0], " ".join(args)))
    log.flush()
    r = subprocess.run([os.path.join(tool[1], args[0]), *args[1:]], stdout=log, stderr=subprocess.PIPE,
                       env=env, timeout=1200)
    log.write(r.stderr.decode(errors="replace"))
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()[-300:]))
    return r.returncode


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def out_line(s):
    print(s, flush=True)
    table.write(s + "\n")
    table.flush()


STRATA = tools[-1]
# The base of strata's clone operations (strata makes it: LXC's own
# lxc-create leaves its image mapped).
sh(STRATA, "lxc-create", *P, "-n", "base", *CREATE)
seq = [0]


def fresh():
    seq[0] += 1
    return "c%d" % seq[0]


def op_create(t):
    c = fresh()
    d = timed(lambda: sh(t, "lxc-create", *P, "-n", c, *CREATE))
    sh(t, "lxc-destroy", *P, "-n", c)
    return d


def op_destroy(t):
    c = fresh()
    sh(t, "lxc-create", *P, "-n", c, *CREATE)
    return timed(lambda: sh(t, "lxc-destroy", *P, "-n", c))


def op_snapclone(t):
    c = fresh()
    d = timed(lambda: sh(t, "lxc-copy", *P, "-n", "base", "-N", c, "-s"))
    sh(t, "lxc-destroy", *P, "-n", c)
    return d


def op_copy(t):
    c = fresh()
    d = timed(lambda: sh(t, "lxc-copy", *P, "-n", "base", "-N", c))
    sh(t, "lxc-destroy", *P, "-n", c)
    return d


def op_snapshot(t):
    d = timed(lambda: sh(t, "lxc-snapshot", *P, "-n", "base"))
    sh(t, "lxc-snapshot", *P, "-n", "base", "-d", "ALL", check=False)
    return d


def op_restore(t):
    sh(t, "lxc-snapshot", *P, "-n", "base")
    sh(t, "lxc-snapshot", *P, "-n", "base")
    # Any snapshot, not the latest: snap0 of two.
    d = timed(lambda: sh(t, "lxc-snapshot", *P, "-n", "base", "-r", "snap0"))
    # The restored rootfs is a clone of snap0: a refusal here is logged,
    # and the next round restores snap0 again.
    sh(t, "lxc-snapshot", *P, "-n", "base", "-d", "ALL", check=False)
    return d


def op_destroy_clone(t):
    c = fresh()
    sh(t, "lxc-copy", *P, "-n", "base", "-N", c, "-s")
    return timed(lambda: sh(t, "lxc-destroy", *P, "-n", c))


both = [("create (lxc-create -B rbd 64M)", op_create), ("destroy (lxc-destroy)", op_destroy)]
strata_only = [
    ("snapshot clone (lxc-copy -s)", op_snapclone),
    ("copy clone (lxc-copy)", op_copy),
    ("lxc-snapshot", op_snapshot),
    ("restore snap0 of 2 (-r)", op_restore),
    ("destroy a snapshot clone", op_destroy_clone),
]

load = open("/proc/loadavg").read().split()[0]
out_line("rbd in the guest (TCG), %d runs each, medians; guest load %s at start" % (n, load))
head = "%-32s %10s %10s %8s" % ("operation", "lxc ms", "strata ms", "ratio")
if before:
    head += " %10s %8s" % ("before ms", "ratio")
out_line(head)
med_create = None
for name, f in both + ([] if short else strata_only):
    only = f in [g for _, g in strata_only]
    use = [STRATA] if only else tools
    times, failed = {t[0]: [] for t in use}, {}
    for i in range(n):
        for t in use if i % 2 == 0 else use[::-1]:
            if t[0] in failed:
                continue
            try:
                times[t[0]].append(f(t))
            except Exception as e:  # noqa: BLE001 - reported in the table
                failed[t[0]] = str(e)
                log.write("%s %s: %s\n" % (name, t[0], e))
    med = {k: statistics.median(v) * 1000 for k, v in times.items() if v}
    if f is op_create and "strata" in med:
        med_create = med["strata"]

    def fmt(k):
        if k in med:
            return "%10.0f" % med[k]
        return "%10s" % ("failed" if k in failed else ("none" if only else "-"))

    if "lxc" in med and "strata" in med:
        ratio = "%.2fx" % (med["lxc"] / med["strata"])
    elif only and "strata" in med and med_create:
        ratio = "%.2f cr" % (med["strata"] / med_create)
    else:
        ratio = "-"
    line = "%-32s %s %s %8s" % (name, fmt("lxc"), fmt("strata"), ratio)
    if before and not only:
        rb = "%.2fx" % (med["lxc"] / med["before"]) if "lxc" in med and "before" in med else "-"
        line += " %s %8s" % (fmt("before"), rb)
    out_line(line)
    for k, v in failed.items():
        out_line("    %s failed: %s" % (k, v.splitlines()[-1][:200] if v else ""))
out_line("ratio: LXC time / strata time; \"cr\": strata's time / strata's create (LXC cannot)")


def tools_of(t, what, *args):
    """One more run of a command with strata's debug log: each tool it ran
    (argv[0] and the rbd subcommand) and its time."""
    logf = os.path.join(tmp, "debug-%s.log" % t[0])
    if os.path.exists(logf):
        os.unlink(logf)
    start = time.perf_counter()
    sh(t, args[0], *args[1:], "-l", "DEBUG", "-o", logf)
    took = (time.perf_counter() - start) * 1000
    # "ran" lines (with the time) where the build logs them, else "run".
    found = {"ran": [], "run": []}
    for line in open(logf, errors="replace"):
        if "argv=[" not in line:
            continue
        kind = "ran" if " ran " in line else "run" if " run " in line else None
        if not kind:
            continue
        argv = line.split("argv=[", 1)[1].split("]", 1)[0]
        ms = line.split("ms=", 1)[1].split()[0] if "ms=" in line else "?"
        words = [w.strip().strip('"') for w in argv.split(",")]
        prog = os.path.basename(words[0])
        sub = [w for w in words[1:] if not w.startswith("-") and w != "30"]
        found[kind].append("%s%s %s" % (prog, (" " + sub[0]) if prog == "rbd" and sub else "", ms))
    ran = found["ran"] or found["run"]
    rbd = [r for r in ran if r.startswith("rbd")]
    out_line("  %s %s: %.0f ms, %d rbd processes: %s" % (t[0], what, took, len(rbd), "; ".join(ran)))


for t in tools:
    if t[0] == "lxc":
        continue
    c = fresh()
    tools_of(t, "create", "lxc-create", *P, "-n", c, *CREATE)
    tools_of(t, "destroy", "lxc-destroy", *P, "-n", c)
out_line("guest load %s at the end" % open("/proc/loadavg").read().split()[0])
sh(STRATA, "lxc-destroy", *P, "-n", "base", "-s", check=False)
table.close()
shutil.rmtree(tmp, ignore_errors=True)
subprocess.run(["sync"])
