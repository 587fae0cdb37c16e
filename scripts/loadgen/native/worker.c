/* worker.c: one client process: its share of the plan's clients on one epoll
 * loop. It connects (and subscribes) before "go", or, in connect-rate, each
 * client once after it, connect_concurrency at a time; publishes after "go";
 * and stores its counters in its slot of the shared block after every loop
 * pass. "go" and "stop" are the coordinator closing a pipe's write end. */
#include "mqttload.h"

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

#define SECOND_NS 1000000000LL

/* One client process's state between loop passes. */
typedef struct {
    Conn *conns;
    int n, n_pub, opened, going, stop, ready_sent, churn;
    int go_fd, stop_fd, timer_fd;
    int64_t give_up, armed, next_sweep, next_ping;
} Worker;

static int go_tag, stop_tag, timer_tag; /* epoll tags of the pipes and the timer */

/* This process's share of the plan, in the plan's order. */
static void make_conns(Worker *w, int index) {
    for (int i = 0; i < n_specs; i++) w->n += specs[i].process == index;
    w->conns = xcalloc((size_t)w->n, sizeof(Conn));
    for (int i = 0, k = 0; i < n_specs; i++) {
        if (specs[i].process != index) continue;
        Conn *c = &w->conns[k++];
        c->spec = &specs[i];
        c->fd = -1;
        c->state = -1; /* not opened yet */
        c->window = S.inflight;
        c->next_pid = 1;
        if (specs[i].publisher_id >= 0) {
            w->n_pub++;
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
}

static void watch(int fd, int *tag) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void set_flag(int *flag) {
    publish_counters();
    __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
}

/* Open connections, connect_concurrency handshakes at a time (before "go"
 * for clients that stay, after it for connect-rate's), time out the slow
 * ones, and say "ready" (or, in connect-rate, "published") once all are
 * through. Python's worker gives up on the rest at 80 % of the run's time. */
static void open_more(Worker *w, int64_t now) {
    while (w->opened < w->n && g_pending < S.connect_concurrency) {
        Conn *c = &w->conns[w->opened++];
        if ((!w->churn && now >= w->give_up) || conn_open(c) < 0) {
            l_failed++;
            c->state = ST_CLOSED;
            continue;
        }
        g_pending++;
    }
    if (now >= w->next_sweep) {
        w->next_sweep = now + SECOND_NS / 10;
        for (int i = 0; i < w->opened; i++) {
            Conn *c = &w->conns[i];
            if (c->state >= ST_TCP && c->state <= ST_SUBACK && now > c->deadline_ns) {
                note_error("%s: TimeoutError: no CONNACK/SUBACK in 5 s", c->spec->client_id);
                l_failed++;
                conn_close(c, NULL);
            }
        }
    }
    if (w->opened == w->n && g_pending == 0) {
        if (!w->churn && !w->ready_sent) w->ready_sent = 1, set_flag(&me->ready);
        if (w->churn && !me->published) set_flag(&me->published);
    }
}

/* Pump every publisher that can send; "published" once all are done.
 * Returns whether one has more to send at once; *wake is the earliest time
 * a paced one may send again (0: none). */
static int pump_all(Worker *w, int64_t now, int64_t *wake) {
    int more = 0, done = 0;
    *wake = 0;
    for (int i = 0; i < w->n; i++) {
        Conn *c = &w->conns[i];
        if (c->spec->publisher_id < 0) continue;
        if (c->wake_ns && now >= c->wake_ns) c->wake_ns = 0, c->want_pump = 1;
        if (c->want_pump) pump(c, now);
        more |= c->want_pump;
        if (c->wake_ns && (!*wake || c->wake_ns < *wake)) *wake = c->wake_ns;
        done += c->done || c->state == ST_CLOSED || c->state == -1;
    }
    if (done == w->n_pub && !me->published) {
        me->last_publish_ns = now_ns();
        set_flag(&me->published);
    }
    return more;
}

static void arm_timer(Worker *w, int64_t wake) {
    if (!wake || wake == w->armed) return;
    w->armed = wake;
    struct itimerspec its = {.it_value = {.tv_sec = wake / SECOND_NS, .tv_nsec = wake % SECOND_NS}};
    timerfd_settime(w->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* PINGREQ on connections quiet for half the keepalive [MQTT-3.1.2-23]. */
static void ping_quiet(Worker *w, int64_t now) {
    static const unsigned char ping[2] = {12 << 4, 0};
    if (now < w->next_ping) return;
    w->next_ping = now + KEEPALIVE / 4 * SECOND_NS;
    for (int i = 0; i < w->n; i++) {
        Conn *c = &w->conns[i];
        if (c->state == ST_UP && now - c->last_write_ns > KEEPALIVE / 2 * SECOND_NS) {
            buf_put(&c->out, ping, 2);
            conn_flush(c);
        }
    }
}

static void on_go(Worker *w) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, w->go_fd, NULL);
    w->going = 1;
    int64_t go_ns = __atomic_load_n(&shared->go_ns, __ATOMIC_ACQUIRE);
    for (int j = 0; j < w->n; j++) {
        Conn *c = &w->conns[j];
        if (c->spec->publisher_id >= 0 && c->state == ST_UP) {
            c->publishing = 1;
            c->started_ns = go_ns;
            c->want_pump = 1;
            if (c->spec->count == 0) c->done = 1;
        }
    }
}

static void handle_events(Worker *w, int timeout_ms) {
    struct epoll_event events[256];
    int got = epoll_wait(epfd, events, 256, timeout_ms);
    for (int i = 0; i < got; i++) {
        void *p = events[i].data.ptr;
        if (p == &go_tag) {
            on_go(w);
        } else if (p == &stop_tag) {
            w->stop = 1;
        } else if (p == &timer_tag) {
            uint64_t expirations;
            if (read(w->timer_fd, &expirations, sizeof expirations) < 0) continue;
        } else {
            conn_handle((Conn *)p, events[i].events);
        }
    }
}

/* DISCONNECT and close: the broker sees a clean end. */
static void disconnect_all(Worker *w) {
    static const unsigned char disconnect[2] = {DISCONNECT << 4, 0};
    for (int i = 0; i < w->n; i++) {
        Conn *c = &w->conns[i];
        if (c->state < ST_TCP || c->state == ST_CLOSED) continue;
        c->stopping = 1;
        if (c->state == ST_UP) {
            buf_put(&c->out, disconnect, 2);
            conn_flush(c);
            if (c->ssl) SSL_shutdown(c->ssl);
        }
        conn_close(c, NULL);
    }
}

void child_main(int index, int go_fd, int stop_fd) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    me = &shared->slots[index];
    if (S.cafile) ssl_ctx = make_ssl_ctx();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    Worker w = {.go_fd = go_fd, .stop_fd = stop_fd, .churn = !strcmp(S.scenario, "connect-rate")};
    w.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    make_conns(&w, index);
    watch(go_fd, &go_tag);
    watch(stop_fd, &stop_tag);
    watch(w.timer_fd, &timer_tag);
    w.give_up = now_ns() + (int64_t)(S.duration_limit * 0.8e9);
    w.next_ping = now_ns() + KEEPALIVE / 4 * SECOND_NS;
    if (w.churn) w.ready_sent = 1, set_flag(&me->ready); /* it connects after "go" */
    while (!w.stop) {
        int64_t now = now_ns(), wake = 0;
        int more = 0;
        if (!w.churn || w.going) open_more(&w, now);
        if (w.going && !w.churn) more = pump_all(&w, now, &wake);
        ping_quiet(&w, now);
        arm_timer(&w, wake);
        publish_counters();
        handle_events(&w, more ? 0 : 20);
    }
    publish_counters();
    disconnect_all(&w);
    __atomic_store_n(&me->finished, 1, __ATOMIC_RELEASE);
    _exit(0);
}
