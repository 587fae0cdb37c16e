/* mqttload.h: what the native load generator's files share: limits, the
 * settings, the plan's client specs, the shared-memory layout between the
 * coordinator and its client processes, and one connection's state.
 *
 * Files: plan.c (options, the plan, the shared block), connection.c (one MQTT
 * connection: wire, QoS flows, accounting), worker.c (a client process's
 * epoll loop), broker_rss.c (the broker's memory), summary.c (the JSON
 * line), mqttload.c (the coordinator, main). Built as one program from every .c file
 * here (scripts/loadgen/generator.py), -lssl -lcrypto.
 */
#ifndef MQTTLOAD_H
#define MQTTLOAD_H
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
#define MAX_PACKET (1 << 20) /* bytes: a larger packet from the broker closes the connection */
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

extern Settings S;
extern int broker_pid; /* --broker-pid: whose RSS to sample; 0 none */

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

extern Spec *specs;
extern int n_specs, n_pubs, n_subs, n_churn, n_procs;
extern int *pub_counts; /* by publisher id */

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

extern Shared *shared;
extern unsigned char *block; /* the whole mapping */
extern Tracker *trackers;
extern int n_trackers;
extern uint64_t *completed_off; /* by publisher id: offset of its completed bitmap */

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


/* plan.c */
int64_t now_ns(void);
void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void *xcalloc(size_t n, size_t size);
void parse_args(int argc, char **argv);
void build_plan(void);
void map_shared(void);

/* connection.c: the client process's state, and one connection */
extern Slot *me;
extern int epfd;
extern SSL_CTX *ssl_ctx;
extern struct sockaddr_in broker_addr;
extern int g_pending;
extern int64_t l_sent, l_completed, l_received, l_unique, l_unexpected, l_dropped, l_failed,
    l_connected, l_last_receive_ns;
void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void buf_put(Buf *b, const void *p, size_t n);
void make_template(Conn *c);
void conn_close(Conn *c, const char *why);
int conn_flush(Conn *c);
void pump(Conn *c, int64_t now);
void conn_handle(Conn *c, uint32_t ev);
int conn_open(Conn *c);

/* worker.c */
void child_main(int index, int go_fd, int stop_fd) __attribute__((noreturn));

/* mqttload.c: the coordinator's view of the run */
typedef struct {
    double deadline;     /* seconds of CLOCK_MONOTONIC: --duration-limit from the start */
    int64_t go_ns;       /* when "go" was given */
    double seconds;      /* from "go" to the end of the run */
    uint64_t full;       /* deliveries expected if nothing is lost */
    double per_message;  /* deliveries per published message */
    int timed_out, setup_failed;
} Run;
extern int lost_workers; /* client processes that died */

/* summary.c: prints the JSON line, returns the exit status */
int print_summary(const Run *run);

/* broker_rss.c */
extern int64_t rss_peak;
void sample_rss(void);

/* latency histogram, as scripts/loadgen/stats.py: exact below 256 ns, then
 * 128 buckets per power of two (a value within 0.8 %) */
static inline int bucket_of(uint64_t v) {
    if (v < (1u << HIST_SUB_BITS)) return (int)v;
    int shift = 64 - __builtin_clzll(v) - HIST_SUB_BITS;
    return (shift << HIST_SUB_BITS) | (int)(v >> shift);
}

#endif
