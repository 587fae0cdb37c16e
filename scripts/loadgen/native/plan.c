/* plan.c: loadtest.py's options, the plan of a run (scripts/loadgen/scenarios.py:
 * client ids, topics, counts per publisher, users taken in turn, clients
 * spread round-robin over the processes) and the shared block that the
 * coordinator and its client processes count into. Invariant: the plan is
 * built before any fork, so every process sees the same one. */
#include "mqttload.h"

int broker_pid; /* --broker-pid: whose RSS to sample; 0 none */
Settings S = {
    .host = "127.0.0.1", .port = 1883, .count = 100000, .payload = 64, .inflight = 64,
    .publishers = 4, .subscribers = 100, .pairs = 100, .connections = 10000,
    .connect_concurrency = 200, .clean = 1, .protocol = 4, .duration_limit = 60.0,
    .drain_timeout = 5.0,
};


Spec *specs;
int n_specs, n_pubs, n_subs, n_churn, n_procs;
int *pub_counts; /* by publisher id */

Shared *shared;
unsigned char *block; /* the whole mapping */
Tracker *trackers;
int n_trackers;
uint64_t *completed_off; /* by publisher id: offset of its completed bitmap */


int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mqttload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die(EXIT_SETUP, "out of memory");
    return p;
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

void parse_args(int argc, char **argv) {
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

void build_plan(void) {
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

void map_shared(void) {
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

