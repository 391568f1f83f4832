/* Unit tests for src/cgroup: path rules, parsers, fake v1/v2 trees, and the real cgroups of
 * the machine (as root): limits, joining, CPU and memory stats, OOM kills, removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "../../src/cgroup/cgroup.h"
#include "../../src/common/spawn.h"
#include "../../src/common/util.h"

#define MiB (1024ull * 1024)

/* snprintf into an array, failing the test on truncation. */
#define FMT(buf, ...)                                                                              \
	do {                                                                                       \
		int n_ = snprintf(buf, sizeof(buf), __VA_ARGS__);                                  \
		if (n_ < 0 || (size_t)n_ >= sizeof(buf))                                           \
			fail_msg("%s: path too long", #buf);                                       \
	} while (0)

/* ---- helpers ---- */

static void put(const char *dir, const char *file, const char *content)
{
	char path[PATH_MAX];
	FMT(path, "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	assert_int_equal(uk_write_all(fd, content, strlen(content)), 0);
	close(fd);
}

/* The file's content without one trailing newline; static buffer. */
static const char *get(const char *dir, const char *file)
{
	static char out[4096];
	char path[PATH_MAX];
	FMT(path, "%s/%s", dir, file);
	char *data = NULL;
	uk_error err = { 0 };
	if (uk_read_file(path, sizeof(out) - 1, &data, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	FMT(out, "%s", data);
	free(data);
	size_t n = strlen(out);
	if (n && out[n - 1] == '\n')
		out[n - 1] = '\0';
	return out;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void mkdirs(const char *path)
{
	uk_error err = { 0 };
	if (uk_mkdir_p(path, 0755, &err) < 0)
		fail_msg("%s", err.msg);
}

/* What the kernel does at mkdir in a v2 cgroup whose parent delegates memory and cpu. */
static void fake_v2_cgroup(const char *dir, const char *subtree_control)
{
	mkdirs(dir);
	put(dir, "cgroup.controllers", "cpu memory pids\n");
	put(dir, "cgroup.subtree_control", subtree_control);
	put(dir, "cgroup.procs", "");
	put(dir, "memory.max", "max\n");
	put(dir, "memory.current", "0\n");
	put(dir, "memory.stat", "anon 0\nfile 0\n");
	put(dir, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
	put(dir, "cpu.max", "max 100000\n");
	put(dir, "cpu.weight", "100\n");
	put(dir, "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
}

/* The same for one v1 hierarchy ("memory", "cpu", "cpuacct", "pids"). */
static void fake_v1_cgroup(const char *dir, const char *kind)
{
	mkdirs(dir);
	put(dir, "cgroup.procs", "");
	if (!strcmp(kind, "memory")) {
		put(dir, "memory.limit_in_bytes", "9223372036854771712\n");
		put(dir, "memory.usage_in_bytes", "0\n");
		put(dir, "memory.stat", "rss 0\ntotal_rss 0\n");
		put(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
	} else if (!strcmp(kind, "cpu")) {
		put(dir, "cpu.shares", "1024\n");
		put(dir, "cpu.cfs_quota_us", "-1\n");
		put(dir, "cpu.cfs_period_us", "100000\n");
	} else if (!strcmp(kind, "cpuacct")) {
		put(dir, "cpuacct.usage", "0\n");
	}
}

/* What the kernel allows at rmdir: control files do not keep a cgroup. */
static void fake_unlink_files(const char *dir)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_type == DT_REG) {
			char p[PATH_MAX];
			FMT(p, "%s/%s", dir, e->d_name);
			assert_int_equal(unlink(p), 0);
		}
}

static int tmpdir_setup(void **state)
{
	static char dir[64];
	FMT(dir, "/tmp/uk-test-cgroup-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	return uk_rm_rf(*state, NULL);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- pure ---- */

static void path_for_table(void **state)
{
	(void)state;
	static const struct {
		const char *parent, *id, *want;
	} ok[] = {
		{ "/kubepods/burstable/pod123", "abc", "kubepods/burstable/pod123/unikd-abc" },
		{ "kubepods/besteffort/pod1/", "abc", "kubepods/besteffort/pod1/unikd-abc" },
		{ "/kubepods", "a.b-c_d", "kubepods/unikd-a.b-c_d" },
		{ "/", "abc", "unikd-abc" },
		{ "", "abc", "unikd/unikd-abc" },
		{ NULL, "abc", "unikd/unikd-abc" },
		{ "kubepods.slice", "abc", "kubepods.slice/unikd-abc.scope" },
		{ "kubepods-burstable-pod123.slice", "abc",
		  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/unikd-abc.scope" },
		{ "kubepods-besteffort-pod0a1b2c3d_e4f5_6789_abcd_ef0123456789.slice", "f00",
		  "kubepods.slice/kubepods-besteffort.slice/"
		  "kubepods-besteffort-pod0a1b2c3d_e4f5_6789_abcd_ef0123456789.slice/unikd-f00.scope" },
		{ "a-b-c-d.slice", "x", "a.slice/a-b.slice/a-b-c.slice/a-b-c-d.slice/unikd-x.scope" },
		{ "-.slice", "x", "unikd-x.scope" },
		/* With a '/', it is a cgroupfs path even if it names slices. */
		{ "/kubepods.slice/kubepods-pod1.slice", "x", "kubepods.slice/kubepods-pod1.slice/unikd-x" },
		/* A controller's name is only reserved followed by '.'. */
		{ "/cpuhog/memoryless/io", "x", "cpuhog/memoryless/io/unikd-x" },
		{ "cpus-a.slice", "x", "cpus.slice/cpus-a.slice/unikd-x.scope" },
		{ "/a.b/x\\x2d", "x", "a.b/x\\x2d/unikd-x" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char out[CG_PATH_MAX];
		uk_error err = { 0 };
		if (cg_path_for(ok[i].parent, ok[i].id, out, sizeof(out), &err) < 0)
			fail_msg("%s: %s", ok[i].parent, err.msg);
		assert_string_equal(out, ok[i].want);
	}

	static const struct {
		const char *parent, *id;
		int rc;
	} bad[] = {
		{ "/kubepods/../etc", "x", -EINVAL },
		{ "/kubepods/..", "x", -EINVAL },
		{ "/a/./b", "x", -EINVAL },
		{ "/a//b", "x", -EINVAL },
		{ "/a\nb", "x", -EINVAL },
		{ "/a\tb", "x", -EINVAL },
		{ "/a b", "x", -EINVAL },
		{ "/a\xc3\xa9", "x", -EINVAL },
		{ "a--b.slice", "x", -EINVAL },
		{ "-a.slice", "x", -EINVAL },
		{ "a-.slice", "x", -EINVAL },
		{ ".slice", "x", -EINVAL },
		{ "/kubepods", "", -EINVAL },
		{ "/kubepods", NULL, -EINVAL },
		{ "/kubepods", "a/b", -EINVAL },
		{ "/kubepods", "..", -EINVAL },
		{ "/kubepods", "-x", -EINVAL },
		/* The two: climbing out, and ".." inside a slice name. */
		{ "../../../evil", "x", -EINVAL },
		{ "a-..-b.slice", "x", -EINVAL },
		/* systemd's slice rules: plain unit names, no empty dash part anywhere. */
		{ "a@b.slice", "x", -EINVAL },
		{ "a-b-.slice", "x", -EINVAL },
		{ "-.slice.slice", "x", -EINVAL },
		/* Names the kernel keeps for control files, and hidden names. */
		{ "/kubepods/cgroup.procs", "x", -EINVAL },
		{ "/memory.max", "x", -EINVAL },
		{ "/a/cpu.weight/b", "x", -EINVAL },
		{ "/a/tasks", "x", -EINVAL },
		{ "/release_agent", "x", -EINVAL },
		{ "/.hidden", "x", -EINVAL },
		{ "cpu.slice", "x", -EINVAL },
		{ "pids-x.slice", "x", -EINVAL },
		{ ".a.slice", "x", -EINVAL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char out[CG_PATH_MAX] = "junk";
		uk_error err = { 0 };
		int r = cg_path_for(bad[i].parent, bad[i].id, out, sizeof(out), &err);
		if (r != bad[i].rc)
			fail_msg("case %zu: got %d, want %d", i, r, bad[i].rc);
		assert_string_equal(out, "");
		assert_true(err.msg[0] != '\0');
	}

	/* Error messages name the value, but never echo control characters. */
	uk_error err = { 0 };
	char out[CG_PATH_MAX];
	assert_int_equal(cg_path_for("/a/../b", "x", out, sizeof(out), &err), -EINVAL);
	assert_contains(err.msg, "/a/../b");
	assert_int_equal(cg_path_for("/a\033[2J", "x", out, sizeof(out), &err), -EINVAL);
	assert_null(strchr(err.msg, '\033'));
	assert_contains(err.msg, "0x1b");

	/* Length bounds: the parent, a component, the expansion, the caller's buffer. */
	char longp[CG_PARENT_MAX + 2];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(cg_path_for(longp, "x", out, sizeof(out), &err), -ENAMETOOLONG);
	char comp[300];
	memset(comp, 'a', sizeof(comp) - 1);
	comp[sizeof(comp) - 1] = '\0';
	assert_int_equal(cg_path_for(comp, "x", out, sizeof(out), &err), -ENAMETOOLONG);
	/* A slice with many dashes expands quadratically: 200 parts > CG_PATH_MAX. */
	char dashes[CG_PARENT_MAX];
	size_t pos = 0;
	for (int i = 0; i < 120; i++)
		pos += (size_t)snprintf(dashes + pos, sizeof(dashes) - pos, "%sa", i ? "-" : "");
	snprintf(dashes + pos, sizeof(dashes) - pos, ".slice");
	assert_int_equal(cg_path_for(dashes, "x", out, sizeof(out), &err), -ENAMETOOLONG);
	char small[16];
	assert_int_equal(cg_path_for("/kubepods/burstable", "abc", small, sizeof(small), &err),
			 -ENAMETOOLONG);
	assert_string_equal(small, "");
	char exact[sizeof("kubepods/unikd-abc")];
	assert_int_equal(cg_path_for("/kubepods", "abc", exact, sizeof(exact), &err), 0);
	assert_string_equal(exact, "kubepods/unikd-abc");
}

/* The check at RunPodSandbox: the same rules, and room for the runtime's 64-byte ids. */
static void parent_check(void **state)
{
	(void)state;
	uk_error err = { 0 };
	assert_int_equal(cg_parent_check("/kubepods/burstable/pod1", 64, &err), 0);
	assert_int_equal(cg_parent_check("kubepods-besteffort-pod1.slice", 64, &err), 0);
	assert_int_equal(cg_parent_check("", 64, &err), 0);
	assert_int_equal(cg_parent_check(NULL, 64, &err), 0);
	assert_int_equal(cg_parent_check("../../../evil", 64, &err), -EINVAL);
	assert_contains(err.msg, "../../../evil");
	assert_int_equal(cg_parent_check("a-..-b.slice", 64, &err), -EINVAL);
	assert_contains(err.msg, "a-..-b.slice");
	assert_int_equal(cg_parent_check("a--b.slice", 64, &err), -EINVAL);
	assert_contains(err.msg, "empty component");
	assert_int_equal(cg_parent_check("/x", 0, &err), -EINVAL);
	assert_int_equal(cg_parent_check("/x", UK_ID_MAX + 1, &err), -EINVAL);

	/* The longest cgroupfs parent, and one byte more: its own bound (CG_PARENT_MAX) comes
	 * before the path's, since "<parent>/unikd-<64 bytes>" still fits CG_PATH_MAX. */
	size_t room = CG_PARENT_MAX - 1;
	assert_true(CG_PARENT_MAX + strlen("/unikd-") + 64 < CG_PATH_MAX);
	char p[CG_PARENT_MAX + 2];
	p[0] = '/';
	for (size_t i = 1; i <= room; i++)
		p[i] = i % 200 == 0 ? '/' : 'a';
	p[room + 1] = '\0';
	assert_int_equal(cg_parent_check(p, 64, &err), 0);
	p[room + 1] = 'a';
	p[room + 2] = '\0';
	assert_int_equal(cg_parent_check(p, 64, &err), -ENAMETOOLONG);
}

static void shares_to_weight(void **state)
{
	(void)state;
	assert_int_equal(cg_shares_to_weight(2), 1);
	assert_int_equal(cg_shares_to_weight(262144), 10000);
	assert_int_equal(cg_shares_to_weight(1024), 39); /* kubelet's value for 1 CPU */
	assert_int_equal(cg_shares_to_weight(512), 20);
	assert_int_equal(cg_shares_to_weight(1536), 59);
	/* Clamped to the v1 range, so no underflow and no weight above 10000. */
	assert_int_equal(cg_shares_to_weight(0), 1);
	assert_int_equal(cg_shares_to_weight(1), 1);
	assert_int_equal(cg_shares_to_weight(1000000), 10000);
	assert_int_equal(cg_shares_to_weight(UINT64_MAX), 10000);
}

static void parse_flat_keyed(void **state)
{
	(void)state;
	uint64_t v = 0;
	const char *events = "low 0\nhigh 3\nmax 10\noom 2\noom_kill 1\noom_group_kill 0\n";
	assert_int_equal(cg_parse_flat_keyed(events, "oom_kill", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(cg_parse_flat_keyed(events, "oom", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(cg_parse_flat_keyed(events, "oom_group_kill", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cg_parse_flat_keyed(events, "max", &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(cg_parse_flat_keyed(events, "oom_kil", &v), -ENOENT);

	const char *oom_control = "oom_kill_disable 0\nunder_oom 1\noom_kill 4\n";
	assert_int_equal(cg_parse_flat_keyed(oom_control, "oom_kill", &v), 0);
	assert_int_equal(v, 4);
	/* Before Linux 4.13 the line is missing. */
	assert_int_equal(cg_parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\n", "oom_kill", &v), -ENOENT);

	assert_int_equal(cg_parse_flat_keyed("oom_kill 7", "oom_kill", &v), 0); /* no newline */
	assert_int_equal(v, 7);
	assert_int_equal(cg_parse_flat_keyed("oom_kill 18446744073709551615\n", "oom_kill", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(cg_parse_flat_keyed("oom_kill x\n", "oom_kill", &v), -EINVAL);
	assert_int_equal(cg_parse_flat_keyed("oom_kill -1\n", "oom_kill", &v), -EINVAL);
	assert_int_equal(cg_parse_flat_keyed("oom_kill 1 2\n", "oom_kill", &v), -EINVAL);
	assert_int_equal(cg_parse_flat_keyed("oom_kill \n", "oom_kill", &v), -EINVAL);
	assert_int_equal(cg_parse_flat_keyed("oom_kill 18446744073709551616\n", "oom_kill", &v), -EINVAL);
	assert_int_equal(cg_parse_flat_keyed("", "oom_kill", &v), -ENOENT);
	assert_int_equal(cg_parse_flat_keyed("oom_kill\n", "oom_kill", &v), -ENOENT);
	assert_int_equal(cg_parse_flat_keyed("x 1\n", "", &v), -EINVAL);

	assert_int_equal(cg_parse_value("123\n", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(cg_parse_value("max\n", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(cg_parse_value("9223372036854771712\n", &v), 0);
	assert_true(v == 9223372036854771712ull);
	assert_int_equal(cg_parse_value("-1\n", &v), -EINVAL);
	assert_int_equal(cg_parse_value("", &v), -EINVAL);
	assert_int_equal(cg_parse_value("12a\n", &v), -EINVAL);
	assert_int_equal(cg_parse_value("max 100000\n", &v), -EINVAL);
}

static void parse_cpu_stat(void **state)
{
	(void)state;
	uint64_t ns = 0;
	const char *v2 = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\n"
			 "nr_throttled 0\nthrottled_usec 0\n";
	assert_int_equal(cg_parse_cpu_stat(v2, &ns), 0);
	assert_int_equal(ns, 1234000);
	assert_int_equal(cg_parse_cpu_stat("user_usec 1\n", &ns), -ENOENT);
	assert_int_equal(cg_parse_cpu_stat("usage_usec 18446744073709551\n", &ns), 0);
	assert_int_equal(cg_parse_cpu_stat("usage_usec 18446744073709552\n", &ns), -EINVAL);
}

static void parse_memory_stat(void **state)
{
	(void)state;
	struct cg_stats st = { 0 };
	const char *v2 = "anon 1000\nfile 5000\nkernel 300\nshmem 0\nactive_anon 900\n"
			 "inactive_anon 100\nactive_file 2000\ninactive_file 3000\npgfault 77\n"
			 "pgmajfault 3\nworkingset_refault_file 5\n";
	assert_int_equal(cg_parse_memory_stat(v2, CG_V2, 10000, &st), 0);
	assert_int_equal(st.memory_usage_bytes, 10000);
	assert_int_equal(st.memory_rss_bytes, 1000);
	assert_int_equal(st.memory_working_set_bytes, 7000);
	assert_int_equal(st.page_faults, 77);
	assert_int_equal(st.major_page_faults, 3);
	/* The working set never goes below 0 (usage and memory.stat are not read atomically). */
	assert_int_equal(cg_parse_memory_stat(v2, CG_V2, 2000, &st), 0);
	assert_int_equal(st.memory_working_set_bytes, 0);

	/* v1: the hierarchical total_* keys win over the local ones, and total_rss_huge is not
	 * total_rss. (Excerpt of this machine's memory.stat.) */
	const char *v1 = "cache 9289728\nrss 5423104\nrss_huge 0\npgfault 88351\npgmajfault 0\n"
			 "inactive_file 0\nactive_file 204800\n"
			 "total_cache 180760576\ntotal_rss_huge 4096\ntotal_rss 23289856\n"
			 "total_pgfault 29415703\ntotal_pgmajfault 7498\ntotal_inactive_file 66899968\n";
	assert_int_equal(cg_parse_memory_stat(v1, CG_V1, 200000000, &st), 0);
	assert_int_equal(st.memory_rss_bytes, 23289856);
	assert_int_equal(st.memory_working_set_bytes, 200000000 - 66899968);
	assert_int_equal(st.page_faults, 29415703);
	assert_int_equal(st.major_page_faults, 7498);
	/* Without the total_* keys, the local ones. */
	assert_int_equal(cg_parse_memory_stat("rss 42\ninactive_file 8\npgfault 5\n", CG_V1, 100, &st), 0);
	assert_int_equal(st.memory_rss_bytes, 42);
	assert_int_equal(st.memory_working_set_bytes, 92);
	assert_int_equal(st.page_faults, 5);
	assert_int_equal(st.major_page_faults, 0);
	/* v2 does not take v1's keys. */
	assert_int_equal(cg_parse_memory_stat("rss 42\n", CG_V2, 100, &st), 0);
	assert_int_equal(st.memory_rss_bytes, 0);
	assert_int_equal(cg_parse_memory_stat("anon x\n", CG_V2, 100, &st), -EINVAL);
}

/* ---- fake trees ---- */

static void detect_fake(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX];
	struct cg_system sys;
	uk_error err = { 0 };

	/* Missing and empty roots: unusable, with a reason, not an error. */
	FMT(root, "%s/missing", dir);
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_NONE);
	assert_contains(sys.why, "does not exist");
	FMT(root, "%s/empty", dir);
	mkdirs(root);
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_NONE);
	assert_contains(sys.why, "no cgroup v2");

	/* v2 without the memory controller (a container that was not delegated it). */
	FMT(root, "%s/v2nomem", dir);
	mkdirs(root);
	put(root, "cgroup.controllers", "cpu io pids\n");
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_NONE);
	assert_contains(sys.why, "lacks the memory controller");

	/* v2; a trailing slash is dropped. */
	FMT(root, "%s/v2", dir);
	mkdirs(root);
	put(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	char slash[PATH_MAX + 1];
	FMT(slash, "%s/", root);
	assert_int_equal(cg_detect(&sys, slash, &err), 0);
	assert_int_equal(sys.version, CG_V2);
	assert_string_equal(sys.root, root);

	/* v1 with separate cpu and cpuacct, as on this machine. */
	FMT(root, "%s/v1", dir);
	char d[PATH_MAX];
	const char *kinds[] = { "memory", "cpu", "cpuacct", "pids" };
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		FMT(d, "%s/%s", root, kinds[i]);
		fake_v1_cgroup(d, kinds[i]);
	}
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_V1);
	FMT(d, "%s/cpuacct", root);
	assert_string_equal(sys.cpuacct, d);
	FMT(d, "%s/pids", root);
	assert_string_equal(sys.pids, d);
	assert_false(sys.cpuacct_is_cpu);

	/* v1 with cpu,cpuacct and the usual symlinks; no pids. */
	FMT(root, "%s/v1c", dir);
	FMT(d, "%s/memory", root);
	fake_v1_cgroup(d, "memory");
	FMT(d, "%s/cpu,cpuacct", root);
	fake_v1_cgroup(d, "cpu");
	fake_v1_cgroup(d, "cpuacct");
	FMT(d, "%s/cpu", root);
	assert_int_equal(symlink("cpu,cpuacct", d), 0);
	FMT(d, "%s/cpuacct", root);
	assert_int_equal(symlink("cpu,cpuacct", d), 0);
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_V1);
	assert_true(sys.cpuacct_is_cpu);
	assert_string_equal(sys.pids, "");
	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 0;
	assert_int_equal(cg_procs_files(&sys, "x", files, CG_PROCS_MAX, &n, &err), 0);
	assert_int_equal(n, 2);

	/* v1 without cpuacct: unusable, and no half-filled hierarchy fields. */
	FMT(root, "%s/v1nocpuacct", dir);
	FMT(d, "%s/memory", root);
	fake_v1_cgroup(d, "memory");
	FMT(d, "%s/cpu", root);
	fake_v1_cgroup(d, "cpu");
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_NONE);
	assert_contains(sys.why, "cpuacct");
	assert_string_equal(sys.memory, "");
}

static void none_unsupported(void **state)
{
	const char *dir = *state;
	struct cg_system sys;
	uk_error err = { 0 };
	assert_int_equal(cg_detect(&sys, dir, &err), 0);
	assert_int_equal(sys.version, CG_NONE);
	struct cg_limits l = { 0 };
	struct cg_stats st;
	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 7;
	assert_int_equal(cg_create(&sys, "unikd/unikd-x", &l, &err), -EOPNOTSUPP);
	assert_contains(err.msg, "cgroups are unavailable: no cgroup v2");
	assert_int_equal(cg_update(&sys, "unikd/unikd-x", &l, &err), -EOPNOTSUPP);
	assert_int_equal(cg_procs_files(&sys, "unikd/unikd-x", files, CG_PROCS_MAX, &n, &err), -EOPNOTSUPP);
	assert_int_equal(n, 0);
	assert_int_equal(cg_read_stats(&sys, "unikd/unikd-x", &st, &err), -EOPNOTSUPP);
	assert_int_equal(cg_remove(&sys, "unikd/unikd-x", &err), 0);
	/* The files for an empty list are no files. */
	assert_int_equal(uk_enter_cgroup_files((const char(*)[PATH_MAX])files, 0, NULL), 0);
}

static void fake_v2_setup_tree(const char *root)
{
	char d[PATH_MAX];
	mkdirs(root);
	put(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	put(root, "cgroup.subtree_control", "");
	put(root, "cgroup.procs", "1\n");
	/* kubelet already set up kubepods; burstable delegates nothing yet; pod1 only memory. */
	FMT(d, "%s/kubepods", root);
	fake_v2_cgroup(d, "cpu memory\n");
	FMT(d, "%s/kubepods/burstable", root);
	fake_v2_cgroup(d, "");
	FMT(d, "%s/kubepods/burstable/pod1", root);
	fake_v2_cgroup(d, "memory\n");
	FMT(d, "%s/kubepods/burstable/pod1/unikd-vm1", root);
	fake_v2_cgroup(d, "");
}

static void fake_v2_lifecycle(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX], leaf[PATH_MAX], d[PATH_MAX], path[CG_PATH_MAX];
	struct cg_system sys;
	uk_error err = { 0 };
	FMT(root, "%s/v2", dir);
	fake_v2_setup_tree(root);
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_V2);
	assert_int_equal(cg_path_for("/kubepods/burstable/pod1", "vm1", path, sizeof(path), &err), 0);
	FMT(leaf, "%s/%s", root, path);

	struct cg_limits l = { .memory_bytes = 512 * MiB, .cpu_quota_us = 150000,
			       .cpu_period_us = 100000, .cpu_shares = 1536 };
	if (cg_create(&sys, path, &l, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(get(leaf, "memory.max"), "536870912");
	assert_string_equal(get(leaf, "cpu.max"), "150000 100000");
	assert_string_equal(get(leaf, "cpu.weight"), "59");
	/* Controllers enabled from the root down, only where missing; never in the leaf. */
	assert_string_equal(get(root, "cgroup.subtree_control"), "+memory +cpu");
	FMT(d, "%s/kubepods", root);
	assert_string_equal(get(d, "cgroup.subtree_control"), "cpu memory");
	FMT(d, "%s/kubepods/burstable", root);
	assert_string_equal(get(d, "cgroup.subtree_control"), "+memory +cpu");
	FMT(d, "%s/kubepods/burstable/pod1", root);
	assert_string_equal(get(d, "cgroup.subtree_control"), "+cpu");
	assert_string_equal(get(leaf, "cgroup.subtree_control"), "");

	/* Creating again is fine (a retry after a failed start). */
	assert_int_equal(cg_create(&sys, path, &l, &err), 0);

	/* None: "max"; default period and weight. */
	struct cg_limits none = { 0 };
	assert_int_equal(cg_update(&sys, path, &none, &err), 0);
	assert_string_equal(get(leaf, "memory.max"), "max");
	assert_string_equal(get(leaf, "cpu.max"), "max 100000");
	assert_string_equal(get(leaf, "cpu.weight"), "100");
	struct cg_limits l2 = { .memory_bytes = 1024 * MiB, .cpu_quota_us = 25000, .cpu_period_us = 50000,
				.cpu_shares = 2 };
	assert_int_equal(cg_update(&sys, path, &l2, &err), 0);
	assert_string_equal(get(leaf, "memory.max"), "1073741824");
	assert_string_equal(get(leaf, "cpu.max"), "25000 50000");
	assert_string_equal(get(leaf, "cpu.weight"), "1");

	/* Values the kernel would refuse are refused first, naming the field; nothing changes. */
	struct cg_limits badq = { .cpu_quota_us = 999 };
	assert_int_equal(cg_update(&sys, path, &badq, &err), -EINVAL);
	assert_contains(err.msg, "cpu_quota_us 999");
	struct cg_limits badmax = { .cpu_quota_us = CG_CPU_QUOTA_MAX + 1 };
	assert_int_equal(cg_update(&sys, path, &badmax, &err), -EINVAL);
	assert_contains(err.msg, "above the kernel's maximum");
	struct cg_limits badp = { .cpu_period_us = 2000000 };
	assert_int_equal(cg_update(&sys, path, &badp, &err), -EINVAL);
	assert_contains(err.msg, "cpu_period_us 2000000");
	assert_int_equal(cg_create(&sys, "unikd/unikd-new", &badp, &err), -EINVAL);
	FMT(d, "%s/unikd", root);
	assert_false(exists(d));
	assert_string_equal(get(leaf, "cpu.max"), "25000 50000");

	/* Stats. */
	put(leaf, "memory.current", "10485760\n");
	put(leaf, "memory.stat", "anon 4194304\nfile 3145728\ninactive_file 2097152\npgfault 500\npgmajfault 7\n");
	put(leaf, "cpu.stat", "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n");
	put(leaf, "memory.events", "low 0\nhigh 0\nmax 9\noom 3\noom_kill 2\noom_group_kill 0\n");
	struct cg_stats st;
	if (cg_read_stats(&sys, path, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(st.cpu_usage_ns, 250000000ull);
	assert_int_equal(st.memory_usage_bytes, 10485760);
	assert_int_equal(st.memory_working_set_bytes, 10485760 - 2097152);
	assert_int_equal(st.memory_rss_bytes, 4194304);
	assert_int_equal(st.page_faults, 500);
	assert_int_equal(st.major_page_faults, 7);
	assert_int_equal(st.oom_kills, 2);
	assert_true(st.oom_kills_known);
	assert_int_equal(st.memory_limit_bytes, 1024 * MiB);
	put(leaf, "memory.max", "max\n");
	assert_int_equal(cg_read_stats(&sys, path, &st, &err), 0);
	assert_int_equal(st.memory_limit_bytes, 0);
	/* A malformed file is an error that names it. */
	put(leaf, "memory.events", "oom_kill lots\n");
	assert_int_equal(cg_read_stats(&sys, path, &st, &err), -EINVAL);
	assert_contains(err.msg, "memory.events");

	/* Joining: one file on v2. */
	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 0;
	assert_int_equal(cg_procs_files(&sys, path, files, CG_PROCS_MAX, &n, &err), 0);
	assert_int_equal(n, 1);
	FMT(d, "%s/cgroup.procs", leaf);
	assert_string_equal(files[0], d);

	/* Removal: the leaf only; then again (idempotent); then update finds nothing. */
	fake_unlink_files(leaf);
	if (cg_remove(&sys, path, &err) < 0)
		fail_msg("%s", err.msg);
	assert_false(exists(leaf));
	FMT(d, "%s/kubepods/burstable/pod1", root);
	assert_true(exists(d));
	assert_int_equal(cg_remove(&sys, path, &err), 0);
	assert_int_equal(cg_update(&sys, path, &l, &err), -ENOENT);
	assert_contains(err.msg, leaf);
	assert_int_equal(cg_read_stats(&sys, path, &st, &err), -ENOENT);
}

static void fake_v2_failures(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX], d[PATH_MAX];
	struct cg_system sys;
	uk_error err = { 0 };
	struct cg_limits l = { .memory_bytes = 64 * MiB };
	FMT(root, "%s/v2", dir);
	fake_v2_setup_tree(root);
	assert_int_equal(cg_detect(&sys, root, &err), 0);

	/* A parent that was not given cpu cannot pass it on. */
	FMT(d, "%s/kubepods/burstable/pod1", root);
	put(d, "cgroup.controllers", "memory pids\n");
	put(d, "cgroup.subtree_control", "memory\n");
	assert_int_equal(cg_create(&sys, "kubepods/burstable/pod1/unikd-vm1", &l, &err), -EOPNOTSUPP);
	assert_contains(err.msg, "pod1/cgroup.controllers");
	assert_contains(err.msg, "lacks cpu");

	/* Production code never creates control files: on a leaf without them (not a real
	 * cgroup) the limit write fails, naming the file, and the new leaf is removed again. */
	FMT(d, "%s/bare", root);
	fake_v2_cgroup(d, "");
	assert_int_equal(cg_create(&sys, "bare/unikd-vm2", &l, &err), -ENOENT);
	assert_contains(err.msg, "bare/unikd-vm2/memory.max");
	FMT(d, "%s/bare/unikd-vm2", root);
	assert_false(exists(d));
	FMT(d, "%s/bare", root);
	assert_true(exists(d));

	/* Paths that cg_path_for never makes are refused. */
	const char *bad[] = { "", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", "a\nb", "a b" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (cg_create(&sys, bad[i], &l, &err) != -EINVAL)
			fail_msg("path \"%s\" accepted", bad[i]);
		assert_int_equal(cg_remove(&sys, bad[i], &err), -EINVAL);
	}
}

static void fake_v1_lifecycle(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX], path[CG_PATH_MAX];
	static const char *const kinds[] = { "memory", "cpu", "cpuacct", "pids" };
	char leaf[4][PATH_MAX];
	struct cg_system sys;
	uk_error err = { 0 };
	FMT(root, "%s/v1", dir);
	/* An empty cgroup_parent: the default parent, which cg_create makes (v1 needs no
	 * parent files). The fake kernel provides the leaf's files. */
	assert_int_equal(cg_path_for("", "vm1", path, sizeof(path), &err), 0);
	assert_string_equal(path, "unikd/unikd-vm1");
	for (size_t i = 0; i < 4; i++) {
		char d[PATH_MAX];
		FMT(d, "%s/%s", root, kinds[i]);
		fake_v1_cgroup(d, kinds[i]);
		FMT(leaf[i], "%s/%s", d, path);
	}
	assert_int_equal(cg_detect(&sys, root, &err), 0);
	assert_int_equal(sys.version, CG_V1);
	for (size_t i = 0; i < 4; i++)
		fake_v1_cgroup(leaf[i], kinds[i]);

	struct cg_limits l = { .memory_bytes = 256 * MiB, .cpu_quota_us = 20000, .cpu_period_us = 10000,
			       .cpu_shares = 100 };
	if (cg_create(&sys, path, &l, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(get(leaf[0], "memory.limit_in_bytes"), "268435456");
	assert_string_equal(get(leaf[1], "cpu.cfs_quota_us"), "20000");
	assert_string_equal(get(leaf[1], "cpu.cfs_period_us"), "10000");
	assert_string_equal(get(leaf[1], "cpu.shares"), "100");

	struct cg_limits none = { 0 };
	assert_int_equal(cg_update(&sys, path, &none, &err), 0);
	assert_string_equal(get(leaf[0], "memory.limit_in_bytes"), "-1");
	assert_string_equal(get(leaf[1], "cpu.cfs_quota_us"), "-1");
	assert_string_equal(get(leaf[1], "cpu.cfs_period_us"), "100000");
	assert_string_equal(get(leaf[1], "cpu.shares"), "1024");
	struct cg_limits lo = { .cpu_shares = 1 }, hi = { .cpu_shares = 1000000 };
	assert_int_equal(cg_update(&sys, path, &lo, &err), 0);
	assert_string_equal(get(leaf[1], "cpu.shares"), "2");
	assert_int_equal(cg_update(&sys, path, &hi, &err), 0);
	assert_string_equal(get(leaf[1], "cpu.shares"), "262144");

	/* Stats: no limit shows as the page counter maximum; oom_kill from oom_control. */
	put(leaf[2], "cpuacct.usage", "123456789\n");
	put(leaf[0], "memory.usage_in_bytes", "50000000\n");
	put(leaf[0], "memory.limit_in_bytes", "9223372036854771712\n");
	put(leaf[0], "memory.stat", "rss 1\ninactive_file 1\ntotal_rss 30000000\ntotal_inactive_file 15000000\n"
				    "total_pgfault 900\ntotal_pgmajfault 9\n");
	put(leaf[0], "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
	struct cg_stats st;
	if (cg_read_stats(&sys, path, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(st.cpu_usage_ns, 123456789);
	assert_int_equal(st.memory_usage_bytes, 50000000);
	assert_int_equal(st.memory_working_set_bytes, 35000000);
	assert_int_equal(st.memory_rss_bytes, 30000000);
	assert_int_equal(st.page_faults, 900);
	assert_int_equal(st.major_page_faults, 9);
	assert_int_equal(st.oom_kills, 3);
	assert_true(st.oom_kills_known);
	assert_int_equal(st.memory_limit_bytes, 0);
	/* Old kernels: no oom_kill line; the count is unknown, not guessed from failcnt. */
	put(leaf[0], "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
	put(leaf[0], "memory.failcnt", "12345\n");
	put(leaf[0], "memory.limit_in_bytes", "268435456\n");
	assert_int_equal(cg_read_stats(&sys, path, &st, &err), 0);
	assert_int_equal(st.oom_kills, 0);
	assert_false(st.oom_kills_known);
	assert_int_equal(st.memory_limit_bytes, 256 * MiB);

	/* Joining: one file per hierarchy, written by a forked child with its own pid. */
	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 0;
	assert_int_equal(cg_procs_files(&sys, path, files, 3, &n, &err), -ENOSPC);
	assert_int_equal(cg_procs_files(&sys, path, files, CG_PROCS_MAX, &n, &err), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < 4; i++) {
		char want[PATH_MAX + 16];
		FMT(want, "%s/cgroup.procs", leaf[i]);
		assert_string_equal(files[i], want);
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(uk_enter_cgroup_files((const char(*)[PATH_MAX])files, n, NULL) < 0 ? 1 : 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char want[32];
	FMT(want, "%d", (int)pid);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(get(leaf[i], "cgroup.procs"), want);
	/* A failure returns the errno of the first file that failed. */
	char missing[1][PATH_MAX];
	FMT(missing[0], "%s/nope/cgroup.procs", root);
	assert_int_equal(uk_enter_cgroup_files((const char(*)[PATH_MAX])missing, 1, NULL), -ENOENT);

	/* Removal goes on in the other hierarchies when one fails, and reports that one. */
	fake_unlink_files(leaf[0]);
	fake_unlink_files(leaf[2]);
	fake_unlink_files(leaf[3]);
	assert_int_equal(cg_remove(&sys, path, &err), -ENOTEMPTY);
	assert_contains(err.msg, leaf[1]);
	assert_false(exists(leaf[0]));
	assert_true(exists(leaf[1]));
	assert_false(exists(leaf[2]));
	assert_false(exists(leaf[3]));
	fake_unlink_files(leaf[1]);
	assert_int_equal(cg_remove(&sys, path, &err), 0);
	assert_false(exists(leaf[1]));
	assert_int_equal(cg_remove(&sys, path, &err), 0);
	char parent[PATH_MAX];
	FMT(parent, "%s/memory/unikd", root);
	assert_true(exists(parent));
}

/* ---- the machine's real cgroups ---- */

struct real {
	struct cg_system sys;
	char parent[64];
	char path[CG_PATH_MAX];
	pid_t child;
	int pipe_r;
};

static size_t real_dirs(const struct cg_system *s, const char *out[CG_PROCS_MAX])
{
	size_t n = 0;
	if (s->version == CG_V2) {
		out[n++] = s->root;
	} else if (s->version == CG_V1) {
		out[n++] = s->memory;
		out[n++] = s->cpu;
		if (!s->cpuacct_is_cpu)
			out[n++] = s->cpuacct;
		if (s->pids[0])
			out[n++] = s->pids;
	}
	return n;
}

static int real_setup(void **state)
{
	struct real *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -1;
	rt->child = -1;
	rt->pipe_r = -1;
	*state = rt;
	return 0;
}

/* Runs even when an assertion failed: kill and reap the child, remove what was made. */
static int real_teardown(void **state)
{
	struct real *rt = *state;
	if (rt->child > 0) {
		kill(rt->child, SIGKILL);
		waitpid(rt->child, NULL, 0);
	}
	safe_close(rt->pipe_r);
	if (rt->path[0]) {
		for (int i = 0; i < 50 && cg_remove(&rt->sys, rt->path, NULL) == -EBUSY; i++)
			usleep(20000);
	}
	if (rt->parent[0]) {
		const char *dirs[CG_PROCS_MAX];
		size_t n = real_dirs(&rt->sys, dirs);
		for (size_t i = 0; i < n; i++) {
			char d[PATH_MAX];
			FMT(d, "%s/%s", dirs[i], rt->parent);
			if (rmdir(d) < 0 && errno != ENOENT)
				fprintf(stderr, "teardown: rmdir %s: %s\n", d, strerror(errno));
		}
	}
	free(rt);
	return 0;
}

/* Detect, pick a unique parent at the top of each hierarchy and create the VM's cgroup. */
static void real_create(struct real *rt, const struct cg_limits *l)
{
	if (geteuid() != 0) {
		print_message("skipped: not root, cannot create cgroups\n");
		skip();
	}
	uk_error err = { 0 };
	assert_int_equal(cg_detect(&rt->sys, NULL, &err), 0);
	if (rt->sys.version == CG_NONE) {
		print_message("skipped: no usable cgroups: %s\n", rt->sys.why);
		skip();
	}
	char rnd[65];
	assert_int_equal(uk_random_hex_id(rnd), 0);
	snprintf(rt->parent, sizeof(rt->parent), "uk-test-%d-%.8s", (int)getpid(), rnd);
	char parent[80];
	FMT(parent, "/%s", rt->parent);
	assert_int_equal(cg_path_for(parent, "vm1", rt->path, sizeof(rt->path), &err), 0);
	int r = cg_create(&rt->sys, rt->path, l, &err);
	if (r == -EROFS || r == -EACCES || r == -EPERM ||
	    (r == -EBUSY && rt->sys.version == CG_V2)) {
		print_message("skipped: cgroups are not writable here: %s\n", err.msg);
		rt->path[0] = '\0';
		skip();
	}
	if (r < 0)
		fail_msg("cg_create: %s", err.msg);
}

static const char *real_leaf_file(const struct real *rt, const char *dir, const char *file)
{
	char d[PATH_MAX];
	FMT(d, "%s/%s", dir, rt->path);
	return get(d, file);
}

/* One int from the child, or fail after timeout_ms. */
static int read_int(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1)
		fail_msg("no word from the child in %d ms", timeout_ms);
	int v;
	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		fail_msg("the child went away");
	return v;
}

static void child_say(int fd, int v)
{
	if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(3);
}

static bool procs_has(const char *file, pid_t pid)
{
	char *data = NULL;
	if (uk_read_file(file, 1 << 20, &data, NULL, NULL) < 0)
		return false;
	bool found = false;
	for (char *s = data, *save = NULL, *tok; (tok = strtok_r(s, "\n", &save)); s = NULL)
		if (atoi(tok) == pid)
			found = true;
	free(data);
	return found;
}

#define BUSY_MS 400
#define TOUCH_BYTES (16 * MiB)

static void real_lifecycle(void **state)
{
	struct real *rt = *state;
	struct cg_limits l = { .memory_bytes = 256 * MiB, .cpu_quota_us = 50000, .cpu_period_us = 100000,
			       .cpu_shares = 512 };
	real_create(rt, &l);
	bool v2 = rt->sys.version == CG_V2;
	uk_error err = { 0 };

	/* The kernel took the limits. */
	if (v2) {
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "memory.max"), "268435456");
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "cpu.max"), "50000 100000");
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "cpu.weight"), "20");
	} else {
		assert_string_equal(real_leaf_file(rt, rt->sys.memory, "memory.limit_in_bytes"), "268435456");
		assert_string_equal(real_leaf_file(rt, rt->sys.cpu, "cpu.cfs_quota_us"), "50000");
		assert_string_equal(real_leaf_file(rt, rt->sys.cpu, "cpu.cfs_period_us"), "100000");
		assert_string_equal(real_leaf_file(rt, rt->sys.cpu, "cpu.shares"), "512");
	}

	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 0;
	assert_int_equal(cg_procs_files(&rt->sys, rt->path, files, CG_PROCS_MAX, &n, &err), 0);
	assert_true(n >= 1);

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	uint64_t t_fork = uk_now_mono_ns();
	rt->child = fork();
	assert_true(rt->child >= 0);
	if (rt->child == 0) {
		/* Only what a child between fork and execve would do, then load. */
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(30);
		int r = uk_enter_cgroup_files((const char(*)[PATH_MAX])files, n, NULL);
		if (r < 0) {
			child_say(p[1], r);
			_exit(1);
		}
		char *mem = mmap(NULL, TOUCH_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			_exit(2);
		for (size_t i = 0; i < TOUCH_BYTES; i += 4096)
			mem[i] = 1;
		child_say(p[1], 0);
		uint64_t end = uk_now_mono_ns() + BUSY_MS * 1000000ull;
		volatile uint64_t spin = 0;
		while (uk_now_mono_ns() < end)
			spin++;
		child_say(p[1], 1);
		for (;;)
			pause();
	}
	close(p[1]);
	rt->pipe_r = p[0];
	assert_int_equal(read_int(rt->pipe_r, 10000), 0);
	for (size_t i = 0; i < n; i++)
		if (!procs_has(files[i], rt->child))
			fail_msg("pid %d is not in %s", (int)rt->child, files[i]);

	struct cg_stats st0, st1;
	if (cg_read_stats(&rt->sys, rt->path, &st0, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(read_int(rt->pipe_r, 10000), 1);
	uint64_t wall = uk_now_mono_ns() - t_fork;
	if (cg_read_stats(&rt->sys, rt->path, &st1, &err) < 0)
		fail_msg("%s", err.msg);
	print_message("cpu %.1f ms over %.1f ms wall (quota 50%%), memory %.1f MiB (rss %.1f, working set "
		      "%.1f), faults %" PRIu64 "\n",
		      st1.cpu_usage_ns / 1e6, wall / 1e6, st1.memory_usage_bytes / (double)MiB,
		      st1.memory_rss_bytes / (double)MiB, st1.memory_working_set_bytes / (double)MiB,
		      st1.page_faults);
	/* CPU: counted, and held to the 50% quota: at most 50 ms per 100 ms period, and a
	 * window not aligned to periods holds one more (unthrottled it would be ~wall). */
	assert_true(st1.cpu_usage_ns >= st0.cpu_usage_ns + 50 * 1000000ull);
	assert_true(st1.cpu_usage_ns <= wall / 2 + 100 * 1000000ull);
	/* Memory: the touched pages are charged here, anonymous, within the limit. */
	assert_true(st1.memory_usage_bytes >= TOUCH_BYTES / 2);
	assert_true(st1.memory_usage_bytes <= 256 * MiB);
	assert_true(st1.memory_rss_bytes >= TOUCH_BYTES / 2);
	assert_true(st1.memory_working_set_bytes >= TOUCH_BYTES / 2);
	assert_true(st1.memory_working_set_bytes <= st1.memory_usage_bytes);
	assert_true(st1.page_faults > 0);
	assert_int_equal(st1.memory_limit_bytes, 256 * MiB);
	assert_true(st1.oom_kills_known);
	assert_int_equal(st1.oom_kills, 0);

	/* A cgroup with a live process stays, in every hierarchy. */
	assert_int_equal(cg_remove(&rt->sys, rt->path, &err), -EBUSY);
	assert_contains(err.msg, "processes");

	/* Updates on a running cgroup: lift everything, then a new memory limit. */
	struct cg_limits none = { 0 };
	if (cg_update(&rt->sys, rt->path, &none, &err) < 0)
		fail_msg("%s", err.msg);
	if (v2) {
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "memory.max"), "max");
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "cpu.max"), "max 100000");
		assert_string_equal(real_leaf_file(rt, rt->sys.root, "cpu.weight"), "100");
	} else {
		uint64_t v;
		assert_int_equal(cg_parse_value(real_leaf_file(rt, rt->sys.memory, "memory.limit_in_bytes"), &v), 0);
		assert_true(v >= (1ull << 62));
		assert_string_equal(real_leaf_file(rt, rt->sys.cpu, "cpu.cfs_quota_us"), "-1");
		assert_string_equal(real_leaf_file(rt, rt->sys.cpu, "cpu.shares"), "1024");
	}
	struct cg_limits l2 = { .memory_bytes = 128 * MiB, .cpu_quota_us = 20000, .cpu_period_us = 40000 };
	if (cg_update(&rt->sys, rt->path, &l2, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(cg_read_stats(&rt->sys, rt->path, &st1, &err), 0);
	assert_int_equal(st1.memory_limit_bytes, 128 * MiB);
	assert_string_equal(real_leaf_file(rt, v2 ? rt->sys.root : rt->sys.cpu,
					   v2 ? "cpu.max" : "cpu.cfs_quota_us"),
			    v2 ? "20000 40000" : "20000");

	/* Gone with its process; gone everywhere; removing again is fine. */
	kill(rt->child, SIGKILL);
	assert_int_equal(waitpid(rt->child, NULL, 0), rt->child);
	rt->child = -1;
	if (cg_remove(&rt->sys, rt->path, &err) < 0)
		fail_msg("%s", err.msg);
	const char *dirs[CG_PROCS_MAX];
	size_t nd = real_dirs(&rt->sys, dirs);
	for (size_t i = 0; i < nd; i++) {
		char d[PATH_MAX];
		FMT(d, "%s/%s", dirs[i], rt->path);
		if (exists(d))
			fail_msg("%s is still there", d);
		FMT(d, "%s/%s", dirs[i], rt->parent);
		assert_true(exists(d)); /* the parent is not ours to remove */
	}
	assert_int_equal(cg_remove(&rt->sys, rt->path, &err), 0);
}

static void real_oom_kill(void **state)
{
	struct real *rt = *state;
	struct cg_limits l = { .memory_bytes = 32 * MiB };
	real_create(rt, &l);
	uk_error err = { 0 };
	char files[CG_PROCS_MAX][PATH_MAX];
	size_t n = 0;
	assert_int_equal(cg_procs_files(&rt->sys, rt->path, files, CG_PROCS_MAX, &n, &err), 0);

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	rt->child = fork();
	assert_true(rt->child >= 0);
	if (rt->child == 0) {
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(20); /* a child that is never OOM-killed dies of SIGALRM: the test fails */
		int r = uk_enter_cgroup_files((const char(*)[PATH_MAX])files, n, NULL);
		child_say(p[1], r);
		if (r < 0)
			_exit(1);
		size_t size = 256 * MiB;
		char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (mem == MAP_FAILED)
			_exit(2);
		for (size_t i = 0; i < size; i += 4096)
			mem[i] = 1;
		_exit(0);
	}
	close(p[1]);
	rt->pipe_r = p[0];
	assert_int_equal(read_int(rt->pipe_r, 10000), 0);
	int status;
	assert_int_equal(waitpid(rt->child, &status, 0), rt->child);
	rt->child = -1;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("the child was not OOM-killed: status 0x%x", status);

	/* Read before removal: the count goes with the cgroup. */
	struct cg_stats st;
	if (cg_read_stats(&rt->sys, rt->path, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(st.oom_kills_known);
	assert_true(st.oom_kills >= 1);
	assert_int_equal(st.memory_limit_bytes, 32 * MiB);
	print_message("oom_kills %" PRIu64 " after a 256 MiB touch under a 32 MiB limit\n", st.oom_kills);
	if (cg_remove(&rt->sys, rt->path, &err) < 0)
		fail_msg("%s", err.msg);
}

/* A cgroup2 mount that has no controllers (this machine's hybrid /sys/fs/cgroup/unified):
 * unusable, said so, read from the kernel's own cgroup.controllers. */
static void real_v2_without_controllers(void **state)
{
	(void)state;
	const char *unified = "/sys/fs/cgroup/unified";
	if (!exists("/sys/fs/cgroup/unified/cgroup.controllers")) {
		print_message("skipped: no hybrid cgroup2 mount at %s\n", unified);
		skip();
	}
	struct cg_system sys;
	uk_error err = { 0 };
	assert_int_equal(cg_detect(&sys, unified, &err), 0);
	if (sys.version == CG_V2) {
		print_message("skipped: %s has memory and cpu\n", unified);
		skip();
	}
	assert_int_equal(sys.version, CG_NONE);
	assert_contains(sys.why, "lacks the");
	print_message("%s\n", sys.why);
}

/* /proc/self/cgroup as the kernel writes it, and hostile versions of it. */
static void own_procs_file(void **state)
{
	(void)state;
	struct cg_system v1 = { .version = CG_V1 }, v2 = { .version = CG_V2 }, none = { .version = CG_NONE };
	strcpy(v1.memory, "/sys/fs/cgroup/memory");
	strcpy(v2.root, "/sys/fs/cgroup");
	char out[PATH_MAX];
	const char *hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/83a6\n2:cpuacct:/\n0::/\n";
	assert_int_equal(cg_own_procs_file(&v1, hybrid, out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup/memory/process_api/83a6/cgroup.procs");
	/* the root: no double slash */
	assert_int_equal(cg_own_procs_file(&v2, hybrid, out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup/cgroup.procs");
	assert_int_equal(cg_own_procs_file(&v2, "0::/system.slice/unikd.service\n", out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup/system.slice/unikd.service/cgroup.procs");
	/* memory among others in one hierarchy, and no trailing newline */
	assert_int_equal(cg_own_procs_file(&v1, "3:cpu,memory:/a", out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup/memory/a/cgroup.procs");
	/* "memoryx" is not memory; "10::/x" is not v2's line */
	assert_int_equal(cg_own_procs_file(&v1, "3:memoryx:/a\n", out, sizeof(out)), -ENOENT);
	assert_int_equal(cg_own_procs_file(&v2, "10::/x\n", out, sizeof(out)), -ENOENT);
	assert_int_equal(cg_own_procs_file(&v1, "", out, sizeof(out)), -ENOENT);
	assert_int_equal(cg_own_procs_file(&v1, "garbage", out, sizeof(out)), -ENOENT);
	assert_int_equal(cg_own_procs_file(&v1, NULL, out, sizeof(out)), -ENOENT);
	assert_int_equal(cg_own_procs_file(&none, hybrid, out, sizeof(out)), -ENOENT);
	/* never a way out of the mount, nor a relative path or control bytes */
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/a/../../etc\n", out, sizeof(out)), -EINVAL);
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/..\n", out, sizeof(out)), -EINVAL);
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/a/.\n", out, sizeof(out)), -EINVAL);
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:a\n", out, sizeof(out)), -EINVAL);
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:\n", out, sizeof(out)), -EINVAL);
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/a\tb\n", out, sizeof(out)), -EINVAL);
	/* "..." and ".a" are names, not steps */
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/.../.a\n", out, sizeof(out)), 0);
	/* too long for the buffer */
	char small[32];
	assert_int_equal(cg_own_procs_file(&v1, "4:memory:/a-long-cgroup-name\n", small, sizeof(small)), -ENAMETOOLONG);
}

/* The primer's write puts us where we already are: nothing moves. */
static void real_prime_moves_nothing(void **state)
{
	(void)state;
	struct cg_system sys;
	uk_error err = { 0 };
	assert_int_equal(cg_detect(&sys, NULL, &err), 0);
	if (sys.version == CG_NONE) {
		print_message("skipped: no usable cgroups here: %s\n", sys.why);
		skip();
	}
	char *before = NULL, *after = NULL, file[PATH_MAX], pid[24];
	assert_int_equal(uk_read_file("/proc/self/cgroup", 65536, &before, NULL, NULL), 0);
	assert_int_equal(cg_own_procs_file(&sys, before, file, sizeof(file)), 0);
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	assert_int_equal(write(fd, pid, (size_t)n), n);
	close(fd);
	cg_prime(&sys); /* the same from the primer's thread; must not disturb us either */
	cg_prime(&sys);
	assert_int_equal(uk_read_file("/proc/self/cgroup", 65536, &after, NULL, NULL), 0);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(path_for_table),
		cmocka_unit_test(parent_check),
		cmocka_unit_test(shares_to_weight),
		cmocka_unit_test(parse_flat_keyed),
		cmocka_unit_test(parse_cpu_stat),
		cmocka_unit_test(parse_memory_stat),
		cmocka_unit_test_setup_teardown(detect_fake, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(none_unsupported, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(fake_v2_lifecycle, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(fake_v2_failures, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(fake_v1_lifecycle, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(real_lifecycle, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_oom_kill, real_setup, real_teardown),
		cmocka_unit_test(real_v2_without_controllers),
		cmocka_unit_test(own_procs_file),
		cmocka_unit_test(real_prime_moves_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
