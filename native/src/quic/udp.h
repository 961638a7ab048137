// Batched UDP I/O for the QUIC endpoint: recvmmsg with UDP_GRO (one buffer may hold many packets of one
// sender) and sendmsg with UDP_SEGMENT (one call sends up to kGsoMax equal-size packets to one address).
#pragma once

#include <sys/socket.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace quicgate {

constexpr size_t kRxBatch = 16;      // buffers per recvmmsg
constexpr size_t kRxBuffer = 65536;  // one GRO super-buffer
constexpr size_t kGsoMax = 40;       // packets per GSO send: 40 x 1452 stays under a UDP send's 64 KiB

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage); }
  bool operator==(const Address& other) const;
  // "ip:port" ("[v6]:port"), IPv4-mapped IPv6 shown as IPv4.
  std::string ToString() const;
  std::string Host() const;
};

// Parses host (IPv4 or IPv6 literal) and port; false when host is not a literal.
bool ParseAddress(const std::string& host, int port, Address* out);

// A non-blocking UDP socket with 4 MiB buffers and UDP_GRO; -errno on failure.
int OpenUdpSocket(const Address& bind, Address* bound);

struct Received {
  const uint8_t* data;
  size_t length;
  size_t segment;  // GRO segment size (== length when not coalesced)
  Address from;
};

class UdpReceiver {
 public:
  UdpReceiver();
  // One recvmmsg: returns the number of buffers filled (0: nothing waiting, -errno on error).
  int Receive(int fd);
  const Received& At(size_t i) const { return received_[i]; }

 private:
  std::vector<uint8_t> buffers_;
  Received received_[kRxBatch];
};

// Packets to one destination collected into GSO sends.
class GsoSender {
 public:
  GsoSender();
  // Room for one packet of up to `max` bytes (flushes first when the batch is full or the destination differs).
  uint8_t* Slot(int fd, const Address& to, size_t max);
  // The packet written into the last Slot() is `length` bytes.
  void Commit(int fd, size_t length);
  void Flush(int fd);
  uint64_t sends = 0, packets = 0, dropped = 0;

 private:
  std::vector<uint8_t> buffer_;
  size_t used_ = 0, segment_ = 0, count_ = 0;
  Address to_;
  bool gsoBroken_ = false;
  void SendOne(int fd, const uint8_t* data, size_t length, size_t segment);
};

}  // namespace quicgate
