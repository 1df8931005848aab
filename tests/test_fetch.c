/* test_fetch.c — the remote-image fetch guard of `llava serve` (server/fetch.c): the table of
 * addresses llava_fetch_addr_public calls public or not (IPv4, IPv6, IPv4-mapped, NAT64), and
 * llava_fetch_url refusing non-public destinations after name resolution (no network needed: every
 * URL here is refused before a connection, or hits a closed loopback port). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "server/fetch.h"
#include "test.h"

/* 1 public, 0 not, -1 when text is not an IPv4/IPv6 address. */
static int classify(const char *text) {
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &s4.sin_addr) == 1) return llava_fetch_addr_public((struct sockaddr *)&s4);
    if (inet_pton(AF_INET6, text, &s6.sin6_addr) == 1) return llava_fetch_addr_public((struct sockaddr *)&s6);
    return -1;
}

static const struct {
    const char *addr;
    int is_public;
} table[] = {
    /* IPv4 public */
    {"8.8.8.8", 1}, {"1.1.1.1", 1}, {"93.184.216.34", 1}, {"9.255.255.255", 1}, {"11.0.0.0", 1},
    {"100.63.255.255", 1}, {"100.128.0.0", 1}, {"126.255.255.255", 1}, {"128.0.0.0", 1},
    {"169.253.255.255", 1}, {"169.255.0.1", 1}, {"172.15.255.255", 1}, {"172.32.0.0", 1},
    {"192.0.1.1", 1}, {"192.167.255.255", 1}, {"192.169.0.0", 1}, {"198.17.255.255", 1}, {"198.20.0.0", 1},
    {"223.255.255.255", 1},
    /* IPv4 not public */
    {"0.0.0.0", 0}, {"0.1.2.3", 0}, {"10.0.0.1", 0}, {"10.255.255.255", 0}, {"100.64.0.0", 0},
    {"100.127.255.255", 0}, {"127.0.0.1", 0}, {"127.255.255.254", 0}, {"169.254.169.254", 0},
    {"169.254.0.1", 0}, {"172.16.0.1", 0}, {"172.31.255.255", 0}, {"192.0.0.8", 0}, {"192.0.2.1", 0},
    {"192.88.99.1", 0}, {"192.168.0.1", 0}, {"192.168.255.255", 0}, {"198.18.0.1", 0}, {"198.19.255.255", 0},
    {"198.51.100.7", 0}, {"203.0.113.9", 0}, {"224.0.0.1", 0}, {"239.255.255.250", 0}, {"240.0.0.1", 0},
    {"255.255.255.255", 0},
    /* IPv6 public (global unicast) */
    {"2606:4700:4700::1111", 1}, {"2001:4860:4860::8888", 1}, {"2a00:1450:4001:80b::200e", 1},
    {"2001:200::1", 1}, {"2003::1", 1},
    /* IPv6 not public */
    {"::", 0}, {"::1", 0}, {"fc00::1", 0}, {"fd12:3456:789a::1", 0}, {"fe80::1", 0}, {"febf::1", 0},
    {"fec0::1", 0}, {"ff02::1", 0}, {"ff0e::1", 0}, {"100::1", 0}, {"::a00:1", 0}, {"1fff:ffff::1", 0},
    {"4000::1", 0}, {"2001::1", 0}, {"2001:0:4136:e378::1", 0}, {"2001:1ff::1", 0}, {"2001:db8::1", 0},
    {"2002:c0a8:101::1", 0}, {"2002:808:808::1", 0}, {"3fff::1", 0}, {"3fff:fff::1", 0},
    {"64:ff9b:1::a00:1", 0},
    /* IPv4-mapped and NAT64: judged by the IPv4 address inside */
    {"::ffff:127.0.0.1", 0}, {"::ffff:10.1.2.3", 0}, {"::ffff:169.254.169.254", 0}, {"::ffff:0.0.0.0", 0},
    {"::ffff:192.168.1.1", 0}, {"::ffff:100.64.1.1", 0}, {"::ffff:8.8.8.8", 1}, {"64:ff9b::7f00:1", 0},
    {"64:ff9b::10.0.0.1", 0}, {"64:ff9b::8.8.8.8", 1}, {"::ffff:0:127.0.0.1", 0},
};

/* llava_fetch_url on url; returns its status and leaves the message in msg. */
static llava_fetch_status fetch(const char *url, int allow_private, char *msg, size_t cap) {
    llava_fetch_cfg cfg = {.max_bytes = 1 << 20, .timeout_s = 5, .max_redirs = 3, .allow_private = allow_private};
    unsigned char *out = NULL;
    size_t n = 0;
    long status = 0;
    llava_fetch_status st = llava_fetch_url(&out, &n, &status, url, &cfg, msg, cap);
    free(out);
    return st;
}

int main(void) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int got = classify(table[i].addr);
        EXPECT(got == table[i].is_public, "%s: %s, want %s", table[i].addr,
               got < 0 ? "not an address" : got ? "public" : "not public", table[i].is_public ? "public" : "not public");
    }
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    EXPECT(!llava_fetch_addr_public((struct sockaddr *)&su), "AF_UNIX is not public");

    EXPECT(llava_fetch_global_init() == 0, "libcurl init");
    static const struct {
        const char *url, *addr; /* addr: a text the message must name */
    } refused[] = {
        {"http://127.0.0.1:1/x.png", "127.0.0.1"},
        {"http://localhost:1/x.png", ""},        /* after DNS resolution (127.0.0.1 and/or ::1) */
        {"http://2130706433:1/x.png", "127.0.0.1"}, /* 127.0.0.1 as one decimal number */
        {"http://0.0.0.0:1/x.png", "0.0.0.0"},
        {"http://[::1]:1/x.png", "::1"},
        {"http://[::ffff:127.0.0.1]:1/x.png", "127.0.0.1"},
        {"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
        {"https://10.0.0.1/x.png", "10.0.0.1"},
    };
    char msg[512];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        llava_fetch_status st = fetch(refused[i].url, 0, msg, sizeof msg);
        EXPECT(st == LLAVA_FETCH_NOT_PUBLIC && strstr(msg, "is not public") && strstr(msg, refused[i].addr),
               "%s: status %d, %s", refused[i].url, (int)st, msg);
    }
    /* with allow_private the loopback connection is attempted (and fails: nothing listens on port 1;
     * through a proxy from the environment it may fail as an HTTP error instead) */
    llava_fetch_status st = fetch("http://127.0.0.1:1/x.png", 1, msg, sizeof msg);
    EXPECT((st == LLAVA_FETCH_FAILED || st == LLAVA_FETCH_HTTP_ERROR) && !strstr(msg, "not public"),
           "allow_private: status %d, %s", (int)st, msg);
    llava_fetch_global_cleanup();
    TEST_END();
}
