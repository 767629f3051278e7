/*
 * common.c — child processes, /proc readings and the events (see peers.h).
 */
#include "peers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- events ---- */

static char data_pool[BH_DATA_VARIANTS][BH_DATA_LEN + 1];
static int data_ready;

static void data_init(void)
{
    static const char *const skus[] = {"SKU-1001", "SKU-2002", "SKU-3003", "SKU-4004"};
    uint64_t rng = 42;
    for (unsigned i = 0; i < BH_DATA_VARIANTS; i++) {
        char *d = data_pool[i];
        int n = snprintf(d, BH_DATA_LEN + 1,
                         "{\"order\":%u,\"customer\":\"c-%05u\",\"sku\":\"%s\",\"qty\":%u,\"price\":%u.%02u,"
                         "\"currency\":\"EUR\",\"note\":\"",
                         100000u + i, (unsigned)lg_rand_below(&rng, 100000), skus[i % 4],
                         1u + (unsigned)lg_rand_below(&rng, 9), 1u + (unsigned)lg_rand_below(&rng, 500),
                         (unsigned)lg_rand_below(&rng, 100));
        /* pad the note so the whole object is exactly BH_DATA_LEN bytes */
        while ((unsigned)n < BH_DATA_LEN - 2) d[n++] = (char)('a' + lg_rand_below(&rng, 26));
        d[n++] = '"';
        d[n++] = '}';
        d[n] = 0;
    }
    data_ready = 1;
}

const char *bh_event_data(uint64_t i)
{
    if (!data_ready) data_init();
    return data_pool[i % BH_DATA_VARIANTS];
}

/* ---- children ---- */

#define MAX_CHILDREN 64
static volatile pid_t children[MAX_CHILDREN];

static void child_add(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (!children[i]) { children[i] = pid; return; }
}

static void child_forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid) children[i] = 0;
}

void bh_children_kill(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) kill(children[i], SIGKILL);
}

int bh_user_ids(const char *user, uid_t *uid, gid_t *gid)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

pid_t bh_spawn(char *const argv[], const char *log_path, const char *user)
{
    uid_t uid = 0;
    gid_t gid = 0;
    if (user && bh_user_ids(user, &uid, &gid) != 0) { errno = ENOENT; return -1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            if (user) { int rc = fchown(fd, uid, gid); (void)rc; }
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        if (user) {
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);      /* after setuid: a credential change clears it */
        if (getppid() != parent) _exit(125);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        _exit(127);
    }
    child_add(pid);
    return pid;
}

int bh_child_exited(pid_t pid)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) { child_forget(pid); return 1; }
    return r < 0 && errno == ECHILD;
}

int bh_stop_pid(pid_t pid, int sig, unsigned timeout_ms)
{
    if (pid <= 0) return -1;
    kill(pid, sig);
    int st = 0;
    for (unsigned waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0) { child_forget(pid); return -1; }
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        lg_sleep_ns(10000000u);
    }
    child_forget(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int bh_run(char *const argv[], const char *log_path, const char *user, unsigned timeout_ms)
{
    pid_t pid = bh_spawn(argv, log_path, user);
    if (pid < 0) return -1;
    int st = 0;
    for (unsigned waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0 || waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            child_forget(pid);
            return -1;
        }
        lg_sleep_ns(10000000u);
    }
    child_forget(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- /proc ---- */

/* utime + stime (ticks; with reaped, plus cutime + cstime: the children it
 * has reaped) and ppid of one process; -1 if gone. */
static int stat_of2(pid_t pid, uint64_t *ticks, pid_t *ppid, int reaped)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');          /* the command name may hold spaces */
    if (!p) return -1;
    /* after ")": state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long long f[16] = {0};
    char state;
    if (sscanf(p + 2, "%c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &state, &f[4], &f[5], &f[6],
               &f[7], &f[8], &f[9], &f[10], &f[11], &f[12], &f[13], &f[14], &f[15]) != 13)
        return -1;
    if (ticks) *ticks = f[14] + f[15];
    if (ticks && reaped) {
        unsigned long long cu = 0, cs = 0;
        /* cutime(16) cstime(17) follow stime(15) */
        const char *q = p + 2;
        for (int field = 3; field < 16 && q; field++) q = strchr(q + 1, ' ');
        if (q && sscanf(q, " %llu %llu", &cu, &cs) == 2) *ticks += cu + cs;
    }
    if (ppid) *ppid = (pid_t)f[4];
    return 0;
}

static int stat_of(pid_t pid, uint64_t *ticks, pid_t *ppid) { return stat_of2(pid, ticks, ppid, 0); }

static uint64_t ticks_ns(uint64_t t)
{
    static long hz;
    if (!hz) hz = sysconf(_SC_CLK_TCK);
    return t * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
}

typedef void (*child_fn)(pid_t pid, void *arg);

static void for_children(pid_t parent, child_fn fn, void *arg)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        pid_t pid = (pid_t)atoi(e->d_name), pp = 0;
        if (stat_of(pid, NULL, &pp) == 0 && pp == parent) fn(pid, arg);
    }
    closedir(d);
}

static void add_cpu(pid_t pid, void *arg)
{
    uint64_t t = 0;
    if (stat_of(pid, &t, NULL) == 0) *(uint64_t *)arg += t;
}

uint64_t bh_cpu_ns(pid_t pid, int tree)
{
    if (pid <= 0) return 0;
    uint64_t t = 0;
    if (!tree) {
        add_cpu(pid, &t);
        return ticks_ns(t);
    }
    /* a process tree (postgres: one backend per connection, coming and
     * going): the parent, what it has reaped, and what is still alive */
    stat_of2(pid, &t, NULL, 1);
    for_children(pid, add_cpu, &t);
    return ticks_ns(t);
}

int bh_threads(pid_t pid, bh_thread *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char p2[320], buf[512];
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        int fd = open(p2, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t k = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (k <= 0) continue;
        buf[k] = 0;
        char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
        if (!lp || !rp) continue;
        unsigned long long ut = 0, st = 0;
        char *q = rp + 2;
        for (int field = 3; field < 14 && q; field++) q = strchr(q + 1, ' ');
        if (!q || sscanf(q, " %llu %llu", &ut, &st) != 2) continue;
        out[n].tid = atoi(e->d_name);
        size_t nl = (size_t)(rp - lp - 1);
        if (nl >= sizeof out[n].name) nl = sizeof out[n].name - 1;
        memcpy(out[n].name, lp + 1, nl);
        out[n].name[nl] = 0;
        out[n].cpu_ns = ticks_ns(ut + st);
        n++;
    }
    closedir(d);
    return n;
}

static uint64_t status_kib(pid_t pid, const char *file, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) { v = strtoull(line + kl, NULL, 10); break; }
    fclose(f);
    return v;
}

static void add_pss(pid_t pid, void *arg) { *(uint64_t *)arg += status_kib(pid, "smaps_rollup", "Pss:"); }

uint64_t bh_mem_kib(pid_t pid, int tree)
{
    if (pid <= 0) return 0;
    if (!tree) return status_kib(pid, "status", "VmRSS:");
    uint64_t t = 0;
    add_pss(pid, &t);
    for_children(pid, add_pss, &t);
    return t;
}

void bh_machine_jiffies(uint64_t *busy, uint64_t *total)
{
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f) return;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6], &v[7], &v[8], &v[9]) >= 8) {
        /* user nice system idle iowait irq softirq steal (guest is inside user) */
        *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        *busy = *total - v[3] - v[4];
    }
    fclose(f);
}

int bh_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int bh_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

int bh_glob_last(const char *pattern, char *out, size_t cap)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) { globfree(&g); return -1; }
    /* glob sorts alphabetically; pick the highest version numerically by length first */
    const char *best = g.gl_pathv[0];
    for (size_t i = 1; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        if (strlen(p) > strlen(best) || (strlen(p) == strlen(best) && strcmp(p, best) > 0)) best = p;
    }
    int rc = snprintf(out, cap, "%s", best) < (int)cap ? 0 : -1;
    globfree(&g);
    return rc;
}
