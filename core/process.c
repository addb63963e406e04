// SPDX-License-Identifier: MIT
/*
 * Child processes for harnesses and helpers. A process that serves a started
 * ublk device lost it when it spawned a child with CLONE_VM|CLONE_VFORK (what
 * glibc's system(), popen() and posix_spawn do), while plain fork() is
 * safe. So helpers like mkfs run through fork() and execvp() here.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

int luablk_spawn(const char *const *argv, int in_fd, int out_fd, int err_fd)
{
	sigset_t none;
	pid_t pid;

	if (!argv || !argv[0])
		return lb_fail(-EINVAL, "spawn: empty command");
	sigemptyset(&none);
	pid = fork();
	if (pid < 0)
		return lb_fail(-errno, "fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	/* Child: only async-signal-safe calls until exec. */
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((in_fd >= 0 && dup2(in_fd, 0) < 0) ||
	    (out_fd >= 0 && dup2(out_fd, 1) < 0) ||
	    (err_fd >= 0 && dup2(err_fd, 2) < 0))
		_exit(126);
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

int luablk_fork(void)
{
	pid_t pid = fork();

	return pid < 0 ? lb_fail(-errno, "fork: %s", strerror(errno)) : pid;
}

void luablk_exit(int code)
{
	_exit(code);
}

int luablk_wait(int pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return lb_fail(-errno, "waitpid %d: %s", pid,
				       strerror(errno));
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
