/* connection.c: one MQTT 3.1.1 connection of a client process, non-blocking,
 * over TCP or TLS: CONNECT (with a user's password), SUBSCRIBE, the
 * publisher's pump (pre-encoded PUBLISH packets as fast as the in-flight
 * window, the write buffer and the rate allow), both QoS flows on both sides
 * (PUBACK; PUBREC/PUBREL/PUBCOMP, the receiver holding a QoS 2 packet id
 * until PUBREL so that a re-sent PUBLISH is not counted twice [MQTT-4.3.3])
 * and the subscriber's accounting into the shared trackers (loadtest.py's
 * client.py and stats.py). Invariants: at most `window` QoS 1/2 messages are
 * unacknowledged per publisher; a message is marked completed only when its
 * flow finished; a closed connection's buffers are freed and never touched. */
#include "mqttload.h"

Slot *me;
int epfd;
SSL_CTX *ssl_ctx;
struct sockaddr_in broker_addr;
int g_pending; /* connections between connect() and CONNACK/SUBACK */
int64_t l_sent, l_completed, l_received, l_unique, l_unexpected, l_dropped, l_failed,
    l_connected, l_last_receive_ns;


void note_error(const char *fmt, ...) {
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

void buf_put(Buf *b, const void *p, size_t n) {
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

void make_template(Conn *c) {
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

void conn_close(Conn *c, const char *why) {
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
int conn_flush(Conn *c) {
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
void pump(Conn *c, int64_t now) {
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
        if (!c->awaiting_pubrel) c->awaiting_pubrel = xcalloc(8192, 1); /* a QoS 2 it did not ask for */
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
        if (length > MAX_PACKET) {
            conn_close(c, "packet over the generator's limit");
            return;
        }
        if (avail - i < length) break;
        on_packet(c, p[0], p + i, length);
        if (c->state == ST_CLOSED) return; /* its buffers are freed */
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

void conn_handle(Conn *c, uint32_t ev) {
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

int conn_open(Conn *c) {
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

