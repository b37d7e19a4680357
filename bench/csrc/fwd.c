/*
 * fwd: the floor of the relay's socket-guest path. It does what a relay
 * must do at the least between clients on a Unix socket and a guest console
 * on another, in one edge-triggered epoll loop with non-blocking sockets
 * and 256 KiB reads, and nothing else: no sessions, no exec.log, no id
 * checks, no timers.
 *
 *   fwd [-f] LISTEN GUEST
 *
 * It connects to the guest's listening socket GUEST, reads its first frame
 * (core.ready) and caches it, then serves LISTEN. Every client gets the
 * 0.4.4 handshake a relay gives ([slot * STEP: u32 BE] and the cached
 * ready frame), so that the benchmarks' raw-socket clients work unchanged.
 *
 * Without -f it is a byte forwarder for one client at a time: bytes go
 * through unparsed (a second client while one is connected is refused).
 * With -f it is frame-aware for up to 16 clients: it sends the guest whole
 * frames only, so that clients' frames never interleave, and routes each
 * guest frame to slot min(id / STEP, 15), dropping frames for an empty
 * slot. Guest frames bound for clients with nothing queued are written
 * straight from the read buffer, one writev per client per read.
 *
 * Back-pressure instead of loss: a client whose queue passes OUT_LIMIT
 * stops the reading of the guest, and a guest queue past OUT_LIMIT stops
 * the reading of clients. The guest's end of stream ends the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define MAX_CLIENTS 16
#define STEP (UINT32_MAX / MAX_CLIENTS)
#define MIN_LEN 5u
#define MAX_LEN (4u << 20)
#define OUT_LIMIT (1u << 20)
#define MAX_IOV 64
#define GUEST MAX_CLIENTS
#define LISTENER (MAX_CLIENTS + 1)

struct buf {
	char *p;
	size_t off, len, cap; /* the data is p[off, off+len) */
};

struct peer {
	int fd;
	int rd, wr; /* readable, writable: edges seen and not yet used up */
	int hup;    /* the peer shut down writing: read to EOF, no more edges */
	int armed;  /* EPOLLOUT is in the interest set */
	uint32_t tag; /* its epoll data */
	struct buf in, out;
	struct iovec iov[MAX_IOV]; /* guest bytes bound here, not yet written */
	int niov;
};

static int frames; /* -f */
static int ep;
static struct peer guest, cl[MAX_CLIENTS];
static char *ready;
static size_t readylen;
static int routeblocked; /* a guest frame waits for a full client queue */

static void die(const char *what)
{
	fprintf(stderr, "fwd: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void dief(const char *msg)
{
	fprintf(stderr, "fwd: %s\n", msg);
	exit(1);
}

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* room makes space for n more bytes after the data of b. */
static void room(struct buf *b, size_t n)
{
	if (b->cap - b->off - b->len >= n)
		return;
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (b->cap - b->len >= n)
		return;
	size_t cap = b->cap ? b->cap : CHUNK;
	while (cap - b->len < n)
		cap *= 2;
	if (!(b->p = realloc(b->p, cap)))
		dief("out of memory");
	b->cap = cap;
}

static void append(struct buf *b, const char *p, size_t n)
{
	room(b, n);
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
}

static void consume(struct buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

/*
 * blocked notes that c took less than it was given. EPOLLOUT joins c's
 * interest set only now, and stays: on an idle request-response path every
 * read by the peer would otherwise raise a write edge and a wake-up for
 * nothing.
 */
static void blocked(struct peer *c)
{
	c->wr = 0;
	if (c->armed)
		return;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = c->tag};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
	c->armed = 1;
}

static void drop(struct peer *c)
{
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->rd = c->wr = c->hup = c->armed = 0;
	c->in.off = c->in.len = c->out.off = c->out.len = 0;
	c->niov = 0;
}

/*
 * put writes p to peer c, or queues it behind what c already has queued.
 * It returns -1 if c failed (a client is then dropped).
 */
static int put(struct peer *c, const char *p, size_t n)
{
	if (c->out.len == 0 && c->wr) {
		ssize_t k = write(c->fd, p, n);
		if (k < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -1;
			k = 0;
		}
		if ((size_t)k == n)
			return 0;
		blocked(c);
		p += k;
		n -= k;
	}
	append(&c->out, p, n);
	return 0;
}

/* flush writes what c has queued; it returns whether bytes moved. */
static int flush(struct peer *c)
{
	if (c->out.len == 0 || !c->wr)
		return 0;
	ssize_t k = write(c->fd, c->out.p + c->out.off, c->out.len);
	if (k < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			blocked(c);
			return 0;
		}
		if (c == &guest)
			die("write to the guest");
		drop(c);
		return 1;
	}
	if ((size_t)k < c->out.len)
		blocked(c);
	consume(&c->out, k);
	return 1;
}

/*
 * fill reads once into c->in. It returns the bytes read, 0 when there is
 * nothing to read now, -1 at end of stream or on error.
 */
static ssize_t fill(struct peer *c)
{
	room(&c->in, CHUNK);
	size_t space = c->in.cap - c->in.off - c->in.len;
	ssize_t k = read(c->fd, c->in.p + c->in.off + c->in.len, space);
	if (k < 0) {
		if (errno == EAGAIN) {
			c->rd = 0;
			return 0;
		}
		return errno == EINTR ? 0 : -1;
	}
	if (k == 0)
		return -1;
	/* A short read drained the socket, and the next byte to arrive
	 * raises a new edge, unless the peer has shut down writing. */
	if ((size_t)k < space && !c->hup)
		c->rd = 0;
	c->in.len += k;
	return k;
}

/*
 * whole returns how many bytes at the front of b are whole frames, growing
 * b for a frame longer than its space; with -f off, all of them. A length
 * outside the protocol's bounds returns -1.
 */
static ssize_t whole(struct buf *b)
{
	if (!frames)
		return b->len;
	const char *p = b->p + b->off;
	size_t pos = 0;
	while (b->len - pos >= 4) {
		uint32_t n = be32(p + pos);
		if (n < MIN_LEN || n > MAX_LEN)
			return -1;
		if (b->len - pos < 4 + (size_t)n) {
			room(b, 4 + (size_t)n - (b->len - pos));
			break;
		}
		pos += 4 + n;
	}
	return pos;
}

/* flushiov writes the guest bytes gathered for client c. */
static void flushiov(struct peer *c)
{
	struct iovec *v = c->iov;
	int n = c->niov;
	c->niov = 0;
	if (n == 0)
		return;
	ssize_t k = writev(c->fd, v, n);
	if (k < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			drop(c);
			return;
		}
		k = 0;
	}
	for (int i = 0; i < n; i++) {
		if ((size_t)k >= v[i].iov_len) {
			k -= v[i].iov_len;
			continue;
		}
		if (c->wr)
			blocked(c);
		append(&c->out, (char *)v[i].iov_base + k, v[i].iov_len - k);
		k = 0;
	}
}

/*
 * route sends the whole frames in the guest's read buffer to their
 * clients. It returns whether any were consumed.
 */
static int route(void)
{
	struct buf *b = &guest.in;
	ssize_t w = whole(b);
	if (w < 0)
		dief("the guest sent a frame length out of bounds");
	const char *p = b->p + b->off;
	size_t pos = 0;
	routeblocked = 0;
	while (pos < (size_t)w) {
		size_t n = w - pos;
		int s = 0;
		if (frames) {
			n = 4 + (size_t)be32(p + pos);
			uint32_t slot = be32(p + pos + 4) / STEP;
			s = slot < MAX_CLIENTS ? (int)slot : MAX_CLIENTS - 1;
		}
		struct peer *c = &cl[s];
		if (c->fd < 0) {
			pos += n;
			continue;
		}
		if (c->out.len == 0 && c->wr) {
			struct iovec *last = c->niov ? &c->iov[c->niov - 1] : NULL;
			if (last && (char *)last->iov_base + last->iov_len == p + pos) {
				last->iov_len += n;
			} else {
				if (c->niov == MAX_IOV)
					flushiov(c);
				if (c->fd >= 0 && c->out.len == 0 && c->wr) {
					c->iov[c->niov].iov_base = (char *)p + pos;
					c->iov[c->niov].iov_len = n;
					c->niov++;
				} else if (c->fd >= 0) {
					append(&c->out, p + pos, n);
				}
			}
		} else {
			if (c->out.len > OUT_LIMIT) {
				routeblocked = 1;
				break;
			}
			append(&c->out, p + pos, n);
		}
		pos += n;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (cl[i].niov)
			flushiov(&cl[i]);
	consume(b, pos);
	return pos > 0;
}

/* fromclient reads client c once and passes its whole frames on. */
static int fromclient(struct peer *c)
{
	ssize_t k = fill(c);
	if (k < 0) {
		drop(c);
		return 1;
	}
	if (k == 0)
		return 0;
	ssize_t w = whole(&c->in);
	if (w < 0) {
		fprintf(stderr, "fwd: a client sent a frame length out of bounds; dropping it\n");
		drop(c);
		return 1;
	}
	if (w > 0) {
		if (put(&guest, c->in.p + c->in.off, w) < 0)
			die("write to the guest");
		consume(&c->in, w);
	}
	return 1;
}

static void accept_clients(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		int s = -1;
		for (int i = 0; i < (frames ? MAX_CLIENTS : 1); i++) {
			if (cl[i].fd < 0) {
				s = i;
				break;
			}
		}
		if (s < 0) {
			fprintf(stderr, "fwd: no free slot; refusing a client\n");
			close(fd);
			continue;
		}
		struct peer *c = &cl[s];
		c->fd = fd;
		c->wr = 1;
		c->tag = s;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u32 = s};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
		uint32_t off = (uint32_t)s * STEP;
		unsigned char hs[4] = {off >> 24, off >> 16, off >> 8, off};
		if (put(c, (char *)hs, 4) < 0 || put(c, ready, readylen) < 0)
			drop(c);
	}
}

/* pump moves bytes until no socket can take or give any more. */
static void pump(void)
{
	int moved;
	do {
		moved = 0;
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (cl[i].fd >= 0)
				moved |= flush(&cl[i]);
		if (guest.in.len > 0)
			moved |= route();
		if (guest.rd && !routeblocked) {
			ssize_t k = fill(&guest);
			if (k < 0)
				dief("the guest closed its console; exiting");
			if (k > 0)
				moved |= route() | 1;
		}
		moved |= flush(&guest);
		if (guest.out.len <= OUT_LIMIT)
			for (int i = 0; i < MAX_CLIENTS; i++)
				if (cl[i].fd >= 0 && cl[i].rd)
					moved |= fromclient(&cl[i]);
	} while (moved);
}

static int dial(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path)
		dief("guest socket path too long");
	strcpy(a.sun_path, path);
	for (int tries = 0;; tries++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
			return fd;
		close(fd);
		if (tries == 1000)
			die("connect to the guest");
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static void readfull(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			dief("the guest closed its console before core.ready");
		p += k;
		n -= k;
	}
}

static int listen_on(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path)
		dief("listen socket path too long");
	strcpy(a.sun_path, path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	if (listen(fd, 64) < 0)
		die("listen");
	return fd;
}

int main(int argc, char **argv)
{
	int a = 1;
	if (argc > 1 && strcmp(argv[1], "-f") == 0) {
		frames = 1;
		a++;
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: fwd [-f] LISTEN GUEST\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CLIENTS; i++)
		cl[i].fd = -1;

	guest.fd = dial(argv[a + 1]);
	char head[4];
	readfull(guest.fd, head, 4);
	uint32_t n = be32(head);
	if (n < MIN_LEN || n > MAX_LEN)
		dief("the guest's first frame has a length out of bounds");
	readylen = 4 + n;
	if (!(ready = malloc(readylen)))
		dief("out of memory");
	memcpy(ready, head, 4);
	readfull(guest.fd, ready + 4, n);
	if (fcntl(guest.fd, F_SETFL, O_NONBLOCK) < 0)
		die("fcntl");
	guest.wr = 1;
	guest.tag = GUEST;

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u32 = GUEST};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, guest.fd, &ev) < 0)
		die("epoll_ctl");
	int lfd = listen_on(argv[a]);
	ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u32 = LISTENER};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");

	struct epoll_event evs[MAX_CLIENTS + 2];
	for (;;) {
		int k = epoll_wait(ep, evs, MAX_CLIENTS + 2, -1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < k; i++) {
			uint32_t id = evs[i].data.u32, e = evs[i].events;
			if (id == LISTENER) {
				accept_clients(lfd);
				continue;
			}
			struct peer *c = id == GUEST ? &guest : &cl[id];
			if (c->fd < 0)
				continue;
			if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->hup = 1;
			if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->rd = 1;
			if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				c->wr = 1;
		}
		pump();
	}
}
