/* test_notify.c: sd_notify messages through a real AF_UNIX datagram socket standing in
 * for systemd's NOTIFY_SOCKET, the watchdog interval, and the STATUS= text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

static char sock_path[108];

/* A bound datagram socket; NOTIFY_SOCKET names it. */
static int listen_notify(void)
{
	struct sockaddr_un sa;
	struct timeval tv = {2, 0};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sock_path, sizeof(sock_path), "/tmp/kaprobe-test-notify.%d", (int)getpid());
	unlink(sock_path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	return fd;
}

static void close_notify(int fd)
{
	close(fd);
	unlink(sock_path);
	unsetenv("NOTIFY_SOCKET");
}

static void recv_msg(int fd, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len - 1, 0);

	assert_true(n > 0);
	buf[n] = '\0';
}

static void fill_status(void *arg, char *buf, size_t len)
{
	notify_format_counts(buf, len, *(unsigned long long *)arg, 7, 1);
}

static void test_format_counts(void **state)
{
	char buf[128];

	(void)state;
	notify_format_counts(buf, sizeof(buf), 3, 12, 0);
	assert_string_equal(buf, "3 connections tracked, 12 probes sent, 0 dead");
	notify_format_counts(buf, sizeof(buf), 1, 1, 2);
	assert_string_equal(buf, "1 connection tracked, 1 probe sent, 2 dead");
}

static void test_messages(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	unsigned long long tracked = 4;
	int fd = listen_notify();
	char buf[512];

	(void)state;
	notify_start(loop, fill_status, &tracked, 10);
	notify_ready();
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1\nSTATUS=4 connections tracked, 7 probes sent, 1 dead");
	notify_reloading();
	recv_msg(fd, buf, sizeof(buf));
	assert_memory_equal(buf, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=", 44);
	assert_true(strtoull(buf + 44, NULL, 10) > 0);
	notify_status("hello");
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=hello");
	notify_stopping();
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STOPPING=1\nSTATUS=stopping");
	notify_stop(loop);
	ev_loop_destroy(loop);
	close_notify(fd);
}

static void test_watchdog(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	int fd = listen_notify();
	char buf[512];

	(void)state;
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	assert_true(notify_watchdog_interval() == 0);
	setenv("WATCHDOG_USEC", "200000", 1); /* 0.2 s: WATCHDOG=1 every 0.1 s */
	assert_true(notify_watchdog_interval() == 0.2);
	notify_start(loop, NULL, NULL, 0);
	ev_run(loop, EVRUN_ONCE); /* the first timer, 0.1 s from now */
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "WATCHDOG=1");
	notify_stop(loop);
	unsetenv("WATCHDOG_USEC");
	ev_loop_destroy(loop);
	close_notify(fd);
}

static void test_periodic_status(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	unsigned long long tracked = 2;
	int fd = listen_notify();
	char buf[512];

	(void)state;
	unsetenv("WATCHDOG_USEC");
	notify_start(loop, fill_status, &tracked, 0.05);
	ev_run(loop, EVRUN_ONCE); /* the status timer, 50 ms from now */
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=2 connections tracked, 7 probes sent, 1 dead");
	tracked = 3;
	ev_run(loop, EVRUN_ONCE);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=3 connections tracked, 7 probes sent, 1 dead");
	notify_stop(loop);
	ev_loop_destroy(loop);
	close_notify(fd);
}

static void test_no_socket_is_silent(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	notify_ready(); /* nothing to check but that nothing breaks */
	notify_reloading();
	notify_stopping();
	notify_status("x");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_counts),
	    cmocka_unit_test(test_messages),
	    cmocka_unit_test(test_watchdog),
	    cmocka_unit_test(test_periodic_status),
	    cmocka_unit_test(test_no_socket_is_silent),
	};

	return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}
