/* fetch.h — downloads one remote image (http/https) for `llava serve --allow-remote-images`.
 *
 * Owns: the libcurl easy handle of one fetch (made and freed per call, so request threads share
 * nothing) and the byte limit, enforced while the body streams in (a server that lies about or
 * omits Content-Length still cannot make us hold more than max_bytes + one curl buffer).
 * Assumes: llava_fetch_global_init() ran once before any thread was started (libcurl's rule).
 * Never: follows a redirect to a scheme other than http/https, decodes the image (the caller does,
 * with its own pixel limit), raises signals (CURLOPT_NOSIGNAL), or blocks the engine worker (it
 * runs on the calling HTTP request thread).
 * Never (unless cfg->allow_private): connects to an address that is not public (loopback, private,
 * link-local, CGNAT, unique-local, multicast, reserved, ...; llava_fetch_addr_public). The check runs
 * in libcurl's open-socket callback, i.e. on the address each connection (every redirect hop, every
 * address tried) really goes to after DNS resolution, so a name that resolves, or re-resolves (DNS
 * rebinding), to 127.0.0.1 or 169.254.169.254 is refused too. Proxy environment variables are
 * ignored then (through a proxy the address actually fetched could not be checked).
 */
#ifndef LLAVA_SERVER_FETCH_H
#define LLAVA_SERVER_FETCH_H

#include <stddef.h>

struct sockaddr;

typedef struct llava_fetch_cfg {
    size_t max_bytes;  /* response bodies larger than this → LLAVA_FETCH_TOO_LARGE */
    long timeout_s;    /* the whole transfer (connect, redirects, body) */
    long max_redirs;   /* redirects followed at most (3 in `llava serve`) */
    int allow_private; /* 1: connect to any address (--allow-private-remote-images); 0: public ones only */
} llava_fetch_cfg;

typedef enum llava_fetch_status {
    LLAVA_FETCH_OK = 0,
    LLAVA_FETCH_TOO_LARGE,   /* body over max_bytes (from Content-Length, or counted while streaming) */
    LLAVA_FETCH_TIMEOUT,     /* not done within timeout_s */
    LLAVA_FETCH_HTTP_ERROR,  /* the server answered status >= 400 (*http_status tells which) */
    LLAVA_FETCH_BAD_URL,     /* not http(s), malformed, or redirected to another scheme */
    LLAVA_FETCH_FAILED,      /* DNS, connection, TLS, too many redirects, ... (msg says which) */
    LLAVA_FETCH_NOT_PUBLIC,  /* the host (or a redirect's) resolved only to non-public addresses (msg names one) */
} llava_fetch_status;

/* 1 when sa (AF_INET or AF_INET6) is a public unicast address a remote image may come from; 0 for
 * everything else: IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24,
 * 192.88.99/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/4 (multicast), 240/4 (and
 * broadcast); IPv6 outside 2000::/3 (::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8, ...) and
 * inside it 2001::/23 (Teredo, benchmarking, ...), 2001:db8::/32, 2002::/16 (6to4), 3fff::/20;
 * IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses as their IPv4 address; any
 * other family (AF_UNIX, ...). */
int llava_fetch_addr_public(const struct sockaddr *sa);

/* Once per process, before threads start; 0 on success, -1 if libcurl cannot initialise. */
int llava_fetch_global_init(void);
void llava_fetch_global_cleanup(void);

/* GETs url. On LLAVA_FETCH_OK *out (malloc'd, caller frees) holds *out_len bytes; otherwise *out is
 * NULL and msg (msg_cap bytes, always terminated) says what went wrong, without the URL. *http_status
 * gets the final response code (0 when none arrived). */
llava_fetch_status llava_fetch_url(unsigned char **out, size_t *out_len, long *http_status, const char *url,
                                   const llava_fetch_cfg *cfg, char *msg, size_t msg_cap);

#endif
