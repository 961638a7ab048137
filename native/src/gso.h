// Super-packets (GSO) read from or written to a TUN with IFF_VNET_HDR + TUNSETOFFLOAD, and their software
// segmentation, after wireguard-go's tun/offload_linux.go (gsoSplit).
//
//   ParseGso    validate a super-packet (IPv4 without fragments / IPv6 without extension headers, TCP or UDP,
//               IP length == packet length) and derive hdr_len, csum_start/offset, segment count, wire bytes
//   SplitGso    cut it into real packets: headers copied, IPv4 ids +1 per segment, IP/UDP lengths set, TCP seq
//               advanced, FIN/PSH only on the last and CWR only on the first, checksums computed in full
//   PrepareGsoHeaders  the header copy written in front of the payload when the kernel segments it itself:
//               L4 checksum field = pseudo-header sum (CHECKSUM_PARTIAL), IPv4 header checksum fresh
//
// Written by hand: no library does this for Node (the same reason as gro.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quicgate {

// Kinds of super-packet as the JS side and the tunnel frame see them (not the virtio numbers).
constexpr uint8_t kGsoKindNone = 0, kGsoKindTcp4 = 1, kGsoKindTcp6 = 2, kGsoKindUdp4 = 3, kGsoKindUdp6 = 4;
// Or'ed into a TCP kind: the super-packet had CWR set (virtio GSO_ECN): only the first segment keeps it.
constexpr uint8_t kGsoKindEcn = 0x80;
// Segments per super-packet accepted (the kernel makes at most 64 KB / MSS; 256 covers an MSS of 256 bytes).
constexpr uint32_t kMaxGsoSegments = 256;
// Largest super-packet: an IPv6 header plus the largest payload length.
constexpr size_t kMaxGsoPacketBytes = 40 + 65535;

struct GsoInfo {
  uint8_t kind;  // kGsoKind* without the ECN bit
  bool ecn;
  bool v4;
  bool tcp;
  uint16_t ipHeaderLength;
  uint16_t hdrLen;      // IP + TCP/UDP header
  uint16_t gsoSize;     // payload bytes per segment (the last may be shorter)
  uint16_t csumStart;   // == ipHeaderLength
  uint16_t csumOffset;  // 16 (TCP) or 6 (UDP)
  uint32_t segments;
  uint32_t wireBytes;   // sum of the segments' IP lengths, headers included
};

// false when `packet` is not a well-formed super-packet of `kind` (kGsoKind*, optionally | kGsoKindEcn).
bool ParseGso(const uint8_t* packet, size_t length, uint8_t kind, uint32_t gsoSize, GsoInfo* info);

// Our kind for a virtio gso_type read from the TUN (kGsoKindNone for a type we do not take).
uint8_t GsoKindFromVirtio(uint8_t gsoType, const uint8_t* packet, size_t length);
// The virtio gso_type for a parsed super-packet.
uint8_t VirtioGsoType(const GsoInfo& info);

// Writes info.segments packets at out + i * stride, lengths[i] = their lengths. Returns the count, or -1
// when a segment does not fit `stride` or there are more than `maxSegments`.
int SplitGso(const uint8_t* packet, size_t length, const GsoInfo& info, uint8_t* out, size_t stride,
             uint32_t* lengths, size_t maxSegments);

// Copies the headers (info.hdrLen bytes) into `headers` and makes them what a GSO write needs.
void PrepareGsoHeaders(const uint8_t* packet, const GsoInfo& info, uint8_t* headers);

}  // namespace quicgate
