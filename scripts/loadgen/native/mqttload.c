/* mqttload: flockmq's native MQTT 3.1.1 load generator, a drop-in for
 * scripts/loadtest.py in the rows of `make bench` (scripts/bench.py).
 *
 *   cc -O2 -o build/bench/mqttload scripts/loadgen/native/[a-z]*.c -lssl -lcrypto
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
 * This file is the coordinator (mqttload.h lists the others). The parent
 * builds the plan (plan.c), maps one shared
 * memory block (per-process counters, latency histograms, the publishers'
 * completed bitmaps, the subscribers' sequence trackers), forks the client
 * processes, and broadcasts "go" and "stop" by closing the write end of a
 * pipe each (every child sees EOF at once). Each child runs one epoll loop
 * over its non-blocking sockets (worker.c, connection.c; OpenSSL on the fd)
 * and writes its counters into its slot. The parent polls the counters,
 * waits for every child (so that their CPU is in the parent's RUSAGE_CHILDREN,
 * which bench.py reads), sums the trackers and prints loadtest.py's JSON line.
 *
 * Not implemented (exit status 64, "unsupported", before connecting; bench.py
 * then runs loadtest.py): the `connections` scenario, --protocol 5, --plot.
 * Exit status otherwise as loadtest.py: 0 fine, 1 a QoS 1/2 guarantee broken,
 * 2 setup failed, 3 the duration limit came first.
 */
#include "mqttload.h"

/* ---- latency histogram (stats.py: exact below 256 ns, then 128 buckets per
 * power of two) ------------------------------------------------------------- */
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

