/* broker_rss.c: the peak RSS of the broker under test, --broker-pid and all
 * its descendants, as scripts/loadgen/broker_rss.py sums it. */
#include "mqttload.h"

/* The broker's RSS: its process and every descendant (broker_rss.py), from
 * /proc/PID/stat, sampled every RSS_INTERVAL while the run goes on. */
#define RSS_INTERVAL_NS 500000000LL
int64_t rss_peak;
static int64_t rss_next;

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

void sample_rss(void) {
    int64_t now = now_ns();
    if (!broker_pid || now < rss_next) return;
    rss_next = now + RSS_INTERVAL_NS;
    int64_t rss = broker_rss();
    if (rss > rss_peak) rss_peak = rss;
}

