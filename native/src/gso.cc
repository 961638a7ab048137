// See gso.h for the flow and why.
#include "gso.h"
#include "checksum.h"

#include <cstring>

namespace quicgate {
namespace {

constexpr uint8_t kVirtioTcp4 = 1, kVirtioTcp6 = 4, kVirtioUdpL4 = 5, kVirtioEcn = 0x80;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

}  // namespace

bool ParseGso(const uint8_t* p, size_t length, uint8_t kindByte, uint32_t gsoSize, GsoInfo* info) {
  uint8_t kind = kindByte & static_cast<uint8_t>(~kGsoKindEcn);
  if (kind < kGsoKindTcp4 || kind > kGsoKindUdp6 || length < 20 || length > kMaxGsoPacketBytes) return false;
  bool v4 = kind == kGsoKindTcp4 || kind == kGsoKindUdp4;
  bool tcp = kind == kGsoKindTcp4 || kind == kGsoKindTcp6;
  if ((kindByte & kGsoKindEcn) != 0 && !tcp) return false;
  uint8_t protocol = tcp ? 6 : 17;
  size_t iph;
  if (v4) {
    if ((p[0] >> 4) != 4) return false;
    iph = static_cast<size_t>(p[0] & 0x0f) * 4;
    if (iph < 20 || iph > length || Load16(p + 2) != length || p[9] != protocol) return false;
    if ((Load16(p + 6) & 0x3fff) != 0) return false;  // a fragment (MF or an offset)
  } else {
    iph = 40;
    if ((p[0] >> 4) != 6 || length < iph || Load16(p + 4) + 40u != length || p[6] != protocol) return false;
  }
  size_t l4;
  if (tcp) {
    if (iph + 20 > length) return false;
    l4 = static_cast<size_t>(p[iph + 12] >> 4) * 4;
    if (l4 < 20) return false;
  } else {
    l4 = 8;
  }
  size_t hdrLen = iph + l4;
  if (hdrLen >= length || gsoSize == 0 || hdrLen + gsoSize > 65535) return false;
  size_t payload = length - hdrLen;
  size_t segments = (payload + gsoSize - 1) / gsoSize;
  if (segments > kMaxGsoSegments) return false;
  info->kind = kind;
  info->ecn = (kindByte & kGsoKindEcn) != 0;
  info->v4 = v4;
  info->tcp = tcp;
  info->ipHeaderLength = static_cast<uint16_t>(iph);
  info->hdrLen = static_cast<uint16_t>(hdrLen);
  info->gsoSize = static_cast<uint16_t>(gsoSize);
  info->csumStart = static_cast<uint16_t>(iph);
  info->csumOffset = tcp ? 16 : 6;
  info->segments = static_cast<uint32_t>(segments);
  info->wireBytes = static_cast<uint32_t>(length + (segments - 1) * hdrLen);
  return true;
}

uint8_t GsoKindFromVirtio(uint8_t gsoType, const uint8_t* packet, size_t length) {
  if (length < 1) return kGsoKindNone;
  bool v4 = (packet[0] >> 4) == 4;
  uint8_t ecn = (gsoType & kVirtioEcn) != 0 ? kGsoKindEcn : 0;
  switch (gsoType & static_cast<uint8_t>(~kVirtioEcn)) {
    case kVirtioTcp4: return v4 ? (kGsoKindTcp4 | ecn) : kGsoKindNone;
    case kVirtioTcp6: return v4 ? kGsoKindNone : (kGsoKindTcp6 | ecn);
    case kVirtioUdpL4: return v4 ? kGsoKindUdp4 : kGsoKindUdp6;
    default: return kGsoKindNone;
  }
}

uint8_t VirtioGsoType(const GsoInfo& info) {
  if (!info.tcp) return kVirtioUdpL4;
  return static_cast<uint8_t>((info.v4 ? kVirtioTcp4 : kVirtioTcp6) | (info.ecn ? kVirtioEcn : 0));
}

int SplitGso(const uint8_t* packet, size_t length, const GsoInfo& info, uint8_t* out, size_t stride,
             uint32_t* lengths, size_t maxSegments) {
  if (info.segments > maxSegments || info.hdrLen + static_cast<size_t>(info.gsoSize) > stride) return -1;
  size_t hdrLen = info.hdrLen;
  size_t iph = info.ipHeaderLength;
  size_t payload = length - hdrLen;
  uint16_t firstId = info.v4 ? Load16(packet + 4) : 0;
  uint32_t firstSeq = info.tcp ? Load32(packet + iph + 4) : 0;
  uint8_t flags = info.tcp ? packet[iph + 13] : 0;
  for (uint32_t s = 0; s < info.segments; s++) {
    size_t from = static_cast<size_t>(s) * info.gsoSize;
    size_t size = payload - from < info.gsoSize ? payload - from : info.gsoSize;
    uint8_t* b = out + static_cast<size_t>(s) * stride;
    std::memcpy(b, packet, hdrLen);
    std::memcpy(b + hdrLen, packet + hdrLen + from, size);
    uint32_t transportLength = static_cast<uint32_t>(hdrLen - iph + size);
    if (info.v4) {
      Store16(b + 2, static_cast<uint32_t>(hdrLen + size));
      Store16(b + 4, static_cast<uint16_t>(firstId + s));
      b[10] = b[11] = 0;
      Store16(b + 10, static_cast<uint16_t>(~Fold(Sum16(b, iph, 0))));
    } else {
      Store16(b + 4, transportLength);
    }
    uint8_t* l4 = b + iph;
    if (info.tcp) {
      Store32(l4 + 4, firstSeq + static_cast<uint32_t>(from));
      uint8_t f = flags;
      if (s + 1 < info.segments) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
      if (s > 0) f &= static_cast<uint8_t>(~kTcpCwr);
      l4[13] = f;
    } else {
      Store16(l4 + 4, transportLength);
    }
    l4[info.csumOffset] = l4[info.csumOffset + 1] = 0;
    uint16_t sum = static_cast<uint16_t>(
        ~Fold(Sum16(l4, transportLength, PseudoHeaderSum(b, info.v4, info.tcp ? 6 : 17, transportLength))));
    if (!info.tcp && sum == 0) sum = 0xffff;  // 0 means "no checksum" for UDP
    Store16(l4 + info.csumOffset, sum);
    lengths[s] = static_cast<uint32_t>(hdrLen + size);
  }
  return static_cast<int>(info.segments);
}

void PrepareGsoHeaders(const uint8_t* packet, const GsoInfo& info, uint8_t* headers) {
  size_t iph = info.ipHeaderLength;
  std::memcpy(headers, packet, info.hdrLen);
  uint32_t transportLength = 0;
  if (info.v4) {
    transportLength = Load16(headers + 2) - static_cast<uint32_t>(iph);
    headers[10] = headers[11] = 0;
    Store16(headers + 10, static_cast<uint16_t>(~Fold(Sum16(headers, iph, 0))));
  } else {
    transportLength = Load16(headers + 4);
  }
  if (!info.tcp) Store16(headers + iph + 4, transportLength);
  Store16(headers + iph + info.csumOffset, PseudoHeaderSum(headers, info.v4, info.tcp ? 6 : 17, transportLength));
}

}  // namespace quicgate
