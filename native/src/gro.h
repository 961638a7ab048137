// Receive-side coalescing for TUN writes (userspace GRO), after wireguard-go's tcp_offload_linux.go.
//
// Flow for one batch of packets (fixed stride, as JS staged them):
//   Classify each packet: TCP or UDP over IPv4 (no options, not a fragment) or IPv6 (no extension headers)
//   with payload, or "plain" (anything else, written as it is)
//   Group: a packet joins the open group of its flow when it continues it exactly (next TCP sequence number,
//   same ACK/window/options/IP fields; for UDP, same datagram size), else it closes that group and opens one
//   Write, in the order of each group's first packet: a group of one as a plain packet; a larger group as ONE
//   super-packet: the first packet's headers (lengths fixed, checksum left to the kernel) + every payload,
//   behind a virtio_net_hdr that tells the kernel to segment it again (TSO/USO) wherever that is needed
//
// Why: a TUN write runs the injected packet through the kernel's whole receive path inside the syscall; one
// 64 KB super-packet costs about what one 1.4 KB packet does, so coalescing divides that cost (and the
// syscalls) by the group size, exactly as GRO does for a NIC. Written by hand: no library does this for Node.
//
// Only packets whose IPv4 header and TCP/UDP checksums are valid are coalesced: the kernel completes a
// super-packet's checksum itself (CHECKSUM_PARTIAL) and never verifies the members', so a corrupt packet (the
// client writes what came from the internet) goes as it is and the kernel drops it, as wireguard-go does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <sys/uio.h>

namespace quicgate {

// write(2)/writev(2) for the fd; returns 0 or errno. Injected so the grouping logic is testable in isolation.
using WritevFn = int (*)(void* ctx, const struct iovec* iov, int iovcnt);

class Coalescer {
 public:
  // Writes `count` packets at data + i * stride with lengths[i]; status[i] = 1 when packet i was accepted,
  // 0 when refused (status may be null). Returns the number accepted. Packets are modified in place (the
  // first packet of each group gets the group's lengths): the caller's staging buffer, never reused input.
  uint32_t WriteBatch(uint8_t* data, const uint32_t* lengths, size_t stride, size_t count, uint8_t* status,
                      WritevFn writev, void* ctx);

  // Super-packets written since creation (for tests and statistics).
  uint64_t superPackets = 0;
  uint64_t coalescedPackets = 0;
  // Turned off for good if the kernel refuses a well-formed UDP super-packet (kernels before 6.2).
  bool udpEnabled = true;
  bool tcpEnabled = true;

 private:
  struct Packet {
    uint8_t* bytes;
    uint32_t length;
    uint8_t kind;  // 0 plain, 1 tcp4, 2 tcp6, 3 udp4, 4 udp6
    uint8_t tcpFlags;
    uint16_t ipHeaderLength;
    uint16_t l4HeaderLength;
    uint32_t payload;
    uint32_t seq;
    int32_t next;  // next member of the same group, -1 at the end
  };
  struct Group {
    int32_t first;
    int32_t last;
    uint32_t members;
    uint32_t gsoSize;
    uint32_t payloadTotal;
    uint32_t nextSeq;
    bool open;
    bool push;
  };

  void Classify(Packet& packet) const;
  bool SameFlow(const Packet& a, const Packet& b) const;
  bool CanAppend(const Group& group, const Packet& packet) const;
  // Writes one group; sets status[m] for each member (status may be null) and returns how many were accepted.
  uint32_t WriteGroup(Group& group, uint8_t* status, WritevFn writev, void* ctx);

  std::vector<Packet> packets_;
  std::vector<Group> groups_;
  std::vector<int32_t> openGroups_;
  std::vector<struct iovec> iov_;
};

// Bytes of the virtio_net_hdr in front of every packet read from or written to a TUN with IFF_VNET_HDR.
constexpr size_t kVnetHeaderLength = 10;

// The virtio_net_hdr itself (legacy layout: host byte order), as the kernel reads and writes it.
struct VnetHeader {
  uint8_t flags;
  uint8_t gsoType;
  uint16_t hdrLen;
  uint16_t gsoSize;
  uint16_t csumStart;
  uint16_t csumOffset;
} __attribute__((packed));
static_assert(sizeof(VnetHeader) == kVnetHeaderLength, "virtio_net_hdr is 10 bytes");

// Completes a checksum the kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM on a read packet).
void CompleteChecksum(uint8_t* packet, size_t length, size_t start, size_t offset);

}  // namespace quicgate
