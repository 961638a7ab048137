/*
 * bench/quic/ngtcp2-dgram: one-way QUIC datagrams (RFC 9221) over Debian's ngtcp2 0.12 + GnuTLS, with batched
 * UDP I/O: sends go out as UDP GSO batches (sendmsg + UDP_SEGMENT), receives come in through recvmmsg with
 * UDP_GRO (one buffer can hold many packets). One thread, poll(2) loop, same output as bench/quic/lib-dgram.mjs.
 * A spike for docs/quic-route.md, not production code: one connection, no retry tokens, no migration.
 *
 *   ngtcp2-dgram server HOST PORT CERT KEY DUR
 *   ngtcp2-dgram client HOST PORT CERT DUR LEN RATE      (RATE 0: as fast as congestion control allows)
 *
 * With QGQ_PIPE=1 the server also hands every received datagram to its stdout in batches ([u16 length][bytes]...,
 * one write per received UDP batch, as an addon would hand a batch to JavaScript) and prints its JSON to stderr.
 * With QGQ_TUN=NAME both ends instead carry IP packets between a TUN device NAME and QUIC datagrams, both ways,
 * until killed (route (c)'s data channel in its simplest form: one read per TUN packet, no TSO/GRO on the TUN).
 * QGQ_TUN_VNET=1 adds receive-side coalescing to the TUN writes: the TUN is opened with IFF_VNET_HDR and the
 * packets of one received UDP batch go through quicgate's own coalescer (native/src/gro.cc, via gro-glue.cc),
 * as quicgate's TunWriter does. TUN reads stay one packet per read (no TSO).
 * QGQ_TUN_TSO=1 (with QGQ_TUN_VNET) also turns on TSO for IPv4 TCP on the TUN (TUNSETOFFLOAD): one read brings
 * up to 64 KB of a flow, segmented here into MSS-size packets (headers and checksums rebuilt), one datagram each.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define MAX_PKT 1452      /* veth MTU 1500 - IPv4 - UDP */
#define GSO_MAX 44        /* packets per sendmsg: 44 x 1452 stays under the 64 KiB a UDP send can carry */
#define RX_BATCH 16       /* buffers per recvmmsg */
#define RX_BUF 65536      /* one GRO super-buffer */

static const char ALPN[] = "qgq";
static int tunfd = -1;
static int tun_vnet = 0;
void *qgq_gro_new(void);
unsigned qgq_gro_write(void *coalescer, unsigned char *data, const unsigned *lengths, size_t stride, size_t count, int fd);
unsigned long long qgq_gro_super_packets(void *coalescer);
static void *gro;
#define GRO_STRIDE 1500
#define GRO_MAX 64
static uint8_t gro_data[GRO_MAX * GRO_STRIDE];
static unsigned gro_len[GRO_MAX];
static size_t gro_count;
static uint64_t tun_skipped;
static int tun_tso = 0;
static uint8_t tso_buf[10 + 65536];

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n) {
  for (; n > 1; n -= 2, p += 2) s += (uint32_t)(p[0] << 8 | p[1]);
  if (n) s += (uint32_t)(p[0] << 8);
  return s;
}
static void put_csum(uint8_t *at, uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  s = ~s & 0xffff;
  at[0] = (uint8_t)(s >> 8);
  at[1] = (uint8_t)s;
}
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static void gro_flush(void) {
  if (gro_count == 0) return;
  qgq_gro_write(gro, gro_data, gro_len, GRO_STRIDE, gro_count, tunfd);
  gro_count = 0;
}
static int pipe_out = 0;
static uint8_t pipe_buf[1 << 20];
static size_t pipe_len;
static uint64_t tun_drops;

/* Where write_out takes the datagrams to send from: peek the next one (NULL: none), pop it once accepted. */
typedef struct dsource {
  const uint8_t *(*peek)(struct dsource *, size_t *len);
  void (*pop)(struct dsource *);
} dsource;

typedef struct {
  int fd, server;
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref ref;
  gnutls_session_t tls;
  gnutls_certificate_credentials_t cred;
  struct sockaddr_in local, remote;
  int handshake_done;
  uint64_t rx_dgrams, rx_bytes, udp_tx_pkts, udp_tx_sends, udp_rx_pkts, udp_rx_calls;
  /* GSO batch being built */
  uint8_t *gso_buf;
  size_t gso_len, gso_seg, gso_count;
} peer;

static ngtcp2_tstamp now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (ngtcp2_tstamp)ts.tv_sec * 1000000000ull + (ngtcp2_tstamp)ts.tv_nsec;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, long code) {
  fprintf(stderr, "%s: %ld (%s)\n", what, code, code < 0 ? ngtcp2_strerror((int)code) : "");
  exit(1);
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *user) {
  (void)conn; (void)user;
  gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t len, void *user) {
  (void)conn; (void)flags; (void)data;
  peer *p = user;
  p->rx_dgrams++;
  p->rx_bytes += len;
  if (tunfd >= 0 && tun_vnet) {
    if (len > GRO_STRIDE) { tun_drops++; return 0; }
    if (gro_count == GRO_MAX) gro_flush();
    memcpy(gro_data + gro_count * GRO_STRIDE, data, len);
    gro_len[gro_count++] = (unsigned)len;
  } else if (tunfd >= 0 && write(tunfd, data, len) < 0) tun_drops++;
  if (pipe_out && pipe_len + 2 + len <= sizeof pipe_buf) {
    pipe_buf[pipe_len] = (uint8_t)(len >> 8);
    pipe_buf[pipe_len + 1] = (uint8_t)len;
    memcpy(pipe_buf + pipe_len + 2, data, len);
    pipe_len += 2 + len;
  }
  return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user) {
  (void)conn;
  ((peer *)user)->handshake_done = 1;
  return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) { return ((peer *)ref->user_data)->conn; }

static ngtcp2_callbacks callbacks(int server) {
  ngtcp2_callbacks cb;
  memset(&cb, 0, sizeof cb);
  if (server) cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  else {
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.rand = rand_cb;
  cb.get_new_connection_id = new_cid_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.recv_datagram = recv_datagram_cb;
  cb.handshake_completed = handshake_completed_cb;
  return cb;
}

static void settings_params(ngtcp2_settings *s, ngtcp2_transport_params *tp) {
  ngtcp2_settings_default(s);
  s->initial_ts = now_ns();
  s->max_tx_udp_payload_size = MAX_PKT;
  s->cc_algo = NGTCP2_CC_ALGO_CUBIC;
  s->no_tx_udp_payload_size_shaping = 1; /* use MAX_PKT at once (the veth's MTU is known), not 1200 first */
  ngtcp2_transport_params_default(tp);
  tp->initial_max_data = 1 << 20;
  tp->initial_max_streams_bidi = 4;
  tp->initial_max_stream_data_bidi_local = tp->initial_max_stream_data_bidi_remote = 1 << 18;
  tp->max_idle_timeout = 30 * NGTCP2_SECONDS;
  tp->max_datagram_frame_size = 65535;
  tp->max_udp_payload_size = MAX_PKT;
}

static void tls_setup(peer *p, const char *cert, const char *key) {
  int rv;
  gnutls_certificate_allocate_credentials(&p->cred);
  if (p->server) {
    if ((rv = gnutls_certificate_set_x509_key_file(p->cred, cert, key, GNUTLS_X509_FMT_PEM)) != 0) die("key file", rv);
  } else if ((rv = gnutls_certificate_set_x509_trust_file(p->cred, cert, GNUTLS_X509_FMT_PEM)) < 1) {
    die("trust file", rv);
  }
  gnutls_init(&p->tls, (p->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA);
  if ((rv = gnutls_priority_set_direct(p->tls, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL)) != 0) die("priority", rv);
  if ((rv = p->server ? ngtcp2_crypto_gnutls_configure_server_session(p->tls) : ngtcp2_crypto_gnutls_configure_client_session(p->tls)) != 0)
    die("configure session", rv);
  p->ref.get_conn = get_conn;
  p->ref.user_data = p;
  gnutls_session_set_ptr(p->tls, &p->ref);
  gnutls_credentials_set(p->tls, GNUTLS_CRD_CERTIFICATE, p->cred);
  gnutls_datum_t alpn = {(unsigned char *)ALPN, sizeof ALPN - 1};
  gnutls_alpn_set_protocols(p->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);
  if (!p->server) {
    gnutls_server_name_set(p->tls, GNUTLS_NAME_DNS, "quic.test", 9);
    gnutls_session_set_verify_cert(p->tls, "quic.test", 0);
  }
}

static int udp_socket(const char *host, int port, struct sockaddr_in *bound) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int buf = 4 << 20, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
  memset(bound, 0, sizeof *bound);
  bound->sin_family = AF_INET;
  bound->sin_port = htons(port);
  inet_pton(AF_INET, host, &bound->sin_addr);
  if (bind(fd, (struct sockaddr *)bound, sizeof *bound) != 0) die("bind", -errno);
  socklen_t len = sizeof *bound;
  getsockname(fd, (struct sockaddr *)bound, &len);
  return fd;
}

static ngtcp2_path path_of(peer *p) {
  ngtcp2_path path = {{(ngtcp2_sockaddr *)&p->local, sizeof p->local}, {(ngtcp2_sockaddr *)&p->remote, sizeof p->remote}, NULL};
  return path;
}

/* Send the GSO batch built so far: one sendmsg, the kernel splits it into gso_count UDP packets. */
static void gso_flush(peer *p) {
  if (p->gso_count == 0) return;
  struct iovec iov = {p->gso_buf, p->gso_len};
  char ctrl[CMSG_SPACE(sizeof(uint16_t))];
  struct msghdr msg = {.msg_name = &p->remote, .msg_namelen = sizeof p->remote, .msg_iov = &iov, .msg_iovlen = 1};
  if (p->gso_count > 1) {
    memset(ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)p->gso_seg;
    memcpy(CMSG_DATA(c), &seg, sizeof seg);
  }
  for (;;) {
    if (sendmsg(p->fd, &msg, 0) >= 0) break;
    if (errno == EAGAIN || errno == ENOBUFS) {
      struct pollfd pf = {p->fd, POLLOUT, 0};
      poll(&pf, 1, 10);
      continue;
    }
    if (errno != EINTR) { perror("sendmsg"); break; }
  }
  p->udp_tx_pkts += p->gso_count;
  p->udp_tx_sends++;
  p->gso_len = p->gso_seg = p->gso_count = 0;
}

/* Room for the next packet in the batch; packets of one batch have equal size, only the last may be shorter. */
static uint8_t *gso_slot(peer *p) {
  if (p->gso_count == GSO_MAX) gso_flush(p);
  return p->gso_buf + p->gso_len;
}

static void gso_commit(peer *p, size_t n) {
  if (p->gso_count > 0 && n > p->gso_seg) { /* larger than the segment size: it starts a batch of its own */
    uint8_t tmp[MAX_PKT];
    memcpy(tmp, p->gso_buf + p->gso_len, n);
    gso_flush(p);
    memcpy(p->gso_buf, tmp, n);
  }
  if (p->gso_count == 0) p->gso_seg = n;
  p->gso_len += n;
  p->gso_count++;
  if (n < p->gso_seg) gso_flush(p);
}

/* Write what the connection has to send: ACKs, handshake, and the datagrams src offers (src may be NULL). */
static void write_out(peer *p, dsource *src) {
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = now_ns();
  size_t quantum = ngtcp2_conn_get_send_quantum(p->conn), written = 0;
  for (;;) {
    uint8_t *dest = gso_slot(p);
    ngtcp2_ssize n;
    int accepted = 0;
    size_t len = 0;
    const uint8_t *d = (src != NULL && p->handshake_done) ? src->peek(src, &len) : NULL;
    if (d != NULL) {
      ngtcp2_vec v = {(uint8_t *)d, len};
      n = ngtcp2_conn_writev_datagram(p->conn, &ps.path, &pi, dest, MAX_PKT, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_NONE, 0, &v, 1, ts);
    } else {
      n = ngtcp2_conn_write_pkt(p->conn, &ps.path, &pi, dest, MAX_PKT, ts);
    }
    if (n < 0) die("write", n);
    if (accepted) src->pop(src);
    if (n == 0) break;
    gso_commit(p, (size_t)n);
    written += (size_t)n;
    if (written >= quantum) break;
  }
  gso_flush(p);
  ngtcp2_conn_update_pkt_tx_time(p->conn, ts);
}

/* The blast sender's source: the same payload, `want` more times. */
typedef struct { dsource s; const uint8_t *payload; size_t len; uint64_t want, sent; } blast_source;
static const uint8_t *blast_peek(dsource *s, size_t *len) {
  blast_source *b = (blast_source *)s;
  *len = b->len;
  return b->want > 0 ? b->payload : NULL;
}
static void blast_pop(dsource *s) { blast_source *b = (blast_source *)s; b->want--; b->sent++; }

/* Packets read from the TUN, waiting for the congestion window. */
#define TQ 512
typedef struct { dsource s; uint8_t buf[TQ][1500]; size_t len[TQ]; size_t head, count; } tun_queue;
static const uint8_t *tq_peek(dsource *s, size_t *len) {
  tun_queue *q = (tun_queue *)s;
  if (q->count == 0) return NULL;
  *len = q->len[q->head];
  return q->buf[q->head];
}
static void tq_pop(dsource *s) { tun_queue *q = (tun_queue *)s; q->head = (q->head + 1) % TQ; q->count--; }

static uint8_t rx_bufs[RX_BATCH][RX_BUF];

/* recvmmsg a batch; a buffer may hold several packets of gso_size each (UDP_GRO). */
static int read_in(peer *p, ngtcp2_transport_params *server_tp, const ngtcp2_callbacks *cb, ngtcp2_settings *s) {
  struct mmsghdr msgs[RX_BATCH];
  struct iovec iov[RX_BATCH];
  struct sockaddr_in from[RX_BATCH];
  char ctrl[RX_BATCH][CMSG_SPACE(sizeof(int))];
  for (int i = 0; i < RX_BATCH; i++) {
    iov[i].iov_base = rx_bufs[i];
    iov[i].iov_len = RX_BUF;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_control = ctrl[i];
    msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
  }
  int got = recvmmsg(p->fd, msgs, RX_BATCH, 0, NULL);
  if (got <= 0) return 0;
  p->udp_rx_calls++;
  for (int i = 0; i < got; i++) {
    size_t total = msgs[i].msg_len, seg = total;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) { int v; memcpy(&v, CMSG_DATA(c), sizeof v); seg = (size_t)v; }
    for (size_t off = 0; off < total; off += seg) {
      size_t n = total - off < seg ? total - off : seg;
      const uint8_t *pkt = rx_bufs[i] + off;
      p->udp_rx_pkts++;
      if (p->conn == NULL) { /* server: the first Initial creates the connection */
        ngtcp2_pkt_hd hd;
        if (ngtcp2_accept(&hd, pkt, n) != 0) continue;
        p->remote = from[i];
        ngtcp2_cid scid;
        scid.datalen = 16;
        gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
        server_tp->original_dcid = hd.dcid;
        ngtcp2_path path = path_of(p);
        int rv = ngtcp2_conn_server_new(&p->conn, &hd.scid, &scid, &path, hd.version, cb, s, server_tp, NULL, p);
        if (rv != 0) die("server_new", rv);
        ngtcp2_conn_set_tls_native_handle(p->conn, p->tls);
      }
      ngtcp2_path path = path_of(p);
      ngtcp2_pkt_info pi = {0};
      int rv = ngtcp2_conn_read_pkt(p->conn, &path, &pi, pkt, n, now_ns());
      if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) return -1;
      if (rv != 0) { fprintf(stderr, "read_pkt: %s\n", ngtcp2_strerror(rv)); return -1; }
    }
  }
  return got;
}

static int poll_once(peer *p, int wait_ms_max) {
  ngtcp2_tstamp exp = p->conn ? ngtcp2_conn_get_expiry(p->conn) : UINT64_MAX, t = now_ns();
  int ms = wait_ms_max;
  if (exp != UINT64_MAX) {
    long long d = exp > t ? (long long)((exp - t) / 1000000) : 0;
    if (d < ms) ms = (int)d;
  }
  struct pollfd pf = {p->fd, POLLIN, 0};
  int r = poll(&pf, 1, ms);
  if (p->conn && ngtcp2_conn_get_expiry(p->conn) <= now_ns()) {
    int rv = ngtcp2_conn_handle_expiry(p->conn, now_ns());
    if (rv != 0) die("handle_expiry", rv);
  }
  return r;
}

static int tun_open(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (tun_vnet ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) die("TUNSETIFF", -errno);
  int hdr = 10;
  if (tun_vnet && ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) die("TUNSETVNETHDRSZ", -errno);
  if (tun_vnet) gro = qgq_gro_new();
  if (tun_tso && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) != 0) die("TUNSETOFFLOAD", -errno);
  return fd;
}

static tun_queue tq = {{tq_peek, tq_pop}, {{0}}, {0}, 0, 0};

/* One TSO read: a plain packet (its partial checksum completed) or an IPv4 TCP super-packet cut into
 * gso_size segments, each with its own IP length, id, TCP sequence number and checksums. Into the queue.
 * By hand: a measuring spike only; the build-out carries super-packets whole (docs/quic-route.md). */
static int tso_read(void) {
  ssize_t n = read(tunfd, tso_buf, sizeof tso_buf);
  if (n <= 10) return 0;
  uint8_t *vh = tso_buf, *pkt = tso_buf + 10;
  size_t len = (size_t)n - 10;
  uint16_t gso_size, csum_start, csum_offset;
  memcpy(&gso_size, vh + 4, 2); memcpy(&csum_start, vh + 6, 2); memcpy(&csum_offset, vh + 8, 2);
  if (vh[1] == VIRTIO_NET_HDR_GSO_NONE) {
    if ((vh[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && csum_start + csum_offset + 2u <= len)
      put_csum(pkt + csum_start + csum_offset, sum16(0, pkt + csum_start, len - csum_start));
    if (len > 1500) { tun_skipped++; return 1; }
    size_t slot = (tq.head + tq.count) % TQ;
    memcpy(tq.buf[slot], pkt, len);
    tq.len[slot] = len;
    tq.count++;
    return 1;
  }
  if (vh[1] != VIRTIO_NET_HDR_GSO_TCPV4 || (pkt[0] >> 4) != 4) { tun_skipped++; return 1; }
  size_t ihl = (size_t)(pkt[0] & 15) * 4, thl = (size_t)(pkt[ihl + 12] >> 4) * 4, hdr = ihl + thl;
  uint32_t seq = be32(pkt + ihl + 4), id = (uint32_t)(pkt[4] << 8 | pkt[5]);
  size_t payload = len - hdr;
  for (size_t off = 0, i = 0; off < payload; off += gso_size, i++) {
    size_t seg = payload - off < gso_size ? payload - off : gso_size;
    size_t slot = (tq.head + tq.count) % TQ;
    uint8_t *q = tq.buf[slot];
    memcpy(q, pkt, hdr);
    memcpy(q + hdr, pkt + hdr + off, seg);
    put16(q + 2, (uint32_t)(hdr + seg));
    put16(q + 4, id + (uint32_t)i);
    q[10] = q[11] = 0;
    put_csum(q + 10, sum16(0, q, ihl));
    put32(q + ihl + 4, seq + (uint32_t)off);
    if (off + seg < payload) q[ihl + 13] &= (uint8_t)~0x09; /* FIN and PSH only on the last segment */
    q[ihl + 16] = q[ihl + 17] = 0;
    uint32_t ps = sum16(0, q + 12, 8) + 6 + (uint32_t)(thl + seg);
    put_csum(q + ihl + 16, sum16(ps, q + ihl, thl + seg));
    tq.len[slot] = hdr + seg;
    tq.count++;
  }
  return 1;
}

/* TUN <-> QUIC datagrams until killed: read the TUN while the queue has room, send what the window allows. */
static void tun_loop(peer *p, const ngtcp2_callbacks *cb, ngtcp2_settings *s) {
  for (;;) {
    ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(p->conn), t = now_ns();
    int ms = exp == UINT64_MAX ? 100 : exp > t ? (int)((exp - t) / 1000000) : 0;
    if (ms > 100) ms = 100;
    struct pollfd pf[2] = {{p->fd, POLLIN, 0}, {tunfd, tq.count < TQ ? POLLIN : 0, 0}};
    poll(pf, 2, ms);
    if (ngtcp2_conn_get_expiry(p->conn) <= now_ns() && ngtcp2_conn_handle_expiry(p->conn, now_ns()) != 0) return;
    for (int i = 0; i < 8; i++) {
      int r = read_in(p, NULL, cb, s);
      gro_flush();
      if (r < 0) return;
      if (r == 0) break;
    }
    while (tun_tso && tq.count + 48 <= TQ && tso_read()) {}
    while (!tun_tso && tq.count < TQ) {
      size_t slot = (tq.head + tq.count) % TQ;
      uint8_t vh[10];
      struct iovec iov[2] = {{vh, sizeof vh}, {tq.buf[slot], sizeof tq.buf[slot]}};
      ssize_t n = tun_vnet ? readv(tunfd, iov, 2) - (ssize_t)sizeof vh : read(tunfd, tq.buf[slot], sizeof tq.buf[slot]);
      if (n <= 0) break;
      if (tun_vnet && (vh[0] != 0 || vh[1] != 0)) { tun_skipped++; continue; } /* no offloads set: never expected */
      tq.len[slot] = (size_t)n;
      tq.count++;
    }
    write_out(p, &tq.s);
  }
}

int main(int argc, char **argv) {
  if (argc < 7) { fprintf(stderr, "usage: see the header of ngtcp2-dgram.c\n"); return 2; }
  peer p;
  memset(&p, 0, sizeof p);
  p.server = strcmp(argv[1], "server") == 0;
  p.gso_buf = malloc(GSO_MAX * MAX_PKT);
  ngtcp2_settings s;
  ngtcp2_transport_params tp;
  settings_params(&s, &tp);
  ngtcp2_callbacks cb = callbacks(p.server);
  tun_vnet = getenv("QGQ_TUN_VNET") != NULL;
  tun_tso = tun_vnet && getenv("QGQ_TUN_TSO") != NULL;
  if (getenv("QGQ_TUN") != NULL) tunfd = tun_open(getenv("QGQ_TUN"));
  pipe_out = getenv("QGQ_PIPE") != NULL;
  FILE *report = pipe_out ? stderr : stdout;
  if (p.server) {
    double dur = atof(argv[6]);
    tls_setup(&p, argv[4], argv[5]);
    p.fd = udp_socket(argv[2], atoi(argv[3]), &p.local);
    fprintf(stderr, "server ready\n");
    ngtcp2_tstamp start = 0, t0 = 0;
    double c0 = 0;
    uint64_t n0 = 0, b0 = 0;
    for (;;) {
      poll_once(&p, 50);
      if (read_in(&p, &tp, &cb, &s) < 0) break;
      if (pipe_len > 0) { /* one batch to the consumer; blocking, so a slow consumer slows the receiver */
        for (size_t off = 0; off < pipe_len;) { ssize_t w = write(1, pipe_buf + off, pipe_len - off); if (w <= 0) die("pipe", -errno); off += (size_t)w; }
        pipe_len = 0;
      }
      if (p.conn) write_out(&p, NULL);
      if (tunfd >= 0 && p.handshake_done) { tun_loop(&p, &cb, &s); return 0; }
      if (p.rx_dgrams > 0 && start == 0) start = now_ns();
      if (start && !t0 && now_ns() - start >= 1000000000ull) { t0 = now_ns(); c0 = cpu_s(); n0 = p.rx_dgrams; b0 = p.rx_bytes; }
      if (t0 && now_ns() - t0 >= (ngtcp2_tstamp)(dur * 1e9)) {
        double secs = (now_ns() - t0) / 1e9;
        uint64_t dn = p.rx_dgrams - n0, db = p.rx_bytes - b0;
        fprintf(report, "{\"side\":\"rx\",\"route\":\"ngtcp2\",\"dgrams_per_s\":%llu,\"mbit_s\":%.1f,\"cpu_s\":%.2f,\"bytes\":%llu,\"secs\":%.2f,\"udp_rx_pkts\":%llu,\"udp_rx_calls\":%llu}\n",
               (unsigned long long)(dn / secs), db * 8 / secs / 1e6, cpu_s() - c0, (unsigned long long)db, secs,
               (unsigned long long)p.udp_rx_pkts, (unsigned long long)p.udp_rx_calls);
        return 0;
      }
    }
    printf("{\"side\":\"rx\",\"route\":\"ngtcp2\",\"error\":\"connection ended after %llu datagrams\"}\n", (unsigned long long)p.rx_dgrams);
    return 1;
  }
  double dur = atof(argv[5]), rate = atof(argv[7]);
  size_t len = (size_t)atoi(argv[6]);
  uint8_t *payload = calloc(1, len);
  tls_setup(&p, argv[4], NULL);
  p.fd = udp_socket("0.0.0.0", 0, &p.local);
  p.remote.sin_family = AF_INET;
  p.remote.sin_port = htons(atoi(argv[3]));
  inet_pton(AF_INET, argv[2], &p.remote.sin_addr);
  if (connect(p.fd, (struct sockaddr *)&p.remote, sizeof p.remote) != 0) die("connect", -errno);
  socklen_t sl = sizeof p.local;
  getsockname(p.fd, (struct sockaddr *)&p.local, &sl);
  ngtcp2_cid dcid, scid;
  dcid.datalen = 18; scid.datalen = 16;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  ngtcp2_path path = path_of(&p);
  int rv = ngtcp2_conn_client_new(&p.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &s, &tp, NULL, &p);
  if (rv != 0) die("client_new", rv);
  ngtcp2_conn_set_tls_native_handle(p.conn, p.tls);
  ngtcp2_tstamp hs_deadline = now_ns() + 5000000000ull;
  while (!p.handshake_done) {
    write_out(&p, NULL);
    poll_once(&p, 10);
    if (read_in(&p, NULL, &cb, &s) < 0) die("handshake", 0);
    if (now_ns() > hs_deadline) die("handshake timeout", 0);
  }
  fprintf(stderr, "client ready, max udp payload %zu\n", ngtcp2_conn_get_path_max_tx_udp_payload_size(p.conn));
  if (tunfd >= 0) { tun_loop(&p, &cb, &s); return 0; }
  blast_source src = {{blast_peek, blast_pop}, payload, len, 0, 0};
  uint64_t s0 = 0, s1 = 0;
  double c0 = 0, c1 = 0;
  int m0 = 0, m1 = 0;
  ngtcp2_tstamp t0 = now_ns();
  for (;;) {
    double el = (now_ns() - t0) / 1e9;
    if (!m0 && el >= 1.0) { m0 = 1; c0 = cpu_s(); s0 = src.sent; }
    if (!m1 && el >= 1.0 + dur) { m1 = 1; c1 = cpu_s(); s1 = src.sent; }
    if (el >= dur + 1.5) break;
    /* RATE 0: always have datagrams waiting, the congestion window decides */
    uint64_t due = rate > 0 ? (uint64_t)(el * rate) : src.sent + 4096;
    src.want = due > src.sent ? due - src.sent : 0;
    write_out(&p, &src.s);
    poll_once(&p, rate > 0 ? 1 : 0);
    if (read_in(&p, NULL, &cb, &s) < 0) break;
    while (read_in(&p, NULL, &cb, &s) > 0) {}
  }
  ngtcp2_conn_stat ci;
  ngtcp2_conn_get_conn_stat(p.conn, &ci);
  printf("{\"side\":\"tx\",\"route\":\"ngtcp2\",\"sent\":%llu,\"sent_per_s\":%llu,\"cpu_s\":%.2f,\"udp_tx_pkts\":%llu,\"udp_tx_sends\":%llu,\"cwnd\":%llu,\"srtt_us\":%llu}\n",
         (unsigned long long)src.sent, (unsigned long long)((s1 - s0) / dur), c1 - c0, (unsigned long long)p.udp_tx_pkts,
         (unsigned long long)p.udp_tx_sends, (unsigned long long)ci.cwnd, (unsigned long long)(ci.smoothed_rtt / 1000));
  return 0;
}
