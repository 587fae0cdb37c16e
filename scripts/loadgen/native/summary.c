/* summary.c: the run's one JSON line, with runner.py's keys (plus
 * "generator": "native"), from the client processes' slots and the shared
 * trackers, and its exit status. The sums are stats.py's: expected is the
 * completed messages times the subscribers that should get them; lost is a
 * completed message a subscriber never saw; a QoS 1/2 loss or reordering, or
 * a QoS 2 duplicate, is a violation (exit 1). */
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

typedef struct {
    uint64_t expected, received, unique, lost, dup, dup_flagged, ooo;
} Totals;

static Totals sum_trackers(void) {
    Totals t = {0};
    for (int i = 0; i < n_trackers; i++) {
        Tracker *tr = &trackers[i];
        const unsigned char *seen = block + tr->bitmap_off;
        const unsigned char *done = block + completed_off[tr->publisher_id];
        size_t bytes = (tr->count + 7) / 8;
        t.expected += popcount_bitmap(done, tr->count);
        t.unique += popcount_bitmap(seen, tr->count);
        for (size_t b = 0; b < bytes; b++) t.lost += (uint64_t)__builtin_popcount(done[b] & ~seen[b] & 0xff);
        t.received += tr->received;
        t.dup += tr->duplicates;
        t.dup_flagged += tr->dup_flagged;
        t.ooo += tr->out_of_order;
    }
    return t;
}

static int64_t slot_sum(size_t field_off) {
    int64_t total = 0;
    for (int i = 0; i < n_procs; i++) total += *(int64_t *)((char *)&shared->slots[i] + field_off);
    return total;
}
#define SLOT_SUM(f) slot_sum(offsetof(Slot, f))

static int64_t slot_max(size_t field_off) {
    int64_t most = 0;
    for (int i = 0; i < n_procs; i++) {
        int64_t v = *(int64_t *)((char *)&shared->slots[i] + field_off);
        if (v > most) most = v;
    }
    return most;
}
#define SLOT_MAX(f) slot_max(offsetof(Slot, f))

typedef struct {
    char text[3][96];
    int n;
} Violations;

static void print_connects(const Run *run, Violations *v) {
    int64_t last = SLOT_MAX(last_publish_ns), connects = SLOT_SUM(completed);
    double span = last > run->go_ns ? (double)(last - run->go_ns) / 1e9 : run->seconds;
    printf(", \"connects\": %lld, \"failed\": %lld, \"connect_s\": %.3f, \"connects_per_s\": %.0f",
           (long long)connects, (long long)SLOT_SUM(failed), span,
           (double)connects / (span > 1e-9 ? span : 1e-9));
    if (connects < n_churn)
        snprintf(v->text[v->n++], 96, "%lld of %d connects failed", (long long)(n_churn - connects), n_churn);
}

static void print_deliveries(const Run *run, Violations *v) {
    Totals t = sum_trackers();
    uint64_t *hist = xcalloc(HIST_BUCKETS, sizeof(uint64_t));
    uint64_t total = 0, max = 0;
    for (int i = 0; i < n_procs; i++) {
        Slot *s = &shared->slots[i];
        for (int b = 0; b < HIST_BUCKETS; b++) hist[b] += s->hist[b];
        total += s->hist_total;
        if (s->hist_max > max) max = s->hist_max;
    }
    int64_t sent = SLOT_SUM(sent), last_pub = SLOT_MAX(last_publish_ns), last_rx = SLOT_MAX(last_receive_ns);
    double pub_s = last_pub > run->go_ns ? (double)(last_pub - run->go_ns) / 1e9 : run->seconds;
    double rx_s = last_rx > run->go_ns ? (double)(last_rx - run->go_ns) / 1e9 : run->seconds;
    if (pub_s < 1e-9) pub_s = 1e-9;
    if (rx_s < 1e-9) rx_s = 1e-9;
    printf(", \"sent\": %lld, \"completed\": %lld, \"expected\": %llu, \"received\": %llu, "
           "\"delivered\": %llu, \"lost\": %llu, \"dup\": %llu, \"dup_flagged\": %llu, "
           "\"out_of_order\": %llu, \"unexpected\": %lld, \"rejected\": 0, "
           "\"send_msgs_per_s\": %.0f, \"recv_msgs_per_s\": %.0f, \"deliveries_per_s\": %.0f, "
           "\"latency_p50_us\": %.1f, \"latency_p99_us\": %.1f, \"latency_p999_us\": %.1f, "
           "\"latency_max_us\": %.1f, \"dropped_connections\": %lld",
           (long long)sent, (long long)SLOT_SUM(completed), (unsigned long long)t.expected,
           (unsigned long long)t.received, (unsigned long long)t.unique, (unsigned long long)t.lost,
           (unsigned long long)t.dup, (unsigned long long)t.dup_flagged, (unsigned long long)t.ooo,
           (long long)SLOT_SUM(unexpected), (double)sent / pub_s,
           run->per_message ? (double)t.unique / run->per_message / rx_s : 0.0, (double)t.unique / rx_s,
           percentile(hist, total, max, 50) / 1000.0, percentile(hist, total, max, 99) / 1000.0,
           percentile(hist, total, max, 99.9) / 1000.0, max / 1000.0, (long long)SLOT_SUM(dropped));
    free(hist);
    if (S.qos >= 1 && t.lost) snprintf(v->text[v->n++], 96, "%llu message(s) lost at QoS %d", (unsigned long long)t.lost, S.qos);
    if (S.qos >= 1 && t.ooo) snprintf(v->text[v->n++], 96, "%llu message(s) out of order at QoS %d", (unsigned long long)t.ooo, S.qos);
    if (S.qos == 2 && t.dup) snprintf(v->text[v->n++], 96, "%llu duplicate(s) at QoS 2", (unsigned long long)t.dup);
}

static void print_errors(void) {
    printf("], \"errors\": [");
    int n = 0;
    if (lost_workers) {
        char msg[64];
        snprintf(msg, sizeof msg, "%d client process(es) died", lost_workers);
        json_str(msg);
        n++;
    }
    for (int i = 0; i < n_procs; i++)
        for (int j = 0; j < shared->slots[i].n_errors && n < 10; j++, n++) {
            if (n) printf(", ");
            json_str(shared->slots[i].errors[j]);
        }
}

int print_summary(const Run *run) {
    printf("{\"generator\": \"native\", \"scenario\": \"%s\", \"qos\": %d, \"protocol\": %d, "
           "\"clean\": %s, \"payload\": %d, \"publishers\": %d, \"subscribers\": %d, \"processes\": %d",
           S.scenario, S.qos, S.protocol, S.clean ? "true" : "false", S.payload, n_pubs, n_subs, n_procs);
    Violations v = {.n = 0};
    if (!strcmp(S.scenario, "connect-rate")) print_connects(run, &v);
    else print_deliveries(run, &v);
    if (broker_pid) printf(", \"broker_rss_peak_mb\": %.1f", (double)rss_peak / (1 << 20));
    else printf(", \"broker_rss_peak_mb\": null");
    printf(", \"duration_s\": %.3f, \"timed_out\": %s, \"violations\": [", run->seconds,
           run->timed_out ? "true" : "false");
    for (int i = 0; i < v.n; i++) {
        if (i) printf(", ");
        json_str(v.text[i]);
    }
    print_errors();
    int code = run->setup_failed || lost_workers ? EXIT_SETUP
             : v.n ? EXIT_VIOLATION
             : run->timed_out ? EXIT_INCOMPLETE : EXIT_OK;
    printf("], \"exit_code\": %d}\n", code);
    for (int i = 0; i < v.n; i++) fprintf(stderr, "mqttload: %s\n", v.text[i]);
    return code;
}
