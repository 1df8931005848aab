/* fetch.c — remote image download with libcurl (see fetch.h). */
#include "server/fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/mem.h"

/* ---- which addresses are public ---------------------------------------------------------------- */

/* An address block: the first bits of net (network byte order). */
typedef struct net_prefix {
    unsigned char net[16];
    int bits;
} net_prefix;

static int in_prefix(const unsigned char *a, const net_prefix *p) {
    int full = p->bits / 8, rest = p->bits % 8;
    if (memcmp(a, p->net, (size_t)full)) return 0;
    return !rest || !((a[full] ^ p->net[full]) & (0xff00 >> rest) & 0xff);
}

static int in_any(const unsigned char *a, const net_prefix *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (in_prefix(a, &t[i])) return 1;
    return 0;
}

/* IANA's special-purpose IPv4 blocks that are not globally reachable (RFC 6890 and successors). */
static const net_prefix v4_special[] = {
    {{0}, 8},             /* "this network"; 0.0.0.0 reaches the local host on Linux */
    {{10}, 8},            /* private (RFC 1918) */
    {{100, 64}, 10},      /* shared address space, carrier-grade NAT (RFC 6598) */
    {{127}, 8},           /* loopback */
    {{169, 254}, 16},     /* link-local; cloud metadata services (169.254.169.254) */
    {{172, 16}, 12},      /* private */
    {{192, 0, 0}, 24},    /* IETF protocol assignments */
    {{192, 0, 2}, 24},    /* documentation (TEST-NET-1) */
    {{192, 88, 99}, 24},  /* 6to4 relay anycast (deprecated) */
    {{192, 168}, 16},     /* private */
    {{198, 18}, 15},      /* benchmarking */
    {{198, 51, 100}, 24}, /* documentation (TEST-NET-2) */
    {{203, 0, 113}, 24},  /* documentation (TEST-NET-3) */
    {{224}, 4},           /* multicast */
    {{240}, 4},           /* reserved; 255.255.255.255 broadcast */
};

/* IPv6: only global unicast (2000::/3) is public, less these blocks inside it. Everything outside
 * it (::, ::1, fc00::/7 unique-local, fe80::/10 link-local, ff00::/8 multicast, ...) is not. */
static const net_prefix v6_global = {{0x20}, 3};
static const net_prefix v6_special[] = {
    {{0x20, 0x01}, 23},             /* IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID */
    {{0x20, 0x01, 0x0d, 0xb8}, 32}, /* documentation */
    {{0x20, 0x02}, 16},             /* 6to4: tunnels to the IPv4 address inside it (deprecated) */
    {{0x3f, 0xff}, 20},             /* documentation (RFC 9637) */
};
/* IPv6 addresses that carry an IPv4 destination in their last 4 bytes: judged as that address. */
static const net_prefix v6_embeds_v4[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96}, /* IPv4-mapped ::ffff:a.b.c.d */
    {{0, 0x64, 0xff, 0x9b}, 96},                      /* NAT64 well-known prefix 64:ff9b::a.b.c.d */
};

#define COUNT(t) (sizeof(t) / sizeof((t)[0]))

int llava_fetch_addr_public(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return !in_any((const unsigned char *)&s4->sin_addr, v4_special, COUNT(v4_special));
    }
    if (sa->sa_family != AF_INET6) return 0;
    const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (in_any(a, v6_embeds_v4, COUNT(v6_embeds_v4))) return !in_any(a + 12, v4_special, COUNT(v4_special));
    return in_prefix(a, &v6_global) && !in_any(a, v6_special, COUNT(v6_special));
}

/* ---- the transfer ----------------------------------------------------------------------------- */

/* What the open-socket callback saw of one transfer. */
typedef struct fetch_guard {
    int refused;                  /* a connection to a non-public address was refused */
    char addr[INET6_ADDRSTRLEN];  /* the first such address, as text */
} fetch_guard;

/* libcurl's open-socket callback: called for every connection it makes (each address it tries,
 * each redirect hop), with the address it is about to connect to. A refusal (CURL_SOCKET_BAD) ends
 * that attempt with CURLE_COULDNT_CONNECT; libcurl then tries the host's next address, if any. */
static curl_socket_t open_public_socket(void *user, curlsocktype purpose, struct curl_sockaddr *ca) {
    fetch_guard *g = user;
    if (!llava_fetch_addr_public(&ca->addr)) {
        if (!g->refused) {
            g->refused = 1;
            snprintf(g->addr, sizeof g->addr, "of family %d", ca->family);
            if (ca->family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ca->addr)->sin_addr, g->addr, sizeof g->addr);
            else if (ca->family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ca->addr)->sin6_addr, g->addr, sizeof g->addr);
        }
        return CURL_SOCKET_BAD;
    }
    return socket(ca->family, ca->socktype, ca->protocol);
}

typedef struct fetch_buf {
    unsigned char *p;
    size_t len, cap, max;
    int over; /* set when the body passed max: the transfer is aborted right there */
} fetch_buf;

/* libcurl's write callback: append, or abort (return != n) as soon as the limit is crossed. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    fetch_buf *b = user;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->over = 1;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + n) cap *= 2;
        if (cap > b->max) cap = b->max;
        unsigned char *q = realloc(b->p, cap);
        if (!q) return 0; /* CURLE_WRITE_ERROR; reported as a failed fetch */
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}

int llava_fetch_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1; }

void llava_fetch_global_cleanup(void) { curl_global_cleanup(); }

llava_fetch_status llava_fetch_url(unsigned char **out, size_t *out_len, long *http_status, const char *url,
                                   const llava_fetch_cfg *cfg, char *msg, size_t msg_cap) {
    *out = NULL;
    *out_len = 0;
    *http_status = 0;
    msg[0] = 0;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        snprintf(msg, msg_cap, "only http:// and https:// URLs are fetched");
        return LLAVA_FETCH_BAD_URL;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(msg, msg_cap, "cannot start a transfer (libcurl)");
        return LLAVA_FETCH_FAILED;
    }
    fetch_buf b = {.max = cfg->max_bytes};
    fetch_guard g = {0};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, cfg->max_redirs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_s * 1000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* many request threads: no SIGALRM-based DNS timeouts */
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L); /* status >= 400: stop before reading the error page */
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_bytes); /* early no from Content-Length */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llava.c-serve");
    if (!cfg->allow_private) {
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_public_socket);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &g);
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* direct connections only: their address is the one checked */
    }
    /* no CURLOPT_ACCEPT_ENCODING: compressed bodies are not inflated, so the byte limit is the
     * memory limit (no decompression bombs) */
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http_status);
    curl_easy_cleanup(h);

    llava_fetch_status st = LLAVA_FETCH_OK;
    if (g.refused && rc == CURLE_COULDNT_CONNECT) {
        st = LLAVA_FETCH_NOT_PUBLIC;
        snprintf(msg, msg_cap, "the address %s is not public (loopback, private, link-local, reserved, ...)", g.addr);
    } else if (b.over || rc == CURLE_FILESIZE_EXCEEDED) {
        st = LLAVA_FETCH_TOO_LARGE;
        snprintf(msg, msg_cap, "the response is larger than %zu bytes", cfg->max_bytes);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        st = LLAVA_FETCH_TIMEOUT;
        snprintf(msg, msg_cap, "no complete response within %ld s", cfg->timeout_s);
    } else if (rc == CURLE_HTTP_RETURNED_ERROR) {
        st = LLAVA_FETCH_HTTP_ERROR;
        snprintf(msg, msg_cap, "the server answered HTTP %ld", *http_status);
    } else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
        st = LLAVA_FETCH_BAD_URL;
        snprintf(msg, msg_cap, "%s (only http:// and https:// are fetched, also on redirects)",
                 cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (rc == CURLE_TOO_MANY_REDIRECTS) {
        st = LLAVA_FETCH_FAILED;
        snprintf(msg, msg_cap, "more than %ld redirects", cfg->max_redirs);
    } else if (rc != CURLE_OK) {
        st = LLAVA_FETCH_FAILED;
        snprintf(msg, msg_cap, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (*http_status >= 400) { /* FAILONERROR covers this; kept as a guard */
        st = LLAVA_FETCH_HTTP_ERROR;
        snprintf(msg, msg_cap, "the server answered HTTP %ld", *http_status);
    }
    if (st != LLAVA_FETCH_OK) {
        free(b.p);
        return st;
    }
    *out = b.p ? b.p : xmalloc(1); /* an empty body is still a (failing-to-decode) image */
    *out_len = b.len;
    return LLAVA_FETCH_OK;
}
