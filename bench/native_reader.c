/* The fan-out benches' receive loop in C: what bench/receiver_process.py does for each
 * message frame, without Python's cost per socket wakeup, so that the client sharing the
 * machine takes as little of it from the servers as a client can (the kernel's part).
 *
 * One reader per process (global state), driven from bench/native_reader.py through
 * ctypes: nr_start takes the already upgraded, non-blocking sockets; nr_run (in a thread
 * of its own, the GIL released) reads them until nr_stop. Per socket it checks event ids
 * (a repeated or backward id is a dupe), counts frames carrying the run's marker, and on
 * sampled sockets adds post-to-receive latency to a histogram keyed as bench/stats.py's
 * Hist. Pings are answered. Any other text frame is kept, with its socket's index, for
 * Python to read; a close, a fragment or the end of the stream hands the socket back
 * (its unread bytes kept for Python). Counters are read while it runs.
 *
 * After each round of ready sockets it pauses `pause_us` before waiting again, so that
 * one wakeup reads many sockets: on loopback the server's send does the receiving side's
 * TCP work and wakes the reader, and a reader woken for every socket made the servers pay
 * for it (bench/fanout.py, 1,000 sockets at 100 posts/s, interleaved runs: p50 30.6 and
 * 34.0 ms without a pause, 27.2 and 27.8 ms with 0.5 ms; 1 and 2 ms gained nothing more).
 * A frame is read at most that much later than it could have been. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define HIST_KEYS 12000 /* Hist: 0.1 ms keys below 100 ms, then 10 ms keys (to ~110 s) */
#define MESSAGE_PREFIX "{\"type\": \"message\""
#define EVENT_ID_KEY "\"event_id\": "

enum { OP_TEXT = 0x1, OP_PING = 0x9 };
/* Why a socket went back to Python (nr_socket(i, 2)); 0 while C reads it. */
enum { HANDED_OTHER_FRAME = 1, HANDED_END = 2, HANDED_ERROR = 3, HANDED_NO_MEMORY = 4 };

typedef struct {
    int fd;
    int sampled;
    int handed_back; /* why Python reads it from here on (HANDED_*), or 0 */
    int64_t cursor;
    int64_t got;
    double done_at;
    char *buf;
    size_t len, cap;
} sock_t;

static sock_t *socks;
static int count;
static int epoll_fd = -1;
static char marker[256];
static size_t marker_len;
static int64_t want;
static volatile int stopping;
static long pause_us;
static volatile int64_t delivered, dupes, frames, complete, others_dropped;
static int64_t hist[HIST_KEYS];
static char *others; /* records: double received at, int32 index, int32 length, bytes */
static size_t others_len, others_cap;

static double now_secs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* Python's time.monotonic() */
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int hist_key(double ms) {
    if (ms < 0) ms = 0;
    int key = ms < 100 ? (int)(ms * 10) : 1000 + (int)((ms - 100) / 10);
    return key < HIST_KEYS ? key : HIST_KEYS - 1;
}

/* With when it came: Python reads it only when the phase is collected. */
static void keep_other(int index, const char *payload, size_t length, double now) {
    size_t need = 16 + length;
    if (others_len + need > others_cap) {
        others_dropped++;
        return;
    }
    int32_t head[2] = {index, (int32_t)length};
    memcpy(others + others_len, &now, 8);
    memcpy(others + others_len + 8, head, 8);
    memcpy(others + others_len + 16, payload, length);
    others_len += need;
}

static const char *find_last(const char *hay, size_t hay_len, const char *needle, size_t needle_len) {
    if (hay_len < needle_len) return NULL;
    for (size_t at = hay_len - needle_len + 1; at-- > 0;)
        if (hay[at] == needle[0] && memcmp(hay + at, needle, needle_len) == 0) return hay + at;
    return NULL;
}

static int contains(const char *payload, size_t length, const char *text) {
    return memmem(payload, length, text, strlen(text)) != NULL;
}

/* A message event whose top-level text is the message's: as the hub writes it live (its
 * type first) or as the event log returns it (PostgreSQL's jsonb orders keys by length,
 * so "text" comes first: a gap filled from the log, a replay). An edit or a delete carries
 * the message inside, not at the top. */
static int is_message(const char *payload, size_t length) {
    if (length >= sizeof MESSAGE_PREFIX - 1 && memcmp(payload, MESSAGE_PREFIX, sizeof MESSAGE_PREFIX - 1) == 0)
        return 1;
    return contains(payload, length, "\"type\": \"message\"") &&
           !contains(payload, length, "\"subtype\": \"message_changed\"") &&
           !contains(payload, length, "\"subtype\": \"message_deleted\"");
}

static void on_text(int index, sock_t *s, const char *payload, size_t length, double now) {
    frames++;
    const char *key = find_last(payload, length, EVENT_ID_KEY, sizeof EVENT_ID_KEY - 1);
    if (key) {
        int64_t event_id = strtoll(key + sizeof EVENT_ID_KEY - 1, NULL, 10);
        if (event_id <= s->cursor) {
            dupes++;
            return;
        }
        s->cursor = event_id;
    }
    if (!is_message(payload, length)) {
        keep_other(index, payload, length, now); /* its event id is checked above */
        return;
    }
    const char *at = memmem(payload, length, marker, marker_len);
    if (!at) return;
    delivered++;
    if (++s->got == want) {
        s->done_at = now;
        complete++;
    }
    if (s->sampled) { /* the text is "<tag> <seq> <monotonic time sent>" */
        const char *seq_end = memchr(at + marker_len, ' ', length - (at + marker_len - payload));
        if (seq_end) hist[hist_key((now - strtod(seq_end + 1, NULL)) * 1000)]++;
    }
}

static void pong(sock_t *s, const char *payload, size_t length) {
    char frame[2 + 4 + 125];
    if (length > 125) return; /* a control frame's payload is at most 125 bytes */
    frame[0] = (char)0x8A;
    frame[1] = (char)(0x80 | length);
    memset(frame + 2, 0, 4); /* a zero mask: the payload goes as it is */
    memcpy(frame + 6, payload, length);
    (void)send(s->fd, frame, 6 + length, MSG_NOSIGNAL);
}

static void hand_back(sock_t *s, int reason) {
    s->handed_back = reason;
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
}

/* Parse the whole frames in s->buf; keep what is left (a partial frame, or everything
 * from a frame Python must see on). */
static void parse(int index, sock_t *s, double now) {
    size_t at = 0;
    while (!s->handed_back && s->len - at >= 2) {
        unsigned char first = (unsigned char)s->buf[at], second = (unsigned char)s->buf[at + 1];
        uint64_t length = second & 0x7F;
        size_t head = 2;
        if (length == 126) {
            if (s->len - at < 4) break;
            length = ((unsigned char)s->buf[at + 2] << 8) | (unsigned char)s->buf[at + 3];
            head = 4;
        } else if (length == 127) {
            if (s->len - at < 10) break;
            length = 0;
            for (int i = 0; i < 8; i++) length = (length << 8) | (unsigned char)s->buf[at + 2 + i];
            head = 10;
        }
        if (head + length > s->cap) { /* grow so the whole frame fits */
            size_t cap = s->cap;
            while (cap < head + length) cap *= 2;
            char *grown = realloc(s->buf, cap);
            if (!grown) {
                hand_back(s, HANDED_NO_MEMORY);
                break;
            }
            s->buf = grown;
            s->cap = cap;
        }
        if (s->len - at < head + length) break;
        int opcode = first & 0x0F, fin = first & 0x80;
        const char *payload = s->buf + at + head;
        if (opcode == OP_TEXT && fin)
            on_text(index, s, payload, length, now);
        else if (opcode == OP_PING)
            pong(s, payload, length);
        else {
            hand_back(s, HANDED_OTHER_FRAME);
            break;
        }
        at += head + length;
    }
    if (at) {
        memmove(s->buf, s->buf + at, s->len - at);
        s->len -= at;
    }
}

static void read_socket(int index) {
    sock_t *s = &socks[index];
    if (s->handed_back) return;
    if (s->len == s->cap) parse(index, s, now_secs());
    ssize_t got = recv(s->fd, s->buf + s->len, s->cap - s->len, 0);
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) hand_back(s, HANDED_ERROR);
        return;
    }
    if (got == 0) { /* end of stream: Python's transport sees it too once it reads again */
        hand_back(s, HANDED_END);
        return;
    }
    s->len += (size_t)got;
    parse(index, s, now_secs());
}

void nr_free(void) {
    for (int i = 0; i < count; i++) free(socks[i].buf);
    free(socks);
    free(others);
    socks = NULL;
    others = NULL;
    count = 0;
    if (epoll_fd >= 0) close(epoll_fd);
    epoll_fd = -1;
}

int nr_start(int n, const int *fds, const unsigned char *sampled, const long long *cursors,
             const char *run_marker, int run_marker_len, long long run_want, long long others_bytes,
             long run_pause_us) {
    nr_free();
    if (run_marker_len <= 0 || (size_t)run_marker_len > sizeof marker) return -EINVAL;
    memcpy(marker, run_marker, (size_t)run_marker_len);
    marker_len = (size_t)run_marker_len;
    want = run_want;
    pause_us = run_pause_us;
    stopping = 0;
    delivered = dupes = frames = complete = others_dropped = 0;
    memset(hist, 0, sizeof hist);
    others_cap = (size_t)others_bytes;
    others_len = 0;
    others = malloc(others_cap ? others_cap : 1);
    socks = calloc((size_t)n, sizeof *socks);
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!others || !socks || epoll_fd < 0) return -ENOMEM;
    count = n;
    for (int i = 0; i < n; i++) {
        sock_t *s = &socks[i];
        s->fd = fds[i];
        s->sampled = sampled[i];
        s->cursor = cursors[i];
        s->cap = 16384;
        s->buf = malloc(s->cap);
        if (!s->buf) return -ENOMEM;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0) return -errno;
    }
    return 0;
}

/* Bytes Python had read but not parsed yet: they come first. */
int nr_prefill(int index, const char *bytes, long long length) {
    sock_t *s = &socks[index];
    if (s->len + (size_t)length > s->cap) {
        char *grown = realloc(s->buf, s->len + (size_t)length);
        if (!grown) return -ENOMEM;
        s->buf = grown;
        s->cap = s->len + (size_t)length;
    }
    memcpy(s->buf + s->len, bytes, (size_t)length);
    s->len += (size_t)length;
    parse(index, s, now_secs());
    return 0;
}

int nr_run(void) {
    struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        int ready = epoll_wait(epoll_fd, events, MAX_EVENTS, 20);
        if (ready < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        for (int i = 0; i < ready; i++) read_socket((int)events[i].data.u32);
        if (pause_us > 0 && ready > 0 && ready < MAX_EVENTS) { /* a full round: more are ready */
            struct timespec pause = {0, pause_us * 1000};
            nanosleep(&pause, NULL);
        }
    }
    return 0;
}

void nr_stop(void) { stopping = 1; }

long long nr_totals(int which) {
    switch (which) {
    case 0: return delivered;
    case 1: return dupes;
    case 2: return frames;
    case 3: return complete;
    case 4: return others_dropped;
    default: return -1;
    }
}

long long nr_socket(int index, int which) {
    sock_t *s = &socks[index];
    switch (which) {
    case 0: return s->cursor;
    case 1: return s->got;
    case 2: return s->handed_back;
    case 3: return (long long)s->len;
    default: return -1;
    }
}

double nr_done_at(int index) { return socks[index].done_at; }

/* Copies what is left in a socket's buffer (nr_socket(index, 3) bytes). */
void nr_leftover(int index, char *out) { memcpy(out, socks[index].buf, socks[index].len); }

int nr_hist_keys(void) { return HIST_KEYS; }

int nr_hist(long long *out) {
    for (int i = 0; i < HIST_KEYS; i++) out[i] = hist[i];
    return HIST_KEYS;
}

long long nr_others(char *out) {
    memcpy(out, others, others_len);
    return (long long)others_len;
}

long long nr_others_len(void) { return (long long)others_len; }
