// SPDX-License-Identifier: MIT
/*
 * A watchdog for waits that hang on the backend. While a device closes,
 * STOP_DEV waits for the IO that the kernel's final writeback sends, so a
 * backend call that never returns makes the close wait forever. The core
 * cannot interrupt a running Lua call; what it can do is say which queue
 * and which call the wait is stuck on, and, when the caller lets it, give
 * up on that queue at the next SIGINT or SIGTERM (lb_queue_give_up), so
 * that the kernel fails that one IO and the close can finish.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "internal.h"

#define FIRST_WARNING_S 5 /* a call this long is not just slow IO */
#define REPEAT_S 60

struct lb_watchdog {
	struct luablk_dev *dev;
	const char *what;
	pthread_t thread;
	int stop_fd; /* eventfd: lb_watchdog_stop() */
	int signal_fd; /* SIGINT and SIGTERM, or -1 */
	uint64_t *seen; /* per queue: the busy batch at the last look */
	unsigned int *stuck_s; /* per queue: how long it has been busy */
};

static void warn(struct lb_watchdog *w, unsigned int q, unsigned int secs)
{
	char call[128];

	lb_queue_describe(&w->dev->queues[q], call, sizeof(call));
	fprintf(stderr,
		"luablk: device %d: %s waits for queue %u, whose backend has "
		"been in %s for %u s%s\n",
		w->dev->id, w->what, q, call, secs,
		w->signal_fd >= 0 ? "; SIGINT or SIGTERM gives up on it" : "");
}

/* Looks at every queue once a second. */
static void look(struct lb_watchdog *w)
{
	for (unsigned int q = 0; q < w->dev->nr_queues; q++) {
		uint64_t busy = __atomic_load_n(&w->dev->queues[q].busy,
						__ATOMIC_RELAXED);
		unsigned int s;

		if (busy == 0 || busy != w->seen[q]) {
			w->seen[q] = busy;
			w->stuck_s[q] = 0;
			continue;
		}
		s = ++w->stuck_s[q];
		if (s == FIRST_WARNING_S ||
		    (s > FIRST_WARNING_S &&
		     (s - FIRST_WARNING_S) % REPEAT_S == 0))
			warn(w, q, s);
	}
}

/* A signal while waiting: give up on every queue inside its backend. */
static void give_up(struct lb_watchdog *w)
{
	struct signalfd_siginfo si;
	char call[128];
	bool any = false;

	if (read(w->signal_fd, &si, sizeof(si)) != sizeof(si))
		return;
	/* IOs parked in async backends fail at the queues' next tick. */
	__atomic_store_n(&w->dev->giving_up, true, __ATOMIC_RELAXED);
	for (unsigned int q = 0; q < w->dev->nr_queues; q++) {
		lb_queue_describe(&w->dev->queues[q], call, sizeof(call));
		if (!lb_queue_give_up(&w->dev->queues[q]))
			continue;
		any = true;
		fprintf(stderr,
			"luablk: device %d: giving up on queue %u, whose "
			"backend is still in %s; that IO fails\n",
			w->dev->id, q, call);
	}
	if (!any) {
		fprintf(stderr,
			"luablk: device %d: no backend call is stuck; %s goes "
			"on\n",
			w->dev->id, w->what);
		return;
	}
	/*
	 * The kernel fails an IO the server holds when the server lets go
	 * of the char device: on 6.12 as soon as that queue's ring goes,
	 * on 7.3 only once nothing pins the char device any more. So
	 * every queue stops here, and STOP_DEV, waiting for that IO, can
	 * finish.
	 */
	lb_dev_let_go(w->dev);
}

static void *watch_main(void *arg)
{
	struct lb_watchdog *w = arg;
	struct pollfd pfd[2] = {
		{.fd = w->stop_fd, .events = POLLIN},
		{.fd = w->signal_fd, .events = POLLIN},
	};
	int n;

	for (;;) {
		n = poll(pfd, w->signal_fd >= 0 ? 2 : 1, 1000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (pfd[0].revents & POLLIN))
			break;
		if (n == 0)
			look(w);
		else if (pfd[1].revents & POLLIN)
			give_up(w);
	}
	return NULL;
}

static void free_watchdog(struct lb_watchdog *w)
{
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->signal_fd >= 0)
		close(w->signal_fd);
	free(w->seen);
	free(w->stuck_s);
	free(w);
}

struct lb_watchdog *lb_watchdog_start(struct luablk_dev *dev, const char *what,
				      bool on_signal)
{
	struct lb_watchdog *w = calloc(1, sizeof(*w));
	sigset_t set;

	if (!w)
		return NULL;
	w->dev = dev;
	w->what = what;
	w->signal_fd = -1;
	w->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (on_signal) {
		/* Blocked by luablk_signals_block(), so they queue for us. */
		sigemptyset(&set);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGTERM);
		w->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	}
	w->seen = calloc(dev->nr_queues, sizeof(*w->seen));
	w->stuck_s = calloc(dev->nr_queues, sizeof(*w->stuck_s));
	if (w->stop_fd < 0 || !w->seen || !w->stuck_s ||
	    pthread_create(&w->thread, NULL, watch_main, w)) {
		free_watchdog(w);
		return NULL;
	}
	return w;
}

void lb_watchdog_stop(struct lb_watchdog *w)
{
	uint64_t one = 1;

	if (!w)
		return;
	if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
		fprintf(stderr, "luablk: watchdog: eventfd write failed\n");
	pthread_join(w->thread, NULL);
	free_watchdog(w);
}
