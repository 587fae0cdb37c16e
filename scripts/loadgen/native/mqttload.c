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
 * builds the plan (plan.c), maps one shared memory block (per-process
 * counters, latency histograms, the publishers' completed bitmaps, the
 * subscribers' sequence trackers), forks the client processes, and
 * broadcasts "go" and "stop" by closing the write end of a pipe each (every
 * child sees EOF at once). Each child runs one epoll loop over its
 * non-blocking sockets (worker.c, connection.c; OpenSSL on the fd) and writes
 * its counters into its slot. The parent polls the counters, waits for every
 * child (so that their CPU is in the parent's RUSAGE_CHILDREN, which bench.py
 * reads), then sums the trackers and prints loadtest.py's JSON line
 * (summary.c).
 *
 * Not implemented (exit status 64, "unsupported", before connecting; bench.py
 * then runs loadtest.py): the `connections` scenario, --protocol 5, --plot.
 * Exit status otherwise as loadtest.py: 0 fine, 1 a QoS 1/2 guarantee broken,
 * 2 setup failed, 3 the duration limit came first.
 */
#include "mqttload.h"

/* Counters of every client process, as they are now. */
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
int lost_workers;

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

/* Fork the client processes; each closes the pipes' write ends, so that the
 * parent's close of one is an EOF every child sees at once. */
static void spawn(int go_pipe[2], int stop_pipe[2]) {
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
}

static double seconds_now(void) { return (double)now_ns() / 1e9; }

/* Until every process has connected (and subscribed) its clients: whether
 * the run can go on. */
static int await_ready(Run *run) {
    while (!ALL(ready)) {
        if (seconds_now() >= run->deadline) { run->timed_out = 1; break; }
        if (reap_some(5) < n_procs) break; /* a child died */
    }
    int ok = !run->timed_out && !lost_workers && ALL(ready) && SUM(failed) == 0;
    for (int i = 0; i < n_procs; i++) ok &= !exited[i];
    return ok;
}

/* After "go", until the run is over (runner.py's await_delivery and
 * await_connects): every process done and every completed message delivered
 * where it should be, or nothing new for --drain-timeout after the
 * publishers finished, or the deadline. */
static void await_end(Run *run) {
    int churn = !strcmp(S.scenario, "connect-rate");
    int64_t last_unique = -1;
    double quiet_since = seconds_now();
    for (;;) {
        if (seconds_now() >= run->deadline) { run->timed_out = 1; return; }
        if (reap_some(churn ? 5 : 20) < n_procs) return;
        double now = seconds_now();
        if (churn) {
            if (ALL(published)) return;
            continue;
        }
        int64_t unique = SUM(unique), completed = SUM(completed);
        if (unique != last_unique) last_unique = unique, quiet_since = now;
        if (!ALL(published)) continue;
        /* the final counts are stored before "published" */
        if ((double)unique >= (double)completed * run->per_message && (uint64_t)unique >= run->full)
            return;
        if (now - quiet_since >= S.drain_timeout) return;
    }
}

/* Wait for every child (their CPU then counts in this process's
 * RUSAGE_CHILDREN, and in bench.py's); kill those still there at `until`. */
static void collect(double until) {
    while (reap_some(5)) {
        if (seconds_now() >= until) {
            for (int i = 0; i < n_procs; i++)
                if (!exited[i]) kill(pids[i], SIGKILL);
            while (reap_some(5)) {}
            return;
        }
    }
}

static void resolve_broker(void) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(S.host, NULL, &hints, &ai) != 0) die(EXIT_SETUP, "cannot resolve %s", S.host);
    broker_addr = *(struct sockaddr_in *)ai->ai_addr;
    broker_addr.sin_port = htons((uint16_t)S.port);
    freeaddrinfo(ai);
}

static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    build_plan();
    if (S.dry_run) {
        printf("{\"generator\": \"native\", \"processes\": %d, \"clients\": %d}\n", n_procs, n_specs);
        return 0;
    }
    resolve_broker();
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    map_shared();
    Run run = {.deadline = seconds_now() + S.duration_limit};
    uint64_t total_messages = 0;
    for (int p = 0; p < n_pubs; p++) total_messages += (uint64_t)pub_counts[p];
    for (int t = 0; t < n_trackers; t++) run.full += trackers[t].count;
    run.per_message = total_messages ? (double)run.full / (double)total_messages : 0;
    int go_pipe[2], stop_pipe[2];
    spawn(go_pipe, stop_pipe);
    run.setup_failed = !await_ready(&run);
    run.go_ns = now_ns();
    __atomic_store_n(&shared->go_ns, run.go_ns, __ATOMIC_RELEASE);
    if (!run.setup_failed) {
        close(go_pipe[1]); /* "go" */
        await_end(&run);
    }
    run.seconds = (double)(now_ns() - run.go_ns) / 1e9;
    close(stop_pipe[1]); /* "stop" */
    if (run.setup_failed) close(go_pipe[1]);
    collect(run.deadline + STOP_GRACE_S);
    return print_summary(&run);
}
