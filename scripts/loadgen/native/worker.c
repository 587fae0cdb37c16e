/* worker.c: one client process: its share of the plan's clients on one epoll
 * loop. It connects (and subscribes) before "go", or, in connect-rate, each
 * client once after it, connect_concurrency at a time; publishes after "go";
 * and stores its counters in its slot of the shared block after every loop
 * pass. "go" and "stop" are the coordinator closing a pipe's write end. */
#include "mqttload.h"

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

void child_main(int index, int go_fd, int stop_fd) {
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

