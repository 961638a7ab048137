// Driver for test/tun/gro-fallback.test.ts: runs quicgate::Coalescer (native/src/gro.cc) against a fake
// writev that refuses every super-packet with EINVAL (a kernel without that offload) and one plain write with
// EAGAIN, then prints "accepted=<n> status=<s0><s1>..." and the coalescer's counters.
#include <arpa/inet.h>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gro.h"

namespace {

uint32_t Sum(const uint8_t* b, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (n & 1) sum += b[n - 1] << 8;
  return sum;
}

uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// IPv4/UDP 192.0.2.1:4000 -> 198.18.0.2:5000 with `payload` bytes, valid IP and UDP checksums.
void UdpPacket(uint8_t* p, size_t payload, uint16_t id) {
  size_t udpLength = 8 + payload;
  size_t total = 20 + udpLength;
  std::memset(p, 0, total);
  p[0] = 0x45;
  p[2] = total >> 8;
  p[3] = total & 0xff;
  p[4] = id >> 8;
  p[5] = id & 0xff;
  p[8] = 64;
  p[9] = 17;
  const uint8_t src[4] = {192, 0, 2, 1}, dst[4] = {198, 18, 0, 2};
  std::memcpy(p + 12, src, 4);
  std::memcpy(p + 16, dst, 4);
  uint16_t ipSum = Fold(Sum(p, 20, 0));
  p[10] = ipSum >> 8;
  p[11] = ipSum & 0xff;
  uint8_t* u = p + 20;
  u[0] = 4000 >> 8, u[1] = 4000 & 0xff, u[2] = 5000 >> 8, u[3] = 5000 & 0xff;
  u[4] = udpLength >> 8, u[5] = udpLength & 0xff;
  for (size_t i = 0; i < payload; i++) u[8 + i] = static_cast<uint8_t>(i + id);
  uint32_t pseudo = Sum(p + 12, 8, 0) + 17 + udpLength;
  uint16_t udpSum = Fold(Sum(u, udpLength, pseudo));
  if (udpSum == 0) udpSum = 0xffff;
  u[6] = udpSum >> 8;
  u[7] = udpSum & 0xff;
}

int plainWrites = 0;
int superAttempts = 0;

int FakeWritev(void*, const struct iovec* iov, int count) {
  if (count > 2) {
    superAttempts++;
    return EINVAL;
  }
  plainWrites++;
  return plainWrites == 2 ? EAGAIN : 0;  // the second packet written on its own is refused
}

}  // namespace

int main() {
  const size_t stride = 1500, count = 4, payload = 1000;
  std::vector<uint8_t> data(stride * count);
  uint32_t lengths[count];
  for (size_t i = 0; i < count; i++) {
    UdpPacket(data.data() + i * stride, payload, static_cast<uint16_t>(i + 1));
    lengths[i] = 20 + 8 + payload;
  }
  uint8_t status[count] = {9, 9, 9, 9};
  quicgate::Coalescer coalescer;
  uint32_t accepted = coalescer.WriteBatch(data.data(), lengths, stride, count, status, &FakeWritev, nullptr);
  std::printf("accepted=%u status=", accepted);
  for (size_t i = 0; i < count; i++) std::printf("%u", status[i]);
  std::printf(" superAttempts=%d plainWrites=%d udpEnabled=%d\n", superAttempts, plainWrites, coalescer.udpEnabled ? 1 : 0);
  return 0;
}
