// See gro.h for the flow and why.
#include "gro.h"
#include "checksum.h"

#include <cerrno>
#include <cstring>

namespace quicgate {
namespace {

constexpr uint8_t kPlain = 0, kTcp4 = 1, kTcp6 = 2, kUdp4 = 3, kUdp6 = 4;
constexpr uint8_t kTcpAck = 0x10, kTcpPsh = 0x08;
// virtio_net.h; UDP_L4 (kernel 6.2+) is missing from older userspace headers.
constexpr uint8_t kNeedsCsum = 1;
constexpr uint8_t kGsoTcp4 = 1, kGsoTcp6 = 4, kGsoUdpL4 = 5;
// Kept below the kernel's limits on segments per GSO packet and on iovecs per write.
constexpr uint32_t kMaxMembers = 64;
constexpr size_t kMaxOpenGroups = 16;
constexpr uint32_t kMaxIpLength = 65535;

inline bool IsTcp(uint8_t kind) { return kind == kTcp4 || kind == kTcp6; }
inline bool IsV4(uint8_t kind) { return kind == kTcp4 || kind == kUdp4; }

const VnetHeader kPlainHeader = {0, 0, 0, 0, 0, 0};

}  // namespace

void CompleteChecksum(uint8_t* packet, size_t length, size_t start, size_t offset) {
  if (start + offset + 2 > length) return;
  uint16_t sum = static_cast<uint16_t>(~Fold(Sum16(packet + start, length - start, 0)));
  Store16(packet + start + offset, sum == 0 ? 0xffff : sum);
}

void Coalescer::Classify(Packet& p) const {
  p.kind = kPlain;
  const uint8_t* b = p.bytes;
  uint32_t n = p.length;
  if (n < 20) return;
  uint8_t version = b[0] >> 4;
  uint8_t protocol;
  uint16_t iph;
  if (version == 4) {
    if ((b[0] & 0x0f) != 5 || Load16(b + 2) != n) return;  // options or a length that lies: as it is
    if ((Load16(b + 6) & 0x3fff) != 0) return;             // a fragment
    if (Fold(Sum16(b, 20, 0)) != 0xffff) return;            // a bad header checksum: the kernel must drop it
    protocol = b[9];
    iph = 20;
  } else if (version == 6) {
    if (n < 40 || Load16(b + 4) + 40u != n) return;
    protocol = b[6];  // extension headers: not coalesced
    iph = 40;
  } else {
    return;
  }
  if (protocol == 6) {
    if (n < iph + 20u) return;
    uint16_t dataOffset = static_cast<uint16_t>((b[iph + 12] >> 4) * 4);
    if (dataOffset < 20 || iph + dataOffset >= n) return;  // no payload: pure ACKs go as they are
    uint8_t flags = b[iph + 13];
    if ((flags & ~(kTcpAck | kTcpPsh)) != 0 || (flags & kTcpAck) == 0) return;  // SYN/FIN/RST/URG/ECN marks
    p.kind = version == 4 ? kTcp4 : kTcp6;
    p.tcpFlags = flags;
    p.l4HeaderLength = dataOffset;
    p.seq = Load32(b + iph + 4);
  } else if (protocol == 17) {
    if (n <= iph + 8u || Load16(b + iph + 4) != n - iph) return;
    p.kind = version == 4 ? kUdp4 : kUdp6;
    p.tcpFlags = 0;
    p.l4HeaderLength = 8;
    p.seq = 0;
  } else {
    return;
  }
  // A super-packet's checksum is completed by the kernel (CHECKSUM_PARTIAL) and never verified, so every member
  // must carry a valid one: a corrupt packet goes as it is and the kernel drops it (as wireguard-go does).
  // UDP over IPv4 may carry no checksum (0); over IPv6 that is invalid.
  bool zeroUdpChecksum = protocol == 17 && Load16(b + iph + 6) == 0;
  if (zeroUdpChecksum && version == 6) return;  // invalid over IPv6 even where the sum would pass (0 == 0xffff)
  if (!zeroUdpChecksum && Fold(Sum16(b + iph, n - iph, PseudoHeaderSum(b, version == 4, protocol, n - iph))) != 0xffff) {
    p.kind = kPlain;
    return;
  }
  p.ipHeaderLength = iph;
  p.payload = n - iph - p.l4HeaderLength;
}

bool Coalescer::SameFlow(const Packet& a, const Packet& b) const {
  if (a.kind != b.kind) return false;
  const uint8_t* x = a.bytes;
  const uint8_t* y = b.bytes;
  bool addresses = IsV4(a.kind) ? std::memcmp(x + 12, y + 12, 8) == 0 : std::memcmp(x + 8, y + 8, 32) == 0;
  return addresses && std::memcmp(x + a.ipHeaderLength, y + b.ipHeaderLength, 4) == 0;  // ports
}

bool Coalescer::CanAppend(const Group& g, const Packet& p) const {
  if (!g.open || g.members >= kMaxMembers || p.payload > g.gsoSize) return false;
  const Packet& head = packets_[static_cast<size_t>(g.first)];
  uint32_t total = head.ipHeaderLength + head.l4HeaderLength + g.payloadTotal + p.payload;
  if (!IsV4(p.kind)) total -= head.ipHeaderLength;  // IPv6 counts its payload only
  if (total > kMaxIpLength) return false;
  const uint8_t* h = head.bytes;
  const uint8_t* b = p.bytes;
  if (IsV4(p.kind)) {
    // TOS (with ECN), DF/flags and TTL must match: the kernel copies the first header to every segment.
    if (h[1] != b[1] || (h[6] & 0xe0) != (b[6] & 0xe0) || h[8] != b[8]) return false;
  } else if (std::memcmp(h, b, 4) != 0 || h[7] != b[7]) {
    return false;  // traffic class, flow label, hop limit
  }
  if (!IsTcp(p.kind)) return true;
  uint16_t iph = head.ipHeaderLength;
  // Byte 12 holds, besides the header length, the reserved bits and AccECN's AE flag (part of the ACE counter).
  if (p.l4HeaderLength != head.l4HeaderLength || h[iph + 12] != b[iph + 12] || p.seq != g.nextSeq) return false;
  // ACK number, window, urgent pointer and options (timestamps) identical: segments differ only in payload.
  return std::memcmp(h + iph + 8, b + iph + 8, 4) == 0 && std::memcmp(h + iph + 14, b + iph + 14, 2) == 0 &&
         std::memcmp(h + iph + 18, b + iph + 18, head.l4HeaderLength - 18u) == 0;
}

uint32_t Coalescer::WriteBatch(uint8_t* data, const uint32_t* lengths, size_t stride, size_t count,
                               uint8_t* status, WritevFn writev, void* ctx) {
  packets_.resize(count);
  groups_.clear();
  openGroups_.clear();
  for (size_t i = 0; i < count; i++) {
    Packet& p = packets_[i];
    p.bytes = data + i * stride;
    p.length = lengths[i];
    p.next = -1;
    Classify(p);
    bool tcp = IsTcp(p.kind);
    if (p.kind == kPlain || (tcp && !tcpEnabled) || (!tcp && !udpEnabled)) {
      groups_.push_back({static_cast<int32_t>(i), static_cast<int32_t>(i), 1, 0, 0, 0, false, false});
      continue;
    }
    bool appended = false;
    for (size_t k = 0; k < openGroups_.size(); k++) {
      Group& g = groups_[static_cast<size_t>(openGroups_[k])];
      if (!SameFlow(packets_[static_cast<size_t>(g.first)], p)) continue;
      if (CanAppend(g, p)) {
        packets_[static_cast<size_t>(g.last)].next = static_cast<int32_t>(i);
        g.last = static_cast<int32_t>(i);
        g.members++;
        g.payloadTotal += p.payload;
        g.nextSeq = p.seq + p.payload;
        if (p.payload < g.gsoSize) g.open = false;  // only the last segment may be short
        if (tcp && (p.tcpFlags & kTcpPsh) != 0) g.push = true, g.open = false;
        appended = true;
      } else {
        g.open = false;  // a gap or a change: later packets of the flow must not jump over this one
      }
      if (!g.open) openGroups_.erase(openGroups_.begin() + static_cast<std::ptrdiff_t>(k));
      break;
    }
    if (appended) continue;
    bool push = tcp && (p.tcpFlags & kTcpPsh) != 0;
    groups_.push_back({static_cast<int32_t>(i), static_cast<int32_t>(i), 1, p.payload, p.payload, p.seq + p.payload,
                       !push, push});
    if (!push) {
      if (openGroups_.size() >= kMaxOpenGroups) {
        groups_[static_cast<size_t>(openGroups_.front())].open = false;
        openGroups_.erase(openGroups_.begin());
      }
      openGroups_.push_back(static_cast<int32_t>(groups_.size() - 1));
    }
  }

  uint32_t accepted = 0;
  for (Group& g : groups_) accepted += WriteGroup(g, status, writev, ctx);
  return accepted;
}

// Writes one group: a plain packet, or a super-packet with a GSO header. If the kernel refuses the
// super-packet as invalid (an older kernel without that offload), the members go one by one and that kind of
// coalescing is switched off; each member then counts as written or refused on its own.
uint32_t Coalescer::WriteGroup(Group& g, uint8_t* status, WritevFn writev, void* ctx) {
  Packet& head = packets_[static_cast<size_t>(g.first)];
  auto mark = [status](int32_t m, bool ok) {
    if (status != nullptr) status[m] = ok ? 1 : 0;
  };
  auto markAll = [&](bool ok) {
    for (int32_t m = g.first; m >= 0; m = packets_[static_cast<size_t>(m)].next) mark(m, ok);
    return ok ? g.members : 0u;
  };
  iov_.resize(2);
  iov_[0] = {const_cast<VnetHeader*>(&kPlainHeader), kVnetHeaderLength};
  if (g.members == 1) {
    iov_[1] = {head.bytes, head.length};
    return markAll(writev(ctx, iov_.data(), 2) == 0);
  }

  uint8_t* b = head.bytes;
  uint16_t iph = head.ipHeaderLength;
  uint16_t l4 = head.l4HeaderLength;
  bool v4 = IsV4(head.kind);
  bool tcp = IsTcp(head.kind);
  uint8_t saved[40 + 60];
  std::memcpy(saved, b, iph + l4);

  uint32_t transportLength = l4 + g.payloadTotal;
  if (v4) {
    Store16(b + 2, iph + transportLength);
    b[10] = b[11] = 0;
    Store16(b + 10, static_cast<uint16_t>(~Fold(Sum16(b, iph, 0))));
  } else {
    Store16(b + 4, transportLength);
  }
  if (tcp && g.push) b[iph + 13] |= kTcpPsh;
  if (!tcp) Store16(b + iph + 4, transportLength);
  uint16_t checksumOffset = tcp ? 16 : 6;
  Store16(b + iph + checksumOffset, PseudoHeaderSum(b, v4, tcp ? 6 : 17, transportLength));

  VnetHeader header;
  header.flags = kNeedsCsum;
  header.gsoType = tcp ? (v4 ? kGsoTcp4 : kGsoTcp6) : kGsoUdpL4;
  header.hdrLen = static_cast<uint16_t>(iph + l4);
  header.gsoSize = static_cast<uint16_t>(g.gsoSize);
  header.csumStart = iph;
  header.csumOffset = checksumOffset;
  iov_[0] = {&header, kVnetHeaderLength};
  iov_[1] = {b, head.length};
  for (int32_t m = head.next; m >= 0; m = packets_[static_cast<size_t>(m)].next) {
    Packet& member = packets_[static_cast<size_t>(m)];
    iov_.push_back({member.bytes + member.ipHeaderLength + member.l4HeaderLength, member.payload});
  }
  int rc = writev(ctx, iov_.data(), static_cast<int>(iov_.size()));
  if (rc == 0) {
    superPackets++;
    coalescedPackets += g.members;
    return markAll(true);
  }
  std::memcpy(b, saved, iph + l4);
  if (rc != EINVAL) return markAll(false);
  if (tcp) tcpEnabled = false;
  else udpEnabled = false;
  uint32_t written = 0;
  for (int32_t m = g.first; m >= 0; m = packets_[static_cast<size_t>(m)].next) {
    Packet& member = packets_[static_cast<size_t>(m)];
    iov_.resize(2);
    iov_[0] = {const_cast<VnetHeader*>(&kPlainHeader), kVnetHeaderLength};
    iov_[1] = {member.bytes, member.length};
    bool ok = writev(ctx, iov_.data(), 2) == 0;
    mark(m, ok);
    if (ok) written++;
  }
  return written;
}

}  // namespace quicgate
