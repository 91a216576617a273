/* Path checks and opens beneath a volume root: what may come from outside, and that
 * every kind of open the daemon asks for (O_PATH included) works beneath the root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/pathsafe.h"

struct tree {
	char dir[64];
	int root_fd;
};

/* A scratch tree: f (a file), d/g, up -> ../ (an escaping symlink), ln -> f. */
static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));
	char p[128];
	int fd;

	assert_non_null(t);
	snprintf(t->dir, sizeof(t->dir), "/tmp/test_pathsafe.XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(p, sizeof(p), "%s/f", t->dir);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	close(fd);
	snprintf(p, sizeof(p), "%s/d", t->dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/d/g", t->dir);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/up", t->dir);
	assert_int_equal(symlink("..", p), 0);
	snprintf(p, sizeof(p), "%s/ln", t->dir);
	assert_int_equal(symlink("f", p), 0);
	t->root_fd = open(t->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(t->root_fd >= 0);
	*state = t;
	return 0;
}

/* valgrind (3.19) does not know openat2 and fails it with ENOSYS: those runs can only
 * check the path checks. */
static void need_openat2(struct tree *t)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC};
	int fd = (int)syscall(SYS_openat2, t->root_fd, ".", &how, sizeof(how));

	if (fd < 0 && errno == ENOSYS)
		skip();
	if (fd >= 0)
		close(fd);
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;
	char cmd[128];

	close(t->root_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
	free(t);
	return 0;
}

static void test_check_absolute(void **state)
{
	char err[128];

	(void)state;
	assert_int_equal(path_check_absolute("/a/b", 4, err, sizeof(err)), 0);
	assert_int_equal(path_check_absolute("a/b", 3, err, sizeof(err)), -1);
	assert_int_equal(path_check_absolute("/a/../b", 7, err, sizeof(err)), -1);
	assert_int_equal(path_check_absolute("/a/./b", 6, err, sizeof(err)), -1);
	/* a NUL inside what the sender said was the length */
	assert_int_equal(path_check_absolute("/a\0b", 4, err, sizeof(err)), -1);
	assert_int_equal(path_check_absolute("", 0, err, sizeof(err)), -1);
}

static void test_check_relative(void **state)
{
	char err[128];

	(void)state;
	assert_int_equal(path_check_relative("", err, sizeof(err)), 0);
	assert_int_equal(path_check_relative("a/b", err, sizeof(err)), 0);
	assert_int_equal(path_check_relative("/a", err, sizeof(err)), -1);
	assert_int_equal(path_check_relative("a//b", err, sizeof(err)), -1);
	assert_int_equal(path_check_relative("a/..", err, sizeof(err)), -1);
	assert_int_equal(path_check_relative("./a", err, sizeof(err)), -1);
}

/* O_PATH is what the daemon uses to look at a file without an event or a lease break;
 * openat2 refuses O_PATH with any flag beside it, so nothing may be added to it. */
static void test_open_path(void **state)
{
	struct tree *t = *state;
	struct stat sb;
	int fd;

	need_openat2(t);
	fd = path_open_beneath(t->root_fd, "d/g", O_PATH, 0);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	close(fd);
	fd = path_open_beneath(t->root_fd, "", O_PATH | O_DIRECTORY, 0);
	assert_true(fd >= 0);
	close(fd);
}

static void test_open_read(void **state)
{
	struct tree *t = *state;
	char buf[8];
	int fd;

	need_openat2(t);
	fd = path_open_beneath(t->root_fd, "f", O_RDONLY, 0);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "data", 4);
	close(fd);
}

static void test_open_create(void **state)
{
	struct tree *t = *state;
	struct stat sb;
	int fd;

	need_openat2(t);
	fd = path_open_beneath(t->root_fd, "d/new", O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	close(fd);
}

static void test_open_refuses_escapes(void **state)
{
	struct tree *t = *state;

	need_openat2(t);
	assert_int_equal(path_open_beneath(t->root_fd, "up/f", O_RDONLY, 0), -1);
	assert_int_equal(errno, EXDEV);
	assert_int_equal(path_open_beneath(t->root_fd, "../f", O_PATH, 0), -1);
	/* the final component is never followed */
	assert_int_equal(path_open_beneath(t->root_fd, "ln", O_RDONLY, 0), -1);
	assert_int_equal(errno, ELOOP);
	assert_int_equal(path_open_beneath(t->root_fd, "missing", O_PATH, 0), -1);
	assert_int_equal(errno, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check_absolute),
	    cmocka_unit_test(test_check_relative),
	    cmocka_unit_test_setup_teardown(test_open_path, tree_setup, tree_teardown),
	    cmocka_unit_test_setup_teardown(test_open_read, tree_setup, tree_teardown),
	    cmocka_unit_test_setup_teardown(test_open_create, tree_setup, tree_teardown),
	    cmocka_unit_test_setup_teardown(test_open_refuses_escapes, tree_setup, tree_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
