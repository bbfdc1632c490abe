/* Escape probe for tests/runtime_confine.rs: tries each escape once and
 * prints one line per case, "NAME: VERDICT DETAIL", where VERDICT is
 *   refused  - the confinement stopped it (the errno says where),
 *   ALLOWED  - it worked (and was undone at once),
 *   reached  - the kernel got past the permission checks and failed later
 *              (the errno says why): as bad as ALLOWED,
 *   value    - a state, not an attempt (capability sets, seccomp mode),
 *   absent   - the target does not exist here (this kernel has no such file),
 *   skipped  - the probe was not told enough (no --rootdev).
 * Nothing here may harm the host if a case succeeds: sysctls get their
 * current value written back, devices are opened read-only and never read,
 * /proc/sysrq-trigger and the /sys file are only opened, kexec_load gets
 * an invalid flag so that a kernel that lets it through rejects it after
 * the permission checks instead of unloading a loaded image, and a mount
 * that succeeds is unmounted at once.
 *
 * Usage: escape_probe [--dir D] [--rootdev MAJ:MIN] [--rootfstype T] [--out F] CASE... | all
 * D is where device nodes are made and the mount point lives (default /dev);
 * F takes the lines instead of stdout (LXC's lxc-start -F gives stdout to
 * the container's console).
 * Called as .../init it is a container's init that waits for SIGPWR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir = "/dev";
static unsigned rmaj, rmin;
static int have_root;
static const char *rfstype = "ext4";

static void out(const char *name, const char *verdict, const char *detail)
{
	printf("%s: %s%s%s\n", name, verdict, detail[0] ? " " : "", detail);
	fflush(stdout);
}

/* An errno that means a confinement said no. */
static int denial(int e)
{
	return e == EPERM || e == EACCES || e == EROFS;
}

static void fail(const char *name, const char *step, int e)
{
	char d[128];
	snprintf(d, sizeof d, "%s%s%s", strerrorname_np(e) ? strerrorname_np(e) : "E?", step[0] ? " at " : "", step);
	out(name, denial(e) ? "refused" : "reached", d);
}

/* Write the current value of a sysctl back to it. */
static void sysctl_same(const char *name, const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY);
	if (fd < 0 && errno == ENOENT)
		return out(name, "absent", path);
	if (fd < 0)
		return fail(name, "read", errno);
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0 || n == sizeof buf)
		return out(name, "reached", "unreadable");
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return fail(name, "open", errno);
	ssize_t w = write(fd, buf, n);
	int e = errno;
	close(fd);
	if (w < 0)
		return fail(name, "write", e);
	out(name, "ALLOWED", "");
}

static void open_only(const char *name, const char *path)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0 && errno == ENOENT)
		return out(name, "absent", path);
	if (fd < 0)
		return fail(name, "open", errno);
	close(fd);
	out(name, "ALLOWED", path);
}

/* mknod a node in dir and open it read-only; never read or write it. */
static void devnode(const char *name, mode_t type, unsigned maj, unsigned min, int flags)
{
	char p[512];
	snprintf(p, sizeof p, "%s/.probe-%s", dir, name);
	unlink(p);
	if (mknod(p, type | 0600, makedev(maj, min)) < 0)
		return fail(name, "mknod", errno);
	int fd = open(p, flags);
	int e = errno;
	unlink(p);
	if (fd < 0)
		return fail(name, "open", e);
	close(fd);
	char d[64];
	snprintf(d, sizeof d, "%u:%u", maj, min);
	out(name, "ALLOWED", d);
}

static void mount_rootdev(void)
{
	const char *name = "mount_rootdev";
	char p[512], m[512];
	if (!have_root)
		return out(name, "skipped", "no --rootdev");
	snprintf(p, sizeof p, "%s/.probe-mnt-dev", dir);
	snprintf(m, sizeof m, "%s/.probe-mnt", dir);
	unlink(p);
	if (mknod(p, S_IFBLK | 0600, makedev(rmaj, rmin)) < 0)
		return fail(name, "mknod", errno);
	mkdir(m, 0700);
	int r = mount(p, m, rfstype, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	const char *how = "ro";
	if (r < 0 && errno == EBUSY) {
		/* The superblock is the host's, mounted read-write: a read-only
		 * mount would change its state, so ask for what it has. */
		r = mount(p, m, rfstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
		how = "rw, the host's superblock";
	}
	int e = errno;
	if (r == 0)
		umount2(m, MNT_DETACH);
	unlink(p);
	rmdir(m);
	if (r < 0)
		return fail(name, "mount", e);
	out(name, "ALLOWED", how);
}

/* This process's own cgroup in the v1 hierarchy of CONTROLLER, or, with
 * no such hierarchy, in the unified one (*v2 set): the path in PATH ("" for
 * the root). */
static int own_cgroup(const char *controller, char *path, size_t sz, int *v2)
{
	char line[512], unified[512] = "";
	int found = 0;
	FILE *f = fopen("/proc/self/cgroup", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = 0;
		b[1 + strcspn(b + 1, "\n")] = 0;
		const char *p = strcmp(b + 1, "/") == 0 ? "" : b + 1;
		if (strcmp(a + 1, controller) == 0) {
			snprintf(path, sz, "%s", p);
			found = 1;
		} else if (a[1] == 0 && strcmp(line, "0") == 0) {
			snprintf(unified, sizeof unified, "%s", p);
		}
	}
	fclose(f);
	*v2 = !found;
	if (!found)
		snprintf(path, sz, "%s", unified);
	return 0;
}

/* Write to the own cgroup's control file what cannot change anything: the
 * current value, or VALUE when given. Succeeding means the container could
 * have lifted its own limit. Where the hierarchy is not mounted, mount it
 * as an attacker would (CAP_SYS_ADMIN suffices), in the probe's mount
 * namespace. V1CTL is the file in a v1 hierarchy, V2CTL in the unified one
 * (NULL: none there). */
static void cgroup_write(const char *name, const char *controller, const char *v1ctl, const char *v2ctl,
			 const char *value)
{
	char path[512], p[1024], m[512], buf[256];
	int v2, mounted = 0;
	if (own_cgroup(controller, path, sizeof path, &v2) < 0)
		return fail(name, "read", errno);
	const char *ctl = v2 ? v2ctl : v1ctl;
	if (!ctl)
		return out(name, "absent", "no such file in cgroup v2");
	if (v2)
		snprintf(p, sizeof p, "/sys/fs/cgroup%s/%s", path, ctl);
	else
		snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s/%s", controller, path, ctl);
	if (access(p, F_OK) < 0) {
		snprintf(m, sizeof m, "%s/.probe-cg", dir);
		mkdir(m, 0700);
		int r = v2 ? mount("cgroup2", m, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
			   : mount("cgroup", m, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, controller);
		if (r < 0) {
			int e = errno;
			rmdir(m);
			return fail(name, "mount", e);
		}
		mounted = 1;
		snprintf(p, sizeof p, "%s%s/%s", m, path, ctl);
	}
	int r = -1, e = 0, fd;
	const char *step = "read";
	if (!value) {
		if ((fd = open(p, O_RDONLY)) < 0) {
			e = errno;
		} else {
			ssize_t n = read(fd, buf, sizeof buf - 1);
			e = n > 0 ? 0 : n == 0 ? ENODATA : errno;
			close(fd);
			buf[n > 0 ? n : 0] = 0;
			value = buf;
		}
	}
	if (e == 0) {
		if ((fd = open(p, O_WRONLY)) < 0) {
			e = errno;
			step = "open";
		} else {
			r = write(fd, value, strlen(value)) < 0 ? -1 : 0;
			e = errno;
			step = "write";
			close(fd);
		}
	}
	if (mounted) {
		umount2(m, MNT_DETACH);
		rmdir(m);
	}
	if (r < 0 && e == ENOENT)
		return out(name, "absent", p);
	if (r < 0)
		return fail(name, step, e);
	out(name, "ALLOWED", mounted ? "after mounting the hierarchy" : p);
}

/* A fresh instance of procfs or sysfs mounted in dir, where no read-only
 * bind mount covers it: the same writes through it. */
static void fresh_mount(const char *name, const char *fstype)
{
	char m[512], p[600];
	snprintf(m, sizeof m, "%s/.probe-%s", dir, fstype);
	mkdir(m, 0700);
	if (mount(fstype, m, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		int e = errno;
		rmdir(m);
		return fail(name, "mount", e);
	}
	if (strcmp(fstype, "proc") == 0) {
		snprintf(p, sizeof p, "%s/sys/kernel/core_pattern", m);
		sysctl_same(name, p);
	} else {
		static const char *c[] = {"kernel/uevent_helper", "kernel/mm/transparent_hugepage/enabled", "power/state",
					  "kernel/profiling", NULL};
		int i = 0;
		for (; c[i]; i++) {
			snprintf(p, sizeof p, "%s/%s", m, c[i]);
			if (access(p, F_OK) == 0)
				break;
		}
		if (c[i])
			open_only(name, p);
		else
			out(name, "skipped", "no candidate file");
	}
	umount2(m, MNT_DETACH);
	rmdir(m);
}

static void sys_call(const char *name, long r)
{
	if (r < 0)
		return fail(name, "", errno);
	out(name, "ALLOWED", "returned 0");
}

static void open_by_handle(void)
{
	struct {
		struct file_handle h;
		unsigned char b[16];
	} fh;
	memset(&fh, 0, sizeof fh);
	fh.h.handle_bytes = 8;
	fh.h.handle_type = 1;
	memset(fh.h.f_handle, 0x5a, 8);
	int mfd = open("/", O_RDONLY | O_DIRECTORY);
	long r = syscall(SYS_open_by_handle_at, mfd, &fh.h, O_RDONLY);
	int e = errno;
	if (r >= 0)
		close(r);
	close(mfd);
	errno = e;
	sys_call("open_by_handle_at", r < 0 ? -1 : 0);
}

static void sys_write(void)
{
	static const char *c[] = {"/sys/kernel/uevent_helper", "/sys/kernel/mm/transparent_hugepage/enabled",
				  "/sys/power/state", "/sys/kernel/profiling", NULL};
	for (int i = 0; c[i]; i++)
		if (access(c[i], F_OK) == 0)
			return open_only("sys_write", c[i]);
	out("sys_write", "skipped", "no candidate file");
}

static void status_values(void)
{
	static const char *keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", NULL};
	char line[256];
	if (access("/proc/self", F_OK) < 0)
		mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return fail("status", "open", errno);
	while (fgets(line, sizeof line, f)) {
		for (int i = 0; keys[i]; i++) {
			size_t k = strlen(keys[i]);
			if (strncmp(line, keys[i], k) == 0 && line[k] == ':') {
				char *v = line + k + 1;
				v += strspn(v, " \t");
				v[strcspn(v, "\n")] = 0;
				char n[32];
				snprintf(n, sizeof n, "status_%s", keys[i]);
				out(n, "value", v);
			}
		}
	}
	fclose(f);
}

static void memory_hog(void)
{
	const size_t sz = 256u << 20;
	pid_t pid = fork();
	if (pid < 0)
		return fail("memory_hog", "fork", errno);
	if (pid == 0) {
		char *p = malloc(sz);
		if (!p)
			_exit(3);
		for (size_t i = 0; i < sz; i += 4096)
			p[i] = 1;
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st)) {
		char d[64];
		snprintf(d, sizeof d, "killed by signal %d", WTERMSIG(st));
		return out("memory_hog", "refused", d);
	}
	if (WEXITSTATUS(st) == 3)
		return out("memory_hog", "refused", "ENOMEM at malloc");
	out("memory_hog", "ALLOWED", "256 MiB touched");
}

static void fork_bomb(void)
{
	enum { N = 1000 };
	static pid_t kids[N];
	int n = 0, first = 0;
	for (int i = 0; i < N; i++) {
		pid_t p = fork();
		if (p == 0) {
			for (;;)
				pause();
		}
		if (p < 0) {
			if (!first)
				first = errno;
			continue;
		}
		kids[n++] = p;
	}
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < n; i++)
		while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
			;
	char d[96];
	snprintf(d, sizeof d, "%d forks, first error %s", n, first ? strerrorname_np(first) : "none");
	out("fork_bomb", n < N ? "refused" : "ALLOWED", d);
}

static void run(const char *c)
{
	int all = strcmp(c, "all") == 0;
#define IS(x) (all || strcmp(c, x) == 0)
	if (IS("status"))
		status_values();
	if (IS("core_pattern"))
		sysctl_same("core_pattern", "/proc/sys/kernel/core_pattern");
	if (IS("core_pattern_fresh_proc"))
		fresh_mount("core_pattern_fresh_proc", "proc");
	if (IS("sys_write_fresh_sysfs"))
		fresh_mount("sys_write_fresh_sysfs", "sysfs");
	if (IS("sysrq_trigger"))
		open_only("sysrq_trigger", "/proc/sysrq-trigger");
	if (IS("dev_kmsg"))
		devnode("dev_kmsg", S_IFCHR, 1, 11, O_RDONLY | O_NONBLOCK);
	if (IS("dev_mem"))
		devnode("dev_mem", S_IFCHR, 1, 1, O_RDONLY);
	if (IS("dev_loop0"))
		devnode("dev_loop0", S_IFBLK, 7, 0, O_RDONLY);
	if (IS("dev_rootdev")) {
		if (have_root)
			devnode("dev_rootdev", S_IFBLK, rmaj, rmin, O_RDONLY);
		else
			out("dev_rootdev", "skipped", "no --rootdev");
	}
	if (IS("mount_rootdev"))
		mount_rootdev();
	if (IS("init_module"))
		sys_call("init_module", syscall(SYS_init_module, NULL, 0UL, ""));
	if (IS("finit_module"))
		sys_call("finit_module", syscall(SYS_finit_module, -1, "", 0));
	if (IS("delete_module"))
		sys_call("delete_module", syscall(SYS_delete_module, "strata_probe_none", O_NONBLOCK));
	if (IS("kexec_load"))
		/* 0x8000 is no kexec flag and no arch: EINVAL once past the checks. */
		sys_call("kexec_load", syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0x8000UL));
	if (IS("open_by_handle_at"))
		open_by_handle();
	if (IS("sys_write"))
		sys_write();
	if (IS("memory_hog"))
		memory_hog();
	if (IS("fork_bomb"))
		fork_bomb();
	if (IS("cgroup_pids"))
		cgroup_write("cgroup_pids", "pids", "pids.max", "pids.max", NULL);
	if (IS("cgroup_memory"))
		cgroup_write("cgroup_memory", "memory", "memory.limit_in_bytes", "memory.max", NULL);
	if (IS("cgroup_devices"))
		/* /dev/null, allowed everywhere: proves the write, widens nothing. */
		cgroup_write("cgroup_devices", "devices", "devices.allow", NULL, "c 1:3 rwm");
	if (IS("proc_sys_net"))
		sysctl_same("proc_sys_net", "/proc/sys/net/ipv4/ip_forward");
	if (IS("sys_net"))
		open_only("sys_net", "/sys/class/net/lo/mtu");
#undef IS
}

int main(int argc, char **argv)
{
	/* As /sbin/init: an init that forks nothing (a fork bomb cannot kill
	 * it) and stops on SIGPWR, LXC's halt signal, or SIGTERM. */
	const char *base = strrchr(argv[0], '/');
	if (strcmp(base ? base + 1 : argv[0], "init") == 0) {
		sigset_t s;
		int sig;
		sigemptyset(&s);
		sigaddset(&s, SIGPWR);
		sigaddset(&s, SIGTERM);
		sigprocmask(SIG_BLOCK, &s, NULL);
		sigwait(&s, &sig);
		return 0;
	}
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
		else if (strcmp(argv[i], "--rootdev") == 0)
			have_root = sscanf(argv[i + 1], "%u:%u", &rmaj, &rmin) == 2;
		else if (strcmp(argv[i], "--rootfstype") == 0)
			rfstype = argv[i + 1];
		else if (strcmp(argv[i], "--out") == 0 && !freopen(argv[i + 1], "w", stdout))
			return 2;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: escape_probe [--dir D] [--rootdev MAJ:MIN] [--rootfstype T] [--out F] CASE...|all\n");
		return 2;
	}
	for (; i < argc; i++)
		run(argv[i]);
	printf("done\n");
	return 0;
}
