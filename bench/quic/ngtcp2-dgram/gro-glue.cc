// C entry points to quicgate's TUN write coalescer (native/src/gro.cc) for the ngtcp2 spike's QGQ_TUN_VNET
// mode: the spike's TUN writes then get the same userspace GRO as quicgate's TunWriter.
#include "../../../native/src/gro.h"

#include <cerrno>
#include <sys/uio.h>

static int WritevFd(void* ctx, const struct iovec* iov, int iovcnt) {
  int fd = *static_cast<int*>(ctx);
  for (;;) {
    if (::writev(fd, iov, iovcnt) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

extern "C" void* qgq_gro_new(void) { return new quicgate::Coalescer(); }

extern "C" unsigned qgq_gro_write(void* coalescer, unsigned char* data, const unsigned* lengths, size_t stride, size_t count, int fd) {
  return static_cast<quicgate::Coalescer*>(coalescer)->WriteBatch(data, lengths, stride, count, nullptr, WritevFd, &fd);
}

extern "C" unsigned long long qgq_gro_super_packets(void* coalescer) { return static_cast<quicgate::Coalescer*>(coalescer)->superPackets; }
