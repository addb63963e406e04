// SPDX-License-Identifier: MIT
/*
 * Live backend reload. Every queue thread is parked between two batches:
 * it has handed its last batch back to the kernel and waits before taking
 * the next. With all of them parked, the new backend is prepared in every
 * queue's state, and only if that works everywhere is it swapped in;
 * otherwise the old one serves on as if nothing happened. IO arriving in
 * the meantime waits in the kernel, so none fails and none is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* How long a backend may take to finish the batch it is serving. */
#define PARK_TIMEOUT_S 10

void lb_dev_park(struct luablk_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	if (dev->pausing) {
		dev->parked++;
		pthread_cond_broadcast(&dev->cond);
		while (dev->pausing)
			pthread_cond_wait(&dev->cond, &dev->lock);
		dev->parked--;
		pthread_cond_broadcast(&dev->cond);
	}
	pthread_mutex_unlock(&dev->lock);
}

bool lb_dev_pausing(struct luablk_dev *dev)
{
	bool pausing;

	pthread_mutex_lock(&dev->lock);
	pausing = dev->pausing;
	pthread_mutex_unlock(&dev->lock);
	return pausing;
}

static void resume_queues(struct luablk_dev *dev)
{
	uint64_t count;

	/*
	 * Empty the eventfd before any queue re-arms its poll on it, or the
	 * fresh poll would fire at once.
	 */
	if (read(dev->pause_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		fprintf(stderr, "luablk: device %d: pause eventfd: %s\n",
			dev->id, strerror(errno));
	pthread_mutex_lock(&dev->lock);
	dev->pausing = false;
	pthread_cond_broadcast(&dev->cond);
	while (dev->parked > 0)
		pthread_cond_wait(&dev->cond, &dev->lock);
	pthread_mutex_unlock(&dev->lock);
}

/* Returns once every live queue thread is parked, or -errno. */
static int pause_queues(struct luablk_dev *dev)
{
	struct timespec deadline;
	uint64_t one = 1;
	int ret = 0;

	if (!dev->queues)
		return 0; /* not started: no thread is using the states */
	pthread_mutex_lock(&dev->lock);
	dev->pausing = true;
	pthread_mutex_unlock(&dev->lock);
	if (write(dev->pause_fd, &one, sizeof(one)) < 0) {
		ret = -errno;
		resume_queues(dev);
		return lb_fail(ret, "pause eventfd: %s", strerror(-ret));
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += PARK_TIMEOUT_S;
	pthread_mutex_lock(&dev->lock);
	while (dev->parked < dev->queues_live && ret == 0)
		ret = pthread_cond_timedwait(&dev->cond, &dev->lock, &deadline);
	pthread_mutex_unlock(&dev->lock);
	if (ret == 0)
		return 0;
	resume_queues(dev);
	return lb_fail(-ETIMEDOUT,
		       "the backend did not finish its current requests "
		       "within %d s",
		       PARK_TIMEOUT_S);
}

/*
 * Prepares every queue, then commits all or aborts all. A resize (size
 * other than the device's) tells the kernel between the two: the new
 * backends are ready for the new size, and nothing runs on the old ones
 * any more, since every queue is parked.
 */
static int swap_backends(struct luablk_dev *dev, const char *backend,
			 const char *const *args, int argc, uint64_t size)
{
	uint64_t old_size = dev->cfg.size;
	struct lb_caps need;
	unsigned int q;
	int ret = 0;

	lb_dev_advertised(dev, &need);
	dev->cfg.size = size; /* what the new backends are opened with */
	for (q = 0; q < dev->nr_queues && ret == 0; q++) {
		struct luablk_handler *h = dev->handlers[q];

		ret = h->ops->prepare(h, backend, args, argc, &need);
	}
	if (ret == 0 && size != old_size) {
		q++; /* every queue holds a prepared backend to abort */
		ret = lb_ctrl_simple(dev->ctrl, UBLK_CMD_UPDATE_SIZE,
				     (uint32_t)dev->id, size >> 9);
		if (ret < 0)
			lb_fail(ret, "UPDATE_SIZE: %s", strerror(-ret));
	}
	if (ret < 0) {
		dev->cfg.size = old_size;
		/* Queue q-1 failed and holds nothing; those before it do. */
		for (unsigned int i = 0; i + 1 < q; i++)
			dev->handlers[i]->ops->abort(dev->handlers[i]);
		return ret;
	}
	for (q = 0; q < dev->nr_queues; q++)
		dev->handlers[q]->ops->commit(dev->handlers[q]);
	return 0;
}

/* Reloads, at a new size if size differs from the device's. */
static int reload(struct luablk_dev *dev, const char *backend,
		  const char *const *args, int argc, uint64_t size)
{
	char *new_backend;
	char **new_args;
	int ret;

	if (dev->closed)
		return lb_fail(-ESHUTDOWN, "the device is closed");
	if (!dev->handlers[0]->ops->prepare)
		return lb_fail(-EOPNOTSUPP,
			       "backend %s is built into the core and cannot "
			       "be %s",
			       dev->backend,
			       size == dev->cfg.size ? "reloaded" : "resized");
	if (!backend)
		backend = dev->backend;
	if (lb_handler_ops_for(backend) != &lb_lua_ops)
		return lb_fail(-EOPNOTSUPP,
			       "cannot reload into %s: only Lua backends can "
			       "be swapped in",
			       backend);
	if (argc < 0) {
		args = (const char *const *)dev->args;
		argc = dev->cfg.argc;
	}
	new_backend = strdup(backend);
	new_args = lb_strv_copy(args, argc);
	if (!new_backend || !new_args) {
		free(new_backend);
		lb_strv_free(new_args);
		return lb_fail(-ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&dev->reload_lock);
	ret = pause_queues(dev);
	if (ret == 0) {
		ret = swap_backends(dev, new_backend,
				    (const char *const *)new_args, argc, size);
		if (dev->queues)
			resume_queues(dev);
	}
	if (ret == 0) {
		/* What the next reload without arguments loads again. */
		free(dev->backend);
		lb_strv_free(dev->args);
		dev->backend = new_backend;
		dev->args = new_args;
		dev->cfg.backend = dev->backend;
		dev->cfg.args = (const char *const *)dev->args;
		dev->cfg.argc = argc;
	} else {
		free(new_backend);
		lb_strv_free(new_args);
	}
	pthread_mutex_unlock(&dev->reload_lock);
	return ret;
}

int luablk_dev_reload(struct luablk_dev *dev, const char *backend,
		      const char *const *args, int argc)
{
	lb_clear_error();
	return reload(dev, backend, args, argc, dev->cfg.size);
}

int luablk_dev_resize(struct luablk_dev *dev, uint64_t size)
{
	uint64_t features = 0;
	int ret;

	lb_clear_error();
	ret = lb_params_check_size(&dev->params, size);
	if (ret < 0)
		return ret;
	if (!dev->started || dev->closed)
		return lb_fail(-ESHUTDOWN, "the device is not serving");
	if (lb_ctrl_get_features(dev->ctrl, &features) < 0 ||
	    !(features & UBLK_F_UPDATE_SIZE))
		return lb_fail(-EOPNOTSUPP,
			       "this kernel cannot resize a device (resize "
			       "needs Linux 6.16, UBLK_F_UPDATE_SIZE)");
	if (size == dev->cfg.size)
		return 0;
	return reload(dev, NULL, NULL, -1, size);
}
