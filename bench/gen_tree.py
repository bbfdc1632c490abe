#!/usr/bin/env python3
"""Generate a tree shaped like a Debian minbase rootfs: about 200 MB in
~7 000 entries (~5 300 files, ~800 dirs, ~650 symlinks, some hardlinks,
xattrs and file capabilities). Deterministic for a given seed."""
import os
import random
import sys

def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: gen_tree.py DIR [scale=1.0] [seed=1]")
    root = sys.argv[1]
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    n_dirs, n_files, n_links, n_hard = (int(x * scale) for x in (800, 5300, 650, 40))
    total = int(200 * 1024 * 1024 * scale)

    tops = ["bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt", "proc", "root",
            "run", "sbin", "srv", "sys", "tmp", "usr", "var"]
    os.makedirs(root, exist_ok=True)
    dirs = []
    for t in tops:
        os.makedirs(os.path.join(root, t), exist_ok=True)
        dirs.append(os.path.join(root, t))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    weighted = ["usr", "usr", "usr", "usr", "var", "etc", "lib", "usr"]
    while len(dirs) < n_dirs:
        parent = rng.choice(dirs) if rng.random() < 0.7 else os.path.join(root, rng.choice(weighted))
        d = os.path.join(parent, "d%04d_%s" % (len(dirs), rng.choice(["share", "doc", "lib", "locale", "conf", "x"])))
        os.makedirs(d, exist_ok=True)
        dirs.append(d)

    # Lognormal sizes (mostly small files, a few large libraries) scaled to the total.
    raw = [rng.lognormvariate(8.0, 1.9) for _ in range(n_files)]
    k = total / sum(raw)
    sizes = [max(0, int(r * k)) for r in raw]
    block = os.urandom(1 << 20)
    files = []
    for i, size in enumerate(sizes):
        d = rng.choice(dirs)
        p = os.path.join(d, "f%05d%s" % (i, rng.choice([".so", ".conf", "", ".gz", ".py", ".mo", ".h"])))
        with open(p, "wb") as f:
            left = size
            off = rng.randrange(0, len(block))
            while left > 0:
                chunk = block[off:off + min(left, len(block) - off)]
                f.write(chunk)
                left -= len(chunk)
                off = 0
        mode = rng.choice([0o644] * 8 + [0o755] * 3 + [0o600, 0o4755])
        os.chmod(p, mode)
        if rng.random() < 0.05:
            os.chown(p, rng.choice([0, 1, 2, 100, 65534]), rng.choice([0, 4, 42, 100, 65534]))
        files.append(p)
    for i in range(n_links):
        d = rng.choice(dirs)
        p = os.path.join(d, "l%04d" % i)
        target = rng.choice(files)
        if rng.random() < 0.5:
            target = os.path.relpath(target, d)
        else:
            target = "/" + os.path.relpath(target, root)
        os.symlink(target, p)
    for i in range(n_hard):
        src = rng.choice(files)
        os.link(src, os.path.join(rng.choice(dirs), "h%03d" % i))
    def setx(p, k, v):
        try:
            os.setxattr(p, k, v)
        except OSError:  # a filesystem without user xattrs (tmpfs in a guest)
            pass
    for p in rng.sample(files, min(60, len(files))):
        setx(p, "user.strata.bench", b"v" * rng.randrange(1, 64))
    # A few file capabilities (v2, cap_net_raw), as ping has.
    caps = bytes.fromhex("0000000200200000000000000000000000000000")
    for p in rng.sample(files, 3):
        setx(p, "security.capability", caps)
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("base\n")

if __name__ == "__main__":
    main()
