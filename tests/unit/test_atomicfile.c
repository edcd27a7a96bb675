/* test_atomicfile.c: write-temp-then-rename leaves the old file or the new, nothing else. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "atomicfile.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kaprobe-test-af-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static size_t entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."));
	closedir(d);
	return n;
}

static void read_back(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_commit_replaces_and_leaves_no_temp(void **state)
{
	struct atomicfile af;
	struct stat st;
	char path[128], buf[64];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	f = atomicfile_open(&af, path, 0644);
	assert_non_null(f);
	fputs("first\n", f);
	assert_int_equal(atomicfile_commit(&af), 0);
	f = atomicfile_open(&af, path, 0644);
	fputs("second\n", f);
	read_back(path, buf, sizeof(buf));
	assert_string_equal(buf, "first\n"); /* not replaced before the commit */
	assert_int_equal(entries(), 2);      /* the file and the temporary one */
	assert_int_equal(atomicfile_commit(&af), 0);
	read_back(path, buf, sizeof(buf));
	assert_string_equal(buf, "second\n");
	assert_int_equal(entries(), 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_abort_keeps_the_old_file(void **state)
{
	struct atomicfile af;
	char path[128], buf[64];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.prom", dir);
	f = atomicfile_open(&af, path, 0600);
	fputs("old\n", f);
	assert_int_equal(atomicfile_commit(&af), 0);
	f = atomicfile_open(&af, path, 0600);
	fputs("half", f);
	atomicfile_abort(&af);
	read_back(path, buf, sizeof(buf));
	assert_string_equal(buf, "old\n");
	assert_int_equal(entries(), 2); /* m.prom and the earlier state.json */
}

static void test_missing_directory_fails_with_errno(void **state)
{
	struct atomicfile af;
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/no/such/dir/state.json", dir);
	errno = 0;
	assert_null(atomicfile_open(&af, path, 0644));
	assert_int_equal(errno, ENOENT);
}

/* A file written in steps with writeback in between (past the writeback threshold). */
static void test_written_in_steps(void **state)
{
	char path[128];
	struct atomicfile af;
	struct stat st;
	FILE *f;
	size_t before = entries();
	int i, j;

	(void)state;
	snprintf(path, sizeof(path), "%s/steps", dir);
	f = atomicfile_open(&af, path, 0644);
	assert_non_null(f);
	for (i = 0; i < 40; i++) {
		for (j = 0; j < 1000; j++)
			fputs("0123456789012345678901234567890123456789012345678901234567890123\n",
			      f);
		assert_int_equal(atomicfile_writeback(&af), 0);
	}
	assert_true(af.synced > 0); /* writeback was started along the way */
	assert_int_equal(atomicfile_commit(&af), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 40 * 1000 * 65);
	assert_int_equal(entries(), before + 1); /* no temporary file left */
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commit_replaces_and_leaves_no_temp),
	    cmocka_unit_test(test_abort_keeps_the_old_file),
	    cmocka_unit_test(test_missing_directory_fails_with_errno),
	    cmocka_unit_test(test_written_in_steps),
	};

	return cmocka_run_group_tests_name("atomicfile", tests, setup, teardown);
}
