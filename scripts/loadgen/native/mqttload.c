/* mqttload: flockmq's native MQTT 3.1.1 load generator, a drop-in for
 * scripts/loadtest.py in the rows of `make bench` (scripts/bench.py).
 *
 *   cc -O2 -o build/bench/mqttload scripts/loadgen/native/mqttload.c -lssl -lcrypto
 *   mqttload SCENARIO [loadtest.py's options] --json
 *
 * Scenarios: fanin, fanout, pairs, latency, connect-rate, with loadtest.py's
 * plan (scripts/loadgen/scenarios.py): the same client ids, topics, message
 * counts per publisher, users taken in turn and round-robin assignment of
 * clients to processes. The payload starts with loadtest.py's header
 * (publisher id, sequence number, CLOCK_MONOTONIC send time in ns, big-endian
 * >IIQ), so a subscriber counts per publisher what arrived, what was a
 * duplicate, what came out of order, and the latency of each first arrival.
 * The accounting is loadtest.py's (scripts/loadgen/stats.py): "lost" is a
 * message its publisher completed (QoS 0 sent, QoS 1 PUBACK, QoS 2 PUBCOMP)
 * that no subscriber that should have it received by the end of the run.
 *
 * Structure: the parent (the coordinator) builds the plan, maps one shared
 * memory block (per-process counters, latency histograms, the publishers'
 * completed bitmaps, the subscribers' sequence trackers), forks the client
 * processes, and broadcasts "go" and "stop" by closing the write end of a
 * pipe each (every child sees EOF at once). Each child runs one epoll loop
 * over its non-blocking sockets (OpenSSL memory-free of BIOs: SSL on the fd)
 * and writes its counters into its slot. The parent polls the counters,
 * waits for every child (so that their CPU is in the parent's RUSAGE_CHILDREN,
 * which bench.py reads), sums the trackers and prints loadtest.py's JSON line.
 *
 * Not implemented (exit status 64, "unsupported", before connecting; bench.py
 * then runs loadtest.py): the `connections` scenario, --protocol 5, --plot.
 * Exit status otherwise as loadtest.py: 0 fine, 1 a QoS 1/2 guarantee broken,
 * 2 setup failed, 3 the duration limit came first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_VIOLATION 1
#define EXIT_SETUP 2
#define EXIT_INCOMPLETE 3
#define EXIT_UNSUPPORTED 64

#define MAX_CONNECTIONS_PER_PROCESS 15000
#define CONNECT_TIMEOUT_NS 5000000000LL
#define STOP_GRACE_S 15.0
#define WRITE_HIGH_WATER (256 * 1024)
#define PUMP_BATCH 512
#define MAX_ERRORS 5
#define ERROR_LEN 200
#define KEEPALIVE 60
#define HIST_SUB_BITS 8
#define HIST_BUCKETS (64 << HIST_SUB_BITS)

enum { CONNECT = 1, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK };
enum { PINGRESP = 13, DISCONNECT = 14 };

/* ---- settings (loadtest.py's options) ------------------------------------ */
typedef struct {
    const char *scenario, *host, *cafile, *credentials_file;
    int port, qos, count, payload, inflight, publishers, subscribers, pairs;
    int connections, connect_concurrency, processes, clean, protocol, dry_run;
    double rate, duration_limit, drain_timeout;
    char run_id[9];
    char **users, **passwords;
    int n_users;
} Settings;

static int broker_pid; /* --broker-pid: whose RSS to sample; 0 none */
static Settings S = {
    .host = "127.0.0.1", .port = 1883, .count = 100000, .payload = 64, .inflight = 64,
    .publishers = 4, .subscribers = 100, .pairs = 100, .connections = 10000,
    .connect_concurrency = 200, .clean = 1, .protocol = 4, .duration_limit = 60.0,
    .drain_timeout = 5.0,
};

/* ---- the plan (scripts/loadgen/scenarios.py) ----------------------------- */
typedef struct {
    char client_id[48];
    char topic[96];        /* publish topic or subscribe filter */
    int publisher_id;      /* >= 0: publishes */
    int count;             /* messages to publish */
    double rate;           /* this publisher's msg/s; 0 unpaced */
    int subscriber;        /* 1: subscribes to `topic` */
    int expect_first, expect_n; /* publisher ids it must hear from: a range */
    int tracker_first;     /* index of its first tracker in the shared block */
    int churn;             /* connect-rate: connect once after go */
    char source_ip[16];
    int user;              /* index into S.users, -1: none */
    int process;
} Spec;

static Spec *specs;
static int n_specs, n_pubs, n_subs, n_churn, n_procs;
static int *pub_counts; /* by publisher id */

/* ---- shared memory ------------------------------------------------------- */
typedef struct {
    uint64_t received, duplicates, dup_flagged, out_of_order;
    int64_t highest;
    uint64_t count;      /* bits in the bitmap */
    uint64_t bitmap_off; /* into the shared block */
    int publisher_id;
} Tracker;

typedef struct {
    /* written by the child, read by the parent (relaxed atomics) */
    int64_t sent, completed, received, unique, unexpected, dropped, failed, connected;
    int64_t last_publish_ns, last_receive_ns;
    int ready, published, finished, n_errors;
    char errors[MAX_ERRORS][ERROR_LEN];
    uint64_t hist_total, hist_max;
    uint64_t hist[HIST_BUCKETS];
} Slot;

typedef struct {
    int64_t go_ns;
    Slot slots[]; /* n_procs */
} Shared;

static Shared *shared;
static unsigned char *block; /* the whole mapping */
static Tracker *trackers;
static int n_trackers;
static uint64_t *completed_off; /* by publisher id: offset of its completed bitmap */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mqttload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die(EXIT_SETUP, "out of memory");
    return p;
}

/* ---- latency histogram (stats.py: exact below 256 ns, then 128 buckets per
 * power of two) ------------------------------------------------------------- */
static int bucket_of(uint64_t v) {
    if (v < (1u << HIST_SUB_BITS)) return (int)v;
    int shift = 64 - __builtin_clzll(v) - HIST_SUB_BITS;
    return (shift << HIST_SUB_BITS) | (int)(v >> shift);
}

static uint64_t bucket_high(int b) {
    int shift = b >> HIST_SUB_BITS;
    if (shift == 0) return (uint64_t)b;
    uint64_t mantissa = (uint64_t)(b & ((1 << HIST_SUB_BITS) - 1));
    return ((mantissa + 1) << shift) - 1;
}

static uint64_t percentile(const uint64_t *hist, uint64_t total, uint64_t max, double p) {
    if (!total) return 0;
    /* rank = ceil(total * p / 100), at least the first value (stats.py) */
    double exact = (double)total * p / 100.0;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank) {
            uint64_t high = bucket_high(b);
            return high < max ? high : max;
        }
    }
    return max;
}

/* ---- options --------------------------------------------------------------- */
static void unsupported(const char *what) {
    fprintf(stderr, "mqttload: unsupported: %s (use scripts/loadtest.py)\n", what);
    exit(EXIT_UNSUPPORTED);
}

static void read_credentials(const char *path) {
    FILE *fh = fopen(path, "r");
    if (!fh) die(EXIT_SETUP, "%s: %s", path, strerror(errno));
    char line[1024];
    int cap = 16, number = 0;
    S.users = xcalloc((size_t)cap, sizeof(char *));
    S.passwords = xcalloc((size_t)cap, sizeof(char *));
    while (fgets(line, sizeof line, fh)) {
        number++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        int blank = 1;
        for (size_t i = 0; i < n; i++) blank &= isspace((unsigned char)line[i]) != 0;
        if (blank) continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line) die(EXIT_SETUP, "%s:%d: expected user:password", path, number);
        *colon = 0;
        if (S.n_users == cap) {
            cap *= 2;
            S.users = realloc(S.users, (size_t)cap * sizeof(char *));
            S.passwords = realloc(S.passwords, (size_t)cap * sizeof(char *));
            if (!S.users || !S.passwords) die(EXIT_SETUP, "out of memory");
        }
        S.users[S.n_users] = strdup(line);
        S.passwords[S.n_users] = strdup(colon + 1);
        S.n_users++;
    }
    fclose(fh);
    if (!S.n_users) die(EXIT_SETUP, "%s: no credentials", path);
}

static int int_arg(const char *name, const char *v, int min) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < min || x > 1000000000L) die(EXIT_SETUP, "--%s: bad value %s", name, v);
    return (int)x;
}

static double float_arg(const char *name, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (*end) die(EXIT_SETUP, "--%s: bad value %s", name, v);
    return x;
}

static void parse_args(int argc, char **argv) {
    enum { O_HOST = 256, O_PORT, O_QOS, O_COUNT, O_PAYLOAD, O_INFLIGHT, O_RATE, O_PUBS, O_SUBS,
           O_PAIRS, O_CONNS, O_CC, O_HOLD, O_PROTO, O_CLEAN, O_PERSIST, O_DL, O_DT, O_PROCS,
           O_PID, O_CAFILE, O_CREDS, O_PLOT, O_JSON, O_REMOTE, O_DRY };
    static struct option opts[] = {
        {"host", 1, 0, O_HOST}, {"port", 1, 0, O_PORT}, {"qos", 1, 0, O_QOS},
        {"count", 1, 0, O_COUNT}, {"payload", 1, 0, O_PAYLOAD}, {"inflight", 1, 0, O_INFLIGHT},
        {"rate", 1, 0, O_RATE}, {"publishers", 1, 0, O_PUBS}, {"subscribers", 1, 0, O_SUBS},
        {"pairs", 1, 0, O_PAIRS}, {"connections", 1, 0, O_CONNS},
        {"connect-concurrency", 1, 0, O_CC}, {"hold", 1, 0, O_HOLD}, {"protocol", 1, 0, O_PROTO},
        {"clean", 0, 0, O_CLEAN}, {"persistent", 0, 0, O_PERSIST},
        {"duration-limit", 1, 0, O_DL}, {"drain-timeout", 1, 0, O_DT},
        {"processes", 1, 0, O_PROCS}, {"broker-pid", 1, 0, O_PID}, {"cafile", 1, 0, O_CAFILE},
        {"credentials", 1, 0, O_CREDS}, {"plot", 1, 0, O_PLOT}, {"json", 0, 0, O_JSON},
        {"allow-remote", 0, 0, O_REMOTE}, {"dry-run", 0, 0, O_DRY}, {0, 0, 0, 0},
    };
    int allow_remote = 0, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_HOST: S.host = optarg; break;
        case O_PORT: S.port = int_arg("port", optarg, 1); break;
        case O_QOS: S.qos = int_arg("qos", optarg, 0); if (S.qos > 2) die(EXIT_SETUP, "--qos 0-2"); break;
        case O_COUNT: S.count = int_arg("count", optarg, 1); break;
        case O_PAYLOAD: S.payload = int_arg("payload", optarg, 16); break;
        case O_INFLIGHT: S.inflight = int_arg("inflight", optarg, 1); if (S.inflight > 65535) die(EXIT_SETUP, "--inflight 1-65535"); break;
        case O_RATE: S.rate = float_arg("rate", optarg); break;
        case O_PUBS: S.publishers = int_arg("publishers", optarg, 1); break;
        case O_SUBS: S.subscribers = int_arg("subscribers", optarg, 1); break;
        case O_PAIRS: S.pairs = int_arg("pairs", optarg, 1); break;
        case O_CONNS: S.connections = int_arg("connections", optarg, 1); break;
        case O_CC: S.connect_concurrency = int_arg("connect-concurrency", optarg, 1); break;
        case O_HOLD: break; /* the connections scenario only */
        case O_PROTO: S.protocol = int_arg("protocol", optarg, 4); if (S.protocol != 4) unsupported("--protocol 5"); break;
        case O_CLEAN: S.clean = 1; break;
        case O_PERSIST: S.clean = 0; break;
        case O_DL: S.duration_limit = float_arg("duration-limit", optarg); break;
        case O_DT: S.drain_timeout = float_arg("drain-timeout", optarg); break;
        case O_PROCS: S.processes = int_arg("processes", optarg, 0); break;
        case O_PID: broker_pid = int_arg("broker-pid", optarg, 1); break;
        case O_CAFILE: S.cafile = optarg; break;
        case O_CREDS: S.credentials_file = optarg; break;
        case O_PLOT: unsupported("--plot"); break;
        case O_JSON: break; /* always: one JSON line on stdout */
        case O_REMOTE: allow_remote = 1; break;
        case O_DRY: S.dry_run = 1; break;
        default: die(EXIT_SETUP, "bad option (see scripts/loadtest.py --help)");
        }
    }
    if (optind != argc - 1) die(EXIT_SETUP, "one SCENARIO expected");
    S.scenario = argv[optind];
    const char *known[] = {"fanin", "fanout", "pairs", "latency", "connect-rate"};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= !strcmp(S.scenario, known[i]);
    if (!ok) {
        if (!strcmp(S.scenario, "connections")) unsupported("the connections scenario");
        die(EXIT_SETUP, "unknown scenario %s", S.scenario);
    }
    if (!allow_remote && strncmp(S.host, "127.", 4) && strcmp(S.host, "localhost"))
        die(EXIT_SETUP, "%s is not a loopback address; pass --allow-remote", S.host);
    if (!strcmp(S.scenario, "latency") && S.rate == 0) S.rate = 10000.0;
    if (S.credentials_file) read_credentials(S.credentials_file);
    static const char hex[] = "0123456789abcdef";
    unsigned seed = (unsigned)(now_ns() ^ (getpid() << 16));
    for (int i = 0; i < 8; i++) S.run_id[i] = hex[rand_r(&seed) & 15];
}

/* ---- the plan ---------------------------------------------------------------- */
static void source_ip(char *out, int index) {
    out[0] = 0;
    if (strncmp(S.host, "127.", 4) == 0) snprintf(out, 16, "127.0.0.%d", 1 + index / 10000);
}

static void build_plan(void) {
    const char *sc = S.scenario;
    int fanout = !strcmp(sc, "fanout"), latency = !strcmp(sc, "latency");
    if (!strcmp(sc, "fanin")) n_pubs = S.publishers, n_subs = 1;
    else if (fanout || latency) n_pubs = 1, n_subs = fanout ? S.subscribers : 1;
    else if (!strcmp(sc, "pairs")) n_pubs = S.pairs, n_subs = S.pairs;
    else n_churn = S.connections;
    n_specs = n_subs + n_pubs + n_churn;
    specs = xcalloc((size_t)n_specs, sizeof(Spec));
    pub_counts = xcalloc((size_t)n_pubs, sizeof(int));
    /* order: subscribers, publishers, churn (scenarios.py's assignment order) */
    int k = 0;
    for (int i = 0; i < n_subs; i++, k++) {
        Spec *s = &specs[k];
        s->publisher_id = -1;
        s->subscriber = 1;
        snprintf(s->client_id, sizeof s->client_id, "lg-%s-s%d", S.run_id, i);
        if (!strcmp(sc, "fanin")) {
            snprintf(s->topic, sizeof s->topic, "flock/%s/fanin/+", S.run_id);
            s->expect_first = 0, s->expect_n = n_pubs;
        } else if (!strcmp(sc, "pairs")) {
            snprintf(s->topic, sizeof s->topic, "flock/%s/pair/%d", S.run_id, i);
            s->expect_first = i, s->expect_n = 1;
        } else {
            snprintf(s->topic, sizeof s->topic, "flock/%s/fanout", S.run_id);
            s->expect_first = 0, s->expect_n = 1;
        }
    }
    for (int i = 0; i < n_pubs; i++, k++) {
        Spec *s = &specs[k];
        s->publisher_id = i;
        s->count = fanout ? S.count : (S.count / n_pubs > 1 ? S.count / n_pubs : 1);
        s->rate = S.rate ? S.rate / n_pubs : 0.0;
        pub_counts[i] = s->count;
        snprintf(s->client_id, sizeof s->client_id, "lg-%s-p%d", S.run_id, i);
        if (!strcmp(sc, "fanin")) snprintf(s->topic, sizeof s->topic, "flock/%s/fanin/%d", S.run_id, i);
        else if (!strcmp(sc, "pairs")) snprintf(s->topic, sizeof s->topic, "flock/%s/pair/%d", S.run_id, i);
        else snprintf(s->topic, sizeof s->topic, "flock/%s/fanout", S.run_id);
    }
    for (int i = 0; i < n_churn; i++, k++) {
        Spec *s = &specs[k];
        s->publisher_id = -1;
        s->churn = 1;
        snprintf(s->client_id, sizeof s->client_id, "lg-%s-n%d", S.run_id, i);
        if (i >= 10000) source_ip(s->source_ip, i);
    }
    for (int i = 0; i < n_specs; i++) specs[i].user = S.n_users ? i % S.n_users : -1;
    /* process count (scenarios.process_count) */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    int needed = (n_specs + MAX_CONNECTIONS_PER_PROCESS - 1) / MAX_CONNECTIONS_PER_PROCESS;
    if (S.processes) {
        if (S.processes < needed)
            die(EXIT_SETUP, "%d connections need at least %d processes", n_specs, needed);
        n_procs = S.processes < n_specs ? S.processes : n_specs;
    } else {
        int want = (int)cpus < n_specs ? (int)cpus : n_specs;
        n_procs = needed > want ? needed : want;
    }
    if (n_procs < 1) n_procs = 1;
    for (int i = 0; i < n_specs; i++) specs[i].process = i % n_procs;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static void map_shared(void) {
    for (int i = 0; i < n_specs; i++) n_trackers += specs[i].expect_n;
    size_t size = align8(sizeof(Shared) + (size_t)n_procs * sizeof(Slot));
    size_t trackers_at = size;
    size += align8((size_t)n_trackers * sizeof(Tracker));
    completed_off = xcalloc((size_t)n_pubs, sizeof(uint64_t));
    for (int p = 0; p < n_pubs; p++) {
        completed_off[p] = size;
        size += align8(((size_t)pub_counts[p] + 7) / 8);
    }
    size_t bitmaps_at = size;
    for (int i = 0, t = 0; i < n_specs; i++) {
        specs[i].tracker_first = t;
        for (int j = 0; j < specs[i].expect_n; j++, t++) {
            int p = specs[i].expect_first + j;
            size += align8(((size_t)pub_counts[p] + 7) / 8);
        }
    }
    block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) die(EXIT_SETUP, "mmap %zu bytes: %s", size, strerror(errno));
    shared = (Shared *)block;
    trackers = (Tracker *)(block + trackers_at);
    size_t at = bitmaps_at;
    for (int i = 0, t = 0; i < n_specs; i++) {
        for (int j = 0; j < specs[i].expect_n; j++, t++) {
            int p = specs[i].expect_first + j;
            trackers[t].publisher_id = p;
            trackers[t].count = (uint64_t)pub_counts[p];
            trackers[t].highest = -1;
            trackers[t].bitmap_off = at;
            at += align8(((size_t)pub_counts[p] + 7) / 8);
        }
    }
}

/* ---- one connection ---------------------------------------------------------- */
enum { ST_TCP, ST_TLS, ST_CONNACK, ST_SUBACK, ST_UP, ST_CLOSED };

typedef struct {
    unsigned char *data;
    size_t len, off, cap;
} Buf;

typedef struct Conn {
    Spec *spec;
    int fd, state, events, stopping, tls_want_write, established;
    SSL *ssl;
    Buf in, out;
    int64_t deadline_ns, last_write_ns;
    /* publisher */
    int publishing, done, window, want_pump;
    int next_seq, next_pid, n_inflight;
    int32_t *inflight; /* packet id -> seq, -1 free */
    unsigned char *completed; /* shared bitmap */
    int64_t started_ns, wake_ns;
    unsigned char *tmpl; /* pre-encoded PUBLISH */
    size_t tmpl_len, pid_at, header_at;
    /* subscriber */
    unsigned char *awaiting_pubrel; /* QoS 2: 65536-bit set */
} Conn;

static Slot *me;
static int epfd;
static SSL_CTX *ssl_ctx;
static struct sockaddr_in broker_addr;
static int g_pending; /* connections between connect() and CONNACK/SUBACK */
static int64_t l_sent, l_completed, l_received, l_unique, l_unexpected, l_dropped, l_failed,
    l_connected, l_last_receive_ns;

static void note_error(const char *fmt, ...) {
    if (me->n_errors >= MAX_ERRORS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(me->errors[me->n_errors], ERROR_LEN, fmt, ap);
    va_end(ap);
    me->n_errors++;
}

static void buf_reserve(Buf *b, size_t extra) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->off) { /* compact */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die(EXIT_SETUP, "out of memory");
    b->cap = cap;
}

static void buf_put(Buf *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_ack(Conn *c, int type, int pid) {
    unsigned char a[4] = {(unsigned char)((type << 4) | (type == PUBREL ? 2 : 0)), 2,
                          (unsigned char)(pid >> 8), (unsigned char)pid};
    buf_put(&c->out, a, 4);
}

static size_t put_varint(unsigned char *p, size_t v) {
    size_t n = 0;
    do {
        unsigned char byte = v & 0x7f;
        v >>= 7;
        p[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return n;
}

static size_t put_str(unsigned char *p, const char *s, size_t len) {
    p[0] = (unsigned char)(len >> 8), p[1] = (unsigned char)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

static void put_connect(Conn *c) {
    unsigned char body[1024], pkt[1100];
    size_t n = put_str(body, "MQTT", 4);
    const char *user = c->spec->user >= 0 ? S.users[c->spec->user] : NULL;
    const char *pass = c->spec->user >= 0 ? S.passwords[c->spec->user] : NULL;
    body[n++] = 4;
    body[n++] = (unsigned char)((S.clean ? 0x02 : 0) | (user ? 0xC0 : 0));
    body[n++] = 0, body[n++] = KEEPALIVE;
    n += put_str(body + n, c->spec->client_id, strlen(c->spec->client_id));
    if (user) {
        size_t ul = strlen(user), pl = strlen(pass);
        if (ul + pl > 900) die(EXIT_SETUP, "credentials too long");
        n += put_str(body + n, user, ul);
        n += put_str(body + n, pass, pl);
    }
    pkt[0] = CONNECT << 4;
    size_t h = 1 + put_varint(pkt + 1, n);
    memcpy(pkt + h, body, n);
    buf_put(&c->out, pkt, h + n);
}

static void put_subscribe(Conn *c) {
    unsigned char body[256], pkt[300];
    size_t n = 0;
    body[n++] = 0, body[n++] = 1; /* packet id 1 */
    n += put_str(body + n, c->spec->topic, strlen(c->spec->topic));
    body[n++] = (unsigned char)S.qos;
    pkt[0] = (SUBSCRIBE << 4) | 2;
    size_t h = 1 + put_varint(pkt + 1, n);
    memcpy(pkt + h, body, n);
    buf_put(&c->out, pkt, h + n);
}

static void make_template(Conn *c) {
    size_t tl = strlen(c->spec->topic);
    size_t variable = 2 + tl + (S.qos ? 2 : 0);
    size_t remaining = variable + (size_t)S.payload;
    c->tmpl = xcalloc(1, 8 + remaining);
    c->tmpl[0] = (unsigned char)((PUBLISH << 4) | (S.qos << 1));
    size_t h = 1 + put_varint(c->tmpl + 1, remaining);
    put_str(c->tmpl + h, c->spec->topic, tl);
    c->pid_at = h + 2 + tl;
    c->header_at = h + variable;
    c->tmpl_len = h + remaining;
}

static void set_events(Conn *c) {
    int want = EPOLLIN;
    if (c->state == ST_TCP || c->tls_want_write || c->out.len > c->out.off) want |= EPOLLOUT;
    if (want != c->events) {
        struct epoll_event ev = {.events = (uint32_t)want, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = want;
    }
}

static void conn_close(Conn *c, const char *why) {
    if (c->state == ST_CLOSED) return;
    if (c->established && !c->stopping) {
        l_dropped++;
        if (why) note_error("%s: connection closed (%s)", c->spec->client_id, why);
    }
    if (c->state >= ST_TCP && c->state <= ST_SUBACK) g_pending--;
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->state = ST_CLOSED;
    free(c->in.data), free(c->out.data); /* connect-rate opens thousands */
    memset(&c->in, 0, sizeof c->in), memset(&c->out, 0, sizeof c->out);
    if (c->spec->publisher_id >= 0) c->done = 1; /* it cannot finish */
}

/* Write what is buffered. 0 fine (maybe partial), -1 the connection is gone. */
static int conn_flush(Conn *c) {
    c->tls_want_write = 0;
    while (c->out.off < c->out.len) {
        size_t n = c->out.len - c->out.off;
        if (c->ssl) {
            int r = SSL_write(c->ssl, c->out.data + c->out.off, n > 1 << 30 ? 1 << 30 : (int)n);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) c->tls_want_write = 1;
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
                conn_close(c, "TLS write failed");
                return -1;
            }
            c->out.off += (size_t)r;
        } else {
            ssize_t r = send(c->fd, c->out.data + c->out.off, n, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                conn_close(c, strerror(errno));
                return -1;
            }
            c->out.off += (size_t)r;
        }
        c->last_write_ns = now_ns();
    }
    if (c->out.off == c->out.len) c->out.off = c->out.len = 0;
    set_events(c);
    return 0;
}

static void mark_completed(Conn *c, int seq) {
    c->completed[seq >> 3] |= (unsigned char)(1u << (seq & 7));
    l_completed++;
}

static void check_done(Conn *c) {
    if (c->next_seq >= c->spec->count && c->n_inflight == 0) c->done = 1;
}

/* Send what the window, the write buffer and the rate allow (client.py pump). */
static void pump(Conn *c, int64_t now) {
    c->want_pump = 0;
    if (!c->publishing || c->state != ST_UP || c->done) return;
    int count = c->spec->count, limit = count;
    if (c->spec->rate > 0) {
        double elapsed = (double)(now - c->started_ns) / 1e9;
        double allowed = elapsed * c->spec->rate + 1;
        if (allowed < count) limit = (int)allowed;
    }
    int budget = PUMP_BATCH, seq = c->next_seq;
    uint32_t pub = (uint32_t)c->spec->publisher_id;
    while (seq < limit && budget && c->out.len - c->out.off < WRITE_HIGH_WATER) {
        int pid = 0;
        if (S.qos) {
            if (c->n_inflight >= c->window) break;
            pid = c->next_pid;
            while (c->inflight[pid] >= 0) pid = pid % 65535 + 1;
            c->next_pid = pid % 65535 + 1;
            c->inflight[pid] = seq;
            c->n_inflight++;
            c->tmpl[c->pid_at] = (unsigned char)(pid >> 8);
            c->tmpl[c->pid_at + 1] = (unsigned char)pid;
        }
        unsigned char *h = c->tmpl + c->header_at;
        uint32_t be_pub = htonl(pub), be_seq = htonl((uint32_t)seq);
        uint64_t t = (uint64_t)now_ns();
        uint32_t hi = htonl((uint32_t)(t >> 32)), lo = htonl((uint32_t)t);
        memcpy(h, &be_pub, 4), memcpy(h + 4, &be_seq, 4), memcpy(h + 8, &hi, 4), memcpy(h + 12, &lo, 4);
        buf_put(&c->out, c->tmpl, c->tmpl_len);
        if (!S.qos) mark_completed(c, seq);
        seq++;
        budget--;
    }
    l_sent += seq - c->next_seq;
    c->next_seq = seq;
    if (conn_flush(c) < 0) return;
    if (!budget) c->want_pump = 1;
    else if (seq == limit && limit < count) c->wake_ns = c->started_ns + (int64_t)(seq / c->spec->rate * 1e9);
    if (!S.qos && seq >= count) c->done = 1;
}

static void on_publish(Conn *c, unsigned char first, const unsigned char *body, size_t len) {
    if (len < 2) return;
    size_t pos = 2 + ((size_t)body[0] << 8 | body[1]);
    int qos = (first >> 1) & 3, pid = 0;
    if (qos) {
        if (pos + 2 > len) return;
        pid = body[pos] << 8 | body[pos + 1];
        pos += 2;
    }
    if (qos == 2) {
        put_ack(c, PUBREC, pid);
        unsigned char bit = (unsigned char)(1u << (pid & 7));
        if (c->awaiting_pubrel[pid >> 3] & bit) return; /* a re-sent PUBLISH [MQTT-4.3.3] */
        c->awaiting_pubrel[pid >> 3] |= bit;
    } else if (qos == 1) {
        put_ack(c, PUBACK, pid);
    }
    l_received++;
    if (pos + 16 > len) {
        l_unexpected++;
        return;
    }
    uint32_t p, seq, hi, lo;
    memcpy(&p, body + pos, 4), memcpy(&seq, body + pos + 4, 4);
    memcpy(&hi, body + pos + 8, 4), memcpy(&lo, body + pos + 12, 4);
    p = ntohl(p), seq = ntohl(seq);
    int64_t sent_ns = (int64_t)((uint64_t)ntohl(hi) << 32 | ntohl(lo));
    Spec *s = c->spec;
    if ((int64_t)p < s->expect_first || (int64_t)p >= s->expect_first + s->expect_n) {
        l_unexpected++;
        return;
    }
    Tracker *t = &trackers[s->tracker_first + (int)p - s->expect_first];
    if (seq >= ((t->count + 7) / 8) * 8) {
        l_unexpected++;
        return;
    }
    t->received++;
    unsigned char *seen = block + t->bitmap_off;
    unsigned char bit = (unsigned char)(1u << (seq & 7));
    if (seen[seq >> 3] & bit) {
        t->duplicates++;
        if (first & 0x08) t->dup_flagged++;
        return;
    }
    seen[seq >> 3] |= bit;
    if ((int64_t)seq < t->highest) t->out_of_order++;
    else t->highest = seq;
    int64_t now = now_ns();
    uint64_t lat = now > sent_ns ? (uint64_t)(now - sent_ns) : 0;
    me->hist[bucket_of(lat)]++;
    me->hist_total++;
    if (lat > me->hist_max) me->hist_max = lat;
    l_last_receive_ns = now;
    l_unique++;
}

static void on_complete(Conn *c, int pid) {
    if (!c->inflight || c->inflight[pid] < 0) return;
    int seq = c->inflight[pid];
    c->inflight[pid] = -1;
    c->n_inflight--;
    mark_completed(c, seq);
    check_done(c);
    c->want_pump = 1;
}

static void established(Conn *c) {
    g_pending--;
    c->state = ST_UP;
    c->established = 1;
    l_connected++;
}

static void on_packet(Conn *c, unsigned char first, const unsigned char *body, size_t len) {
    int kind = first >> 4;
    int pid = len >= 2 ? body[0] << 8 | body[1] : 0;
    switch (kind) {
    case PUBLISH: on_publish(c, first, body, len); break;
    case PUBACK: on_complete(c, pid); break;
    case PUBREC: put_ack(c, PUBREL, pid); break;
    case PUBREL:
        if (c->awaiting_pubrel) c->awaiting_pubrel[pid >> 3] &= (unsigned char)~(1u << (pid & 7));
        put_ack(c, PUBCOMP, pid);
        break;
    case PUBCOMP: on_complete(c, pid); break;
    case CONNACK:
        if (c->state != ST_CONNACK) break;
        if (len < 2 || body[1] != 0) {
            note_error("%s: CONNACK code %d", c->spec->client_id, len >= 2 ? body[1] : -1);
            l_failed++;
            conn_close(c, NULL);
            return;
        }
        if (c->spec->churn) {
            l_completed++;
            me->last_publish_ns = now_ns(); /* connect-rate: the last CONNACK */
            static const unsigned char disconnect[2] = {DISCONNECT << 4, 0};
            c->stopping = 1;
            buf_put(&c->out, disconnect, 2);
            conn_flush(c);
            if (c->ssl) SSL_shutdown(c->ssl);
            conn_close(c, NULL);
        } else if (c->spec->subscriber) {
            c->state = ST_SUBACK;
            put_subscribe(c);
        } else {
            established(c);
        }
        break;
    case SUBACK:
        if (c->state != ST_SUBACK) break;
        if (len < 3 || body[2] >= 0x80) {
            note_error("%s: SUBACK refused", c->spec->client_id);
            l_failed++;
            conn_close(c, NULL);
            return;
        }
        established(c);
        break;
    case PINGRESP: break;
    case DISCONNECT: conn_close(c, "DISCONNECT from the broker"); break;
    default: break;
    }
}

static void parse_input(Conn *c) {
    Buf *b = &c->in;
    while (c->state != ST_CLOSED && b->len - b->off >= 2) {
        unsigned char *p = b->data + b->off;
        size_t avail = b->len - b->off, length = 0, i = 1;
        int shift = 0, complete = 0;
        while (i < avail && i <= 4) {
            length |= (size_t)(p[i] & 0x7f) << shift;
            if (!(p[i++] & 0x80)) { complete = 1; break; }
            shift += 7;
        }
        if (!complete) {
            if (i > 4) { conn_close(c, "bad remaining length"); return; }
            break;
        }
        if (avail - i < length) break;
        on_packet(c, p[0], p + i, length);
        b->off += i + length;
    }
    if (b->off == b->len) b->off = b->len = 0;
}

static void conn_read(Conn *c) {
    for (;;) {
        buf_reserve(&c->in, c->spec->churn ? 512 : 65536);
        size_t room = c->in.cap - c->in.len;
        ssize_t r;
        if (c->ssl) {
            int n = SSL_read(c->ssl, c->in.data + c->in.len, (int)room);
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ) break;
                if (e == SSL_ERROR_WANT_WRITE) { c->tls_want_write = 1; break; }
                conn_close(c, e == SSL_ERROR_ZERO_RETURN ? "EOF" : "TLS read failed");
                return;
            }
            r = n;
        } else {
            r = recv(c->fd, c->in.data + c->in.len, room, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                conn_close(c, strerror(errno));
                return;
            }
            if (r == 0) { conn_close(c, "EOF"); return; }
        }
        c->in.len += (size_t)r;
        parse_input(c);
        if (c->state == ST_CLOSED) return;
        if ((size_t)r < room && !c->ssl) break;
    }
    if (c->out.len > c->out.off) conn_flush(c);
    else set_events(c);
}

static void tls_handshake(Conn *c) {
    int r = SSL_connect(c->ssl);
    c->tls_want_write = 0;
    if (r == 1) {
        c->state = ST_CONNACK;
        put_connect(c);
        conn_flush(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE) c->tls_want_write = 1;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_events(c);
        return;
    }
    unsigned long err = ERR_get_error();
    char msg[160];
    ERR_error_string_n(err, msg, sizeof msg);
    long v = SSL_get_verify_result(c->ssl);
    note_error("%s: TLS handshake failed: %s%s%s", c->spec->client_id, msg,
               v != X509_V_OK ? ": " : "", v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
    l_failed++;
    conn_close(c, NULL);
}

static void tcp_connected(Conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        note_error("%s: connect: %s", c->spec->client_id, strerror(err));
        l_failed++;
        conn_close(c, NULL);
        return;
    }
    if (ssl_ctx) {
        c->state = ST_TLS;
        tls_handshake(c);
    } else {
        c->state = ST_CONNACK;
        put_connect(c);
        conn_flush(c);
    }
}

static void conn_handle(Conn *c, uint32_t ev) {
    if (c->state == ST_CLOSED) return;
    if (c->state == ST_TCP) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) tcp_connected(c);
        return;
    }
    if (c->state == ST_TLS) {
        tls_handshake(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
    if (c->state != ST_CLOSED && (ev & EPOLLOUT)) {
        conn_flush(c);
        if (c->publishing) c->want_pump = 1;
    }
}

static int conn_open(Conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->spec->source_ip[0]) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, c->spec->source_ip, &src.sin_addr);
        setsockopt(c->fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            note_error("bind %s: %s", c->spec->source_ip, strerror(errno));
            close(c->fd);
            return -1;
        }
    }
    c->state = ST_TCP;
    c->deadline_ns = now_ns() + CONNECT_TIMEOUT_NS;
    c->events = EPOLLIN | EPOLLOUT;
    if (connect(c->fd, (struct sockaddr *)&broker_addr, sizeof broker_addr) < 0 &&
        errno != EINPROGRESS) {
        note_error("%s: connect: %s", c->spec->client_id, strerror(errno));
        close(c->fd);
        return -1;
    }
    if (ssl_ctx) {
        c->ssl = SSL_new(ssl_ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        struct in_addr ip;
        if (inet_pton(AF_INET, S.host, &ip) == 1) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), S.host);
        } else {
            SSL_set_tlsext_host_name(c->ssl, S.host);
            SSL_set1_host(c->ssl, S.host);
        }
    }
    struct epoll_event ev = {.events = (uint32_t)c->events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* ---- one client process ------------------------------------------------------ */
static void publish_counters(void) {
    __atomic_store_n(&me->sent, l_sent, __ATOMIC_RELAXED);
    __atomic_store_n(&me->completed, l_completed, __ATOMIC_RELAXED);
    __atomic_store_n(&me->received, l_received, __ATOMIC_RELAXED);
    __atomic_store_n(&me->unique, l_unique, __ATOMIC_RELAXED);
    __atomic_store_n(&me->unexpected, l_unexpected, __ATOMIC_RELAXED);
    __atomic_store_n(&me->dropped, l_dropped, __ATOMIC_RELAXED);
    __atomic_store_n(&me->failed, l_failed, __ATOMIC_RELAXED);
    __atomic_store_n(&me->connected, l_connected, __ATOMIC_RELAXED);
    __atomic_store_n(&me->last_receive_ns, l_last_receive_ns, __ATOMIC_RELEASE);
}

static SSL_CTX *make_ssl_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die(EXIT_SETUP, "SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, S.cafile, NULL) != 1)
        die(EXIT_SETUP, "cannot load CA file %s", S.cafile);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static void child_main(int index, int go_fd, int stop_fd) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    me = &shared->slots[index];
    if (S.cafile) ssl_ctx = make_ssl_ctx();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int n = 0;
    for (int i = 0; i < n_specs; i++) n += specs[i].process == index;
    Conn *conns = xcalloc((size_t)n, sizeof(Conn));
    int n_pub = 0;
    for (int i = 0, k = 0; i < n_specs; i++) {
        if (specs[i].process != index) continue;
        Conn *c = &conns[k++];
        c->spec = &specs[i];
        c->fd = -1;
        c->state = -1; /* not opened yet */
        c->window = S.inflight;
        c->next_pid = 1;
        if (specs[i].publisher_id >= 0) {
            n_pub++;
            c->completed = block + completed_off[specs[i].publisher_id];
            if (S.qos) {
                c->inflight = malloc(65536 * sizeof(int32_t));
                if (!c->inflight) die(EXIT_SETUP, "out of memory");
                memset(c->inflight, 0xff, 65536 * sizeof(int32_t));
            }
            make_template(c);
        }
        if (specs[i].subscriber && S.qos == 2) c->awaiting_pubrel = xcalloc(8192, 1);
    }
    static int go_tag, stop_tag, timer_tag;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &go_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, go_fd, &ev);
    ev.data.ptr = &stop_tag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, stop_fd, &ev);
    ev.data.ptr = &timer_tag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);

    int churn = !strcmp(S.scenario, "connect-rate");
    int opened = 0, going = 0, stop = 0, ready_sent = 0;
    int64_t give_up = now_ns() + (int64_t)(S.duration_limit * 0.8e9);
    int64_t armed = 0, next_sweep = 0, next_ping = now_ns() + KEEPALIVE / 4 * 1000000000LL;
    struct epoll_event events[256];
    while (!stop) {
        int64_t now = now_ns();
        /* open connections, connect_concurrency handshakes at a time: before
         * "go" for clients that stay, after it for connect-rate's */
        if (!churn || going) {
            while (opened < n && g_pending < S.connect_concurrency) {
                Conn *c = &conns[opened++];
                if (!churn && now >= give_up) { l_failed++; c->state = ST_CLOSED; continue; }
                if (conn_open(c) < 0) { l_failed++; c->state = ST_CLOSED; continue; }
                g_pending++;
            }
            if (now >= next_sweep) { /* connect timeouts */
                next_sweep = now + 100000000LL;
                for (int i = 0; i < opened; i++) {
                    Conn *c = &conns[i];
                    if (c->state >= ST_TCP && c->state <= ST_SUBACK && now > c->deadline_ns) {
                        note_error("%s: TimeoutError: no CONNACK/SUBACK in 5 s", c->spec->client_id);
                        l_failed++;
                        conn_close(c, NULL);
                    }
                }
            }
            if (opened == n && g_pending == 0) {
                if (!churn && !ready_sent) {
                    ready_sent = 1;
                    publish_counters();
                    __atomic_store_n(&me->ready, 1, __ATOMIC_RELEASE);
                }
                if (churn && !me->published) {
                    publish_counters();
                    __atomic_store_n(&me->published, 1, __ATOMIC_RELEASE);
                }
            }
        }
        if (churn && !ready_sent) {
            ready_sent = 1;
            __atomic_store_n(&me->ready, 1, __ATOMIC_RELEASE);
        }
        /* publishers */
        int more = 0;
        int64_t wake = 0;
        if (going && !churn) {
            int done = 0;
            for (int i = 0; i < n; i++) {
                Conn *c = &conns[i];
                if (c->spec->publisher_id < 0) continue;
                if (c->wake_ns && now >= c->wake_ns) c->wake_ns = 0, c->want_pump = 1;
                if (c->want_pump) pump(c, now);
                more |= c->want_pump;
                if (c->wake_ns && (!wake || c->wake_ns < wake)) wake = c->wake_ns;
                done += c->done || c->state == ST_CLOSED || c->state == -1;
            }
            if (done == n_pub && !me->published) {
                me->last_publish_ns = now_ns();
                publish_counters();
                __atomic_store_n(&me->published, 1, __ATOMIC_RELEASE);
            }
        }
        if (now >= next_ping) { /* PINGREQ on connections quiet for half the keepalive */
            next_ping = now + KEEPALIVE / 4 * 1000000000LL;
            static const unsigned char ping[2] = {12 << 4, 0};
            for (int i = 0; i < n; i++) {
                Conn *c = &conns[i];
                if (c->state == ST_UP && now - c->last_write_ns > KEEPALIVE / 2 * 1000000000LL) {
                    buf_put(&c->out, ping, 2);
                    conn_flush(c);
                }
            }
        }
        if (wake && wake != armed) {
            armed = wake;
            struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        publish_counters();
        int timeout = more ? 0 : 20;
        int got = epoll_wait(epfd, events, 256, timeout);
        for (int i = 0; i < got; i++) {
            void *p = events[i].data.ptr;
            if (p == &go_tag) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, go_fd, NULL);
                going = 1;
                int64_t go_ns = __atomic_load_n(&shared->go_ns, __ATOMIC_ACQUIRE);
                for (int j = 0; j < n; j++) {
                    Conn *c = &conns[j];
                    if (c->spec->publisher_id >= 0 && c->state == ST_UP) {
                        c->publishing = 1;
                        c->started_ns = go_ns;
                        c->want_pump = 1;
                        if (c->spec->count == 0) c->done = 1;
                    }
                }
            } else if (p == &stop_tag) {
                stop = 1;
            } else if (p == &timer_tag) {
                uint64_t x;
                ssize_t r = read(tfd, &x, sizeof x);
                (void)r;
            } else {
                conn_handle((Conn *)p, events[i].events);
            }
        }
    }
    publish_counters();
    /* DISCONNECT and close; the broker sees a clean end */
    static const unsigned char disconnect[2] = {DISCONNECT << 4, 0};
    for (int i = 0; i < n; i++) {
        Conn *c = &conns[i];
        if (c->state < ST_TCP || c->state == ST_CLOSED) continue;
        c->stopping = 1;
        if (c->state == ST_UP) {
            buf_put(&c->out, disconnect, 2);
            conn_flush(c);
            if (c->ssl) SSL_shutdown(c->ssl);
        }
        conn_close(c, NULL);
    }
    __atomic_store_n(&me->finished, 1, __ATOMIC_RELEASE);
    _exit(0);
}

/* ---- the coordinator --------------------------------------------------------- */
static int64_t sum(size_t field_off) {
    int64_t total = 0;
    for (int i = 0; i < n_procs; i++)
        total += __atomic_load_n((int64_t *)((char *)&shared->slots[i] + field_off), __ATOMIC_RELAXED);
    return total;
}
#define SUM(f) sum(offsetof(Slot, f))

static int all(size_t field_off) {
    for (int i = 0; i < n_procs; i++)
        if (!__atomic_load_n((int *)((char *)&shared->slots[i] + field_off), __ATOMIC_ACQUIRE)) return 0;
    return 1;
}
#define ALL(f) all(offsetof(Slot, f))

/* The broker's RSS: its process and every descendant (broker_rss.py), from
 * /proc/PID/stat, sampled every RSS_INTERVAL while the run goes on. */
#define RSS_INTERVAL_NS 500000000LL
static int64_t rss_peak, rss_next;

static int64_t broker_rss(void) {
    DIR *dir = opendir("/proc");
    if (!dir) return 0;
    int cap = 1024, n = 0;
    int *pid = malloc((size_t)cap * sizeof(int)), *ppid = malloc((size_t)cap * sizeof(int));
    int64_t *rss = malloc((size_t)cap * sizeof(int64_t));
    struct dirent *de;
    while (pid && ppid && rss && (de = readdir(dir))) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        char path[300], text[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, text, sizeof text - 1);
        close(fd);
        if (len <= 0) continue;
        text[len] = 0;
        char *p = strrchr(text, ')');
        if (!p) continue;
        /* after the command: state ppid ... rss is the 22nd field from state */
        char *tok, *save = NULL;
        int field = 0, parent = 0;
        long long pages = 0;
        for (tok = strtok_r(p + 2, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            field++;
            if (field == 2) parent = atoi(tok);
            if (field == 22) { pages = atoll(tok); break; }
        }
        if (n == cap) {
            cap *= 2;
            pid = realloc(pid, (size_t)cap * sizeof(int));
            ppid = realloc(ppid, (size_t)cap * sizeof(int));
            rss = realloc(rss, (size_t)cap * sizeof(int64_t));
            if (!pid || !ppid || !rss) break;
        }
        pid[n] = atoi(de->d_name), ppid[n] = parent, rss[n] = pages * sysconf(_SC_PAGESIZE);
        n++;
    }
    closedir(dir);
    int64_t total = 0;
    if (pid && ppid && rss) {
        /* the tree under broker_pid: mark until nothing changes (it is shallow) */
        char *in = calloc((size_t)n + 1, 1);
        int changed = 1;
        while (in && changed) {
            changed = 0;
            for (int i = 0; i < n; i++) {
                if (in[i]) continue;
                int yes = pid[i] == broker_pid;
                for (int j = 0; !yes && j < n; j++) yes = in[j] && pid[j] == ppid[i];
                if (yes) in[i] = 1, changed = 1;
            }
        }
        for (int i = 0; in && i < n; i++) total += in[i] ? rss[i] : 0;
        free(in);
    }
    free(pid), free(ppid), free(rss);
    return total;
}

static void sample_rss(void) {
    int64_t now = now_ns();
    if (!broker_pid || now < rss_next) return;
    rss_next = now + RSS_INTERVAL_NS;
    int64_t rss = broker_rss();
    if (rss > rss_peak) rss_peak = rss;
}

static pid_t *pids;
static int *exited; /* 1 when waited for */
static int lost_workers;

static int reap_some(int block_ms) {
    /* wait for children that have exited; returns how many are still alive */
    int alive = 0;
    for (int i = 0; i < n_procs; i++) {
        if (exited[i]) continue;
        int status;
        pid_t r = waitpid(pids[i], &status, WNOHANG);
        if (r == pids[i]) {
            exited[i] = 1;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) lost_workers++;
        } else {
            alive++;
        }
    }
    sample_rss();
    if (alive && block_ms) usleep((useconds_t)block_ms * 1000);
    return alive;
}

static uint64_t popcount_bitmap(const unsigned char *b, size_t bits) {
    uint64_t n = 0;
    size_t bytes = (bits + 7) / 8;
    for (size_t i = 0; i < bytes; i++) n += (uint64_t)__builtin_popcount(b[i]);
    return n;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    build_plan();
    if (S.dry_run) {
        printf("{\"generator\": \"native\", \"processes\": %d, \"clients\": %d}\n", n_procs, n_specs);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(S.host, NULL, &hints, &ai) != 0) die(EXIT_SETUP, "cannot resolve %s", S.host);
    broker_addr = *(struct sockaddr_in *)ai->ai_addr;
    broker_addr.sin_port = htons((uint16_t)S.port);
    freeaddrinfo(ai);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    map_shared();
    int go_pipe[2], stop_pipe[2];
    if (pipe2(go_pipe, O_CLOEXEC) || pipe2(stop_pipe, O_CLOEXEC)) die(EXIT_SETUP, "pipe");
    pids = xcalloc((size_t)n_procs, sizeof(pid_t));
    exited = xcalloc((size_t)n_procs, sizeof(int));
    fflush(stdout);
    for (int i = 0; i < n_procs; i++) {
        pid_t pid = fork();
        if (pid < 0) die(EXIT_SETUP, "fork: %s", strerror(errno));
        if (pid == 0) {
            close(go_pipe[1]);
            close(stop_pipe[1]);
            child_main(i, go_pipe[0], stop_pipe[0]);
        }
        pids[i] = pid;
    }
    close(go_pipe[0]);
    close(stop_pipe[0]);

    double started = (double)now_ns() / 1e9, deadline = started + S.duration_limit;
    int timed_out = 0, setup_failed = 0;
    /* connect and subscribe */
    while (!ALL(ready)) {
        if ((double)now_ns() / 1e9 >= deadline) { timed_out = 1; break; }
        if (reap_some(5) < n_procs) break; /* a child died */
    }
    setup_failed = timed_out || lost_workers || !ALL(ready) || SUM(failed) > 0;
    for (int i = 0; i < n_procs; i++) setup_failed |= exited[i];
    int64_t go_ns = now_ns();
    __atomic_store_n(&shared->go_ns, go_ns, __ATOMIC_RELEASE);
    double go = (double)go_ns / 1e9;
    int churn = !strcmp(S.scenario, "connect-rate");
    uint64_t full = 0, total_messages = 0;
    for (int p = 0; p < n_pubs; p++) total_messages += (uint64_t)pub_counts[p];
    for (int t = 0; t < n_trackers; t++) full += trackers[t].count;
    double per_message = total_messages ? (double)full / (double)total_messages : 0;
    if (!setup_failed) {
        close(go_pipe[1]); /* "go": every child sees EOF */
        int64_t last_unique = -1;
        double quiet_since = (double)now_ns() / 1e9;
        for (;;) {
            double now = (double)now_ns() / 1e9;
            if (now >= deadline) { timed_out = 1; break; }
            if (reap_some(churn ? 5 : 20) < n_procs) break;
            now = (double)now_ns() / 1e9;
            if (churn) {
                if (ALL(published)) break;
                continue;
            }
            int64_t unique = SUM(unique), completed = SUM(completed);
            if (unique != last_unique) last_unique = unique, quiet_since = now;
            if (!ALL(published)) continue;
            /* final counts are stored with "published" */
            if ((double)unique >= (double)completed * per_message && (uint64_t)unique >= full) break;
            if (now - quiet_since >= S.drain_timeout) break;
        }
    }
    double ended = (double)now_ns() / 1e9;
    close(stop_pipe[1]); /* "stop" */
    if (setup_failed) close(go_pipe[1]);
    double until = deadline + STOP_GRACE_S;
    while (reap_some(5)) {
        if ((double)now_ns() / 1e9 >= until) {
            for (int i = 0; i < n_procs; i++) if (!exited[i]) kill(pids[i], SIGKILL);
            while (reap_some(5)) {}
            break;
        }
    }
    double seconds = ended - go;

    /* ---- the summary (runner.py's keys) ---- */
    int64_t sent = SUM(sent), completed = SUM(completed), unexpected = SUM(unexpected);
    int64_t dropped = SUM(dropped), failed = SUM(failed);
    int64_t last_pub = 0, last_rx = 0;
    uint64_t *hist = xcalloc(HIST_BUCKETS, sizeof(uint64_t));
    uint64_t hist_total = 0, hist_max = 0;
    for (int i = 0; i < n_procs; i++) {
        Slot *s = &shared->slots[i];
        if (s->last_publish_ns > last_pub) last_pub = s->last_publish_ns;
        if (s->last_receive_ns > last_rx) last_rx = s->last_receive_ns;
        for (int b = 0; b < HIST_BUCKETS; b++) hist[b] += s->hist[b];
        hist_total += s->hist_total;
        if (s->hist_max > hist_max) hist_max = s->hist_max;
    }
    uint64_t expected = 0, received = 0, unique = 0, lost = 0, dup = 0, dup_flagged = 0, ooo = 0;
    for (int t = 0; t < n_trackers; t++) {
        Tracker *tr = &trackers[t];
        const unsigned char *seen = block + tr->bitmap_off;
        const unsigned char *done = block + completed_off[tr->publisher_id];
        size_t bytes = (tr->count + 7) / 8;
        expected += popcount_bitmap(done, tr->count);
        unique += popcount_bitmap(seen, tr->count);
        for (size_t i = 0; i < bytes; i++) lost += (uint64_t)__builtin_popcount(done[i] & ~seen[i] & 0xff);
        received += tr->received;
        dup += tr->duplicates;
        dup_flagged += tr->dup_flagged;
        ooo += tr->out_of_order;
    }
    printf("{\"generator\": \"native\", \"scenario\": \"%s\", \"qos\": %d, \"protocol\": %d, "
           "\"clean\": %s, \"payload\": %d, \"publishers\": %d, \"subscribers\": %d, \"processes\": %d",
           S.scenario, S.qos, S.protocol, S.clean ? "true" : "false", S.payload, n_pubs, n_subs, n_procs);
    char violations[3][96];
    int n_violations = 0;
    if (churn) {
        double span = last_pub > go_ns ? (double)(last_pub - go_ns) / 1e9 : seconds;
        int64_t connects = completed;
        printf(", \"connects\": %lld, \"failed\": %lld, \"connect_s\": %.3f, \"connects_per_s\": %.0f",
               (long long)connects, (long long)failed, span, (double)connects / (span > 1e-9 ? span : 1e-9));
        if (connects < n_churn)
            snprintf(violations[n_violations++], 96, "%lld of %d connects failed", (long long)(n_churn - connects), n_churn);
    } else {
        double pub_s = last_pub > go_ns ? (double)(last_pub - go_ns) / 1e9 : seconds;
        double rx_s = last_rx > go_ns ? (double)(last_rx - go_ns) / 1e9 : seconds;
        if (pub_s < 1e-9) pub_s = 1e-9;
        if (rx_s < 1e-9) rx_s = 1e-9;
        printf(", \"sent\": %lld, \"completed\": %lld, \"expected\": %llu, \"received\": %llu, "
               "\"delivered\": %llu, \"lost\": %llu, \"dup\": %llu, \"dup_flagged\": %llu, "
               "\"out_of_order\": %llu, \"unexpected\": %lld, \"rejected\": 0, "
               "\"send_msgs_per_s\": %.0f, \"recv_msgs_per_s\": %.0f, \"deliveries_per_s\": %.0f, "
               "\"latency_p50_us\": %.1f, \"latency_p99_us\": %.1f, \"latency_p999_us\": %.1f, "
               "\"latency_max_us\": %.1f, \"dropped_connections\": %lld",
               (long long)sent, (long long)completed, (unsigned long long)expected,
               (unsigned long long)received, (unsigned long long)unique, (unsigned long long)lost,
               (unsigned long long)dup, (unsigned long long)dup_flagged, (unsigned long long)ooo,
               (long long)unexpected, (double)sent / pub_s,
               per_message ? (double)unique / per_message / rx_s : 0.0, (double)unique / rx_s,
               percentile(hist, hist_total, hist_max, 50) / 1000.0,
               percentile(hist, hist_total, hist_max, 99) / 1000.0,
               percentile(hist, hist_total, hist_max, 99.9) / 1000.0, hist_max / 1000.0,
               (long long)dropped);
        if (S.qos >= 1 && lost) snprintf(violations[n_violations++], 96, "%llu message(s) lost at QoS %d", (unsigned long long)lost, S.qos);
        if (S.qos >= 1 && ooo) snprintf(violations[n_violations++], 96, "%llu message(s) out of order at QoS %d", (unsigned long long)ooo, S.qos);
        if (S.qos == 2 && dup) snprintf(violations[n_violations++], 96, "%llu duplicate(s) at QoS 2", (unsigned long long)dup);
    }
    if (broker_pid) printf(", \"broker_rss_peak_mb\": %.1f", (double)rss_peak / (1 << 20));
    else printf(", \"broker_rss_peak_mb\": null");
    printf(", \"duration_s\": %.3f, \"timed_out\": %s, \"violations\": [",
           seconds, timed_out ? "true" : "false");
    for (int i = 0; i < n_violations; i++) {
        if (i) printf(", ");
        json_str(violations[i]);
    }
    printf("], \"errors\": [");
    int n_err = 0;
    if (lost_workers) {
        char msg[64];
        snprintf(msg, sizeof msg, "%d client process(es) died", lost_workers);
        json_str(msg);
        n_err++;
    }
    for (int i = 0; i < n_procs; i++)
        for (int j = 0; j < shared->slots[i].n_errors && n_err < 10; j++, n_err++) {
            if (n_err) printf(", ");
            json_str(shared->slots[i].errors[j]);
        }
    int code = setup_failed || lost_workers ? EXIT_SETUP
             : n_violations ? EXIT_VIOLATION
             : timed_out ? EXIT_INCOMPLETE : EXIT_OK;
    printf("], \"exit_code\": %d}\n", code);
    for (int i = 0; i < n_violations; i++) fprintf(stderr, "mqttload: %s\n", violations[i]);
    return code;
}
